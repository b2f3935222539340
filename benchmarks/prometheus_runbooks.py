"""Benchmark: the prometheus-operator runbooks (../shared/corpora/prometheus-runbooks) through the whole suite,
with retrieval probes built from the real kube-prometheus alerting rules.

    .venv/bin/python benchmarks/prometheus_runbooks.py [--json] [--state DIR]

Prints ingest counts and timings, hit@k / MRR / nDCG@10 for the alert probes, and quality figures.
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
from rag_health.alert_rules import strip_templating  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpora" / "prometheus-runbooks"
def alert_probes(golden_alerts: Path, out: Path) -> dict[str, int]:
    """Convert golden_probes_from_kube-prometheus_alerts.jsonl into rag-health probes (doc ids under content/).

    Alerts whose runbook does not exist (relevant_doc null) cannot be probed; they are counted, not written.
    """
    written = missing = 0
    seen: dict[str, int] = {}
    with golden_alerts.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            alert = json.loads(line)
            if not alert.get("relevant_doc"):
                missing += 1
                continue
            base = f"{alert['alert']}-{alert.get('severity', 'any')}"
            seen[base] = seen.get(base, 0) + 1
            probe_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
            query = strip_templating(f"{alert.get('summary', '')} {alert.get('description', '')}")
            doc_id = alert["relevant_doc"].removeprefix("content/")
            dst.write(json.dumps({"id": probe_id, "query": query, "relevant": [doc_id]}) + "\n")
            written += 1
    return {"probes": written, "alerts_without_runbook": missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--state", help="state directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if not CORPUS.exists():
        print(f"skipped: {CORPUS} is absent", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    from rag_health.settings import disable_telemetry, load_settings

    disable_telemetry()
    from rag_health.registry import stages
    from rag_health.results import to_json
    from rag_health.runtime import build_runtime

    work = Path(tempfile.mkdtemp(prefix="rag-health-bench-"))
    probes = work / "kube-prometheus-alerts.jsonl"
    conversion = alert_probes(CORPUS / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    settings = load_settings(docs=str(CORPUS / "content"), state_dir=args.state or str(work / "state"),
                             probes=[probes])
    rt = build_runtime(settings)
    timings["load_model"] = time.perf_counter() - start
    out = {}
    for name in ("ingest", "quality", "probes"):
        t = time.perf_counter()
        out[name] = stages()[name].run(rt.new_run())
        timings[name] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    out["ingest_again"] = stages()["ingest"].run(rt.new_run())
    timings["ingest_again"] = round(time.perf_counter() - t, 2)
    ing = out["ingest"]
    figures = {
        "documents": ing.documents, "errors": to_json(ing.errors), "skipped": to_json(ing.skipped),
        "chunks": ing.chunks_embedded, "second_run_chunks_embedded": out["ingest_again"].chunks_embedded,
        "chunks_per_second": round(ing.chunks_embedded / max(timings["ingest"], 1e-9), 1),
        "probe_conversion": conversion,
        "alert_probes": to_json(out["probes"].sets.get(probes.stem)),
        "probe_sets": {name: {k: m.get(k) for k in ("n", "hit@1", "hit@5", "hit@10", "recall@10", "precision@5", "mrr",
                                                     "ndcg@10", "chunk_hit@5", "chunk_mrr") if k in m}
                       for name, m in out["probes"].sets.items()},
        "quality": {k: out["quality"].chunks.metrics[k] for k in
                    ("chunks", "tokens_max", "overflow_chunks", "tokens_lost", "mid_sentence_fraction")},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        m = figures["alert_probes"] or {}
        print(f"documents {figures['documents']}  errors {len(figures['errors'])}  skipped {len(figures['skipped'])}"
              f"  chunks {figures['chunks']}  ({figures['chunks_per_second']} chunks/s)")
        print(f"alert probes n={m.get('n')} hit@1={m.get('hit@1')} hit@5={m.get('hit@5')} hit@10={m.get('hit@10')} "
              f"MRR={m.get('mrr')} nDCG@10={m.get('ndcg@10')}  ({conversion['alerts_without_runbook']} alerts "
              "point at a runbook that does not exist)")
        for name, m in figures["probe_sets"].items():
            print(f"probe set {name}: {m}")
        print(f"second run embedded {figures['second_run_chunks_embedded']} chunks")
        print(f"timings (s): {figures['timings_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
