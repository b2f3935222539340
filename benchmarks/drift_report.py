"""Benchmark: the Evidently drift report's time and size on synthetic snapshots.

    .venv/bin/python benchmarks/drift_report.py [--rows 500 2000] [--repeat 3] [--json]

Each size builds a baseline and a current snapshot of that many rows a side (four chunk statistics, three
document groups, 384-d L2-normalised vectors with a small shift between the sides) plus 40 probes' ranks and
similarities, then times rag_health.drift.drift_report (median of --repeat runs) and prints the HTML size.
The snapshot a run stores holds drift_sample_rows (500) chunks whatever the corpus size, so the 500-row figure is
the one a large corpus (SciFact chunked, about 12,700 chunks) pays; target: well under 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from rag_health.drift import STAT_COLUMNS, drift_report  # noqa: E402

DIM = 384
GROUPS = ["folder: runbooks", "folder: policies", "product: cards"]


def snapshot(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, DIM)) + shift * np.linspace(-1, 1, DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stats = pd.DataFrame({
        "chunk_id": [f"doc-{seed}-{i}#{i % 7}" for i in range(rows)],
        "doc_id": [f"doc-{i // 7}" for i in range(rows)],
        "group": [GROUPS[i % len(GROUPS)] for i in range(rows)],
        "n_chars": rng.normal(900 + 200 * shift, 150, rows).round(),
        "n_tokens": rng.normal(200 + 40 * shift, 30, rows).round(),
        "ends_mid_sentence": (rng.random(rows) < 0.2).astype(float),
        "chunk_index": rng.integers(0, 12, rows).astype(float),
    })
    emb = pd.DataFrame(vectors.astype(np.float32), columns=[f"emb_{i}" for i in range(DIM)])
    return pd.concat([stats[["chunk_id", "doc_id", "group", *STAT_COLUMNS]], emb], axis=1)


def probe_ranks(seed: int, probes: int = 40) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    return {f"golden/p{i}": {"rank": int(r) if r <= 10 else None, "similarity": round(float(s), 4)}
            for i, (r, s) in enumerate(zip(rng.integers(1, 14, probes), rng.uniform(0.3, 0.8, probes)))}


def measure(rows: int, repeat: int) -> dict:
    reference, current = snapshot(rows, 1, 0.0), snapshot(rows, 2, 0.3)
    retrieval = (probe_ranks(1), probe_ranks(2))
    times, size, figures = [], 0, {}
    for _ in range(repeat):
        start = time.perf_counter()
        html_text, figures = drift_report(reference, current, f"benchmark {rows} rows", retrieval=retrieval)
        times.append(time.perf_counter() - start)
        size = len(html_text.encode("utf-8"))
    start = time.perf_counter()
    first_html, _ = drift_report(current, current, "benchmark first run", run_id="run-1")
    first_time = time.perf_counter() - start
    return {"rows_a_side": rows, "seconds_median": round(statistics.median(times), 2),
            "seconds_all": [round(t, 2) for t in times], "html_bytes": size,
            "first_run_seconds": round(first_time, 2), "first_run_html_bytes": len(first_html.encode("utf-8")),
            "embedding_drift_score": figures.get("embedding_drift_score"),
            "embedding_sample_rows": figures.get("embedding_sample_rows"),
            "groups": sorted(figures.get("groups", {})), "probes_compared": figures.get("probes_compared")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    drift_report(snapshot(60, 1, 0.0), snapshot(60, 2, 0.0), "warm-up")  # imports, Evidently's first-use costs
    results = [measure(rows, args.repeat) for rows in args.rows]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['rows_a_side']:>6} rows a side: {r['seconds_median']:6.2f} s (median of {len(r['seconds_all'])}: "
                  f"{r['seconds_all']}), {r['html_bytes'] / 1e6:.2f} MB; first run {r['first_run_seconds']:.2f} s, "
                  f"{r['first_run_html_bytes'] / 1e6:.2f} MB; embedding drift {r['embedding_drift_score']} on "
                  f"{r['embedding_sample_rows']} rows; groups {len(r['groups'])}; probes {r['probes_compared']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
