"""Typed stage results and the one serializer that turns them into the JSON contract (README, "The CLI contract").

Every stage returns a frozen dataclass defined here (ingest's is rag_health.ingest.IngestResult). Field names are
the contract's keys; field metadata says when a field is left out (`omit_none`), left out always (`internal`: kept
for the run's files, never printed) or written through a converter (`json`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.findings import Finding
from checks.pii import redact, scrub
from checks.result import CheckResult, Metrics, failing
from rag_health.probes import probe_rows


def to_json(value: Any) -> Any:
    """Plain JSON data (dicts, lists, str, numbers, bool, None) from results, metrics, findings and containers."""
    if isinstance(value, Finding):
        return scrub(value.item())
    if hasattr(value, "to_json") and not isinstance(value, type):
        return value.to_json()
    if isinstance(value, Metrics):
        return {k: to_json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("internal") or (v is None and f.metadata.get("omit_none")):
                continue
            converted = f.metadata["json"](v) if "json" in f.metadata else to_json(v)
            if f.metadata.get("flatten"):
                out.update(converted)
            else:
                out[f.name] = converted
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {redact(str(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, str):
        return redact(value)  # the one serializer of everything shown or stored: no PII or secret leaves it
    if isinstance(value, Path):
        return redact(str(value))
    if type(value).__module__ == "numpy":
        return value.tolist()  # arrays become lists, numpy scalars plain numbers
    return value


def omit_none(default: Any = None) -> Any:
    return field(default=default, metadata={"omit_none": True})


def internal(default: Any = None) -> Any:
    return field(default=default, metadata={"internal": True}, repr=False, compare=False)


@dataclass(frozen=True)
class Skipped:
    """A stage with nothing to run on. `shown`: the empty values the stage's contract still lists."""

    reason: str
    shown: Mapping[str, Any] = field(default_factory=dict)
    status: str = "skip"
    findings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, **to_json(self.shown)}

    def sentences(self) -> tuple[str, ...]:
        return self.findings

    def failures(self) -> tuple[str, ...]:
        return ()


SUMMARY_ITEMS = 200  # offending rows kept per check in the result; quality.findings and the CSV hold them all


@dataclass(frozen=True)
class CheckSummary:
    """One check as the contract shows it: status, figures, its first offending items, its sentences."""

    status: str
    metrics: Mapping[str, Any]
    items: tuple[Any, ...]
    findings: tuple[str, ...]

    @classmethod
    def of(cls, check: CheckResult) -> CheckSummary:
        return cls(check.status, check.metrics, check.items[:SUMMARY_ITEMS], check.findings)


class Sentences:
    """A result whose `findings` are the one-sentence problems the run's verdict lists."""

    findings: tuple[str, ...]

    def sentences(self) -> tuple[str, ...]:
        return self.findings

    def failures(self) -> tuple[str, ...]:
        """The sentences that made it fail (they end in "(fail)"); warns and notes are left out."""
        return failing(self.sentences())


@dataclass(frozen=True)
class FreshnessResult(Sentences):
    status: str
    as_of: str
    manifest: Path | None
    summary: Mapping[str, int]
    documents: tuple[dict[str, Any], ...]
    findings: tuple[str, ...]


@dataclass(frozen=True)
class CoverageResult(Sentences):
    status: str
    rules: int
    covered_rules: int
    alerts_missing_runbook: tuple[str, ...]
    alerts_unmapped_url: tuple[str, ...]
    alerts_without_runbook_url: tuple[str, ...]
    runbooks_without_alert: tuple[str, ...]
    probes_generated: int
    alerts: tuple[dict[str, Any], ...]
    errors: tuple[dict[str, str], ...]
    findings: tuple[str, ...]
    # One probe per covered alert, handed to the probes stage; listed by `rag-health coverage`, not by a run.
    probes: tuple[Any, ...] = field(default=(), metadata={"json": probe_rows})


