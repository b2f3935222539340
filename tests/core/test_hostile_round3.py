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
