"""Prometheus rule files → runbooks: parsing, URL mapping, coverage and generated probes."""

import textwrap

import pytest

from checks.coverage import alert_coverage
from rag_health.alert_rules import (
    RunbookResolver,
    UrlMapping,
    alert_probes,
    load_rules,
    resolve_alerts,
    strip_templating,
)
from rag_health.errors import ConfigError

PLAIN = """
groups:
  - name: payments
    rules:
      - record: job:rate5m
        expr: sum(rate(x[5m]))
      - alert: KafkaConsumerLagHigh
        labels: {severity: critical}
        annotations:
          summary: Consumer group {{ $labels.group }} is lagging.
          description: Lag is {{ $value | humanize }} messages on {{ $labels.topic }}.
          runbook_url: https://runbooks.example.com/Payments/Kafka-Consumer-Lag
      - alert: LedgerBreak
        annotations:
          summary: Ledger and bank statement disagree.
          runbook_url: https://runbooks.example.com/payments/ledger-break.md
      - alert: NoRunbook
        annotations: {summary: Something odd.}
      - alert: ElsewhereRunbook
        annotations: {summary: X., runbook_url: "https://wiki.other.example.org/x"}
"""
CRD = """
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
spec:
  groups:
    - name: cards
      rules:
        - alert: CardDeclineSpike
          annotations:
            summary: Declines above normal.
            runbook_url: https://runbooks.example.com/cards/decline-spike
"""
DOCS = ["payments/kafka-consumer-lag.md", "payments/settlement-late.md", "cards/decline-spike.md", "README.md"]


@pytest.fixture
def rules_dir(tmp_path):
    (tmp_path / "payments.yaml").write_text(textwrap.dedent(PLAIN))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cards.yml").write_text(textwrap.dedent(CRD))
    (tmp_path / "broken.yaml").write_text("groups: [\n")
    return tmp_path


def test_load_plain_and_prometheusrule_files(rules_dir):
    rules, errors = load_rules([rules_dir])
    assert [r.name for r in rules] == ["KafkaConsumerLagHigh", "LedgerBreak", "NoRunbook", "ElsewhereRunbook",
                                       "CardDeclineSpike"]
    assert errors[0]["file"].endswith("broken.yaml") and "line" in errors[0]["reason"]
    with pytest.raises(ConfigError, match="not found"):
        load_rules([rules_dir / "nope.yaml"])


def test_resolver_is_case_insensitive_with_or_without_extension():
    resolver = RunbookResolver(DOCS, [UrlMapping.parse("https://runbooks.example.com/")])
    assert resolver.resolve("https://runbooks.example.com/Payments/Kafka-Consumer-Lag") == (
        "payments/kafka-consumer-lag.md", "covered")
    assert resolver.resolve("https://runbooks.example.com/cards/decline-spike.md#steps") == (
        "cards/decline-spike.md", "covered")
    assert resolver.resolve("https://runbooks.example.com/payments/ledger-break.md") == (None, "missing-runbook")
    assert resolver.resolve("https://wiki.other.example.org/x") == (None, "unmapped-url")
    assert resolver.resolve("") == (None, "no-runbook-url")


def test_prefix_with_folder():
    resolver = RunbookResolver(["ops/runbooks/kafka.md"], [UrlMapping.parse("https://rb.example.com/rb/=ops/runbooks")])
    assert resolver.resolve("https://rb.example.com/rb/KAFKA") == ("ops/runbooks/kafka.md", "covered")
    with pytest.raises(ConfigError):
        UrlMapping.parse("runbooks.example.com")


def test_coverage_and_generated_probes(rules_dir):
    rules, _ = load_rules([rules_dir])
    resolver = RunbookResolver(DOCS, [UrlMapping.parse("https://runbooks.example.com")])
    alerts, resolved = resolve_alerts(rules, resolver)
    assert alerts[0] == {"alert": "KafkaConsumerLagHigh", "severity": "critical", "group": "payments",
                         "source_file": "payments.yaml",
                         "runbook_url": "https://runbooks.example.com/Payments/Kafka-Consumer-Lag",
                         "doc_id": "payments/kafka-consumer-lag.md", "status": "covered"}
    assert resolved == {0: "payments/kafka-consumer-lag.md", 4: "cards/decline-spike.md"}
    result = alert_coverage(alerts, [d for d in DOCS if d != "README.md"])
    assert result.metrics["alerts_missing_runbook"] == ["LedgerBreak"]
    assert result.metrics["alerts_unmapped_url"] == ["ElsewhereRunbook"]
    assert result.metrics["alerts_without_runbook_url"] == ["NoRunbook"]
    assert result.metrics["runbooks_without_alert"] == ["payments/settlement-late.md"]
    assert result.status == "warn"
    probes = alert_probes(rules, resolved)
    assert [(p.probe_id, p.relevant) for p in probes] == [
        ("alert:KafkaConsumerLagHigh:critical", ("payments/kafka-consumer-lag.md",)),
        ("alert:CardDeclineSpike:any", ("cards/decline-spike.md",))]
    assert probes[0].query == "Consumer group is lagging. Lag is messages on."


def test_strip_templating():
    """Templating goes; the words around it stay, without dangling separators."""
    assert strip_templating("Pod {{ $labels.namespace }}/{{ $labels.pod }} restarts ({{ $value }} times).") == \
        "Pod restarts ( times)."
    assert strip_templating("{{ $labels.job }} is down.") == "is down."


def test_encoded_urls_and_most_specific_prefix():
    resolver = RunbookResolver(["runbooks/kafka lag.md", "ops/x.md"],
                               [UrlMapping.parse("https://rb.example.com/"),
                                UrlMapping.parse("https://rb.example.com/runbooks/=ops")])
    assert resolver.resolve("https://rb.example.com/runbooks/x") == ("ops/x.md", "covered")
    assert RunbookResolver(["runbooks/kafka lag.md"], [UrlMapping.parse("https://rb.example.com/")]).resolve(
        "https://rb.example.com/runbooks/kafka%20lag") == ("runbooks/kafka lag.md", "covered")


def test_malformed_groups_are_reported_not_fatal(tmp_path):
    (tmp_path / "odd.yaml").write_text("groups:\n  - just-a-string\n  - name: g\n    rules:\n"
                                       "      - alert: A\n        annotations: oops\n"
                                       "      - alert: B\n        annotations: {summary: fine}\n")
    rules, errors = load_rules([tmp_path])
    assert [r.name for r in rules] == ["B"]
    assert [e["reason"] for e in errors] == ["group 1 is not a mapping with a list of rules",
                                             "alert A: annotations must be a mapping"]
