"""Ingest: re-read what changed at the source into the collection, incrementally."""

from __future__ import annotations

from rag_health import registry
from rag_health.ingest import IngestResult, ingest
from rag_health.runtime import Runtime
from rag_health.views import Artifact, Markdown, md


def run(rt: Runtime, only: list[str] | None = None) -> IngestResult:
    s = rt.settings
    try:
        return ingest(rt.source(), rt.index, rt.embedder, rt.chunker, only=only, remove_deleted=s.remove_deleted,
                      max_delete_fraction=s.max_delete_fraction, write_batch_chunks=s.write_batch_chunks,
                      metadata_defaults=rt.manifest.defaults_for)
    finally:
        rt.index_changed()


def artifacts(result: IngestResult) -> list[Artifact]:
    head = (f"## Ingest: {result.status}\n\n{result.documents} documents at {md(result.source)}: {len(result.added)} "
            f"added, {len(result.changed)} changed, {len(result.removed)} removed, {result.unchanged} unchanged; "
            f"{result.chunks_embedded} chunks embedded in {result.seconds} s.")
    errors = "\n".join(f"- **error** {md(e.doc_id)}: {md(e.reason)}" for e in result.errors)
    skipped = "\n".join(f"- skipped {md(e.doc_id)}: {md(e.reason)}" for e in result.skipped[:50])
    return [Markdown("ingest-summary", head + "\n\n" + errors + ("\n" if errors and skipped else "") + skipped,
                     "What the ingest changed: documents added, changed, removed; errors and skipped files")]


STAGE = registry.Stage(
    name="ingest", run=run, result_type=IngestResult, artifacts=artifacts, task_name="ingest-documents",
    help="re-ingest the source incrementally",
    example="rag-health ingest --only runbooks/ --only policies/kyc-escalation.md",
    options=(registry.docs(), registry.Option(("--only",), "only", "doc id, folder prefix or glob to re-ingest; "
                                                                    "repeatable", repeat=True, setting=False)),
    needs=frozenset({registry.SOURCE, registry.INDEX}), writes=True,
)
