"""Alert-rule coverage: every alert's runbook exists, and every runbook is pointed to by some alert."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from checks.result import CheckResult


def alert_coverage(alerts: Sequence[dict[str, Any]], runbook_doc_ids: Iterable[str],
                   rule_errors: Sequence[dict[str, str]] = ()) -> CheckResult:
    """alerts: one row per alerting rule with `alert`, `status` (covered / missing-runbook / unmapped-url /
    no-runbook-url) and `doc_id`. runbook_doc_ids: the documents that count as runbooks. rule_errors: rule files
    that could not be read (a warn: their alerts are not checked)."""
    covered_docs = {a["doc_id"] for a in alerts if a["status"] == "covered"}
    missing = sorted({a["alert"] for a in alerts if a["status"] == "missing-runbook"})
    unmapped = sorted({a["alert"] for a in alerts if a["status"] == "unmapped-url"})
    no_url = sorted({a["alert"] for a in alerts if a["status"] == "no-runbook-url"})
    orphans = sorted(set(runbook_doc_ids) - covered_docs)
    findings = [f"alert {name}: its runbook URL points to a document that does not exist (warn)" for name in missing]
    findings += [f"alert {name}: runbook URL outside the configured prefixes (warn)" for name in unmapped]
    findings += [f"alert {name}: no runbook_url annotation (warn)" for name in no_url]
    metrics = {
        "rules": len(alerts),
        "covered_rules": sum(1 for a in alerts if a["status"] == "covered"),
        "missing_runbook_rules": sum(1 for a in alerts if a["status"] == "missing-runbook"),
        "alerts_missing_runbook": missing,
        "alerts_unmapped_url": unmapped,
        "alerts_without_runbook_url": no_url,
        "runbooks_without_alert": orphans,
    }
    status = "warn" if missing or unmapped or no_url or rule_errors else "pass"
    return CheckResult("alert-coverage", status, metrics, tuple(dict(a) for a in alerts), tuple(findings))
