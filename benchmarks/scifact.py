"""Benchmark: SciFact (../shared/corpora/scifact) through the real ingest and probe stages with all-MiniLM-L6-v2,
scored on the 300 test queries with the project's metrics (checks/retrieval.py).

    .venv/bin/python benchmarks/scifact.py [--json] [--state DIR] [--limit N] [--only SETTING]
                                           [--backend torch|onnx|onnx-int8 ...]

Three settings, each in its own collection:
  whole_document  one vector per abstract (title + text, truncated by the model at 256 tokens), as MTEB does;
                  published MTEB figures for all-MiniLM-L6-v2: nDCG@10 0.645, recall@10 0.783
  chunked         the project's default chunking (auto:200:24); a document ranks at its best chunk
  chunked_previous  the previous default (sentence:200:24); SciFact abstracts have no headings, so auto splits
                  them exactly as sentence does and the two figures agree
Prints ndcg@10, recall@10 and recall@100 for each, with the wall time of each stage, for each --backend (default:
the default backend; each backend has its own collections). With --state, a second run reuses the collections
(nothing is embedded again).
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
from benchmarks.corpora import SCIFACT, scifact_folder, scifact_probes  # noqa: E402

PUBLISHED = {"ndcg@10": 0.645, "recall@10": 0.783}
SETTINGS = {"whole_document": {"chunk_strategy": "whole"},
            "chunked": {"chunk_strategy": "auto", "chunk_size": 200, "chunk_overlap": 24},
            "chunked_previous": {"chunk_strategy": "sentence", "chunk_size": 200, "chunk_overlap": 24}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--state", help="state directory to keep (default: a temporary one)")
    parser.add_argument("--limit", type=int, help="first N abstracts only (a quick check, not comparable)")
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append", help="run only this setting")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], action="append",
                        help="embedding backend (repeatable; default: the default backend)")
    args = parser.parse_args(argv)
    if not SCIFACT.exists():
        print(f"skipped: {SCIFACT} is absent", file=sys.stderr)
        return 0
    from rag_health.embedding import DEFAULT_BACKEND, load_embedder
    from rag_health.registry import stages
    from rag_health.runtime import build_runtime
    from rag_health.settings import disable_telemetry, load_settings

    disable_telemetry()
    work = Path(args.state or tempfile.mkdtemp(prefix="rag-health-scifact-"))
    t = time.perf_counter()
    docs = work / "scifact-docs"
    if not docs.exists() or args.limit:
        scifact_folder(docs, args.limit)
    probes = work / "scifact-test.jsonl"
    n_probes = scifact_probes(probes, "test", {p.name for p in docs.glob("*.md")} if args.limit else None)
    prepare_s = time.perf_counter() - t
    out: dict = {"queries": n_probes, "published_whole_document": PUBLISHED,
                 "timings_s": {"prepare_corpus": round(prepare_s, 1)}}
    backends = args.backend or [DEFAULT_BACKEND]
    for backend in backends:
        t = time.perf_counter()
        embedder = load_embedder(backend=backend)
        out["timings_s"][f"load_model_{backend}"] = round(time.perf_counter() - t, 1)
        for name in args.only or list(SETTINGS):
            key = name if len(backends) == 1 else f"{name}_{backend}"
            settings = load_settings(docs=str(docs), state_dir=str(work / "state"),
                                     collection=f"scifact-{name}-{backend}", embed_backend=backend,
                                     probes=[probes], probe_top_k=100, probe_chunk_depth=300, generate_probes=False,
                                     **SETTINGS[name])
            rt = build_runtime(settings, embedder=embedder)
            timings = {}
            t = time.perf_counter()
            ingested = stages()["ingest"].run(rt.new_run())
            timings["ingest"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            result = stages()["probes"].run(rt.new_run())
            timings["probes"] = round(time.perf_counter() - t, 1)
            m = result.sets[probes.stem]
            out[key] = {
                "backend": backend, "chunking": rt.chunker.config, "documents": ingested.documents,
                "chunks": rt.index.count(), "chunks_embedded": ingested.chunks_embedded,
                **{k: m[k] for k in ("n", "ndcg@10", "recall@10", "recall@100", "hit@1", "hit@10", "mrr",
                                     "precision@10")},
                "timings_s": timings,
            }
            out["timings_s"][key] = timings
    for key, r in out.items():
        if key.startswith("whole_document") and isinstance(r, dict):
            r["ndcg@10_minus_published"] = round(r["ndcg@10"] - 0.645, 4)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for name, r in out.items():
            if isinstance(r, dict) and "chunking" in r:
                print(f"{name:<26} {r['chunking']:<16} chunks {r['chunks']:>6}  nDCG@10 {r['ndcg@10']:.4f}  "
                      f"recall@10 {r['recall@10']:.4f}  recall@100 {r['recall@100']:.4f}  MRR {r['mrr']:.4f}  "
                      f"times {r['timings_s']}")
        print(f"published (MTEB, whole document): nDCG@10 0.645, recall@10 0.783; queries {n_probes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
