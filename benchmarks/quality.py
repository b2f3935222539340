"""Benchmark: the quality stage on real corpora, with the chunking comparison.

    .venv/bin/python benchmarks/quality.py [--corpus prometheus|scifact|all] [--json] [--limit N]
                                           [--compare SPEC --compare SPEC] [--no-compare]

For each corpus: a fresh ingest (timed), the quality stage on it (timed: the ratio to the ingest time is the
figure to watch, at most 0.2 on SciFact), the quality figures (token overflow, sentence boundaries, duplicates,
anisotropy, findings by kind, score) and the chunking comparison's winner on the corpus's probes.
Reads ../shared/corpora and writes only to a temporary directory; skips a corpus that is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.corpora import PROMETHEUS, SCIFACT, scifact_folder, scifact_probes  # noqa: E402
from benchmarks.prometheus_runbooks import alert_probes  # noqa: E402

# The default (auto) and the previous default first, then the alternatives worth knowing about on each corpus.
DEFAULT_COMPARE = {"prometheus": ["auto:200:24", "sentence:200:24", "markdown:200"],
                   "scifact": ["auto:200:24", "sentence:200:24", "sentence:480:48"]}


def prepare(corpus: str, work: Path, limit: int | None) -> dict:
    if corpus == "prometheus":
        probes = work / "kube-prometheus-alerts.jsonl"
        alert_probes(PROMETHEUS / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
        return {"docs": str(PROMETHEUS / "content"), "probes": [probes]}
    docs = scifact_folder(work / "scifact", limit)
    probes = work / "scifact-test.jsonl"
    ids = {p.name for p in docs.glob("*.md")} if limit else None
    scifact_probes(probes, "test", ids)
    return {"docs": str(docs), "probes": [probes]}


def bench(corpus: str, embedder, limit: int | None, compare: list[str] | None) -> dict:
    from rag_health.registry import stages
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix=f"rag-health-quality-{corpus}-"))
    inputs = prepare(corpus, work, limit)
    rt = build_runtime(load_settings(state_dir=str(work / "state"), **inputs), embedder=embedder)
    t = time.perf_counter()
    ingested = stages()["ingest"].run(rt.new_run())
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    q = stages()["quality"].run(rt.new_run(), "bench")
    quality_s = time.perf_counter() - t
    cm, em = q.chunks.metrics, q.embeddings.metrics
    out = {
        "corpus": corpus, "documents": ingested.documents, "chunks": cm["chunks"],
        "ingest_s": round(ingest_s, 1), "quality_s": round(quality_s, 1),
        "quality_to_ingest_ratio": round(quality_s / ingest_s, 3),
        "score": q.score, "status": q.status,
        "token_overflow": {"chunks": cm["overflow_chunks"], "fraction": cm["overflow_fraction"],
                           "tokens_lost": cm["tokens_lost"], "tokens_max": cm["tokens_max"]},
        "mid_sentence": {"ends": cm["mid_sentence_fraction"], "starts": cm["starts_mid_sentence_fraction"]},
        "duplicates": {"exact": cm["duplicate_chunks"], "near": cm["near_duplicate_chunks"],
                       "shared_vectors": em["shared_vectors"], "boilerplate": cm["boilerplate_chunks"]},
        "anisotropy": em["anisotropy"], "outliers": em["outliers"],
        "structure": {"split": cm["structure_split_chunks"], "lost_heading": cm["lost_heading_chunks"],
                      "tiny": cm["tiny_chunks"]},
        "findings_by_kind": dict(q.findings_by_kind),
        "worst_documents": [(d["doc_id"], d["score"]) for d in q.documents[:5]],
    }
    if compare:
        t = time.perf_counter()
        result = stages()["compare-chunking"].run(rt.new_run(), compare)
        out["comparison"] = {
            "winner": result.winner, "reason": result.reason, "seconds": round(time.perf_counter() - t, 1),
            "configs": [{"chunking": c["chunking"], "chunks": c["chunks"], "score": c["quality"]["score"],
                         "tokens_lost": c["quality"]["tokens_lost"],
                         "mid_sentence": c["quality"]["mid_sentence_fraction"],
                         "structure_split": c["quality"]["structure_split_chunks"],
                         "lost_heading": c["quality"]["lost_heading_chunks"],
                         "findings_by_kind": c["quality"]["findings_by_kind"],
                         **{k: (c.get("retrieval") or {}).get("overall", {}).get(k)
                            for k in ("n", "hit@5", "mrr", "ndcg@10")}} for c in result.configs],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["prometheus", "scifact", "all"], default="all")
    parser.add_argument("--limit", type=int, help="first N SciFact abstracts only (a quick run)")
    parser.add_argument("--compare", action="append", help="chunking spec; give two or more")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from rag_health.embedding import load_embedder
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    embedder = load_embedder()
    results = []
    for corpus in (["prometheus", "scifact"] if args.corpus == "all" else [args.corpus]):
        if not (PROMETHEUS if corpus == "prometheus" else SCIFACT).exists():
            print(f"skipped {corpus}: corpus absent from ../shared/corpora", file=sys.stderr)
            continue
        compare = None if args.no_compare else (args.compare or DEFAULT_COMPARE[corpus])
        results.append(bench(corpus, embedder, args.limit, compare))
        if not args.json:
            print(json.dumps(results[-1], indent=1), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
