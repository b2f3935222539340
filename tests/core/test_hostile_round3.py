"""Hostile input and faults, round 3 (issue 19), on the real components: each case is one skipped or failed
document (or a clear configuration error) naming the file and the reason; the rest of the run goes on and nothing
that was good is lost."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from rag_health.documents import Limits, Rejected, parse_document
from tests.conftest import write_doc
from tests.support.fixtures import shared_stream_pdf_bytes
from tests.support.stages import stage


def reasons(result, kind: str) -> dict[str, str]:
    return {e["doc_id"]: e["reason"] for e in result[kind]}


def deep_html(levels: int) -> bytes:
    return ("<html><head><title>Deep</title></head><body>" + "<div>" * levels
            + "<p>Settlement files are reconciled against the ledger every night before the cut-off.</p>"
            + "</div>" * levels + "</body></html>").encode()


def test_html_nested_100000_deep_is_parsed_in_one_pass(small_corpus, make_runtime):
    """Regression: 100,000 nested <div>s (1.1 MB) were still parsing after 300 s (each separator inserted into the
    tree cost time in proportion to its depth). One pass over the tree reads it like any page."""
    (small_corpus / "pages").mkdir()
    (small_corpus / "pages" / "deep.html").write_bytes(deep_html(100_000))
    result = stage(make_runtime(small_corpus, max_parse_seconds=60), "ingest")
    assert result["errors"] == [] and result["skipped"] == [] and "pages/deep.html" in result["added_ids"]


def test_a_parse_over_its_time_budget_is_skipped_named_and_the_rest_written(small_corpus, make_runtime):
    """A 75 KB PDF whose 40 pages share one content stream took minutes a page; the batch of good documents read
    before it was never written and the document never noted, so every later run stalled again while holding the
    lock. Now a stream over max_archive_member_bytes is refused at once, one just under it is stopped after
    max_parse_seconds; either way the document is named, the others are indexed, and the next run does not parse
    it again while it is unchanged."""
    (small_corpus / "files").mkdir()
    (small_corpus / "files" / "bomb.pdf").write_bytes(shared_stream_pdf_bytes(40, 70_000_000))
    (small_corpus / "files" / "slow.pdf").write_bytes(shared_stream_pdf_bytes(40, 9_000_000))
    rt = make_runtime(small_corpus, max_parse_seconds=3)
    first = stage(rt, "ingest")
    skipped = reasons(first, "skipped")
    assert set(skipped) == {"files/bomb.pdf", "files/slow.pdf"} and first["added"] == 4
    assert "max_archive_member_bytes" in skipped["files/bomb.pdf"]
    assert "took longer than 3 s" in skipped["files/slow.pdf"] and "max_parse_seconds" in skipped["files/slow.pdf"]
    assert rt.index.count() > 0
    again = stage(rt.new_run(), "ingest")
    assert again["read"] == 0 and set(reasons(again, "skipped")) == {"files/bomb.pdf", "files/slow.pdf"}


def test_docx_member_count_names_its_own_setting():
    """Regression: a DOCX with too many members was refused naming max_archive_member_bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(30):
            z.writestr(f"word/m{i}.xml", "<x/>")
    with pytest.raises(Rejected, match=r"30 members > 20 \(setting max_archive_members, RAG_HEALTH_MAX_ARCHIVE_"):
        parse_document("a.docx", buf.getvalue(), Limits(max_archive_members=20))


def test_never_reviewed_again_is_fresh_not_a_crash(small_corpus, make_runtime):
    """Regression: `last_reviewed: 9999-12-31` (a common "never") aborted freshness and the whole run with
    OverflowError (date value out of range)."""
    write_doc(small_corpus, "policies/forever.md", "# Forever\nThis policy never needs a review, says its owner.",
              last_reviewed="9999-12-31", review_every_days=365)
    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    result = stage(rt.new_run(), "freshness")
    row = next(d for d in result["documents"] if d["doc_id"] == "policies/forever.md")
    assert row["status"] == "fresh" and "9999" in row["reason"]


def test_a_collection_name_of_500_characters_locks(small_corpus, make_runtime):
    """Regression: valid collection names of about 230 characters and more hit ENAMETOOLONG on the lock file."""
    name = "c" * 500
    rt = make_runtime(small_corpus, collection=name)
    from rag_health.locks import collection_lock

    with collection_lock(rt, "run-long", wait_seconds=0) as held:
        assert len(held.where.rsplit("/", 1)[1]) < 255
    assert json.dumps(stage(rt, "ingest"))


