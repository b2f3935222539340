"""Compare-chunking: two or more chunking configurations on the configured documents and probe sets (plus alert
probes when rules are configured), each in a scratch collection; the live collection is only read."""

from __future__ import annotations

import math

from rag_health import registry
from rag_health.chunking import DEFAULT_STRATEGY, PREVIOUS_DEFAULT
from rag_health.documents import is_supported
from rag_health.probes import ProbeSet
from rag_health.results import ComparisonResult
from rag_health.runtime import Runtime
from rag_health.settings import Settings
from rag_health.stages import coverage
from rag_health.stages.probes import probe_files
from rag_health.views import Artifact, Markdown, md, table


def default_comparison(settings: Settings) -> list[str]:
    """The live chunking against the default (auto) at the same size and overlap; when the live one is auto,
    against the previous default's strategy (sentence) at that size: with the defaults, auto:200:24 against
    sentence:200:24."""
    size, overlap = settings.chunk_size, settings.chunk_overlap
    live = f"{settings.chunk_strategy}:{size}:{overlap}"
    other = PREVIOUS_DEFAULT.split(":")[0] if settings.chunk_strategy == DEFAULT_STRATEGY else DEFAULT_STRATEGY
    return [live, f"{other}:{size}:{overlap}"]


def run(rt: Runtime, configs: list[str] | None = None) -> ComparisonResult:
    s = rt.settings
    sets = probe_files(s)
    found = coverage.resolve(s, [e.doc_id for e in rt.source().list() if is_supported(e.doc_id)])
    if found is not None and found.probes:
        sets.append(ProbeSet("alerts", "(generated: alerts)", found.probes))
    with rt.scratch_indexes() as new_index:
        from rag_health.comparison import compare_chunking

        return compare_chunking(rt.source(), rt.embedder, s, configs or default_comparison(s), sets,
                                new_index=new_index, metadata_defaults=rt.manifest.defaults_for,
                                live=rt.index if rt.index.count() else None)


def _row(c: dict) -> dict:
    overall = (c.get("retrieval") or {}).get("overall", {})
    q = c["quality"]
    return {"chunking": c["chunking"], "chunks": c["chunks"], "quality_score": q["score"],
            "tokens_lost": q["tokens_lost"], "mid_sentence": q["mid_sentence_fraction"],
            "structure_splits": q["structure_split_chunks"], "lost_headings": q["lost_heading_chunks"],
            "hit@5": overall.get("hit@5"), "mrr": overall.get("mrr"), "ndcg@10": overall.get("ndcg@10")}


def artifacts(result: ComparisonResult) -> list[Artifact]:
    return [*table("chunking-comparison", [_row(c) for c in result.configs],
                   "Chunking configurations side by side on the same documents and probes"),
            Markdown("chunking-winner", (
                f"## Chunking comparison: {md(result.winner)} wins\n\n{md(result.reason)}\n\n"
                f"{result.probes} probes from {md(', '.join(result.probe_sets)) or 'no probe sets'}."),
                "The chunking configuration that scored best, and why")]


def summary(result: ComparisonResult) -> str:
    lines = [f"{'chunking':<22} {'chunks':>6} {'score':>6} {'lost tok':>8} {'mid-sent':>8} {'cut':>4} "
             f"{'no-head':>7} {'hit@5':>6} {'MRR':>6} {'nDCG@10':>7}"]
    for c in result.configs:
        r = _row(c)
        lines.append(f"{r['chunking']:<22} {r['chunks']:>6} {r['quality_score']:>6.3f} {r['tokens_lost']:>8} "
                     f"{r['mid_sentence']:>8.1%} {r['structure_splits']:>4} {r['lost_headings']:>7} "
                     f"{_num(r['hit@5']):>6.3f} {_num(r['mrr']):>6.3f} {_num(r['ndcg@10']):>7.3f}")
    return "\n".join(lines + ["", f"winner: {result.winner}: {result.reason}"])


def _num(value: float | None) -> float:
    return math.nan if value is None else value


STAGE = registry.Stage(
    name="compare-chunking", run=run, result_type=ComparisonResult, artifacts=artifacts, summary=summary,
    task_name="compare-chunking", help="score two chunking configurations side by side",
    example="rag-health compare-chunking --config auto:200:24 --config sentence:200:24 "
            "--probes datasets/probes/golden.jsonl",
    options=(registry.docs(),
             registry.Option(("--config",), "configs", "STRATEGY:SIZE[:OVERLAP] (auto, sentence, markdown or "
                             "whole; size in model tokens); repeat for each (default: the live chunking against "
                             f"the previous default, {PREVIOUS_DEFAULT})", repeat=True, setting=False),
             registry.Option(("--manifest",), "manifest", "manifest (supplies metadata for documents without "
                                                          "front-matter)"),
             registry.probes(), *registry.rules()),
    needs=frozenset({registry.SOURCE, registry.MANIFEST, registry.RULES, registry.PROBES, registry.CHUNKINGS,
                    registry.INDEX}),
)
