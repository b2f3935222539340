"""Freshness: stale, missing, orphaned, superseded and index-stale documents against the manifest."""

from __future__ import annotations

from checks.freshness import audit_freshness
from rag_health import registry
from rag_health.results import FreshnessResult
from rag_health.runtime import Runtime
from rag_health.views import Artifact, Markdown, table


def run(rt: Runtime) -> FreshnessResult:
    s = rt.settings
    check = audit_freshness(rt.inventory(), rt.manifest, s.audit_date(), rt.model_info.fingerprint,
                            max_overdue_fraction=s.max_overdue_fraction)
    return FreshnessResult(check.status, s.audit_date().isoformat(), rt.manifest.path, check.metrics,
                           check.items, check.findings)


def artifacts(result: FreshnessResult) -> list[Artifact]:
    stale = [{k: d[k] for k in ("doc_id", "status", "reason", "owner")} for d in result.documents
             if d["status"] != "fresh"]
    counts = ", ".join(f"{k}: {v}" for k, v in result.summary.items() if v)
    return [*table("stale-docs", stale, f"Documents that are not fresh as of {result.as_of}"),
            Markdown("freshness-verdict", f"## Freshness: {result.status}\n\n{counts or 'every document is fresh'}",
                     "Freshness verdict: documents by status (fresh, stale, missing, orphaned, superseded)")]


STAGE = registry.Stage(
    name="freshness", run=run, result_type=FreshnessResult, artifacts=artifacts, task_name="audit-freshness",
    help="audit stale, missing, orphaned and index-stale documents",
    example="rag-health freshness --manifest datasets/manifest.yaml --today 2026-12-01",
    options=(registry.docs(), registry.manifest(), registry.today()),
    needs=frozenset({registry.SOURCE, registry.MANIFEST, registry.INDEX}),
)
