"""The core of running it the Prefect way, without Prefect: the short failure message, the bounded event payload,
which errors are worth a retry and which stages may retry at all, the suite's artifacts, shard results added up."""

from __future__ import annotations

import json

import botocore.exceptions as bx
import pytest

from checks.result import CheckResult
from rag_health import registry
from rag_health.errors import ConfigError, Unreachable, transient
from rag_health.ingest import IngestError, IngestResult, MassChange
from rag_health.results import CheckSummary, FreshnessResult, QualityResult, to_json
from rag_health.settings import Settings
from rag_health.shards import held_result, merge
from rag_health.suite import event_payload, failure_message, verdict_artifacts
from rag_health.views import Link, Markdown, Table


def freshness(status: str, findings: tuple[str, ...]) -> FreshnessResult:
    return FreshnessResult(status, "2026-11-29", None, {"fresh": 1}, (), findings)


def quality(chunks_status: str, embeddings_status: str) -> QualityResult:
    chunks = CheckSummary.of(CheckResult("chunks", chunks_status, {}, (), ("3 chunks overflow the window (fail)",)))
    embeddings = CheckSummary.of(CheckResult("embeddings", embeddings_status, {}, (), ("anisotropy 0.9 (warn)",)))
    return QualityResult(status="fail" if "fail" in (chunks_status, embeddings_status) else "warn", score=0.4,
                         tokens_lost=10, documents=(), findings=(), findings_total=0, findings_omitted=0,
                         findings_by_kind={}, chunks=chunks, embeddings=embeddings, required_metadata=(),
                         worst_chunks=())


def test_failure_message_names_the_failing_checks_only():
    outputs = {"freshness": freshness("warn", ("policies/a.md is overdue for review",) * 3),
               "quality": quality("fail", "warn")}
    message = failure_message(outputs)
    assert message == "rag-health verdict: fail — quality: 3 chunks overflow the window (fail)"
    long = {"probes": freshness("fail", ("x" * 5000 + " (fail)", "second (fail)"))}
    assert len(failure_message(long)) <= 400 and failure_message(long).endswith("… (+1 more)")
    leaking = {"freshness": freshness("fail", ("runbook owned by jane.doe@example.com is missing (fail)",))}
    assert "jane.doe" not in failure_message(leaking) and "[email redacted]" in failure_message(leaking)


def test_event_payload_is_bounded_one_line_and_redacted():
    findings = tuple(f"doc-{i}.md owned by jane.doe@example.com\nline two (fail)" for i in range(100))
    payload = event_payload("r1", {"freshness": freshness("fail", findings), "quality": quality("pass", "warn")})
    assert payload["verdict"] == "fail" and payload["failing_total"] == 100 and len(payload["failing"]) == 20
    assert "jane.doe@example.com" not in json.dumps(payload)
    assert not any("\n" in f["finding"] for f in payload["failing"] + payload["warnings"])  # one line each
    assert payload["summary"].startswith("rag-health verdict: fail — freshness: ")
    assert "report_url" not in payload
    assert event_payload("r1", {"freshness": freshness("pass", ())}, {"url": "https://r/x.html"})["report_url"]