def _cache_with_truncated_export(tmp_path):
    """A model cache holding the default backend's export cut to a tenth of its size (a full disk, a killed copy)."""
    import shutil

    from rag_health.embedding import DEFAULT_BACKEND, model_cache, read_model_info

    info = read_model_info("all-MiniLM-L6-v2", DEFAULT_BACKEND)
    source = model_cache() / info.fingerprint / "model.onnx"
    cache = tmp_path / "model-cache"
    (cache / info.fingerprint).mkdir(parents=True)
    target = cache / info.fingerprint / "model.onnx"
    shutil.copyfile(source, target)
    with target.open("r+b") as f:
        f.truncate(target.stat().st_size // 10)
    return cache, target


@pytest.mark.slow
def test_a_truncated_onnx_export_is_exported_again_and_no_document_is_blamed(small_corpus, tmp_path):
    """Regression: a truncated ONNX export in the model cache made every document's load error its own (warn,
    exit 0), and once the cache was repaired the unchanged documents were never read again. The export is checked
    by loading it; a file that does not load is exported again."""
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    cache, target = _cache_with_truncated_export(tmp_path)
    small = target.stat().st_size
    rt = build_runtime(load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "state"),
                                     model_cache_dir=str(cache)))
    result = stage(rt, "ingest")
    assert result["errors"] == [] and result["added"] == 4 and target.stat().st_size > 5 * small


def test_a_model_that_cannot_load_is_the_runs_error_and_notes_nothing(small_corpus, tmp_path, monkeypatch):
    """When the export cannot be repaired either, the run stops with one configuration error naming the file (CLI
    exit 2); no document is noted unreadable, so a repaired cache finds every document to read."""
    from rag_health import embedding
    from rag_health.errors import ConfigError, ModelLoadError
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    cache, target = _cache_with_truncated_export(tmp_path)
    truncated = target.read_bytes()

    def export_fails_again(model_path, folder, quantized=False):
        target.write_bytes(truncated)  # the disk is still full: the new export is cut short again
        return target

    monkeypatch.setattr(embedding, "export_onnx", export_fails_again)
    embedding.load_embedder.cache_clear()
    rt = build_runtime(load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "state"),
                                     model_cache_dir=str(cache)))
    try:
        with pytest.raises(ModelLoadError) as failed:
            stage(rt, "ingest")
    finally:
        embedding.load_embedder.cache_clear()
    assert isinstance(failed.value, ConfigError) and str(target) in str(failed.value)
    assert rt.index.notes() == {} and rt.index.count() == 0



def test_the_parse_worker_answers_a_process_with_many_open_files():
    """Regression (found by the full suite): waiting for the worker with select() failed once the process held
    more than 1,024 descriptors, and every HTML, PDF and DOCX became an unreadable document."""
    import os

    from rag_health.bounded_parse import parse_bounded

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert parse_bounded("a.html", b"<p>Wires settle the next business day.</p>", Limits()).text == \
            "Wires settle the next business day."
    finally:
        for fd in held:
            os.close(fd)


def test_probe_grades_must_be_finite_and_not_negative(tmp_path):
    """Regression: an `Infinity` grade made ndcg@10 NaN, wrote a bare NaN into the JSON and `--fail-under
    ndcg@10=0.99` exited 0; NaN and negative grades were accepted silently. Each is a rejected line, named."""
    from rag_health.probes import load_probe_set

    path = tmp_path / "graded.jsonl"
    path.write_text('{"id": "ok", "query": "chargebacks", "relevant": {"a.md": 2, "b.md": 1}}\n'
                    '{"id": "inf", "query": "refunds", "relevant": {"a.md": Infinity}}\n'
                    '{"id": "nan", "query": "refunds", "relevant": {"a.md": NaN}}\n'
                    '{"id": "neg", "query": "refunds", "relevant": {"a.md": -1}}\n')
    loaded = load_probe_set(path)
    assert [p.probe_id for p in loaded.probes] == ["ok"]
    assert {e["line"]: e["reason"] for e in loaded.errors} == {
        2: "grade of 'a.md' must be a finite number >= 0, got inf",
        3: "grade of 'a.md' must be a finite number >= 0, got nan",
        4: "grade of 'a.md' must be a finite number >= 0, got -1.0"}


