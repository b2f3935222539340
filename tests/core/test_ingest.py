"""Incremental ingest on a real embedded Chroma and the real offline model."""

import numpy as np
import pytest

from rag_health.errors import ModelMismatchError
from rag_health.sources import OUTSIDE_ROOT
from rag_health.store import ChunkIndex
from tests.conftest import write_doc
from tests.support.stages import stage


def ingest(rt, **kw):
    return stage(rt, "ingest", **kw)


def test_second_run_embeds_nothing(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    first = ingest(rt)
    assert first["documents"] == 4 and first["added"] == 4 and first["errors"] == []
    assert first["chunks_embedded"] == rt.index.count() > 0
    second = ingest(rt)
    assert second["chunks_embedded"] == 0 and second["read"] == 0
    assert (second["added"], second["changed"], second["removed"], second["unchanged"]) == (0, 0, 0, 4)


def test_edit_delete_add_touches_only_those(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    ingest(rt)
    before = rt.index.ledger()
    (small_corpus / "runbooks/kafka-lag.md").write_text("# Kafka lag\nNew guidance: page the streaming team first.\n")
    (small_corpus / "policies/chargebacks.md").unlink()
    write_doc(small_corpus, "runbooks/new-runbook.md", "# Webhooks\nRetry failed webhook deliveries with backoff.")
    result = ingest(rt)
    assert result["changed_ids"] == ["runbooks/kafka-lag.md"]
    assert result["added_ids"] == ["runbooks/new-runbook.md"]
    assert result["removed_ids"] == ["policies/chargebacks.md"]
    assert result["unchanged"] == 2
    after = rt.index.ledger()
    assert set(after) == {"runbooks/kafka-lag.md", "runbooks/card-declines.md", "notes/reconciliation.txt",
                          "runbooks/new-runbook.md"}
    assert after["runbooks/card-declines.md"].chunk_ids == before["runbooks/card-declines.md"].chunk_ids
    assert not set(before["runbooks/kafka-lag.md"].chunk_ids) & set(after["runbooks/kafka-lag.md"].chunk_ids)
    assert result["chunks_embedded"] == len(after["runbooks/kafka-lag.md"].chunk_ids) + len(
        after["runbooks/new-runbook.md"].chunk_ids)
    # Old chunks of the edited doc and every chunk of the deleted doc are gone from the store.
    assert rt.index.count() == sum(len(e.chunk_ids) for e in after.values())


def test_touched_file_is_read_once_then_skipped(small_corpus, make_runtime):
    """Same bytes with a new mtime: hashed, not re-embedded, and the new version is remembered."""
    import os
    import time

    rt = make_runtime(small_corpus)
    ingest(rt)
    path = small_corpus / "runbooks/card-declines.md"
    os.utime(path, (time.time() + 10, time.time() + 10))
    touched = ingest(rt)
    assert touched["read"] == 1 and touched["chunks_embedded"] == 0 and touched["unchanged"] == 4
    assert ingest(rt)["read"] == 0


def test_unreadable_document_keeps_its_last_good_version(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    ingest(rt)
    good = rt.index.ledger()["runbooks/card-declines.md"]
    (small_corpus / "runbooks/card-declines.md").write_text("---\ntitle: [broken\n---\nText\n")
    result = ingest(rt)
    assert result["errors"] == [{"doc_id": "runbooks/card-declines.md",
                                 "reason": result["errors"][0]["reason"]}]
    assert "invalid YAML front-matter" in result["errors"][0]["reason"]
    assert rt.index.ledger()["runbooks/card-declines.md"].chunk_ids == good.chunk_ids
    freshness = stage(rt, "freshness")
    row = next(d for d in freshness["documents"] if d["doc_id"] == "runbooks/card-declines.md")
    assert row["status"] == "unreadable" and "previous version still indexed" in row["reason"]
    # The next good version replaces it.
    (small_corpus / "runbooks/card-declines.md").write_text("# Card declines\nFixed text about declines.\n")
    assert ingest(rt)["changed_ids"] == ["runbooks/card-declines.md"]


def test_ledger_lives_in_chroma_not_on_the_worker(small_corpus, make_runtime, tmp_path, embedder):
    """A second worker with a fresh client on the same store sees the same ledger and skips everything."""
    import chromadb

    rt = make_runtime(small_corpus)
    ingest(rt)
    client = chromadb.PersistentClient(path=str(tmp_path / "state" / "chroma"))
    other = ChunkIndex(client, rt.settings.collection, embedder.info)
    ledger = other.ledger()
    assert set(ledger) == set(rt.index.ledger())
    entry = ledger["runbooks/kafka-lag.md"]
    assert entry.content_hash and entry.source_version and entry.model_fingerprint == embedder.info.fingerprint
    meta = other.collection.get(ids=[entry.chunk_ids[0]], include=["metadatas"])["metadatas"][0]
    assert meta["model_name"] == "all-MiniLM-L6-v2" and meta["model_dimension"] == 384


def test_interrupted_write_is_repaired(small_corpus, make_runtime):
    """New chunks written but old ones not yet deleted (a crash): the newest complete version wins, leftovers go."""
    rt = make_runtime(small_corpus)
    ingest(rt)
    entry = rt.index.ledger()["runbooks/kafka-lag.md"]
    got = rt.index.collection.get(ids=entry.chunk_ids, include=["metadatas", "documents", "embeddings"])
    stale_ids = [i.replace(entry.content_hash[:12], "0" * 12) for i in got["ids"]]
    metas = [{**m, "content_hash": "0" * 64, "ingested_at": "2000-01-01T00:00:00+00:00"} for m in got["metadatas"]]
    rt.index.collection.add(ids=stale_ids, embeddings=np.asarray(got["embeddings"]), documents=got["documents"],
                            metadatas=metas)
    assert rt.index.ledger()["runbooks/kafka-lag.md"].leftover_ids == stale_ids
    result = ingest(rt)
    assert result["chunks_deleted"] == len(stale_ids) and result["chunks_embedded"] == 0
    assert rt.index.ledger()["runbooks/kafka-lag.md"].leftover_ids == []


def test_vanished_source_does_not_wipe_the_index(small_corpus, make_runtime):
    """A source that suddenly lists nothing (broken mount) keeps every indexed document and reports why."""
    import shutil

    rt = make_runtime(small_corpus)
    ingest(rt)
    count = rt.index.count()
    for child in small_corpus.iterdir():
        shutil.rmtree(child)
    result = ingest(rt)
    assert result["removed"] == 0 and result["errors"] == [] and result["status"] == "warn"
    assert sorted(result["held"]["removed_ids"]) == sorted(rt.index.ledger())
    assert rt.index.count() == count


def test_only_reingests_selected_documents(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    ingest(rt)
    for doc in ("runbooks/kafka-lag.md", "policies/chargebacks.md"):
        (small_corpus / doc).write_text("# Changed\nChanged body.\n")
    (small_corpus / "notes/reconciliation.txt").unlink()
    result = ingest(rt, only=["runbooks/"])
    assert result["changed_ids"] == ["runbooks/kafka-lag.md"] and result["removed"] == 0
    assert "notes/reconciliation.txt" in rt.index.ledger()


def test_other_model_is_refused(small_corpus, make_runtime, embedder):
    """Writing vectors of another model into the collection is refused before anything is written."""
    from dataclasses import replace

    rt = make_runtime(small_corpus)
    ingest(rt)
    count = rt.index.count()
    other = ChunkIndex(rt.index.client, rt.settings.collection, replace(embedder.info, fingerprint="other"))
    with pytest.raises(ModelMismatchError, match="was built with all-MiniLM-L6-v2"):
        other.add(["x"], np.ones((1, 384), dtype=np.float32), ["x"], [{"doc_id": "x"}])
    assert rt.index.count() == count


def test_unsupported_files_are_skipped_and_listed(small_corpus, make_runtime):
    (small_corpus / "deck.pptx").write_bytes(b"PK\x03\x04")
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    assert result["skipped"] == [{"doc_id": "deck.pptx", "reason": "unsupported file type"}]
    assert result["errors"] == []


@pytest.mark.slow
def test_chunks_fit_the_model_window(sample_docs_copy, make_runtime):
    """Chunks are sized in the model's own tokens, so the sample corpus loses nothing to truncation."""
    rt = make_runtime(sample_docs_copy)
    ingest(rt)
    quality = stage(rt, "quality")
    m = quality["chunks"]["metrics"]
    assert m["chunks"] == rt.index.count()
    assert m["tokens_max"] <= rt.embedder.info.max_tokens and quality["tokens_lost"] == 0
    # What was embedded: the title, the section path where the chunk continues a section, then the text.
    records = [r for recs, _ in rt.index.iter_chunks() for r in recs]
    counted = rt.embedder.count_tokens([r.metadata["title"] + "\n\n" + r.text for r in records])
    stored = [r.metadata["n_tokens"] for r in records]
    assert all(c <= s <= rt.embedder.info.max_tokens for c, s in zip(counted, stored))
    assert sum(c == s for c, s in zip(counted, stored)) > len(records) // 3  # chunks opening with their heading


def test_front_matter_only_pages_are_skipped_not_errors(small_corpus, make_runtime):
    """Hugo section pages (_index.md with a title only) are metadata, not broken documents."""
    write_doc(small_corpus, "runbooks/_index.md", "", title="Runbooks")
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    assert result["errors"] == []
    assert result["skipped"] == [{"doc_id": "runbooks/_index.md", "reason": "front-matter only, no body text to index"}]
    statuses = {d["doc_id"] for d in stage(rt, "freshness")["documents"]}
    assert "runbooks/_index.md" not in statuses


def test_indexed_document_emptied_keeps_its_chunks(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    ingest(rt)
    before = rt.index.ledger()["runbooks/kafka-lag.md"].chunk_ids
    (small_corpus / "runbooks/kafka-lag.md").write_text("---\ntitle: Kafka consumer lag\n---\n")
    result = ingest(rt)
    assert result["errors"][0]["doc_id"] == "runbooks/kafka-lag.md"
    assert rt.index.ledger()["runbooks/kafka-lag.md"].chunk_ids == before


def test_file_without_extension_is_read_as_markdown(small_corpus, make_runtime):
    (small_corpus / "runbooks" / "SyncFailed").write_text("# SyncFailed\n\n## Meaning\n\nSync of components failed.\n")
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    assert "runbooks/SyncFailed" in result["added_ids"] and result["errors"] == []
    # Binary bytes without an extension are not a broken document but not one at all: skipped, with the reason.
    (small_corpus / "runbooks" / "blob").write_bytes(b"\x00\x01\x02binary")
    broken = ingest(rt)
    assert broken["errors"] == [] and broken["added_ids"] == []
    assert [s["doc_id"] for s in broken["skipped"]] == ["runbooks/blob"]
    assert "do not look like text" in broken["skipped"][0]["reason"]


def test_half_written_version_is_reported_and_rebuilt(small_corpus, make_runtime):
    """Chunks lost from the store (an interrupted write): index-stale until the next ingest rebuilds it."""
    rt = make_runtime(small_corpus, chunk_size=40, chunk_overlap=4)
    ingest(rt)
    entry = rt.index.ledger()["runbooks/kafka-lag.md"]
    assert len(entry.chunk_ids) >= 2
    rt.index.delete(entry.chunk_ids[1:])
    assert rt.index.ledger()["runbooks/kafka-lag.md"].complete is False
    row = next(d for d in stage(rt, "freshness")["documents"] if d["doc_id"] == "runbooks/kafka-lag.md")
    assert row["status"] == "index-stale" and "part of its chunks" in row["reason"]
    result = ingest(rt)
    assert result["changed_ids"] == ["runbooks/kafka-lag.md"]
    repaired = rt.index.ledger()["runbooks/kafka-lag.md"]
    assert repaired.complete and repaired.chunk_ids == entry.chunk_ids


def test_new_chunk_settings_rechunk_everything(small_corpus, make_runtime, tmp_path):
    """A different chunk size must not leave old chunks in place: every document is rebuilt under new ids."""
    rt = make_runtime(small_corpus)
    ingest(rt)
    before = {d: e.chunk_ids for d, e in rt.index.ledger().items()}
    rechunked = make_runtime(small_corpus, chunk_size=64, chunk_overlap=8)
    result = ingest(rechunked)
    assert sorted(result["changed_ids"]) == sorted(before)
    after = rechunked.index.ledger()
    assert all(not set(before[d]) & set(e.chunk_ids) for d, e in after.items())
    assert rechunked.index.count() == sum(len(e.chunk_ids) for e in after.values())
    assert all(e.chunker == "auto:64:8" for e in after.values())


def test_unlisted_folder_keeps_its_documents(small_corpus, make_runtime):
    """A subfolder that cannot be listed (permissions, a flaky mount) is not taken for deleted documents."""
    from rag_health.ingest import ingest as core_ingest
    from rag_health.sources import LocalFolderSource

    class FlakyFolder(LocalFolderSource):  # a permission error on runbooks/, as os.walk reports it
        def list(self):
            entries = [e for e in super().list() if not e.doc_id.startswith("runbooks/")]
            self.unlisted = [("runbooks", "Permission denied")]
            return iter(entries)

    rt = make_runtime(small_corpus)
    ingest(rt)
    before = rt.index.count()
    result = core_ingest(FlakyFolder(small_corpus), rt.index, rt.embedder, rt.chunker, max_delete_fraction=0.9)
    assert result.removed == () and rt.index.count() == before
    assert result.errors[0].doc_id == "runbooks" and "Permission denied" in result.errors[0].reason
    # The audit agrees: present but unreadable, not orphaned.
    from rag_health.inventory import build_inventory

    rows = {r.doc_id: r for r in build_inventory(FlakyFolder(small_corpus), rt.index.ledger())}
    assert rows["runbooks/kafka-lag.md"].at_source and "cannot list its folder" in rows["runbooks/kafka-lag.md"].error


def test_symlinks_out_of_the_root_are_not_followed(small_corpus, make_runtime, tmp_path):
    """Unvetted folders may hold links to anywhere (/etc/passwd): a symlinked folder or file resolving outside the
    docs root is reported as skipped and nothing is read from it; links inside the root keep working."""
    elsewhere = tmp_path / "shared-policies"
    elsewhere.mkdir()
    (elsewhere / "fx.md").write_text("# FX\nStale FX rates freeze quoting.\n")
    (small_corpus / "linked").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(elsewhere)  # a loop must not hang the walk
    (small_corpus / "alias-of-runbooks").symlink_to(small_corpus / "runbooks")  # inside the root: not listed twice
    (small_corpus / "kafka.md").symlink_to(small_corpus / "runbooks" / "kafka-lag.md")  # a file link inside: read
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    added = result["added_ids"]
    assert "runbooks/kafka-lag.md" in added and "kafka.md" in added
    assert not any(d.startswith(("alias-of-runbooks/", "linked/")) for d in added)
    assert {"doc_id": "linked/", "reason": OUTSIDE_ROOT} in result["skipped"]


def test_unchanged_bad_documents_are_not_read_again(small_corpus, make_runtime):
    """Empty and unreadable documents are noted in the store by version: the next run reports them again
    without reading them, and a new version is read."""
    write_doc(small_corpus, "runbooks/_index.md", "", title="Runbooks")
    (small_corpus / "runbooks" / "broken.md").write_text("---\ntitle: [x\n---\nbody\n")
    rt = make_runtime(small_corpus)
    first = ingest(rt)
    assert first["read"] == 6 and len(first["skipped"]) == 1 and len(first["errors"]) == 1
    second = ingest(rt)
    assert second["read"] == 0 and second["skipped"] == first["skipped"] and second["errors"] == first["errors"]
    freshness = {d["doc_id"]: d["status"] for d in stage(rt, "freshness")["documents"]}
    assert freshness["runbooks/broken.md"] == "unreadable" and "runbooks/_index.md" not in freshness
    (small_corpus / "runbooks" / "broken.md").write_text("# Fixed\nNow it parses.\n")
    third = ingest(rt)
    assert third["read"] == 1 and third["added_ids"] == ["runbooks/broken.md"] and third["errors"] == []
    assert "runbooks/broken.md" not in rt.index.notes()


def _interrupt_after_add(monkeypatch, index, keep: int | None = None):
    """Simulate a crash: the add (or part of it) lands, then the run dies before deleting the old version."""
    real_add = index.add

    def add(ids, vectors, texts, metas, upsert=False):
        n = len(ids) if keep is None else keep
        real_add(ids[:n], vectors[:n], texts[:n], metas[:n], upsert=upsert)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(index, "add", add)


def test_rerun_after_partial_write_of_new_version(small_corpus, make_runtime, monkeypatch):
    """Regression: v2 half-written, then a re-run must leave v2 complete (not delete what it rewrote)."""
    rt = make_runtime(small_corpus, chunk_size=40, chunk_overlap=4)
    ingest(rt)
    path = small_corpus / "runbooks/kafka-lag.md"
    path.write_text(path.read_text() + "\nAlso check the broker disk usage before restarting anything at all.\n")
    _interrupt_after_add(monkeypatch, rt.index, keep=1)
    with pytest.raises(RuntimeError):
        ingest(rt)
    monkeypatch.undo()
    result = ingest(rt)
    entry = rt.index.ledger()["runbooks/kafka-lag.md"]
    assert result["changed_ids"] == ["runbooks/kafka-lag.md"]
    assert entry.complete and entry.leftover_ids == [] and len(entry.chunk_ids) >= 2
    assert rt.index.count() == sum(len(e.chunk_ids) for e in rt.index.ledger().values())


def test_revert_after_interrupted_write_keeps_the_document(small_corpus, make_runtime, monkeypatch):
    """Regression: v2 written but v1 not yet deleted, then the file is reverted to v1: v1 must survive."""
    rt = make_runtime(small_corpus)
    ingest(rt)
    path = small_corpus / "runbooks/kafka-lag.md"
    original = path.read_bytes()
    path.write_text("# Kafka lag\nA second version of this runbook.\n")
    _interrupt_after_add(monkeypatch, rt.index)
    with pytest.raises(RuntimeError):
        ingest(rt)
    monkeypatch.undo()
    path.write_bytes(original)
    ingest(rt)
    entry = rt.index.ledger().get("runbooks/kafka-lag.md")
    assert entry is not None and entry.complete and entry.leftover_ids == []
    texts = [r.text for recs, _ in rt.index.iter_chunks() for r in recs if r.doc_id == "runbooks/kafka-lag.md"]
    assert any("kafka-consumer-groups" in t for t in texts)


def test_only_pattern_that_matches_nothing_is_reported(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    result = ingest(rt, only=["runbooks/kafka-lag.md", "runbooks/no-such-runbok.md"])
    assert result["added_ids"] == ["runbooks/kafka-lag.md"]
    assert result["errors"] == [{"doc_id": "runbooks/no-such-runbok.md",
                                 "reason": "--only pattern matched no supported document at the source"}]