@pytest.mark.parametrize("exc,expected", [
    (bx.EndpointConnectionError(endpoint_url="http://s3"), True),
    (bx.ReadTimeoutError(endpoint_url="http://s3"), True),
    (bx.ConnectTimeoutError(endpoint_url="http://s3"), True),
    (bx.ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"), True),
    (bx.ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject"),
     False),
    (bx.NoCredentialsError(), False),
    (Unreachable("bucket"), True),
    (ConnectionRefusedError(), True),
    (ValueError("Could not connect to a Chroma server. Are you sure it is running?"), True),
    (ConfigError("bad setting"), False),
    (ValueError("some bug"), False),
])
def test_only_passing_network_failures_are_retried(exc, expected):
    assert transient(exc) is expected


def test_a_wrapped_timeout_is_still_a_timeout():
    try:
        try:
            raise TimeoutError("read")
        except TimeoutError as inner:
            raise RuntimeError("store failed") from inner
    except RuntimeError as outer:
        assert transient(outer)


def test_retries_only_for_stages_that_talk_to_s3_or_a_chroma_server(tmp_path):
    stages = registry.stages()
    local = Settings(state_dir=tmp_path)
    assert not any(registry.talks_to_remote(s, local) for s in stages.values())
    http = Settings(state_dir=tmp_path, chroma_mode="http")
    assert registry.talks_to_remote(stages["ingest"], http) and registry.talks_to_remote(stages["quality"], http)
    bucket = Settings(state_dir=tmp_path, s3_bucket="b")
    assert registry.talks_to_remote(stages["drift"], bucket) and not registry.talks_to_remote(stages["ingest"], bucket)
    s3_docs = Settings(state_dir=tmp_path, docs="s3://b/docs")
    assert registry.talks_to_remote(stages["ingest"], s3_docs) and not registry.talks_to_remote(stages["drift"], s3_docs)
    assert {n for n, s in stages.items() if s.writes} == {"ingest", "quality", "probes", "drift"}


def test_the_suite_artifacts_list_changes_by_id_with_descriptions_and_no_none():
    result = {"run_id": "20261129T010203Z-abcdef", "verdict": "fail", "collection": "c", "docs": "/docs",
              "stages": {"ingest": "pass", "freshness": "fail", "quality": "pass"},
              "findings": ["required runbooks/absent.md is missing (fail)",
                           "publish: warn — 2 files in the outbox (warn)"],
              "freshness": {"findings": ["required runbooks/absent.md is missing (fail)"]},
              "ingest": {"status": "pass", "added_ids": [f"d{i}.md" for i in range(60)], "changed_ids": [],
                         "removed_ids": ["old_policy.md"], "held": None},
              "quality": {"score": 0.9, "documents": [{"doc_id": "a.md", "score": 0.5}],
                          "chunks": {"findings": []}, "embeddings": {"findings": []}},
              "report": {"url": "https://reports.example/r/index.html", "index_html": "/local/index.html"}}
    shown = verdict_artifacts(result)
    assert all(a.description for a in shown)
    md = next(a for a in shown if isinstance(a, Markdown)).markdown
    assert "added** (60)" in md and "… and 10 more" in md and "old\\_policy.md" in md and "None" not in md
    table = next(a for a in shown if isinstance(a, Table))
    assert ("freshness", "fail") in {(r["stage"], r["status"]) for r in table.rows}
    # The publish warn is the run's, and a warn: each finding's status is its own, not its stage's (a warn was once
    # listed as "fail" because its stage or run failed).
    assert ("run", "warn") in {(r["stage"], r["status"]) for r in table.rows}
    assert [a.link for a in shown if isinstance(a, Link)] == ["https://reports.example/r/index.html"]


def test_shard_results_add_up_to_one_result():
    def part(added, removed, errors):
        r = IngestResult(source="s3://b/docs", documents=len(added) + 1, added=tuple(added), changed=(),
                         removed=tuple(removed), unchanged=1, read=len(added), chunks_embedded=2 * len(added),
                         chunks_reused=0, metadata_upgraded=0, chunks_deleted=len(removed), skipped=(),
                         errors=tuple(errors), seconds=1.0)
        return to_json(r)

    unlisted = IngestError("secret/", "cannot list folder: permission denied; its documents stay indexed")
    merged = merge([part(["b.md"], ["z.md"], [unlisted]), part(["a.md"], [], [unlisted])], seconds=3.14159)
    assert merged.added == ("a.md", "b.md") and merged.removed == ("z.md",)
    assert merged.documents == 4 and merged.unchanged == 2 and merged.chunks_embedded == 4
    assert merged.errors == (unlisted,) and merged.seconds == 3.142 and merged.held is None
    change = MassChange.of(["x.md"], [], 2, 0.3, 1)
    held = held_result("/docs", change)
    assert held.status == "warn" and held.held == change and not held.added


def test_a_shard_that_held_back_while_the_others_wrote_is_named_not_hidden():
    wrote = to_json(IngestResult(source="s3://b", documents=2, added=("a.md",), changed=(), removed=(), unchanged=1,
                                 read=1, chunks_embedded=1, chunks_reused=0, metadata_upgraded=0, chunks_deleted=0,
                                 skipped=(), errors=(), seconds=1.0, shard=(0, 2)))
    held = to_json(held_result("s3://b", MassChange.of(["x.md", "y.md"], [], 3, 0.5, 1)))
    held["shard"] = [1, 2]
    merged = merge([wrote, held], seconds=2.0)
    assert merged.held is None and merged.added == ("a.md",) and merged.status == "warn"
    assert merged.errors[0].doc_id == "shard 1/2" and "it wrote nothing" in merged.errors[0].reason
    assert "the other shards wrote their part" in merged.errors[0].reason