def test_a_metric_that_is_not_a_number_fails_its_threshold_and_json_has_no_bare_nan():
    from checks.retrieval import ProbeRanks, retrieval_check
    from rag_health.archive import dumps

    check = retrieval_check([ProbeRanks("p", "golden", (1,), (float("inf"),))], hit_at_5_warn=0.8,
                            hit_at_5_fail=0.5, fail_under=["ndcg@10=0.99"])
    assert check.status == "fail" and "ndcg@10 is not a number" in " ".join(check.findings)
    assert json.loads(dumps({"ndcg@10": float("nan"), "x": [float("inf")]})) == {"ndcg@10": None, "x": [None]}


@pytest.mark.slow
def test_a_42_mb_probe_line_is_refused_in_bounded_memory(tmp_path):
    """Regression: a 42 MB probe line pushed the process past 4 GB. Lines are read with a bound (64 KB)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    path = tmp_path / "huge.jsonl"
    with path.open("w") as f:
        f.write('{"id": "big", "query": "' + "x" * 42_000_000 + '", "relevant": ["a.md"]}\n')
        f.write('{"id": "ok", "query": "chargebacks", "relevant": ["a.md"]}\n')
    code = ("import json, sys; from rag_health.probes import load_probe_set; p = load_probe_set(sys.argv[1]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print(json.dumps({'ids': [x.probe_id for x in p.probes], 'errors': p.errors, 'kb': int(hwm)}))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    out = json.loads(done.stdout)
    assert out["ids"] == ["ok"] and out["errors"][0]["line"] == 1 and "over 65,536 bytes" in out["errors"][0]["reason"]
    assert out["kb"] < 400_000  # well under what reading the line whole would take


def test_csv_cells_that_look_like_formulas_are_shown_as_text():
    """Regression: file names and boilerplate lines starting with =, +, - or @ were written to chunks.csv as they
    are, and a spreadsheet evaluates them as formulas."""
    import pandas as pd

    from rag_health.archive import safe_csv

    frame = pd.DataFrame({"doc_id": ["=HYPERLINK(\"http://x\")", "+1+2", "@SUM(A1)", "-2+3", "ok.md"],
                          "boilerplate_example": ["=cmd|' /C calc'!A0", "", "", "", "plain"], "n": [1, 2, 3, 4, 5]})
    rows = list(pd.read_csv(io.StringIO(safe_csv(frame)), keep_default_na=False)["doc_id"])
    assert rows == ["'=HYPERLINK(\"http://x\")", "'+1+2", "'@SUM(A1)", "'-2+3", "ok.md"]
    assert "'=cmd" in safe_csv(frame)


def test_bidirectional_overrides_are_shown_escaped():
    """Regression: an RTL override in a file name was shown raw on the front page, reversing the rest of the
    line."""
    from rag_health.report_pages import esc
    from rag_health.views import md, one_line

    name = "runbooks/invoice\u202egpj.md"
    assert "\u202e" not in one_line(name) and "\\u202e" in one_line(name)
    assert "\u202e" not in esc(name) and "\u202e" not in md(name)


# --- faults: every remote call bounded, every failure named ------------------------------------------------------

@pytest.fixture
def chroma_server(tmp_path):
    from tests.support.chroma_server import start_chroma

    proc, port = start_chroma(tmp_path / "chroma-server")
    yield proc, port
    if proc.poll() is None:
        import os
        import signal

        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait()


@pytest.mark.slow
def test_an_s3_endpoint_that_trickles_is_cut_off_by_the_call_bound(small_corpus, tmp_path, seaweed, monkeypatch):
    """Regression: an S3 endpoint that sends one byte every 0.5 s never tripped botocore's per-recv read timeout,
    and the run hung in its pre-flight listing. Every S3 call now has a wall-clock bound (s3_call_timeout)."""
    import time

    from rag_health.errors import CallTimeout
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings
    from tests.support.stall_proxy import StallProxy

    seaweed.client().create_bucket(Bucket="trickled")
    proxy = StallProxy(seaweed.endpoint, trickle_s=0.5)
    for key, value in {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.endpoint}.items():
        monkeypatch.setenv(key, value)
    try:
        rt = build_runtime(load_settings(docs="s3://trickled/docs", state_dir=str(tmp_path / "s"),
                                         s3_call_timeout=3, s3_read_timeout=30))
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            rt.s3.list_objects_v2(Bucket="trickled", Prefix="docs/")
        assert isinstance(raised.value, CallTimeout) and time.monotonic() - started < 30
        assert "S3 list_objects_v2 at " + proxy.endpoint in str(raised.value)
        assert "s3_call_timeout" in str(raised.value)
    finally:
        proxy.close()


@pytest.mark.slow
def test_a_chroma_server_that_stops_answering_mid_ingest_is_cut_off(small_corpus, make_runtime, chroma_server):
    """Regression: a Chroma server stopped with SIGSTOP mid-ingest (it accepts connections, never answers) hung the
    run with no limit: the client's HTTP session has no timeout. Every call is bounded (chroma_call_timeout) and
    the error names the server; the collection keeps what was written before."""
    import os
    import signal

    from rag_health.errors import CallTimeout

    proc, port = chroma_server
    rt = make_runtime(small_corpus, chroma_mode="http", chroma_port=port, chroma_call_timeout=5)
    stage(rt, "ingest")
    write_doc(small_corpus, "runbooks/new.md", "# New\nA runbook added after the first ingest, for the stall.")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(CallTimeout, match=rf"Chroma server at 127.0.0.1:{port}: .* did not finish within 5 s"):
            stage(rt.new_run(), "ingest")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert "runbooks/kafka-lag.md" in rt.new_run().ledger()


@pytest.mark.slow
def test_a_chroma_server_that_went_away_is_named(small_corpus, make_runtime, chroma_server):
    """Regression: a Chroma server gone mid-run surfaced as "[Errno 111] Connection refused", naming neither the
    server nor the setting. Now a transient connection error naming host and port."""
    from rag_health.errors import ChromaUnreachable, transient

    proc, port = chroma_server
    rt = make_runtime(small_corpus, chroma_mode="http", chroma_port=port)
    rt.index.count()
    proc.kill()
    proc.wait()
    with pytest.raises(ChromaUnreachable, match=rf"Chroma server at 127.0.0.1:{port}: ") as gone:
        rt.index.count()
    assert transient(gone.value)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bearer", "x-chroma-token", "basic"])
def test_a_chroma_server_behind_auth(kind, small_corpus, make_runtime, chroma_server, monkeypatch):
    """A Chroma server that wants a token (Authorization: Bearer, or X-Chroma-Token) or basic auth: the
    credentials come from the environment only, through chromadb's own client auth providers; they never appear
    in a dump of the settings, so no flow parameter carries them; without them the error says which variable."""
    from rag_health.errors import ConfigError
    from rag_health.settings import load_settings
    from tests.support.chroma_server import AuthProxy

    _, port = chroma_server
    token, basic = "s3cr3t-token-value", "ops:pa55word-value"
    proxy = AuthProxy(port, token=token if kind != "basic" else None,
                      header="X-Chroma-Token" if kind == "x-chroma-token" else "Authorization",
                      basic=basic if kind == "basic" else None)
    try:
        with pytest.raises(ConfigError, match="RAG_HEALTH_CHROMA_AUTH_TOKEN or RAG_HEALTH_CHROMA_BASIC_AUTH"):
            _ = make_runtime(small_corpus, chroma_mode="http", chroma_port=proxy.port, collection=f"no-{kind}").index
        if kind == "basic":
            monkeypatch.setenv("RAG_HEALTH_CHROMA_BASIC_AUTH", basic)
        else:
            monkeypatch.setenv("RAG_HEALTH_CHROMA_AUTH_TOKEN", token)
            monkeypatch.setenv("RAG_HEALTH_CHROMA_AUTH_HEADER",
                               "X-Chroma-Token" if kind == "x-chroma-token" else "Authorization")
        rt = make_runtime(small_corpus, chroma_mode="http", chroma_port=proxy.port, collection=f"auth-{kind}")
        result = stage(rt, "ingest")
        assert result["added"] == 4 and rt.index.count() > 0 and proxy.seen and "bad" not in proxy.seen[-1]
        dumped = json.dumps(rt.settings.model_dump(mode="json"))
        assert token not in dumped and "pa55word" not in dumped and "chroma_auth_token" not in dumped
        assert load_settings().chroma_auth_token is not None or load_settings().chroma_basic_auth is not None
    finally:
        proxy.close()


def test_credentials_and_allowed_roots_are_never_flow_parameters(monkeypatch):
    """Whoever may start a deployment must not widen what the worker reads or where its credentials go."""
    from flows.resources import settings_from
    from rag_health.errors import ConfigError

    for key, value in (("allowed_roots", ["/"]), ("chroma_auth_token", "x"), ("chroma_basic_auth", "a:b"),
                       ("allowed_roots", []), ("chroma_auth_token", ""), ("allowed_roots", None)):
        with pytest.raises(ConfigError, match=f"{key} may only be set in the worker's environment"):
            settings_from({}, {key: value})  # an empty value would lift the worker's roots or its credentials
    # With credentials in the environment, the server they go to is the environment's too.
    monkeypatch.setenv("RAG_HEALTH_CHROMA_AUTH_TOKEN", "s3cret-token")
    monkeypatch.setenv("RAG_HEALTH_CHROMA_MODE", "http")
    for key, value in (("chroma_host", "attacker.example"), ("chroma_port", 443), ("chroma_ssl", True)):
        with pytest.raises(ConfigError, match=f"{key}: with Chroma credentials"):
            settings_from({}, {key: value})
    same = settings_from({}, {"chroma_host": "127.0.0.1", "chroma_mode": "http"})  # what a suite passes on
    assert same.chroma_host == "127.0.0.1"


def test_document_and_state_roots_are_allowed_explicitly(tmp_path, monkeypatch):
    """Regression: `--docs /etc` indexed /etc/shadow, and the flows accept docs and state_dir from whoever starts
    a deployment. Without RAG_HEALTH_ALLOWED_ROOTS the system folders and a home's private folders are refused;
    with it, only what is under those roots (symlinks resolved)."""
    from rag_health.errors import ConfigError
    from rag_health.settings import load_settings

    for bad in ("/etc", "/", "/proc/self", str(__import__("pathlib").Path.home() / ".ssh")):
        with pytest.raises(ConfigError, match=r"docs \(RAG_HEALTH_DOCS\): "):
            load_settings(docs=bad)
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    with pytest.raises(ConfigError, match="a system or private folder"):
        load_settings(docs=str(link))
    monkeypatch.setenv("RAG_HEALTH_ALLOWED_ROOTS", str(tmp_path / "docs"))
    (tmp_path / "docs").mkdir()
    assert load_settings(docs=str(tmp_path / "docs"), state_dir=str(tmp_path / "docs" / "state"))
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        load_settings(docs=str(tmp_path / "docs"), state_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match=r"probes \(RAG_HEALTH_PROBES\): .* outside the allowed roots"):
        load_settings(docs=str(tmp_path / "docs"), state_dir=str(tmp_path / "docs" / "s"), probes=["/tmp/p.jsonl"])


def test_prefix_and_base_url_are_validated():
    """Regression: RAG_HEALTH_S3_PREFIX=../.. and RAG_HEALTH_REPORT_BASE_URL=javascript:... were taken as they are."""
    from rag_health.errors import ConfigError
    from rag_health.settings import load_settings

    for prefix in ("../..", "a/../b", "a/./b", "a\\b", "a\nb"):
        with pytest.raises(ConfigError, match="s3_prefix"):
            load_settings(s3_prefix=prefix)
    assert load_settings(s3_prefix="/team//rag-health/").s3_prefix == "team/rag-health"
    for url in ("javascript:alert(1)", "data:text/html,x", "ftp://x/", "https://", "https://a b/"):
        with pytest.raises(ConfigError, match="report_base_url"):
            load_settings(report_base_url=url)
    assert load_settings(report_base_url="https://reports.example.com/rag").report_base_url


@pytest.mark.slow
def test_a_read_only_state_directory_exits_2(small_corpus, tmp_path):
    """Regression: a read-only state directory exited 1 with a raw error. Now a configuration error naming it."""
    import subprocess
    import sys

    from tests.conftest import REPO

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = [str(blocker / "state")]
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], capture_output=True).returncode == 0
    if mounted:
        cases.append(str(ro / "state"))
    try:
        for state in cases:
            done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", "--docs", str(small_corpus), "--state",
                                   state, "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith(f"rag-health: error: state directory {state} is not writable: ")
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)])


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_and_sigint_end_with_one_line_and_json(sig, code, small_corpus, tmp_path):
    """Regression: SIGTERM ended a command with no line and no JSON, SIGINT with a traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    for i in range(40):  # enough to be mid-ingest when the signal comes
        write_doc(small_corpus, f"notes/n{i}.md", f"# Note {i}\n" + "Settlement is reconciled nightly. " * 200)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "ingest", "--docs", str(small_corpus), "--state",
                             str(tmp_path / "state"), "--json"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not (tmp_path / "state" / "chroma").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"rag-health: error: interrupted by {sig}")
    assert json.loads(out) == {"verdict": "error", "exit_code": code,
                               "error": err.strip().splitlines()[-1].removeprefix("rag-health: error: ")}


