"""The six stages of a health run as plain functions over a Runtime. Prefect flows wrap these and nothing more."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from checks.freshness import audit_freshness
from checks.result import worst
from checks.retrieval import retrieval_check
from rag_health.drift import Baselines, drift_report, publish_report, snapshot_frame
from rag_health.ingest import ingest
from rag_health.inventory import build_inventory
from rag_health.manifest import load_manifest
from rag_health.probes import ProbeSet, load_probe_set, probe_set_from_rows, run_probes, unique_set_names
from rag_health.quality import evaluate as evaluate_quality
from rag_health.quality import load_snapshot as load_quality_snapshot
from rag_health.quality import save_snapshot as save_quality_snapshot
from rag_health.runtime import Runtime


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def ingest_stage(rt: Runtime, only: list[str] | None = None) -> dict[str, Any]:
    s = rt.settings
    manifest = load_manifest(s.effective_manifest(), s.review_every_days)
    result = ingest(rt.source(), rt.index, rt.embedder, rt.chunker, only=only, remove_deleted=s.remove_deleted,
                    max_delete_fraction=s.max_delete_fraction, write_batch_chunks=s.write_batch_chunks,
                    metadata_defaults=manifest.defaults_for)
    return result.as_dict()


def inventory(rt: Runtime) -> list:
    """The source listing joined with what the store holds (ledger and notes); reads only what changed."""
    return build_inventory(rt.source(), rt.index.ledger(), rt.index.notes())


def freshness_stage(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    manifest = load_manifest(s.effective_manifest(), s.review_every_days)
    rows = inventory(rt)
    result = audit_freshness(rows, manifest, s.audit_date(), rt.embedder.info.fingerprint,
                             max_overdue_fraction=s.max_overdue_fraction)
    return {"status": result.status, "as_of": s.audit_date().isoformat(), "manifest": manifest.path,
            "summary": result.metrics, "documents": list(result.items), "findings": list(result.findings)}


def coverage_stage(rt: Runtime) -> dict[str, Any]:
    """Alert rules → runbooks: alerts whose runbook is missing, runbooks no alert points to, and one probe per
    covered alert (handed to the probes stage as the set "alerts")."""
    from checks.coverage import alert_coverage
    from rag_health.alert_rules import RunbookResolver, UrlMapping, alert_probes, load_rules

    rule_paths, prefixes = rt.settings.effective_rules()
    if not rule_paths:
        return {"status": "skip", "reason": "no alert rule files configured (--rules)", "probes": []}
    rules, errors = load_rules(rule_paths)
    mappings = [UrlMapping.parse(p) for p in prefixes]
    # Unreadable runbooks still exist (their last good version may be indexed): they count as present.
    docs = [r.doc_id for r in inventory(rt) if r.at_source and r.supported]
    resolver = RunbookResolver(docs, mappings)
    alerts, resolved = [], {}
    for i, rule in enumerate(rules):
        doc_id, status = resolver.resolve(rule.runbook_url)
        if doc_id:
            resolved[i] = doc_id
        alerts.append({"alert": rule.name, "severity": rule.severity, "group": rule.group,
                       "source_file": rule.source_file, "runbook_url": rule.runbook_url, "doc_id": doc_id,
                       "status": status})
    # Runbooks are the documents under the mapped folders; without folders, under the top-level folders the
    # alerts actually point into (so policies beside runbooks are not called "runbooks without an alert").
    folders = {m.folder.lower() for m in mappings if m.folder} or {
        d.split("/", 1)[0].lower() for d in resolved.values() if "/" in d}
    runbooks = [d for d in docs if not folders or any(d.lower().startswith(f + "/") for f in folders)]
    check = alert_coverage(alerts, runbooks)
    probes = alert_probes(rules, resolved)
    m = check.metrics
    return {
        "status": worst(check.status, "warn" if errors else "pass"),
        "rules": m["rules"], "covered_rules": m["covered_rules"],
        "alerts_missing_runbook": m["alerts_missing_runbook"], "alerts_unmapped_url": m["alerts_unmapped_url"],
        "alerts_without_runbook_url": m["alerts_without_runbook_url"],
        "runbooks_without_alert": m["runbooks_without_alert"], "probes_generated": len(probes),
        "alerts": list(check.items), "errors": errors, "findings": list(check.findings),
        "probes": [{"id": p.probe_id, "query": p.query, "relevant": list(p.relevant)} for p in probes],
    }


def quality_stage(rt: Runtime, run_id: str | None = None) -> dict[str, Any]:
    """Chunk and embedding quality with a score per document and for the corpus. With a run id, this run's
    snapshot (anisotropy, neighbour sample) is stored for later baselines and the full tables are written."""
    baselines = Baselines(rt.shared_store)
    baseline_run = baselines.baseline_run()
    baseline = load_quality_snapshot(rt.shared_store, baseline_run) if baseline_run != run_id else None
    out, snapshot, table = evaluate_quality(rt.index, rt.embedder, rt.settings, baseline=baseline)
    out["baseline_run"] = baseline_run if baseline else None
    if run_id and snapshot:
        save_quality_snapshot(rt.shared_store, run_id, snapshot)
        out["chunk_table"] = rt.local_store.put(f"runs/{run_id}/chunks.csv", table.to_csv(index=False).encode(),
                                                "text/csv")
        findings = pd.DataFrame(out["all_findings"], columns=["doc_id", "chunk_id", "kind", "detail", "penalty"])
        out["findings_csv"] = rt.local_store.put(f"runs/{run_id}/quality-findings.csv",
                                                 findings.to_csv(index=False).encode(), "text/csv")
    out.pop("all_findings", None)
    return out


def default_comparison(settings) -> list[str]:
    """The live chunking against the other strategy at the same size."""
    live = f"{settings.chunk_strategy}:{settings.chunk_size}:{settings.chunk_overlap}"
    other = f"markdown:{settings.chunk_size}:0" if settings.chunk_strategy == "sentence" else \
        f"sentence:{settings.chunk_size}:{max(1, settings.chunk_size // 8)}"
    return [live, other]


def compare_chunking_stage(rt: Runtime, specs: list[str] | None = None) -> dict[str, Any]:
    """Two or more chunking configurations on the configured documents and probe sets (plus alert probes when
    rules are configured), each in a temporary collection; the live collection is not touched."""
    from rag_health.alert_rules import RunbookResolver, UrlMapping, alert_probes, load_rules
    from rag_health.comparison import compare_chunking
    from rag_health.documents import is_supported

    s = rt.settings
    manifest = load_manifest(s.effective_manifest(), s.review_every_days)
    source = rt.source()
    sets = probe_files(s)
    rule_paths, prefixes = s.effective_rules()
    if rule_paths:
        rules, _ = load_rules(rule_paths)
        resolver = RunbookResolver([e.doc_id for e in source.list() if is_supported(e.doc_id)],
                                   [UrlMapping.parse(p) for p in prefixes])
        resolved = {i: doc for i, rule in enumerate(rules) if (doc := resolver.resolve(rule.runbook_url)[0])}
        probes = alert_probes(rules, resolved)
        if probes:
            sets.append(ProbeSet("alerts", "(generated: alerts)", probes))
    return compare_chunking(source, rt.embedder, s, specs or default_comparison(s), sets,
                            metadata_defaults=manifest.defaults_for, live=rt.index if rt.index.count() else None)


def lifecycle_probes(rt: Runtime, ledger: dict, manifest) -> list[dict[str, Any]]:
    """Guard probes for documents that must not be retrieved: each superseded document that is still indexed
    (asked with its replacement's title; the replacement must rank above it) and each document deleted at the
    source but still indexed (asked with its own title; it must not be in the top k)."""
    from rag_health.sources import unlisted_reason

    source = rt.source()
    listed = {e.doc_id for e in source.list()}
    unlisted = getattr(source, "unlisted", ())
    rows = []
    for doc_id, entry in sorted(ledger.items()):
        meta = {**manifest.defaults_for(doc_id), **entry.metadata}
        title = str(meta.get("title") or doc_id)
        successor = str(meta.get("superseded_by") or "")
        if successor and successor in ledger:
            succ = {**manifest.defaults_for(successor), **ledger[successor].metadata}
            rows.append({"id": f"superseded:{doc_id}", "query": str(succ.get("title") or successor),
                         "relevant": [successor], "must_not_retrieve": [doc_id], "kind": "superseded"})
        elif doc_id not in listed and not unlisted_reason(doc_id, unlisted):
            rows.append({"id": f"deleted:{doc_id}", "query": title, "relevant": [], "must_not_retrieve": [doc_id],
                         "kind": "deleted"})
    return rows


def probe_files(settings) -> list:
    """The configured probe files (or the sample's), each a set named after its file."""
    paths = settings.effective_probes()
    return [load_probe_set(p, name) for p, name in zip(paths, unique_set_names(paths))]


def probe_sets(rt: Runtime, extra_sets: dict[str, list[dict[str, Any]]] | None = None) -> list:
    """Every probe set of a run: the configured files, generated sets handed in (alerts), the corpus-generated
    set and the lifecycle guards."""
    from rag_health.probe_generation import GenerationSettings, generate_probes

    s = rt.settings
    sets = probe_files(s)
    sets += [probe_set_from_rows(name, rows) for name, rows in (extra_sets or {}).items() if rows]
    if s.generate_probes and rt.index.count():
        rows = generate_probes(
            ((r.doc_id, int(r.metadata.get("chunk_index", 0)), str(r.metadata.get("title", "")),
              str(r.metadata.get("section", "")), r.text)
             for records, _ in rt.index.iter_chunks() for r in records),
            GenerationSettings(title_words=s.probe_title_words, keep_ratio=s.probe_keep_ratio,
                               max_verbatim=s.probe_max_verbatim, max_probes=s.generated_probes_max))
        if rows:
            sets.append(probe_set_from_rows("generated", rows))
    return sets


def probes_stage(rt: Runtime, extra_sets: dict[str, list[dict[str, Any]]] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """extra_sets: generated probe sets by name (e.g. "alerts" from the coverage stage), as probe dicts.
    With a run id, per-probe results are stored so later runs can list regressions against this one."""
    from checks.retrieval import regressions

    s = rt.settings
    ledger = rt.index.ledger()
    manifest = load_manifest(s.effective_manifest(), s.review_every_days)
    sets = probe_sets(rt, extra_sets)
    lifecycle = lifecycle_probes(rt, ledger, manifest)
    if lifecycle:
        sets.append(probe_set_from_rows("lifecycle", lifecycle))
    if not sets:
        return {"status": "skip", "reason": "no probe sets configured (--probes)", "sets": {}, "per_probe": []}
    probes = [p for ps in sets for p in ps.probes]
    top_k = s.probe_top_k
    outcomes = run_probes(rt.index, rt.embedder, probes, set(ledger), top_k=top_k,
                          chunk_depth=max(s.probe_chunk_depth, top_k * 3))
    recall_ks = sorted({5, 10, top_k})
    check = retrieval_check([o.as_ranks() for o in outcomes], hit_at_5_warn=s.hit_at_5_warn,
                            hit_at_5_fail=s.hit_at_5_fail, fail_under=s.fail_under, top_k=top_k,
                            recall_ks=recall_ks, ungated=UNGATED_SETS)
    status = check.status
    findings = list(check.findings)
    per_probe = [o.as_dict() for o in outcomes]

    # Regressions against the baseline run's per-probe results.
    baseline_run = Baselines(rt.shared_store).baseline_run()
    baseline = _load_json(rt.shared_store, f"runs/{baseline_run}/probes.json") if baseline_run != run_id else None
    regressed = regressions(baseline or {}, per_probe, max_rank_drop=s.regression_rank_drop, top_k=top_k)
    for name in check.metrics["sets"]:
        check.metrics["sets"][name]["regressions"] = [
            {k: r[k] for k in ("probe_id", "was_rank", "now_rank", "displaced_by")} for r in regressed
            if r["set"] == name]
    if regressed:
        level = "fail" if len(regressed) > s.max_regressions else "warn"
        status = worst(status, level)
        for r in regressed[:20]:
            findings.append(f"probe {r['set']}/{r['probe_id']} regressed since baseline {baseline_run}: rank "
                            f"{r['was_rank']} -> {r['now_rank'] or 'missed'}, displaced by {r['displaced_by']} "
                            f"({level})")
    if run_id:
        _save_json(rt.shared_store, f"runs/{run_id}/probes.json",
                   {o.probe.key: {"rank": o.rank, "retrieved": list(o.retrieved)} for o in outcomes})
    excluded = [{"probe_id": o.probe.probe_id, "set": o.probe.set_name, **e}
                for o in outcomes if o.rank is None or o.rank > top_k for e in o.filter_excluded]
    for e in excluded:
        findings.append(f"filter probe {e['set']}/{e['probe_id']}: {e['doc_id']} {e['reason']}, so the filter "
                        "excludes it (warn)")
    if excluded:
        status = worst(status, "warn")
    errors = [e for ps in sets for e in ps.errors]
    for e in errors:
        findings.append(f"probe file {e['file']} line {e['line']}: {e['reason']} (warn)")
    return {
        "status": worst(status, "warn" if errors else "pass"),
        "sets": check.metrics["sets"], "overall": check.metrics["overall"],
        "baseline_run": baseline_run if baseline is not None else None,
        "regressions": [{k: r[k] for k in ("set", "probe_id", "was_rank", "now_rank", "displaced_by")}
                        for r in regressed],
        "filter_excluded": excluded,
        "per_probe": per_probe,
        "errors": errors, "findings": findings,
        "files": {ps.name: ps.path for ps in sets},
    }


UNGATED_SETS = ("generated", "lifecycle")  # no default hit@5 gate: synthetic or guard-only; --fail-under applies


def _load_json(store, key: str) -> Any:
    data = store.get(key)
    return json.loads(data) if data else None


def _save_json(store, key: str, value: Any) -> str:
    return store.put(key, json.dumps(value).encode(), "application/json")


def drift_stage(rt: Runtime, run_id: str, promote_baseline: bool = False, verdict: str = "") -> dict[str, Any]:
    """Snapshot this run, compare with the baseline, write the HTML locally and publish it when S3 is set."""
    s = rt.settings
    baselines = Baselines(rt.shared_store)
    current = snapshot_frame(rt.index, s.drift_sample_rows)
    if current.empty:
        return {"status": "skip", "reason": "the index is empty"}
    baselines.save_snapshot(run_id, current)
    baselines.record_latest(run_id)
    baseline_run = baselines.baseline_run()
    promoted = baseline_run is None or promote_baseline
    if promoted:  # the first run becomes the baseline; its snapshot was just saved, so no existence check
        baselines.point_to(run_id)
        baseline_run = run_id
    reference = current if baseline_run == run_id else baselines.load_snapshot(baseline_run)
    if reference is None or reference.empty:
        reference, baseline_run = current, run_id
    title = (f"rag-health drift: run {run_id} vs baseline {baseline_run} — collection {rt.index.name}"
             if baseline_run != run_id else
             f"rag-health drift: run {run_id} is the baseline (first run or promoted) — collection {rt.index.name}")
    html_text, figures = drift_report(reference, current, title)
    entry = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "baseline_run": baseline_run,
             "verdict": verdict, "embedding_drift_score": figures.get("embedding_drift_score")}
    local_path = publish_report(rt.local_store, run_id, html_text, entry)
    out: dict[str, Any] = {
        "html": local_path, "run_id": run_id, "baseline_run": baseline_run, "baseline_promoted": promoted,
        **figures, "sample_rows": int(len(current)), "reference_rows": int(len(reference)),
    }
    if rt.s3_store is not None:
        out["s3_uri"] = publish_report(rt.s3_store, run_id, html_text, entry)
        out["s3_index"] = rt.s3_store.uri("reports/index.html")
    drifted = figures.get("embedding_drift") or figures.get("drifted_share", 0) > 0.5
    out["status"] = "warn" if drifted and baseline_run != run_id else "pass"
    return out


def promote_baseline(rt: Runtime, run_id: str | None = None) -> str:
    baselines = Baselines(rt.shared_store)
    run_id = run_id or baselines.latest_run()
    if not run_id:
        from rag_health.settings import ConfigError

        raise ConfigError("no run has been recorded yet: run the suite (or the drift stage) first")
    baselines.promote(run_id)
    return run_id


def save_run_result(rt: Runtime, run_id: str, result: dict[str, Any]) -> str:
    data = json.dumps(result, indent=1, default=str).encode()
    rt.local_store.put(f"runs/{run_id}/result.json", data, "application/json")
    if rt.shared_store is not rt.local_store:
        rt.shared_store.put(f"runs/{run_id}/result.json", data, "application/json")
    return rt.local_store.uri(f"runs/{run_id}/result.json")


def overall_verdict(stage_statuses: dict[str, str]) -> str:
    return worst(*[st for st in stage_statuses.values() if st in ("pass", "warn", "fail")])


def assemble_result(run_id: str, rt: Runtime, outputs: dict[str, dict[str, Any]],
                    timings: dict[str, float]) -> dict[str, Any]:
    """The run's JSON document: the CLI contract. Later versions add keys; they never rename these."""
    statuses = {name: out.get("status", "pass") for name, out in outputs.items()}
    findings: list[str] = []
    ingest_out = outputs.get("ingest") or {}
    findings += [f"ingest error {e['doc_id']}: {e['reason']}" for e in ingest_out.get("errors", [])]
    findings += (outputs.get("freshness") or {}).get("findings", [])
    findings += (outputs.get("coverage") or {}).get("findings", [])
    quality = outputs.get("quality") or {}
    findings += quality.get("chunks", {}).get("findings", []) + quality.get("embeddings", {}).get("findings", [])
    findings += (outputs.get("probes") or {}).get("findings", [])
    drift = outputs.get("drift") or {}
    if drift.get("status") == "warn":
        findings.append(f"drift against baseline {drift.get('baseline_run')}: "
                        f"embedding drift score {drift.get('embedding_drift_score')}, "
                        f"{drift.get('drifted_columns', 0)} chunk statistics drifted")
    result: dict[str, Any] = {
        "run_id": run_id,
        "verdict": overall_verdict(statuses),
        "stages": statuses,
        "findings": findings,
        "docs": rt.settings.docs,
        "collection": rt.index.name,
        "model": rt.embedder.info.as_metadata(),
        **{k: ({kk: vv for kk, vv in v.items() if kk != "probes"} if k == "coverage" else v)
           for k, v in outputs.items()},
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if "drift" in outputs:
        result["report"] = {k: drift[k] for k in ("html", "s3_uri", "s3_index", "baseline_run") if k in drift}
    return result
