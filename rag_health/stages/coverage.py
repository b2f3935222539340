"""Coverage: alert rules -> runbooks. Alerts whose runbook is missing, runbooks no alert points to, and one probe
per covered alert (handed to the probes stage as the set "alerts")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from checks.coverage import alert_coverage
from rag_health import registry
from rag_health.alert_rules import RunbookResolver, UrlMapping, alert_probes, load_rules, resolve_alerts
from rag_health.probes import Probe
from rag_health.results import CoverageResult, Skipped
from rag_health.runtime import Runtime
from rag_health.settings import Settings
from rag_health.views import Artifact, Markdown, table


@dataclass(frozen=True)
class ResolvedAlerts:
    alerts: list[dict]
    resolved: dict[int, str]
    probes: list[Probe]
    errors: list[dict[str, str]]
    mappings: list[UrlMapping]


def resolve(settings: Settings, doc_ids: Iterable[str]) -> ResolvedAlerts | None:
    """The configured rules resolved against these documents, with one probe per covered alert; None when no
    rule files are configured."""
    rule_paths, prefixes = settings.effective_rules()
    if not rule_paths:
        return None
    rules, errors = load_rules(rule_paths)
    mappings = [UrlMapping.parse(p) for p in prefixes]
    alerts, resolved = resolve_alerts(rules, RunbookResolver(list(doc_ids), mappings))
    return ResolvedAlerts(alerts, resolved, alert_probes(rules, resolved), errors, mappings)


def run(rt: Runtime) -> CoverageResult | Skipped:
    # Unreadable runbooks still exist (their last good version may be indexed): they count as present.
    docs = [r.doc_id for r in rt.inventory() if r.at_source and r.supported]
    found = resolve(rt.settings, docs)
    if found is None:
        return Skipped("no alert rule files configured (--rules)", {"probes": []})
    # Runbooks are the documents under the mapped folders; without folders, under the top-level folders the
    # alerts actually point into (so policies beside runbooks are not called "runbooks without an alert").
    folders = {m.folder.lower() for m in found.mappings if m.folder} or {
        d.split("/", 1)[0].lower() for d in found.resolved.values() if "/" in d}
    runbooks = [d for d in docs if not folders or any(d.lower().startswith(f + "/") for f in folders)]
    check = alert_coverage(found.alerts, runbooks, found.errors)
    m = check.metrics
    return CoverageResult(
        status=check.status, rules=m["rules"], covered_rules=m["covered_rules"],
        alerts_missing_runbook=m["alerts_missing_runbook"], alerts_unmapped_url=m["alerts_unmapped_url"],
        alerts_without_runbook_url=m["alerts_without_runbook_url"], runbooks_without_alert=m["runbooks_without_alert"],
        probes_generated=len(found.probes), alerts=check.items, errors=tuple(found.errors), findings=check.findings,
        probes=tuple(found.probes))


def artifacts(result: CoverageResult | Skipped) -> list[Artifact]:
    if isinstance(result, Skipped):
        return []
    return [*table("alerts-missing-runbook", [a for a in result.alerts if a["status"] != "covered"],
                   "Alerting rules whose runbook is missing or unmapped"),
            Markdown("alert-coverage", (
                f"## Alert-rule coverage: {result.status}\n\n{result.covered_rules} of {result.rules} rules "
                f"point at an existing runbook; {len(result.alerts_missing_runbook)} alerts have none; "
                f"{len(result.runbooks_without_alert)} runbooks are not pointed to by any alert; "
                f"{result.probes_generated} probes generated."),
                "Alert-rule coverage: rules whose runbook exists, alerts without one, runbooks no alert points to")]


STAGE = registry.Stage(
    name="coverage", run=run, result_type=CoverageResult, artifacts=artifacts, task_name="check-alert-coverage",
    help="check that every alert's runbook exists; generate alert probes",
    example="rag-health coverage --docs ./content --rules rules/ --runbook-url-prefix https://runbooks.example.com/",
    options=(registry.docs(), *registry.rules()),
    needs=frozenset({registry.SOURCE, registry.RULES, registry.INDEX}),
)
