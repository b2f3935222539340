"""Incremental ingest on a real embedded Chroma and the real offline model."""

import numpy as np
import pytest

from rag_health import stages
from rag_health.store import ChunkIndex, ModelMismatchError
from tests.conftest import write_doc


def ingest(rt, **kw):
    return stages.ingest_stage(rt, **kw)


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
    freshness = stages.freshness_stage(rt)
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
    assert result["removed"] == 0 and len(result["errors"]) == 4
    assert "vanished at once" in result["errors"][0]["reason"]
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
    (small_corpus / "scan.pdf").write_bytes(b"%PDF-1.4")
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    assert result["skipped"] == [{"doc_id": "scan.pdf", "reason": "unsupported file type"}]
    assert result["errors"] == []


def test_chunks_fit_the_model_window(sample_docs_copy, make_runtime):
    """Chunks are sized in the model's own tokens, so the sample corpus loses nothing to truncation."""
    rt = make_runtime(sample_docs_copy)
    ingest(rt)
    quality = stages.quality_stage(rt)
    m = quality["chunks"]["metrics"]
    assert m["chunks"] == rt.index.count()
    assert m["tokens_max"] <= rt.embedder.info.max_tokens and quality["tokens_lost"] == 0
    counted = rt.embedder.count_tokens([r.metadata["title"] + "\n\n" + r.text
                                        for recs, _ in rt.index.iter_chunks() for r in recs][:5])
    stored = [r.metadata["n_tokens"] for recs, _ in rt.index.iter_chunks() for r in recs][:5]
    assert counted == stored


def test_front_matter_only_pages_are_skipped_not_errors(small_corpus, make_runtime):
    """Hugo section pages (_index.md with a title only) are metadata, not broken documents."""
    write_doc(small_corpus, "runbooks/_index.md", "", title="Runbooks")
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    assert result["errors"] == []
    assert result["skipped"] == [{"doc_id": "runbooks/_index.md", "reason": "front-matter only, no body text to index"}]
    statuses = {d["doc_id"] for d in stages.freshness_stage(rt)["documents"]}
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
    (small_corpus / "runbooks" / "blob").write_bytes(b"\x00\x01\x02binary")
    broken = ingest(rt)
    assert broken["errors"][0]["doc_id"] == "runbooks/blob"
