"""A failed run says what failed, naming the failing item (the document, the probe, the chunk), and never a warn:
one test per stage, each on a real run of that stage (embedded Chroma, the packaged model). The same sentences
give the event's `failing` list and the status column of the health-findings table."""

from __future__ import annotations

import json

from checks.result import severity
from rag_health import suite
from rag_health.registry import stages
from rag_health.results import failing_sentences, to_json
from tests.conftest import write_doc


def stage(rt, name, **inputs):
    return stages()[name].run(rt, **inputs)


def judged(name, result):
    """The state message, the event's failing and warning lists, and the table rows a run with this stage shows."""
    outputs = {name: result}
    shown = {"run_id": "r", "verdict": result.status, "stages": {name: result.status}, name: to_json(result),
             "findings": list(result.sentences())}
    rows = next(a for a in suite.verdict_artifacts(shown) if a.key == "health-findings").rows
    table = {r["finding"]: r["status"] for r in rows}
    return suite.failure_message(outputs), suite.event_payload("r", outputs), table


def test_freshness_names_the_missing_required_document_and_leaves_out_the_overdue_ones(small_corpus, make_runtime,
                                                                                     tmp_path):
    """Regression: the message read "no required document is missing: 1 document(s) do not (fail)", naming no
    document, and in the event it came after the warn lines."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("documents:\n  - id: runbooks/ach-return-rate-spike.md\n    required: true\n"
                        "  - id: runbooks/kafka-lag.md\n")
    rt = make_runtime(small_corpus, manifest=str(manifest), today="2026-11-28", max_overdue_fraction=0.0)
    stage(rt, "ingest")
    result = stage(rt.new_run(), "freshness")
    assert result.status == "fail"
    message, payload, table = judged("freshness", result)
    assert message == ("rag-health verdict: fail — freshness: 1 required document is missing: "
                       "runbooks/ach-return-rate-spike.md (fail) (+1 more)")
    assert "overdue" not in message and "chargebacks" not in message
    assert [f["finding"] for f in payload["failing"]] == list(failing_sentences(result))
    assert payload["failing"][0]["finding"].startswith("1 required document is missing: runbooks/ach-return")
    assert all("overdue" not in f["finding"] for f in payload["failing"])
    assert any("policies/chargebacks.md" in f["finding"] for f in payload["warnings"])
    overdue_rule = next(f for f in result.findings if "overdue for review (limit 0% = 0)" in f)
    assert overdue_rule.startswith("1 of ") and "policies/chargebacks.md" in overdue_rule
    assert table[overdue_rule] == "warn" and table[payload["failing"][0]["finding"]] == "fail"
    assert table["policies/chargebacks.md: review-overdue — " + next(
        d["reason"] for d in result.documents if d["doc_id"] == "policies/chargebacks.md") + " (warn)"] == "warn"


def test_probes_name_the_regressed_probe_and_leave_out_the_lifecycle_warn(small_corpus, make_runtime, tmp_path):
    """Regression: the state message read "probes: probe set lifecycle: … (warn) (+2 more)", hiding the two golden
    probes that regressed behind "+2 more"."""
    write_doc(small_corpus, "policies/chargebacks-2023.md", "# Chargeback handling policy (2023)\nEvery chargeback "
              "must be answered within the scheme deadline with compelling evidence gathered by the disputes team.",
              title="Chargebacks 2023", superseded_by="policies/chargebacks.md")
    probes = tmp_path / "golden.jsonl"
    probes.write_text("\n".join(json.dumps(p) for p in [
        {"id": "lag", "query": "payments consumer group is behind", "relevant": ["runbooks/kafka-lag.md"]},
        {"id": "declines", "query": "card authorisations declined by the issuer processor",
         "relevant": ["runbooks/card-declines.md"]}]) + "\n")
    rt = make_runtime(small_corpus, probes=[str(probes)], generate_probes=False)
    stage(rt, "ingest")
    first = stage(rt.new_run(), "probes", run_id="run-1")
    stage(rt, "drift", run_id="run-1")
    assert first.regressions == ()
    for i in range(5):  # documents that push the lag runbook down
        write_doc(small_corpus, f"runbooks/payments-consumer-{i}.md",
                  f"# Payments consumer group is behind ({i})\nThe payments consumer group is behind: alert {i} "
                  f"fires when the payments consumer group is behind the producer.", title=f"Payments consumer {i}")
    stage(rt.new_run(), "ingest")
    result = stage(rt.new_run(), "probes", run_id="run-2")
    assert result.status == "fail" and result.sets["lifecycle"]["lingering@10"] == 1
    message, payload, table = judged("probes", result)
    assert message.startswith("rag-health verdict: fail — probes: probe golden/lag regressed since baseline run-1:")
    assert "lifecycle" not in message
    assert [f["finding"] for f in payload["failing"]] == [f for f in result.findings if "golden/lag" in f]
    lifecycle = next(f for f in result.findings if f.startswith("probe set lifecycle"))
    assert table[lifecycle] == "warn" and lifecycle in [f["finding"] for f in payload["warnings"]]


def test_quality_names_the_overflowing_chunks_and_leaves_out_its_warns(small_corpus, make_runtime):
    """A failing quality stage names the chunks its failing expectation found, never the expectations that only
    warn."""
    write_doc(small_corpus, "notes/long.md", "# Long note\n" + " ".join(
        f"Settlement batch {i} is reconciled against the ledger before the cut-off time." for i in range(60)))
    rt = make_runtime(small_corpus, chunk_strategy="whole", max_overflow_fraction=0.1)
    stage(rt, "ingest")
    result = stage(rt.new_run(), "quality")
    assert result.status == "fail"
    message, payload, table = judged("quality", result)
    assert message.startswith("rag-health verdict: fail — quality: at most 10% of chunks overflow the window: 1 of "
                              "5 chunk(s) do not, e.g. notes/long.md chunk 0 (fail)")
    warns = [f for f in result.sentences() if severity(f) == "warn"]
    assert warns and not any(w in message for w in warns)
    assert all(table[f] == "warn" for f in warns) and [f["finding"] for f in payload["failing"]] == [
        f for f in result.sentences() if severity(f) == "fail"]


def test_stages_that_only_warn_never_name_a_failure(small_corpus, make_runtime, tmp_path):
    """Ingest, coverage and drift warn at worst: their sentences are warns or notes, and none reaches a failure
    message."""
    (small_corpus / "runbooks" / "broken.md").write_bytes(b"---\nowner: [unclosed\n---\nbody\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: NoRunbook\n    expr: up == 0\n"
                     "    annotations: {runbook_url: https://runbooks.example/runbooks/absent.md}\n")
    rt = make_runtime(small_corpus, rules=[str(rules)], runbook_url_prefix=["https://runbooks.example/"])
    outputs = {"ingest": stage(rt, "ingest"), "coverage": stage(rt.new_run(), "coverage")}
    assert outputs["ingest"].status == "warn" and outputs["coverage"].status == "warn"
    for name, result in outputs.items():
        assert result.failures() in ((), []) and result.sentences(), name
        assert all(severity(f) == "warn" for f in result.sentences()), result.sentences()
    assert suite.event_payload("r", outputs)["failing"] == []
    assert {f["stage"] for f in suite.event_payload("r", outputs)["warnings"]} == {"ingest", "coverage"}


def test_an_empty_index_fails_quality_naming_it(tmp_path, make_runtime):
    """Regression: "the index holds no chunks" failed the stage with no (fail) suffix, so the state message said
    only "quality: failed", the event's failing list was empty and the table showed a note."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = stage(make_runtime(empty), "quality")
    message, payload, table = judged("quality", result)
    assert result.status == "fail" and "the index holds no chunks (fail)" in result.failures()
    assert "the index holds no chunks" in message and payload["failing"]
    assert table["the index holds no chunks (fail)"] == "fail"


def test_the_front_page_lists_each_sentence_once_under_its_own_severity():
    """Regression: the front page rebuilt the ingest sentences without their (warn) suffix, so every ingest error
    was listed again under drift, and a note of a failing stage (an overdue document under the limit) was listed
    as a failure."""
    from rag_health.report_pages import reasons

    error = "ingest error runbooks/x.md: not UTF-8 (warn)"
    note = "runbooks/y.md: review-overdue — 3 days overdue"
    failure = "1 required document is missing: runbooks/z.md (fail)"
    result = {"stages": {"ingest": "warn", "freshness": "fail", "drift": "pass"}, "ingest": {"errors": [
        {"doc_id": "runbooks/x.md", "reason": "not UTF-8"}]}, "freshness": {"findings": [failure, note]},
        "findings": [error, failure, note]}
    shown = reasons(result)
    assert shown["fail"] == [("freshness", [failure])]
    assert shown["warn"] == [("ingest", [error])]
