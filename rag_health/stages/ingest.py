"""Ingest: re-read what changed at the source into the collection, incrementally."""

from __future__ import annotations

from rag_health import registry
from rag_health.ingest import Approval, IngestResult, OnMassChange, ingest, parse_shard
from rag_health.runtime import Runtime
from rag_health.views import LISTED_IDS, Artifact, Markdown, id_list, md


def run(rt: Runtime, only: list[str] | None = None, approved: Approval | None = None,
        shard: tuple[int, int] | str | None = None, on_mass_change: str | None = None) -> IngestResult:
    """approved: a human's go-ahead for a mass change (else the one on_mass_change gives: everything when it
    proceeds); shard: (i, n) or "i/n", only that shard's documents."""
    s = rt.settings
    if approved is None:
        approved = OnMassChange.of(on_mass_change).approval()
    if isinstance(shard, str):
        shard = parse_shard(shard)
    try:
        return ingest(rt.source(), rt.index, rt.embedder, rt.chunker, only=only, remove_deleted=s.remove_deleted,
                      max_delete_fraction=s.max_delete_fraction, write_batch_chunks=s.write_batch_chunks,
                      metadata_defaults=rt.manifest.defaults_for, approved=approved,
                      shard=tuple(shard) if shard else None, progress=rt.progress)  # type: ignore[arg-type]
    finally:
        rt.index_changed()


def artifacts(result: IngestResult) -> list[Artifact]:
    shard = f" (shard {result.shard[0]}/{result.shard[1]})" if result.shard else ""
    head = (f"## Ingest: {result.status}{shard}\n\n{result.documents} documents at {md(result.source)}: "
            f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed, "
            f"{result.unchanged} unchanged; {result.chunks_embedded} chunks embedded in {result.seconds} s.")
    parts = [head, *(f"**Note:** {md(n)}" for n in result.notices())]
    if result.held:
        parts += [f"**{md(result.held.sentence())}**", id_list("Would be removed", result.held.removed),
                  id_list("Would be replaced", result.held.replaced)]
    parts += [id_list("Added", result.added), id_list("Changed", result.changed), id_list("Removed", result.removed)]
    parts.append("\n".join(f"- **error** {md(e.doc_id)}: {md(e.reason)}" for e in result.errors))
    skipped = [f"- skipped {md(e.doc_id)}: {md(e.reason)}" for e in result.skipped[:LISTED_IDS]]
    if len(result.skipped) > LISTED_IDS:
        skipped.append(f"- … and {len(result.skipped) - LISTED_IDS} more skipped")
    parts.append("\n".join(skipped))
    return [Markdown("ingest-summary", "\n\n".join(p for p in parts if p),
                     description="Ingest: counts, the ids added, changed and removed, a held mass change, errors "
                                 "and skipped documents")]


STAGE = registry.Stage(
    name="ingest", run=run, result_type=IngestResult, artifacts=artifacts, task_name="ingest-documents",
    help="re-ingest the source incrementally",
    example="rag-health ingest --only runbooks/ --only policies/kyc-escalation.md",
    options=(registry.docs(), registry.Option(("--only",), "only", "doc id, folder prefix or glob to re-ingest; "
                                                                    "repeatable", repeat=True, setting=False),
             registry.allow_mass_delete()),
    needs=frozenset({registry.SOURCE, registry.INDEX}), writes=True, reports_progress=True,
    from_earlier=lambda earlier, options: {"on_mass_change": options.on_mass_change},
)
