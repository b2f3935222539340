"""Sources (folder, real S3 on SeaweedFS), real formats through ingest, every freshness status planted, and
Chroma in server mode."""

from pathlib import Path

import numpy as np
import pytest

from rag_health.ingest import ingest
from rag_health.runtime import build_runtime
from rag_health.settings import load_settings
from rag_health.sources import LocalFolderSource, S3Source
from rag_health.store import ChunkIndex
from tests.conftest import write_doc
from tests.support.fixtures import docx_bytes, html_bytes, pdf_bytes
from tests.support.stages import stage


def upload(client, bucket: str, prefix: str, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes())


def ledger_view(index: ChunkIndex) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {d: (e.content_hash, tuple(e.chunk_ids)) for d, e in index.ledger().items()}


@pytest.fixture
def mixed_corpus(small_corpus):
    (small_corpus / "policies" / "disputes.pdf").write_bytes(
        pdf_bytes("Dispute evidence", ["Merchants upload delivery proof within ten days of a chargeback."]))
    (small_corpus / "policies" / "vendors.docx").write_bytes(
        docx_bytes("Vendor onboarding", {"Due diligence": ["Every vendor completes a security questionnaire."]}))
    (small_corpus / "policies" / "wires.html").write_bytes(
        html_bytes("Wire cut-off", "<p>Outgoing wires after 16:00 CET settle the next business day.</p>"))
    return small_corpus


def test_s3_source_matches_the_folder_and_skips_unchanged_objects(mixed_corpus, seaweed, embedder, tmp_path):
    client = seaweed.client()
    client.create_bucket(Bucket="docs-a")
    upload(client, "docs-a", "kb/prod", mixed_corpus)
    settings = load_settings(state_dir=str(tmp_path / "state"))
    rt = build_runtime(settings, embedder=embedder, s3=client)
    from_folder = ChunkIndex(rt.index.client, "from-folder", embedder.info)
    from_s3 = ChunkIndex(rt.index.client, "from-s3", embedder.info)

    folder_result = ingest(LocalFolderSource(mixed_corpus), from_folder, embedder, rt.chunker)
    s3 = S3Source(client, "docs-a", "kb/prod")
    s3_result = ingest(s3, from_s3, embedder, rt.chunker)
    assert s3_result.errors == () and sorted(s3_result.added) == sorted(folder_result.added)
    assert len(s3_result.added) == 7 and s3.downloads == 7
    assert ledger_view(from_s3) == ledger_view(from_folder)

    again = S3Source(client, "docs-a", "kb/prod")
    second = ingest(again, from_s3, embedder, rt.chunker)
    assert again.downloads == 0 and second.unchanged == 7 and second.chunks_embedded == 0

    client.put_object(Bucket="docs-a", Key="kb/prod/runbooks/kafka-lag.md", Body=b"# Kafka lag\nPage streaming.\n")
    client.delete_object(Bucket="docs-a", Key="kb/prod/policies/vendors.docx")
    third_source = S3Source(client, "docs-a", "kb/prod")
    third = ingest(third_source, from_s3, embedder, rt.chunker)
    assert third_source.downloads == 1
    assert third.changed == ("runbooks/kafka-lag.md",) and third.removed == ("policies/vendors.docx",)


def test_missing_bucket_is_a_configuration_error(seaweed):
    from rag_health.errors import ConfigError

    with pytest.raises(ConfigError, match="no-such-bucket"):
        S3Source(seaweed.client(), "no-such-bucket", "x")


def test_corrupt_pdf_keeps_previous_chunks_and_recovers(mixed_corpus, make_runtime):
    rt = make_runtime(mixed_corpus)
    stage(rt, "ingest")
    before = ledger_view(rt.index)
    pdf = mixed_corpus / "policies" / "disputes.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    result = stage(rt, "ingest")
    assert [e["doc_id"] for e in result["errors"]] == ["policies/disputes.pdf"]
    assert "PDF" in result["errors"][0]["reason"]
    assert ledger_view(rt.index) == before
    row = next(d for d in stage(rt, "freshness")["documents"] if d["doc_id"] == "policies/disputes.pdf")
    assert row["status"] == "unreadable"
    pdf.write_bytes(pdf_bytes("Dispute evidence", ["New rule: upload proof within seven days."]))
    recovered = stage(rt, "ingest")
    assert recovered["changed_ids"] == ["policies/disputes.pdf"] and recovered["errors"] == []
    assert "seven days" in " ".join(r.text for recs, _ in rt.index.iter_chunks() for r in recs
                                    if r.doc_id == "policies/disputes.pdf")


def test_deleting_at_the_source_removes_only_that_document(mixed_corpus, make_runtime):
    rt = make_runtime(mixed_corpus)
    stage(rt, "ingest")
    before = ledger_view(rt.index)
    (mixed_corpus / "policies" / "wires.html").unlink()
    result = stage(rt, "ingest")
    assert result["removed_ids"] == ["policies/wires.html"] and result["chunks_embedded"] == 0
    after = ledger_view(rt.index)
    assert after == {d: v for d, v in before.items() if d != "policies/wires.html"}
    assert rt.index.count() == sum(len(ids) for _, ids in after.values())


