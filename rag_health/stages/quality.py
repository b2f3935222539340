"""Quality: chunk and embedding findings, a score per document and for the corpus, compared with the baseline
run's snapshot (anisotropy, neighbours of a fixed sample)."""

from __future__ import annotations

import dataclasses

from rag_health import registry
from rag_health.results import QualityResult
from rag_health.runtime import Runtime
from rag_health.views import Artifact, Markdown, md, shown, table


def run(rt: Runtime, run_id: str | None = None) -> QualityResult:
    """With a run id, this run's snapshot is stored for later baselines and the full tables are written."""
    archive = rt.archive
    baseline_run = archive.baseline_run()
    baseline = archive.quality_sample(baseline_run) if baseline_run != run_id else None
    import pandas as pd  # imported by the stages that need it: the command line starts in a fraction of a second

    from rag_health.quality import evaluate

    result, snapshot, chunk_table = evaluate(rt.index, rt.embedder, rt.settings, baseline=baseline)
    files = {}
    if run_id and snapshot:
        archive.save_quality_sample(run_id, snapshot)
        findings = pd.DataFrame([f.row() for f in result.all_findings],
                                columns=["doc_id", "chunk_id", "kind", "detail", "penalty"])
        files = {"chunk_table": archive.save_chunk_table(run_id, chunk_table),
                 "findings_csv": archive.save_findings_table(run_id, findings)}
    return dataclasses.replace(result, baseline_run=baseline_run if baseline else None, **files)


def artifacts(result: QualityResult) -> list[Artifact]:
    m, e = result.chunks.metrics, result.embeddings.metrics
    counts = ", ".join(f"{k}: {v}" for k, v in result.findings_by_kind.items()) or "none"
    findings = "\n".join(f"- {md(f)}" for f in result.chunks.findings + result.embeddings.findings)
    return [
        *table("quality-findings", [f.row() for f in result.findings], "Chunk and embedding findings, worst chunk first"),
        *table("quality-documents", [{**{k: d[k] for k in ("doc_id", "score", "chunks", "worst_chunk_score")},
                                      "findings": ", ".join(f"{k}: {v}" for k, v in d["findings"].items())}
                                     for d in result.documents], "Quality score per document (0-1), worst first"),
        *table("chunk-table", list(result.worst_chunks),
               "Worst chunks first: score, model tokens, section, cut blocks, sentence boundaries"),
        Markdown("quality-verdict", (
            f"## Chunk and embedding quality: {result.status} (score {result.score:.3f})\n\n"
            f"{m.get('chunks', 0)} chunks, {m.get('overflow_chunks', 0)} over the token window "
            f"({result.tokens_lost} tokens never embedded), {m.get('mid_sentence_fraction', 0):.1%} end "
            f"mid-sentence; anisotropy {shown(e.get('anisotropy'))} (baseline "
            f"{shown(e.get('anisotropy_baseline'), 'none yet')}), neighbour overlap with the baseline "
            f"{shown(e.get('neighbour_overlap'), 'none yet')}.\n\nFindings by kind: {counts}\n\n{findings}"),
            "Chunk and embedding quality verdict: score, token overflow, anisotropy, findings by kind"),
    ]


STAGE = registry.Stage(
    name="quality", run=run, result_type=QualityResult, artifacts=artifacts, task_name="score-quality",
    help="score chunk and embedding quality",
    example="rag-health quality --require-metadata classification --json",
    needs=frozenset({registry.INDEX, registry.ARCHIVE}), writes=True, takes_run_id=True,
    options=(registry.docs(), registry.require_metadata()),
)
