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
    from rag_health.embedding import ModelLoadError
    from rag_health.runtime import build_runtime
    from rag_health.settings import ConfigError, load_settings

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