def test_every_freshness_status_on_a_real_index(small_corpus, make_runtime, tmp_path, embedder):
    write_doc(small_corpus, "policies/chargebacks-2023.md", "# Old chargebacks\nThe 2023 rules for disputes.",
              title="Chargebacks 2023", superseded_by="policies/chargebacks.md", last_reviewed="2026-10-01")
    write_doc(small_corpus, "runbooks/gone-later.md", "# Gone\nThis runbook will be deleted at the source.")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("documents:\n  - id: runbooks/kafka-lag.md\n  - id: runbooks/absent.md\n")
    rt = make_runtime(small_corpus, manifest=manifest, today="2026-11-28", remove_deleted=False)
    stage(rt, "ingest")
    (small_corpus / "runbooks/gone-later.md").unlink()  # orphaned: kept because remove_deleted is off
    stage(rt, "ingest")
    (small_corpus / "runbooks/card-declines.md").write_text("# Card declines\nEdited after ingest.\n")  # index-stale
    (small_corpus / "notes/reconciliation.txt").write_bytes(b"\xff\xfe broken")  # unreadable
    other = ChunkIndex(rt.index.client, rt.settings.collection, embedder.info)
    other.collection.add(ids=["legacy#0"], embeddings=np.ones((1, 384), dtype=np.float32), documents=["legacy"],
                         metadatas=[{"doc_id": "legacy/old-model.md", "content_hash": "x", "chunk_index": 0,
                                     "n_chunks": 1, "model_fingerprint": "older-model", "ingested_at": "2020"}])
    write_doc(small_corpus, "legacy/old-model.md", "# Legacy\nIndexed by an older embedding model.")
    statuses = {d["doc_id"]: d["status"] for d in stage(rt, "freshness")["documents"]}
    assert statuses == {
        "runbooks/kafka-lag.md": "fresh",
        "policies/chargebacks.md": "review-overdue",
        "policies/chargebacks-2023.md": "superseded-but-indexed",
        "runbooks/gone-later.md": "orphaned",
        "runbooks/card-declines.md": "index-stale",
        "notes/reconciliation.txt": "unreadable",
        "legacy/old-model.md": "model-mismatch",
        "runbooks/absent.md": "missing",
    }


def test_chroma_server_mode(small_corpus, embedder, tmp_path):
    """The same code against `chroma run` over HTTP; a second worker sees the ledger and skips everything."""
    from tests.support.chroma_server import start_chroma

    proc, port = start_chroma(tmp_path / "chroma-data")
    try:
        settings = load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "worker-1"), chroma_mode="http",
                                 chroma_port=port)
        worker_1 = build_runtime(settings, embedder=embedder)
        first = stage(worker_1, "ingest")
        assert first["added"] == 4 and not (tmp_path / "worker-1" / "chroma").exists()
        worker_2 = build_runtime(settings.model_copy(update={"state_dir": tmp_path / "worker-2"}), embedder=embedder)
        assert ledger_view(worker_2.index) == ledger_view(worker_1.index)
        second = stage(worker_2, "ingest")
        assert second["chunks_embedded"] == 0 and second["unchanged"] == 4
        out = stage(worker_2, "probes", {"smoke": [{"id": "s1", "query": "consumer lag on payments",
                                                        "relevant": ["runbooks/kafka-lag.md"]}]})
        assert out["per_probe"][0]["rank"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_manifest_fields_for_pdfs_are_stored_apart_and_the_live_manifest_wins(mixed_corpus, make_runtime, tmp_path):
    """A PDF has no front-matter: the manifest gives its review date; editing the manifest changes the audit
    without re-ingesting, and chunk metadata keeps manifest values under mf_ (document fields under fm_)."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("documents:\n  - id: policies/disputes.pdf\n    owner: disputes\n"
                        "    last_reviewed: 2024-01-01\n    review_every_days: 90\n")
    rt = make_runtime(mixed_corpus, manifest=manifest, today="2026-11-28")
    stage(rt, "ingest")
    meta = next(r.metadata for recs, _ in rt.index.iter_chunks() for r in recs if r.doc_id == "policies/disputes.pdf")
    assert meta["mf_last_reviewed"] == "2024-01-01" and meta["fm_title"] == "Dispute evidence"
    status = lambda: next(d for d in stage(rt, "freshness")["documents"]  # noqa: E731
                          if d["doc_id"] == "policies/disputes.pdf")
    assert status()["status"] == "review-overdue" and status()["owner"] == "disputes"
    manifest.write_text("documents:\n  - id: policies/disputes.pdf\n    owner: disputes\n"
                        "    last_reviewed: 2026-11-01\n    review_every_days: 90\n")
    assert stage(rt, "ingest")["chunks_embedded"] == 0
    assert status()["status"] == "fresh"