def test_bad_dates_name_the_field(small_corpus, make_runtime):
    """Regression: `last_reviewed: 2026-02-30` was reported as "ValueError: day is out of range for month", naming
    neither the field nor the value."""
    write_doc(small_corpus, "policies/leap.md", "# Leap\nA policy reviewed on a day that does not exist.",
              last_reviewed="2026-02-30")
    result = stage(make_runtime(small_corpus), "ingest")
    assert reasons(result, "errors")["policies/leap.md"] == ("front-matter field 'last_reviewed' is not a date "
                                                             "(YYYY-MM-DD): '2026-02-30'")


def test_a_huge_word_is_an_unknown_tokens_finding(small_corpus, make_runtime):
    """Regression: a 1.9 MB word with no spaces became one chunk the model reads as a single [UNK], with no
    finding."""
    (small_corpus / "notes" / "blob.txt").write_text("q" * 1_900_000)
    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    quality = stage(rt.new_run(), "quality")
    found = [f for f in quality["findings"] if f["kind"] == "unknown-tokens"]
    assert [f["doc_id"] for f in found] == ["notes/blob.txt"] and "[UNK]" in found[0]["detail"]
    assert quality["status"] == "warn" and any("not [UNK]" in f for f in quality["chunks"]["findings"])


@pytest.mark.slow
def test_a_full_disk_names_the_database_folder_and_its_free_space(tmp_path):
    """Regression: a full disk under embedded Chroma surfaced as "Error in compaction" or "database or disk is
    full", naming neither the folder nor the disk. Needs a small tmpfs (mount), skipped where none can be made."""
    import subprocess
    import sys

    from tests.conftest import REPO

    docs, state = tmp_path / "docs", tmp_path / "state"
    for i in range(300):
        write_doc(docs, f"notes/{i}.md", f"# Note {i}\n" + f"Settlement {i} is reconciled against entry {i}. " * 60)
    state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", "--docs", str(docs), "--state",
                               str(state), "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["umount", str(state)])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"rag-health: error: embedded Chroma at {state}/chroma: ")
    assert "MB free on its disk)" in done.stderr


