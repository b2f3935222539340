"""Flow smoke tests under the Prefect test harness, and the CLI contract in-process and as a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Every test here starts the Prefect test harness (about 30 s) or a real `rag-health` process.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness(embedder):
    """A temporary Prefect server; the flows share the session's model (load_embedder caches it per process)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def probes_file(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps({"id": "k1", "query": "payments consumer group is behind",
                                "relevant": ["runbooks/kafka-lag.md"]}) + "\n")
    return path


def manifest_file(tmp_path, required_missing: bool) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text("defaults:\n  review_every_days: 365\ndocuments:\n  - id: runbooks/kafka-lag.md\n"
                    f"  - id: runbooks/absent.md\n    required: {'true' if required_missing else 'false'}\n")
    return path


def test_suite_flow_runs_every_stage(harness, small_corpus, tmp_path, probes_file):
    from flows.suite import suite_flow

    state = suite_flow(docs=str(small_corpus), manifest=str(manifest_file(tmp_path, False)),
                       probes=[str(probes_file)], state_dir=str(tmp_path / "state"),
                       settings_overrides={"today": "2026-11-28"}, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["verdict"] == "warn"
    assert set(result["stages"]) == {"ingest", "freshness", "coverage", "quality", "probes", "drift"}
    assert result["stages"]["coverage"] == "skip"  # no rule files given
    statuses = {d["doc_id"]: d["status"] for d in result["freshness"]["documents"]}
    assert statuses["runbooks/absent.md"] == "missing" and statuses["policies/chargebacks.md"] == "review-overdue"
    assert result["probes"]["sets"]["golden"]["n"] == 1
    assert Path(result["report"]["html"]).is_file()
    assert set(result["timings"]) == set(result["stages"])


def test_fail_verdict_fails_the_flow_run(harness, small_corpus, tmp_path):
    from flows.suite import suite_flow

    state = suite_flow(docs=str(small_corpus), manifest=str(manifest_file(tmp_path, True)),
                       state_dir=str(tmp_path / "state"), return_state=True)
    assert state.is_failed()
    from flows.resources import unwrap

    # A short message naming the failing check (the missing required runbook), never the warns before it, and no
    # data in the state: the whole result reaches an in-process caller through unwrap, and the archive holds it.
    assert len(state.message) <= 400 and state.message.startswith("rag-health verdict: fail — freshness: ")
    assert "1 required document is missing: runbooks/absent.md (fail)" in state.message and "quality" not in state.message
    assert state.result(raise_on_failure=False) is None
    result = unwrap(state)
    assert result["verdict"] == "fail" and result["stages"]["freshness"] == "fail"
    assert Path(result["result_file"]).is_file()


def test_cli_json_and_exit_codes(harness, small_corpus, tmp_path, probes_file, capsys):
    from flows.cli import main

    state = str(tmp_path / "state")
    code = main(["run", "--docs", str(small_corpus), "--manifest", str(manifest_file(tmp_path, True)),
                 "--probes", str(probes_file), "--state", state, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verdict"] == "fail"
    assert main(["ingest", "--docs", str(small_corpus), "--state", state, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["chunks_embedded"] == 0 and again["unchanged"] == 4


def test_cli_run_exits_1_when_a_probe_regresses(harness, small_corpus, tmp_path, capsys, monkeypatch):
    """The first run is the baseline; documents added since push the lag runbook down: the second run reports
    exactly that probe with the displacing document, and exits 1 (a CI gate after a document change)."""
    from flows.cli import main
    from tests.conftest import write_doc

    monkeypatch.setenv("RAG_HEALTH_GENERATE_PROBES", "false")
    probes = tmp_path / "golden.jsonl"
    probes.write_text(
        json.dumps({"id": "lag", "query": "payments consumer group is behind", "relevant": ["runbooks/kafka-lag.md"]})
        + "\n" + json.dumps({"id": "declines", "query": "card authorisations declined by the issuer processor",
                             "relevant": ["runbooks/card-declines.md"]}) + "\n")
    args = ["run", "--docs", str(small_corpus), "--probes", str(probes), "--state", str(tmp_path / "state"),
            "--today", "2026-11-28", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["probes"]["sets"]["golden"]["regressions"] == [] and first["probes"]["sets"]["golden"]["hit@1"] == 1.0
    for i in range(5):
        write_doc(small_corpus, f"runbooks/payments-consumer-{i}.md",
                  f"# Payments consumer group is behind ({i})\nThe payments consumer group is behind: alert {i} "
                  f"fires when the payments consumer group is behind the producer.", title=f"Payments consumer {i}")
    assert main(args) == 1
    second = json.loads(capsys.readouterr().out)
    regressions = second["probes"]["sets"]["golden"]["regressions"]
    assert [r["probe_id"] for r in regressions] == ["lag"] and regressions[0]["was_rank"] == 1
    assert regressions[0]["displaced_by"].startswith("runbooks/payments-consumer-")
    assert second["verdict"] == "fail" and any("regressed since baseline" in f for f in second["findings"])
    assert main(args[:-1] + ["--fail-under", "golden:hit@1=0.9", "--json"]) == 1
    third = json.loads(capsys.readouterr().out)
    assert "probe set golden: hit@1 0.500 below the required 0.9 (fail)" in third["findings"]


def test_cli_compare_chunking(harness, small_corpus, tmp_path, probes_file, capsys):
    """Two configurations side by side, as JSON and as a table; a bad configuration exits 2."""
    from flows.cli import main

    state = str(tmp_path / "state")
    args = ["compare-chunking", "--docs", str(small_corpus), "--probes", str(probes_file), "--state", state,
            "--config", "sentence:64:8", "--config", "markdown:64"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["chunking"] for c in out["configs"]] == ["sentence:64:8", "markdown:64:0"]
    assert out["winner"] in ("sentence:64:8", "markdown:64:0") and out["probes"] == 1
    assert all("ndcg@10" in c["retrieval"]["overall"] and "score" in c["quality"] for c in out["configs"])
    assert main(args) == 0
    assert "winner: " in capsys.readouterr().out
    assert main(["compare-chunking", "--docs", str(small_corpus), "--state", state, "--config", "words:9",
                 "--config", "sentence:64"]) == 2
    assert "bad chunking configuration 'words:9'" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["run", "--docs", "/nonexistent/folder"], "does not exist"),
    (["run", "--probes", "/nonexistent.jsonl"], "probe file"),
    (["freshness", "--manifest", "BAD"], "bad.yaml: line 3: 'review_every_days' must be a positive"),
    (["probes", "--fail-under", "hit@5"], "bad threshold 'hit@5'"),
    (["run", "--fail-under", "hit@5=2"], "the minimum must be between 0 and 1"),
])
def test_cli_configuration_errors_exit_2(args, message, tmp_path, capsys, small_corpus):
    from flows.cli import main

    if "BAD" in args:
        bad = tmp_path / "bad.yaml"
        bad.write_text("documents:\n  - id: a.md\n    review_every_days: soon\n")
        args = [a if a != "BAD" else str(bad) for a in args] + ["--docs", str(small_corpus)]
    assert main(args + ["--state", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err


def test_cli_usage_error_exits_2():
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--no-such-option"])
    assert exit_info.value.code == 2


def test_rag_health_run_on_the_sample_corpus(tmp_path):
    """The README's main job as a real subprocess: the planted findings appear in the JSON contract."""
    env = {**os.environ, "RAG_HEALTH_TODAY": "2026-11-28"}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).parent / "rag-health"), "run", "--state", str(tmp_path / "state"), "--json"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "warn"
    docs = {d["doc_id"]: d for d in result["freshness"]["documents"]}
    assert sum(d["status"] == "review-overdue" for d in docs.values()) == 5
    assert [d for d in docs if docs[d]["status"] == "superseded-but-indexed"] == ["policies/chargeback-handling-2023.md"]
    assert {d for d in docs if docs[d]["status"] == "missing"} == {"runbooks/ach-return-rate-spike.md",
                                                                   "policies/model-risk-management.md"}
    ingest = result["ingest"]
    assert ingest["documents"] == ingest["added"] == 31 and ingest["errors"] == []
    golden = result["probes"]["sets"]["golden"]
    assert golden["n"] == 68 and set(golden) >= {"hit@1", "hit@3", "hit@5", "hit@10", "mrr", "ndcg@10"}
    per = [p for p in result["probes"]["per_probe"] if p["set"] == "golden"]
    assert len(per) == 68 and {"probe_id", "set", "rank", "retrieved", "relevant_missing"} <= set(per[0])
    assert sum(p["relevant_missing"] for p in per) == 2
    hits = sum(1 for p in per if p["rank"] is not None and p["rank"] <= 5)
    assert golden["hit@5"] == pytest.approx(hits / 68, abs=1e-4)
    assert Path(result["report"]["html"]).is_file()
    assert set(result["timings"]) == {"ingest", "freshness", "coverage", "quality", "probes", "drift"}
    coverage = result["coverage"]  # the sample alert rules: one points at the absent ACH runbook
    assert coverage["alerts_missing_runbook"] == ["AchReturnRateHigh"]
    assert coverage["probes_generated"] == 7 == result["probes"]["sets"]["alerts"]["n"]
    assert "runbooks/token-vault-latency.md" in coverage["runbooks_without_alert"]
    assert all(d.startswith("runbooks/") for d in coverage["runbooks_without_alert"])  # policies are not runbooks
    assert len(coverage["runbooks_without_alert"]) == 17 - 7
    quality = result["quality"]  # the sample corpus is tidy: 0 tokens lost, a few cut tables and headings
    assert 0.9 < quality["score"] < 1.0 and quality["tokens_lost"] == 0
    assert {d["doc_id"] for d in quality["documents"]} == set(docs) - {"runbooks/ach-return-rate-spike.md",
                                                                       "policies/model-risk-management.md"}
    assert quality["findings"] and set(quality["findings"][0]) >= {"doc_id", "chunk_id", "kind", "detail"}
    assert "token-overflow" not in quality["findings_by_kind"] and "missing-metadata" not in quality["findings_by_kind"]


def test_cli_ingests_from_an_s3_prefix(harness, small_corpus, tmp_path, seaweed, monkeypatch, capsys):
    """`--docs s3://bucket/prefix` with the endpoint and credentials from the standard AWS variables."""
    from flows.cli import main

    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    client = seaweed.client()
    client.create_bucket(Bucket="cli-docs")
    for path in small_corpus.rglob("*"):
        if path.is_file():
            client.put_object(Bucket="cli-docs", Key=f"kb/{path.relative_to(small_corpus).as_posix()}",
                              Body=path.read_bytes())
    args = ["ingest", "--docs", "s3://cli-docs/kb", "--state", str(tmp_path / "state"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["added"] == 4 and first["source"] == "s3://cli-docs/kb"
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["read"] == 0
    assert main(["ingest", "--docs", "s3://no-such-bucket/kb", "--state", str(tmp_path / "s2")]) == 2
    assert "bucket not reachable" in capsys.readouterr().err


def test_cli_exits_75_while_another_run_holds_the_collection(small_corpus, tmp_path):
    """A second writer neither waits forever nor writes beside the first: `rag-health ingest` and `rag-health run`,
    as real processes, exit 75 naming the run that holds the collection, and write nothing."""
    from rag_health.locks import collection_lock
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    state = tmp_path / "state"
    env = {**os.environ, "RAG_HEALTH_LOCK_WAIT_SECONDS": "0"}
    env.pop("PREFECT_API_URL", None)

    def cli(command: str) -> tuple[int, dict]:
        proc = subprocess.run([str(Path(sys.executable).parent / "rag-health"), command, "--docs", str(small_corpus),
                               "--state", str(state), "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
        return proc.returncode, json.loads(proc.stdout or "{}")

    rt = build_runtime(load_settings(docs=str(small_corpus), state_dir=str(state)))
    with collection_lock(rt, "nightly-20261129T020000Z-abcdef"):
        for command in ("ingest", "run"):
            code, out = cli(command)
            assert code == 75 and out.get("exit_code") == 75, out
            assert "nightly-20261129T020000Z-abcdef" in out["error"]
    import chromadb

    written = [c.count() for c in chromadb.PersistentClient(path=str(state / "chroma")).list_collections()]
    assert sum(written) == 0  # nothing was written beside the holder


def test_an_unreachable_shared_lease_fails_the_suite_with_one_line_and_an_event(harness, small_corpus, tmp_path,
                                                                                 monkeypatch):
    """A Chroma server's collection is guarded by the lease in the bucket; with the bucket's server (a real
    SeaweedFS) stopped, the suite run ends Failed with one line naming the lease and the cause, and emits
    rag-health.stage.failed (the suite's own hold had nobody else to report it)."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    from flows.suite import suite_flow
    from tests.support.chroma_server import start_chroma
    from tests.support.seaweed import start_seaweed

    weed = start_seaweed(tmp_path / "weed")
    weed.client().create_bucket(Bucket="gone-archive")
    weed.stop()
    for key, value in weed.env().items():
        monkeypatch.setenv(key, value)
    chroma, port = start_chroma(tmp_path / "chroma-server")
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    try:
        state = suite_flow(docs=str(small_corpus), state_dir=str(tmp_path / "state"), collection="leased",
                           settings_overrides={"chroma_mode": "http", "chroma_port": port, "s3_bucket": "gone-archive",
                                               "publish_deadline": 2, "s3_connect_timeout": 1, "s3_max_attempts": 1},
                           return_state=True)
        worker.drain()
    finally:
        chroma.kill()
    assert state.is_failed() and "\n" not in state.message
    assert state.message.startswith("rag-health suite: error: collection 'leased': the shared lock s3://gone-archive/")
    assert "cannot be reached" in state.message
    failed = [e for e in worker._client.events if e.event == "rag-health.stage.failed"]
    assert len(failed) == 1 and failed[0].payload["error_type"] == "LockUnavailable"
    assert failed[0].payload["stage"] == "suite" and failed[0].payload["error"] == state.message
