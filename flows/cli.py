"""The rag-health command line: each command runs the matching Prefect flow and prints its result.

Exit codes: 0 healthy (pass or warn), 1 a check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = """examples:
  rag-health run                                  # the sample corpus in datasets/, state in .rag-health/
  rag-health run --docs ./policies --manifest manifest.yaml --probes golden.jsonl --json
  rag-health ingest --only runbooks/kafka-consumer-lag.md   # ad-hoc re-ingest after a document update
  rag-health baseline promote                     # make the latest run the drift baseline
"""


def _common(p: argparse.ArgumentParser, docs: bool = True) -> None:
    if docs:
        p.add_argument("--docs", help="document folder (default: the sample corpus in datasets/docs)")
    p.add_argument("--state", dest="state_dir", help="state directory (default: .rag-health)")
    p.add_argument("--collection", help="Chroma collection name (default: rag-health)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def _rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", action="append",
                   help="Prometheus rule file or folder (groups[].rules[] or PrometheusRule); repeatable")
    p.add_argument("--runbook-url-prefix", action="append", dest="runbook_url_prefix",
                   help="runbook URL prefix mapped to the docs root, or URL=FOLDER; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag-health", description="Keep the data path of a RAG system healthy.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole suite: ingest, freshness, quality, probes, drift",
                         epilog="example: rag-health run --docs ./docs --manifest manifest.yaml --probes p.jsonl --json")
    _common(run)
    run.add_argument("--manifest", help="manifest of expected documents (YAML)")
    run.add_argument("--probes", action="append", help="probe set (JSONL); repeatable")
    _rule_options(run)
    run.add_argument("--today", help="audit date YYYY-MM-DD (default: today)")
    run.add_argument("--promote-baseline", action="store_true", help="make this run the drift baseline")
    run.add_argument("--fail-under", action="append", dest="fail_under", metavar="[SET:]METRIC=MIN",
                     help="fail the run when a probe set's metric is below MIN, e.g. 'hit@5=0.9' or "
                          "'golden:ndcg@10=0.8'; repeatable")
    run.add_argument("--require-metadata", action="append", dest="require_metadata", metavar="FIELD",
                     help="metadata field every chunk must carry; repeatable (default: RAG_HEALTH_REQUIRED_METADATA)")

    ing = sub.add_parser("ingest", help="re-ingest the source incrementally",
                         epilog="example: rag-health ingest --only runbooks/ --only policies/kyc-escalation.md")
    _common(ing)
    ing.add_argument("--only", action="append", help="doc id, folder prefix or glob to re-ingest; repeatable")

    fresh = sub.add_parser("freshness", help="audit stale, missing, orphaned and index-stale documents",
                           epilog="example: rag-health freshness --manifest datasets/manifest.yaml --today 2026-12-01")
    _common(fresh)
    fresh.add_argument("--manifest", help="manifest of expected documents (YAML)")
    fresh.add_argument("--today", help="audit date YYYY-MM-DD (default: today)")

    cov = sub.add_parser("coverage", help="check that every alert's runbook exists; generate alert probes",
                         epilog="example: rag-health coverage --docs ./content --rules rules/ "
                                "--runbook-url-prefix https://runbooks.example.com/")
    _common(cov)
    _rule_options(cov)

    qual = sub.add_parser("quality", help="score chunk and embedding quality",
                          epilog="example: rag-health quality --require-metadata classification --json")
    _common(qual)
    qual.add_argument("--require-metadata", action="append", dest="require_metadata", metavar="FIELD",
                      help="metadata field every chunk must carry; repeatable (default: RAG_HEALTH_REQUIRED_METADATA)")

    cmp = sub.add_parser("compare-chunking", help="score two chunking configurations side by side",
                         epilog="example: rag-health compare-chunking --config sentence:200:24 --config markdown:200 "
                                "--probes datasets/probes/golden.jsonl")
    _common(cmp)
    cmp.add_argument("--config", action="append", dest="configs",
                     help="STRATEGY:SIZE[:OVERLAP] (sentence or markdown; size in model tokens); repeat for each "
                          "(default: the live chunking against the other strategy)")
    cmp.add_argument("--manifest", help="manifest (supplies metadata for documents without front-matter)")
    cmp.add_argument("--probes", action="append", help="probe set (JSONL); repeatable")
    _rule_options(cmp)

    probes = sub.add_parser("probes", help="run retrieval hit-rate probes",
                            epilog="example: rag-health probes --probes datasets/probes/golden.jsonl")
    _common(probes)
    probes.add_argument("--probes", action="append", help="probe set (JSONL); repeatable")
    probes.add_argument("--fail-under", action="append", dest="fail_under", metavar="[SET:]METRIC=MIN",
                        help="fail when a probe set's metric is below MIN, e.g. 'hit@5=0.9'; repeatable")

    drift = sub.add_parser("drift", help="build the drift report against the baseline",
                           epilog="example: rag-health drift --promote-baseline")
    _common(drift, docs=False)
    drift.add_argument("--promote-baseline", action="store_true", help="make this run the drift baseline")

    base = sub.add_parser("baseline", help="manage the drift baseline", epilog="example: rag-health baseline promote")
    base_sub = base.add_subparsers(dest="baseline_command", required=True)
    promote = base_sub.add_parser("promote", help="make a run (default: the latest) the drift baseline")
    _common(promote, docs=False)
    promote.add_argument("--run", dest="run_id", help="run id to promote (default: the latest run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    try:
        result = _dispatch(args)
    except Exception as exc:  # library errors become one clean line and an exit code
        code = 2 if _is_config_error(exc) else 1
        message = f"rag-health: error: {exc}"
        if args.json:
            print(json.dumps({"verdict": "error", "error": str(exc), "exit_code": code}))
        print(message, file=sys.stderr)
        return code
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(_human(args.command, result))
    status = result.get("verdict", result.get("status", "pass"))
    return 1 if status == "fail" else 0


def _is_config_error(exc: Exception) -> bool:
    from rag_health.settings import ConfigError
    from rag_health.store import ModelMismatchError

    return isinstance(exc, (ConfigError, ModelMismatchError, FileNotFoundError))


def _dispatch(args: argparse.Namespace) -> dict[str, Any]:
    from flows import stages as stage_flows
    from flows.resources import runtime_for, settings_from
    from flows.suite import suite_flow
    from rag_health.stages import new_run_id

    common = {"state_dir": args.state_dir, "collection": args.collection}
    docs = getattr(args, "docs", None)
    overrides = {k: v for k, v in {"today": getattr(args, "today", None),
                                   "required_metadata": getattr(args, "require_metadata", None)}.items() if v} or None
    # Validate settings and paths up front so bad configuration fails fast with exit 2.
    rules = {"rules": getattr(args, "rules", None), "runbook_url_prefix": getattr(args, "runbook_url_prefix", None)}
    settings = settings_from({**common, **rules, "docs": docs, "manifest": getattr(args, "manifest", None),
                              "probes": getattr(args, "probes", None),
                              "fail_under": getattr(args, "fail_under", None)}, overrides)
    if getattr(args, "configs", None):
        from rag_health.chunking import parse_spec

        for spec in args.configs:
            parse_spec(spec)
        if len(args.configs) == 1:
            from rag_health.settings import ConfigError

            raise ConfigError("give --config at least twice (or not at all for the default pair)")
    _preflight(settings, args.command)
    unwrap = stage_flows.unwrap
    if args.command == "run":
        return unwrap(suite_flow(docs=docs, manifest=args.manifest, probes=args.probes, **rules,
                                 promote_baseline=args.promote_baseline, fail_under=args.fail_under,
                                 settings_overrides=overrides,
                                 return_state=True, **common))
    if args.command == "ingest":
        return unwrap(stage_flows.ingest_flow(docs=docs, only=args.only, return_state=True, **common))
    if args.command == "freshness":
        return unwrap(stage_flows.freshness_flow(docs=docs, manifest=args.manifest, settings_overrides=overrides,
                                                 return_state=True, **common))
    if args.command == "coverage":
        return unwrap(stage_flows.coverage_flow(docs=docs, **rules, return_state=True, **common))
    if args.command == "quality":
        return unwrap(stage_flows.quality_flow(docs=docs, settings_overrides=overrides, return_state=True, **common))
    if args.command == "compare-chunking":
        return unwrap(stage_flows.compare_chunking_flow(
            configs=args.configs, docs=docs, manifest=args.manifest, probes=args.probes, **rules, return_state=True,
            **common))
    if args.command == "probes":
        return unwrap(stage_flows.probes_flow(docs=docs, probes=args.probes, fail_under=args.fail_under,
                                              run_id=new_run_id(), return_state=True, **common))
    if args.command == "drift":
        return unwrap(stage_flows.drift_flow(promote_baseline=args.promote_baseline, return_state=True, **common))
    if args.command == "baseline":
        from rag_health.stages import promote_baseline

        run_id = promote_baseline(runtime_for(settings), args.run_id)
        return {"status": "pass", "baseline_run": run_id}
    raise SystemExit(2)


def _preflight(settings, command: str) -> None:
    from pathlib import Path

    from rag_health.manifest import load_manifest
    from rag_health.settings import ConfigError
    from rag_health.sources import open_source

    if command in ("run", "ingest", "freshness", "probes", "coverage", "compare-chunking"):
        open_source(settings.docs)
    if command in ("run", "coverage", "compare-chunking"):
        from rag_health.alert_rules import UrlMapping, rule_files

        rule_paths, prefixes = settings.effective_rules()
        rule_files(rule_paths)
        for prefix in prefixes:
            UrlMapping.parse(prefix)
    if command in ("run", "freshness", "compare-chunking"):
        load_manifest(settings.effective_manifest(), settings.review_every_days)
    if command in ("run", "probes"):
        from checks.retrieval import parse_threshold

        for threshold in settings.fail_under:
            try:
                parse_threshold(threshold)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if command in ("run", "probes", "compare-chunking"):
        for p in settings.effective_probes():
            if not Path(p).is_file():
                raise ConfigError(f"probe file {p} not found")


def _human(command: str, result: dict[str, Any]) -> str:
    if command == "compare-chunking":
        lines = [f"{'chunking':<22} {'chunks':>6} {'score':>6} {'lost tok':>8} {'mid-sent':>8} {'cut':>4} "
                 f"{'no-head':>7} {'hit@5':>6} {'MRR':>6} {'nDCG@10':>7}"]
        for c in result["configs"]:
            q, o = c["quality"], (c.get("retrieval") or {}).get("overall", {})
            lines.append(f"{c['chunking']:<22} {c['chunks']:>6} {q['score']:>6.3f} {q['tokens_lost']:>8} "
                         f"{q['mid_sentence_fraction']:>8.1%} {q['structure_split_chunks']:>4} "
                         f"{q['lost_heading_chunks']:>7} {o.get('hit@5', float('nan')):>6.3f} "
                         f"{o.get('mrr', float('nan')):>6.3f} {o.get('ndcg@10', float('nan')):>7.3f}")
        return "\n".join(lines + ["", f"winner: {result['winner']}: {result['reason']}"])
    if command != "run":
        return json.dumps({k: v for k, v in result.items() if k not in ("per_probe", "documents", "items")},
                          indent=1, default=str)
    lines = [f"rag-health verdict: {result['verdict'].upper()}  (run {result['run_id']})", ""]
    lines += [f"  {stage:<10} {status}" for stage, status in result["stages"].items()]
    cov = result.get("coverage", {})
    if cov.get("rules"):
        lines += ["", f"coverage: {cov['covered_rules']} of {cov['rules']} alert rules have a runbook; "
                  f"{len(cov['alerts_missing_runbook'])} alerts without one; "
                  f"{len(cov['runbooks_without_alert'])} runbooks no alert points to"]
    ing = result.get("ingest", {})
    lines += ["", f"ingest: {ing.get('documents')} documents, {ing.get('added')} added, {ing.get('changed')} changed, "
              f"{ing.get('removed')} removed, {ing.get('unchanged')} unchanged, "
              f"{ing.get('chunks_embedded')} chunks embedded"]
    quality = result.get("quality") or {}
    if "score" in quality:
        kinds = ", ".join(f"{k} {v}" for k, v in (quality.get("findings_by_kind") or {}).items()) or "no findings"
        lines.append(f"quality: score {quality['score']:.3f}, {quality.get('tokens_lost', 0)} tokens past the "
                     f"model window; {kinds}")
    for name, m in (result.get("probes", {}).get("sets") or {}).items():
        if not m.get("n"):
            lingering = next((v for k, v in m.items() if k.startswith("lingering@")), 0)
            lines.append(f"probes {name}: {m.get('guarded_n', 0)} guard probes, "
                         f"{lingering} still retrieve a removed document")
            continue
        lines.append(f"probes {name}: n={m['n']} hit@1={m['hit@1']:.3f} hit@5={m['hit@5']:.3f} "
                     f"hit@10={m['hit@10']:.3f} recall@10={m['recall@10']:.3f} P@5={m['precision@5']:.3f} "
                     f"MRR={m['mrr']:.3f} nDCG@10={m['ndcg@10']:.3f}"
                     + (f" regressions={len(m['regressions'])}" if m.get("regressions") else ""))
    if result.get("findings"):
        lines += ["", "findings:"] + [f"  - {f}" for f in result["findings"]]
    report = result.get("report") or {}
    if report.get("html"):
        lines += ["", f"drift report: {report['html']}"]
    if report.get("s3_uri"):
        lines.append(f"published:    {report['s3_uri']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