# --- found by a review of the round-3 change --------------------------------------------------------------------

def test_a_backend_that_cannot_run_on_this_device_notes_nothing(small_corpus, tmp_path):
    """Review: embed_device=cuda with the ONNX backend raised a plain ConfigError inside the ingest, which noted it
    against every document (warn, exit 0); after the setting was fixed, no unchanged document was read again."""
    from rag_health.runtime import build_runtime
    from rag_health.settings import ConfigError, load_settings

    state = str(tmp_path / "state")
    rt = build_runtime(load_settings(docs=str(small_corpus), state_dir=state, embed_device="cuda",
                                     embed_backend="onnx"))
    with pytest.raises(ConfigError, match="CPU"):
        stage(rt, "ingest")
    assert rt.index.notes() == {}
    again = stage(build_runtime(load_settings(docs=str(small_corpus), state_dir=state)), "ingest")
    assert again["added"] == 4 and again["errors"] == []


def test_only_a_full_disk_reads_as_a_full_disk(tmp_path):
    """Review: any embedded Chroma error whose text held "disk" became StoreWriteError, so a first run on a
    collection named disk-runbooks failed with '... MB free' instead of finding no collection."""
    from rag_health.store import _out_of_space

    class NotFoundError(Exception):
        pass

    assert not _out_of_space(NotFoundError("Collection [disk-runbooks] does not exist"))
    assert not _out_of_space(ValueError("document runbooks/disk-full.md has no text"))
    assert _out_of_space(OSError(28, "No space left on device"))
    assert _out_of_space(RuntimeError("Error in compaction: Failed to apply logs to the hnsw segment writer"))
    wrapped = RuntimeError("failed")
    wrapped.__cause__ = OSError(28, "No space left on device")
    assert _out_of_space(wrapped)


