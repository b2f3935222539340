"""Benchmark: do the ONNX backends retrieve as torch does? Per probe, the rank of its first relevant document under
each backend beside torch's, on the sample corpus (golden probes) and the Prometheus runbooks (alert probes).

    .venv/bin/python benchmarks/backends.py [--backend onnx --backend onnx-int8] [--json FILE]

The rule a backend must meet to become the default (with SciFact nDCG@10 within 0.005 of torch's,
benchmarks/scifact.py --backend ...): no probe's rank moves by more than one. A probe found by one backend and
not the other (within the depth searched) counts as a move larger than one. Prints, per corpus and backend, the
probes compared, how many moved at all, the largest move and the probes that moved more than one rank, plus nDCG@10
and MRR of each. Reads ../shared/corpora (absent corpora are skipped); writes only to temporary directories.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.corpora import PROMETHEUS  # noqa: E402


def corpora(work: Path) -> dict[str, tuple[Path, Path]]:
    out = {"sample": (REPO / "datasets" / "docs", REPO / "datasets" / "probes" / "golden.jsonl")}
    if PROMETHEUS.exists():
        from benchmarks.prometheus_runbooks import alert_probes

        probes = work / "alerts.jsonl"
        alert_probes(PROMETHEUS / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
        out["prometheus"] = (PROMETHEUS / "content", probes)
    return out


def ranks(docs: Path, probes: Path, backend: str, state: Path) -> tuple[dict[str, int | None], dict]:
    from rag_health.embedding import load_embedder
    from rag_health.registry import stages
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    settings = load_settings(docs=str(docs), state_dir=str(state), collection=f"backends-{backend}",
                             embed_backend=backend, probes=[probes], generate_probes=False)
    rt = build_runtime(settings, embedder=load_embedder(backend=backend))
    stages()["ingest"].run(rt.new_run())
    result = stages()["probes"].run(rt.new_run())
    by_probe = {f"{row['set']}/{row['probe_id']}": row["rank"] for row in result.per_probe
                if row.get("set") == probes.stem}
    return by_probe, {k: result.sets[probes.stem][k] for k in ("n", "ndcg@10", "mrr", "hit@1")}


def compare(reference: dict[str, int | None], other: dict[str, int | None]) -> dict:
    moves = {}
    for probe, rank in reference.items():
        theirs = other.get(probe)
        if rank == theirs:
            continue
        moves[probe] = (rank, theirs, abs(rank - theirs) if rank is not None and theirs is not None else None)
    over = {p: m for p, m in moves.items() if m[2] is None or m[2] > 1}
    largest = max((m[2] for m in moves.values() if m[2] is not None), default=0)
    return {"probes": len(reference), "moved": len(moves), "largest_move": largest,
            "found_by_one_only": sum(1 for m in moves.values() if m[2] is None),
            "moved_more_than_one": {p: {"torch": m[0], "backend": m[1]} for p, m in over.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", choices=["onnx", "onnx-int8"])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    work = Path(tempfile.mkdtemp(prefix="rag-health-backends-"))
    out = []
    try:
        for corpus, (docs, probes) in corpora(work).items():
            reference, torch_metrics = ranks(docs, probes, "torch", work / corpus)
            for backend in args.backend or ["onnx", "onnx-int8"]:
                other, metrics = ranks(docs, probes, backend, work / corpus)
                row = {"corpus": corpus, "backend": backend, **compare(reference, other),
                       "torch": torch_metrics, "metrics": metrics}
                out.append(row)
                print(f"{corpus:<11} {backend:<10} probes {row['probes']:>4}  moved {row['moved']:>3}  largest move "
                      f"{row['largest_move']}  more than one: {len(row['moved_more_than_one'])}  nDCG@10 "
                      f"{metrics['ndcg@10']:.4f} (torch {torch_metrics['ndcg@10']:.4f})  MRR {metrics['mrr']:.4f} "
                      f"(torch {torch_metrics['mrr']:.4f})")
                for probe, r in row["moved_more_than_one"].items():
                    print(f"    {probe}: torch rank {r['torch']}, {backend} rank {r['backend']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
