"""Benchmark: the default chunking against the previous default (and any other spec) on the same documents and
probes, through the real compare-chunking stage (scratch collections, the real model).

    .venv/bin/python benchmarks/chunking.py [--corpus sample|prometheus|soc2|scifact|all] [--config SPEC ...]
                                            [--limit N] [--json FILE]

Corpora and their probe sets (every set is scored on both configurations):
  sample      datasets/docs: datasets/probes/*.jsonl, and probes generated from the documents
  prometheus  ../shared/corpora/prometheus-runbooks: the kube-prometheus alert probes, and generated probes
  soc2        ../shared/corpora/strongdm-soc2-policies: its criteria-to-policy probes, and generated probes
  scifact     ../shared/corpora/scifact: the test queries with qrels (chunked setting; slow: about 6 min per
              configuration on 2 cores; --limit N for a quick, not comparable run)
Generated probes (headings, defined terms, runbook steps; no LLM) are generated once per corpus from whole
documents, not from either configuration's chunks, so both are asked the same questions.
Per configuration: chunks, quality score, exact-duplicate, tiny, cut-block and lost-heading chunks, and per probe
set nDCG@10, hit@10 and hit@5. Corpora that are absent are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.corpora import PROMETHEUS, SCIFACT, SHARED, scifact_folder, scifact_probes  # noqa: E402
from benchmarks.prometheus_runbooks import alert_probes  # noqa: E402

SOC2 = SHARED / "strongdm-soc2-policies"
CORPORA = ("sample", "prometheus", "soc2", "scifact")


def default_configs() -> list[str]:
    from rag_health.chunking import PREVIOUS_DEFAULT
    from rag_health.settings import Settings

    s = Settings()
    return [f"{s.chunk_strategy}:{s.chunk_size}:{s.chunk_overlap}", PREVIOUS_DEFAULT]


def generated_probes(docs: Path, out: Path) -> int:
    """Probes generated from whole documents (the section paths come from their headings)."""
    from rag_health.documents import DocumentError, is_supported, parse_document
    from rag_health.probe_generation import generate_probes

    rows = []
    for path in sorted(p for p in docs.rglob("*") if p.is_file()):
        doc_id = path.relative_to(docs).as_posix()
        if not is_supported(doc_id):
            continue
        try:
            doc = parse_document(doc_id, path.read_bytes())
        except DocumentError:
            continue
        rows.append((doc.doc_id, 0, doc.title, "", doc.text))
    probes = generate_probes(rows)
    with out.open("w", encoding="utf-8") as f:
        for p in probes:
            f.write(json.dumps(p) + "\n")
    return len(probes)


def prepare(corpus: str, work: Path, limit: int | None) -> dict | None:
    if corpus == "sample":
        docs = REPO / "datasets" / "docs"
        probes = sorted((REPO / "datasets" / "probes").glob("*.jsonl"))
    elif corpus == "prometheus":
        if not PROMETHEUS.exists():
            return None
        docs = PROMETHEUS / "content"
        probes = [work / "alerts.jsonl"]
        alert_probes(PROMETHEUS / "golden_probes_from_kube-prometheus_alerts.jsonl", probes[0])
    elif corpus == "soc2":
        if not SOC2.exists():
            return None
        docs, probes = SOC2, [SOC2 / "golden_probes_tsc_to_policies.jsonl"]
    else:
        if not SCIFACT.exists():
            return None
        docs = scifact_folder(work / "scifact", limit)
        probes = [work / "scifact-test.jsonl"]
        scifact_probes(probes[0], "test", {p.name for p in docs.glob("*.md")} if limit else None)
        return {"docs": str(docs), "probes": probes}  # no generated set: SciFact abstracts have no headings
    generated = work / "generated.jsonl"
    if generated_probes(docs, generated):
        probes = [*probes, generated]
    return {"docs": str(docs), "probes": probes}


def bench(corpus: str, embedder, configs: list[str], limit: int | None) -> dict | None:
    from rag_health.registry import stages
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix=f"rag-health-chunking-{corpus}-"))
    inputs = prepare(corpus, work, limit)
    if inputs is None:
        return None
    extra = {"probe_top_k": 100, "probe_chunk_depth": 300} if corpus == "scifact" else {}
    rt = build_runtime(load_settings(state_dir=str(work / "state"), docs=inputs["docs"],
                                     probes=[str(p) for p in inputs["probes"]], generate_probes=False, **extra),
                       embedder=embedder)
    result = stages()["compare-chunking"].run(rt.new_run(), configs)
    rows = []
    for c in result.configs:
        q = c["quality"]
        sets = (c.get("retrieval") or {}).get("sets", {})
        rows.append({
            "chunking": c["chunking"], "chunks": c["chunks"], "quality_score": q["score"],
            "duplicate_chunks": q["duplicate_chunks"], "tiny_chunks": q["tiny_chunks"],
            "structure_split_chunks": q["structure_split_chunks"], "lost_heading_chunks": q["lost_heading_chunks"],
            "retrieval": {name: {k: m.get(k) for k in ("n", "ndcg@10", "hit@10", "hit@5", "mrr")}
                          for name, m in sets.items()},
        })
    return {"corpus": corpus, "documents": result.configs[0]["documents"], "configs": rows,
            "winner": result.winner, "reason": result.reason}


def print_table(out: dict) -> None:
    print(f"\n== {out['corpus']} ({out['documents']} documents)")
    print(f"{'chunking':<18} {'set':<22} {'n':>4} {'nDCG@10':>8} {'hit@10':>7} {'hit@5':>6} | {'chunks':>6} "
          f"{'score':>6} {'dup':>4} {'tiny':>4} {'cut':>4} {'no-head':>7}")
    for c in out["configs"]:
        for i, (name, m) in enumerate(sorted(c["retrieval"].items())):
            shape = (f"{c['chunks']:>6} {c['quality_score']:>6.3f} {c['duplicate_chunks']:>4} {c['tiny_chunks']:>4} "
                     f"{c['structure_split_chunks']:>4} {c['lost_heading_chunks']:>7}") if i == 0 else ""
            print(f"{c['chunking'] if i == 0 else '':<18} {Path(name).stem[:22]:<22} {m['n']:>4} "
                  f"{m['ndcg@10']:>8.4f} {m['hit@10']:>7.4f} {m['hit@5']:>6.4f} | {shape}")
    print(f"winner: {out['winner']}: {out['reason']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=[*CORPORA, "all"], action="append")
    parser.add_argument("--config", action="append", help="chunking spec (default: the default and the previous "
                                                          "default); repeat for each")
    parser.add_argument("--limit", type=int, help="first N SciFact abstracts only")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    from rag_health.embedding import load_embedder
    from rag_health.settings import Settings, disable_telemetry

    disable_telemetry()
    s = Settings()
    embedder = load_embedder(s.embed_model, s.embed_device, s.embed_batch_size)
    corpora = [c for c in CORPORA if not args.corpus or "all" in args.corpus or c in args.corpus]
    configs = args.config or default_configs()
    results = []
    for corpus in corpora:
        out = bench(corpus, embedder, configs, args.limit)
        if out is None:
            print(f"\n== {corpus}: absent, skipped")
            continue
        print_table(out)
        results.append(out)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