def test_a_chroma_error_passed_through_keeps_its_cause_chain():
    """Review: `raise self._explained(exc) from exc` made an error its own cause, so transient() stopped at it: a
    503 answered without a Chroma body was no longer retried."""
    import httpx

    from rag_health.errors import transient
    from rag_health.store import ChromaCalls

    class Flaky:
        def count(self):
            request = httpx.Request("GET", "http://chroma:8000/api/v2/count")
            try:
                raise httpx.HTTPStatusError("503", request=request, response=httpx.Response(503, request=request))
            except httpx.HTTPStatusError:
                raise Exception("{'error': 'Service Unavailable'}")  # noqa: B904 - what chromadb raises

    with pytest.raises(Exception) as raised:
        ChromaCalls(Flaky(), "Chroma server at chroma:8000", 5.0).count()
    assert raised.value.__cause__ is not raised.value and transient(raised.value)


def test_a_server_that_ignores_range_sends_no_more_than_asked():
    """Review: the bounded S3 client read a GetObject's whole body before the source's own bounded read, so an
    endpoint ignoring Range could hand a 10 GB object to memory."""
    from rag_health.artifacts import BoundedS3

    class Body(io.BytesIO):
        pass

    class Client:
        meta = None

        def get_object(self, **kwargs):
            return {"Body": Body(b"x" * 5_000_000)}  # the whole object, whatever Range said

    got = BoundedS3(Client(), 10).get_object(Bucket="b", Key="k", Range="bytes=0-1023")
    assert len(got["Body"].read()) == 1024
    assert len(BoundedS3(Client(), 10).get_object(Bucket="b", Key="k")["Body"].read()) == 5_000_000


