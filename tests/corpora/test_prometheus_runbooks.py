"""The real prometheus-operator runbooks with probes built from real alerting rules (../shared/corpora)."""

import json

import pytest

from benchmarks.prometheus_runbooks import alert_probes
from rag_health.alert_rules import strip_templating
from rag_health import stages
from tests.conftest import shared_corpus

pytestmark = pytest.mark.corpus


def test_strip_templating():
    text = "Alertmanager {{ $labels.namespace }}/{{ $labels.pod}} failed to send {{ $value | humanizePercentage }} of notifications."
    assert strip_templating(text) == "Alertmanager failed to send of notifications."


def test_alert_probe_conversion(tmp_path):
    corpus = shared_corpus("prometheus-runbooks")
    out = tmp_path / "alerts.jsonl"
    counts = alert_probes(corpus / "golden_probes_from_kube-prometheus_alerts.jsonl", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert counts["probes"] == len(rows) and counts["alerts_without_runbook"] == 27
    assert len({r["id"] for r in rows}) == len(rows)
    assert all("{{" not in r["query"] and r["relevant"][0].startswith("runbooks/") for r in rows)
    assert all((corpus / "content" / r["relevant"][0]).is_file() for r in rows)


def test_whole_corpus_ingests_and_probes(tmp_path, make_runtime):
    corpus = shared_corpus("prometheus-runbooks")
    probes = tmp_path / "alerts.jsonl"
    alert_probes(corpus / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
    rt = make_runtime(corpus / "content", probes=[probes])
    result = stages.ingest_stage(rt)
    md_files = [p for p in (corpus / "content").rglob("*") if p.is_file()]
    assert result["documents"] == len(md_files) and result["errors"] == []
    indexed = rt.index.ledger()
    assert len(indexed) + len(result["skipped"]) == len(md_files)
    out = stages.probes_stage(rt)
    m = out["sets"]["alerts"]
    per = out["per_probe"]
    assert m["n"] == len(per) > 100
    assert m["hit@5"] == pytest.approx(sum(1 for p in per if p["rank"] and p["rank"] <= 5) / len(per), abs=1e-4)
    assert m["mrr"] == pytest.approx(sum(1 / p["rank"] for p in per if p["rank"] and p["rank"] <= 10) / len(per),
                                     abs=1e-3)
    assert stages.ingest_stage(rt)["chunks_embedded"] == 0