def _finding_rows(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    return [f.row() for f in findings]


@dataclass(frozen=True)
class QualityResult:
    status: str
    score: float
    tokens_lost: int
    documents: tuple[dict[str, Any], ...]
    findings: tuple[Finding, ...] = field(metadata={"json": _finding_rows})  # at most max_quality_findings
    findings_total: int
    findings_omitted: int
    findings_by_kind: Mapping[str, int]
    chunks: CheckSummary
    embeddings: CheckSummary
    required_metadata: tuple[str, ...]
    worst_chunks: tuple[dict[str, Any], ...]
    baseline_run: str | None = None
    chunk_table: str | None = omit_none()
    findings_csv: str | None = omit_none()
    all_findings: tuple[Finding, ...] = internal(())  # every finding, for the run's CSV

    def sentences(self) -> tuple[str, ...]:
        return self.chunks.findings + self.embeddings.findings

    def failures(self) -> tuple[str, ...]:
        """The sentences of the expectations that failed (a check that fails may warn on others as well)."""
        return failing(self.sentences())


@dataclass(frozen=True)
class ProbesResult(Sentences):
    status: str
    sets: Mapping[str, Mapping[str, Any]]
    overall: Mapping[str, Any]
    baseline_run: str | None
    regressions: tuple[dict[str, Any], ...]
    filter_excluded: tuple[dict[str, Any], ...]
    per_probe: tuple[dict[str, Any], ...]
    errors: tuple[dict[str, Any], ...]
    findings: tuple[str, ...]
    files: Mapping[str, str]


@dataclass(frozen=True)
class DriftResult(Sentences):
    status: str
    html: str
    run_id: str
    baseline_run: str
    baseline_promoted: bool
    figures: Mapping[str, Any] = field(metadata={"flatten": True})  # Evidently's figures (rag_health.drift)
    sample_rows: int
    reference_rows: int
    s3_uri: str | None = omit_none()  # only once the report is in the bucket
    s3_index: str | None = omit_none()
    presigned_url: str | None = omit_none()  # an HTTPS GET URL of the published report, expiring
    url: str | None = omit_none()  # where a person opens it: base URL, presigned URL or the local file
    outbox: tuple[str, ...] | None = omit_none()  # with a bucket: the run's keys waiting in the outbox
    findings: tuple[str, ...] = internal(())


@dataclass(frozen=True)
class ComparisonResult(Sentences):
    status: str
    configs: tuple[dict[str, Any], ...]
    winner: str
    reason: str
    probe_sets: tuple[str, ...]
    probes: int
    findings: tuple[str, ...] = internal(())


@dataclass(frozen=True)
class BaselineResult:
    status: str
    baseline_run: str


@dataclass(frozen=True)
class RunResult:
    """A whole run: the verdict, each stage's result under its name, and what identifies the run."""

    run_id: str
    verdict: str
    stages: Mapping[str, str]
    findings: tuple[str, ...]
    docs: str
    collection: str
    model: Mapping[str, Any]
    outputs: Mapping[str, Any]
    timings: Mapping[str, float]
    report: Mapping[str, Any] | None = None
    result_file: str | None = None
    documents: tuple[Mapping[str, Any], ...] | None = None  # the audit record: what was indexed, per document

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "verdict": self.verdict, "stages": dict(self.stages),
                               "findings": list(self.findings), "docs": self.docs, "collection": self.collection,
                               "model": dict(self.model)}
        for name, result in self.outputs.items():
            out[name] = to_json(result)
            if name == "coverage":  # the generated probes went to the probes stage; the run lists them there
                out[name].pop("probes", None)
        out["timings"] = dict(self.timings)
        if self.report is not None:
            out["report"] = dict(self.report)
        if self.result_file is not None:
            out["result_file"] = self.result_file
        if self.documents is not None:
            out["documents"] = [dict(d) for d in self.documents]
        return scrub(out)


def failing_sentences(result: Any) -> tuple[str, ...]:
    """What made a stage fail, in its own sentences naming the failing items (those ending in "(fail)"); never
    its warns; nothing when it did not fail."""
    if getattr(result, "status", None) != "fail":
        return ()
    return tuple(result.failures())
