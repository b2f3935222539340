"""Chunking comparison: the same documents and probes through two (or more) chunking configurations, each in a
scratch Chroma collection of its own (rag_health.runtime.Runtime.scratch_indexes), scored for quality and
retrieval side by side. The live collection is only read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from checks.retrieval import retrieval_check
from rag_health.chunking import Chunker
from rag_health.embedding import Embedder
from rag_health.ingest import ingest
from rag_health.probes import ProbeSet, run_probes
from rag_health.quality import evaluate
from rag_health.results import ComparisonResult
from rag_health.sources import DocumentSource
from rag_health.store import ChunkIndex

RETRIEVAL_TIE = 0.01  # nDCG@10 differences below this are a tie, settled by the quality score


def compare_chunking(source: DocumentSource, embedder: Embedder, settings, specs: list[str],
                     probe_sets: list[ProbeSet], *, new_index: Callable[[str], ChunkIndex],
                     metadata_defaults: Callable[[str], dict[str, Any]] | None = None,
                     live: ChunkIndex | None = None) -> ComparisonResult:
    """specs: chunking configurations such as "sentence:200:24" or "markdown:256" (see Chunker.from_spec).
    new_index(label): a scratch collection (Runtime.scratch_indexes), never the live one.
    live: the live collection, only read: chunks whose id (content, chunking and model) it already holds take
    their vector from it instead of being embedded again, so comparing against the live chunking costs one
    ingest, not two."""
    from rag_health.errors import ConfigError

    if len(specs) < 2:
        raise ConfigError("compare-chunking needs at least two chunking configurations")
    # Bad specs fail before any work; a corpus that must not hold PII is compared redacted too.
    chunkers = [Chunker.from_spec(embedder, spec, settings.redact_pii) for spec in specs]
    if len({c.config for c in chunkers}) < len(chunkers):
        raise ConfigError(f"the chunking configurations are the same: {', '.join(c.config for c in chunkers)}")
    probes = [p for ps in probe_sets for p in ps.probes]
    results = []
    for i, chunker in enumerate(chunkers):
        index = new_index(f"{i}-{chunker.strategy}")
        results.append(_score_configuration(source, index, embedder, chunker, settings, probes, metadata_defaults,
                                            live))
        index.drop()  # one configuration's vectors at a time
    winner, reason = choose_winner(results)
    return ComparisonResult("pass", tuple(results), winner, reason, tuple(ps.name for ps in probe_sets), len(probes))


QUALITY_FIGURES = ("tokens_mean", "tokens_max", "overflow_fraction", "mid_sentence_fraction",
                   "starts_mid_sentence_fraction", "duplicate_chunks", "near_duplicate_chunks", "tiny_chunks",
                   "structure_split_chunks", "lost_heading_chunks")


def _score_configuration(source: DocumentSource, index: ChunkIndex, embedder: Embedder, chunker: Chunker, settings,
                         probes: list, metadata_defaults, live: ChunkIndex | None) -> dict[str, Any]:
    """One configuration's row: ingest into its own collection, then quality and (with probes) retrieval."""
    started = time.perf_counter()
    ingested = ingest(source, index, embedder, chunker, remove_deleted=False,
                      write_batch_chunks=settings.write_batch_chunks, metadata_defaults=metadata_defaults,
                      known_vectors=live.vectors_for if live is not None else None)
    ingest_seconds = time.perf_counter() - started
    started = time.perf_counter()
    quality, _, _ = evaluate(index, embedder, settings)
    quality_seconds = time.perf_counter() - started
    metrics = quality.chunks.metrics
    entry: dict[str, Any] = {
        "chunking": chunker.config,
        "documents": ingested.documents,
        "chunks": index.count(),
        "chunks_embedded": ingested.chunks_embedded,
        "vectors_reused_from_live": ingested.chunks_reused,
        "ingest_errors": len(ingested.errors),
        "seconds": {"ingest": round(ingest_seconds, 2), "quality": round(quality_seconds, 2)},
        "quality": {
            "score": quality.score, "status": quality.status, "tokens_lost": quality.tokens_lost,
            "findings_by_kind": dict(quality.findings_by_kind), **{k: metrics.get(k) for k in QUALITY_FIGURES},
            "anisotropy": quality.embeddings.metrics.get("anisotropy"),
        },
        "worst_findings": [f.row() for f in quality.findings[:10]],
    }
    if probes:
        started = time.perf_counter()
        outcomes = run_probes(index, embedder, probes, set(index.ledger()), top_k=settings.probe_top_k,
                              chunk_depth=settings.probe_chunk_depth)
        check = retrieval_check([o.as_ranks() for o in outcomes], hit_at_5_warn=settings.hit_at_5_warn,
                                hit_at_5_fail=settings.hit_at_5_fail)
        entry["seconds"]["probes"] = round(time.perf_counter() - started, 2)
        entry["retrieval"] = {"sets": check.metrics["sets"], "overall": check.metrics["overall"]}
    return entry


def choose_winner(results: list[dict[str, Any]]) -> tuple[str, str]:
    """Retrieval decides (document-level nDCG@10 over all probes); within RETRIEVAL_TIE, the quality score."""
    def ndcg(r: dict[str, Any]) -> float | None:
        return (r.get("retrieval") or {}).get("overall", {}).get("ndcg@10")

    ranked = sorted(results, key=lambda r: (ndcg(r) or 0.0, r["quality"]["score"]), reverse=True)
    best, runner = ranked[0], ranked[1]
    b, r = ndcg(best), ndcg(runner)
    if b is not None and r is not None and b - r >= RETRIEVAL_TIE:
        return best["chunking"], (f"higher nDCG@10 on the probes: {b:.3f} against {r:.3f} for {runner['chunking']} "
                                  f"(quality score {best['quality']['score']:.3f} against "
                                  f"{runner['quality']['score']:.3f})")
    # Only the configurations tied with the best on retrieval compete on quality.
    tied = [x for x in results if b is None or (ndcg(x) or 0.0) >= b - RETRIEVAL_TIE]
    by_quality = sorted(tied, key=lambda x: x["quality"]["score"], reverse=True)
    best, runner = by_quality[0], by_quality[1]
    basis = "no probes to compare retrieval" if b is None else f"nDCG@10 within {RETRIEVAL_TIE} ({b:.3f}, {r:.3f})"
    return best["chunking"], (f"{basis}; higher quality score: {best['quality']['score']:.3f} against "
                              f"{runner['quality']['score']:.3f} for {runner['chunking']}")