def test_a_traceback_in_the_worker_log_is_redacted():
    """Review: the log filter redacted a record's message but not its traceback, so an unexpected KeyError naming
    refund-4111111111111111.md went raw to the worker's log and the Prefect API."""
    import logging

    from flows.stage_run import _FILTER

    logger = logging.getLogger("rag-health-test.task_runs")  # the filter as on Prefect's task run logger
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    logger.addFilter(_FILTER)
    logger.addHandler(handler)
    try:
        try:
            raise KeyError("policies/refund-4111" + "1" * 12 + ".md")
        except KeyError:
            logger.exception("Task run failed")
    finally:
        logger.removeFilter(_FILTER)
        logger.removeHandler(handler)
    assert "4111111111111111" not in written.getvalue() and "KeyError" in written.getvalue()
    assert "[card-number redacted]" in written.getvalue()


def test_secrets_redacted_since_round_3_rechunk_a_redacted_index():
    """Review: an index built with redact_pii before secrets were redacted kept its secrets until each document
    changed; the recipe's name changed, so it is chunked and embedded again."""
    from rag_health.chunking import Chunker

    assert Chunker.config.fget(type("C", (), {"strategy": "auto", "chunk_size": 200, "chunk_overlap": 24,
                                              "redact_pii": True})()) == "auto:200:24+redacted2"


def test_urls_and_query_expressions_are_not_unknown_tokens():
    """Seen on the Prometheus runbooks: a long documentation URL and PromQL expressions (114 characters without a
    space) were unknown-tokens findings, though WordPiece splits them at their punctuation into known words; only
    a run of letters and digits over 100 characters becomes [UNK]."""
    from checks.chunk_quality import long_word_share

    url = ("[disaster-recovery](https://docs.openshift.com/container-platform/4.7/backup_and_restore/"
           "control_plane_backup_and_restore/disaster_recovery/about-disaster-recovery.html)")
    promql = 'sum(rate(apiserver_request_duration_seconds_bucket{job="apiserver",le="40",scope="cluster"}[3d]))'
    assert long_word_share(url) == 0 and long_word_share(promql) == 0
    assert long_word_share("q" * 150) == 1 and long_word_share("é" * 150) == 1
