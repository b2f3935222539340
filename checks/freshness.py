"""Freshness audit: one row per document with a status and a reason, plus the verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from checks.result import CheckResult, named, said, worst

STATUSES = ("fresh", "review-overdue", "missing", "orphaned", "superseded-but-indexed", "index-stale",
            "unreadable", "model-mismatch")
ALWAYS_WARN = {"missing", "orphaned", "superseded-but-indexed", "index-stale", "unreadable"}


class _Row(Protocol):
    doc_id: str
    at_source: bool
    indexed: bool
    source_hash: str | None
    indexed_hash: str | None
    metadata: dict[str, Any]
    error: str | None
    model_fingerprint: str | None
    complete: bool
    supported: bool


class _ManifestEntry(Protocol):
    pattern: str
    is_glob: bool
    owner: str | None
    review_every_days: int | None
    required: bool

    def matches(self, doc_id: str) -> bool: ...

    def defaults(self) -> dict[str, Any]: ...


class _Manifest(Protocol):
    entries: list
    review_every_days: int

    def entry_for(self, doc_id: str) -> _ManifestEntry | None: ...


def audit_freshness(rows: list[_Row], manifest: _Manifest, today: date, model_fingerprint: str, *,
                    max_overdue_fraction: float = 0.0) -> CheckResult:
    """Classify every document. Precedence when several apply: the one that most changes what users are shown."""
    documents: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: r.doc_id):
        entry = manifest.entry_for(row.doc_id)
        if not row.supported and entry is None:
            continue  # an image or a slide deck nobody listed: not a document we audit
        owner = row.metadata.get("owner") or (entry.owner if entry else None)
        last_reviewed = row.metadata.get("last_reviewed") or (entry.defaults().get("last_reviewed") if entry else None)
        status, reason, days_over = _classify(row, entry, manifest, today, model_fingerprint)
        documents.append({
            "doc_id": row.doc_id, "status": status, "reason": reason, "owner": owner,
            "required": bool(entry.required) if entry else False, "days_overdue": days_over,
            "last_reviewed": last_reviewed,
        })
    present = {r.doc_id for r in rows if r.at_source}
    for entry in manifest.entries:
        found = any(entry.matches(d) for d in present) if entry.is_glob else entry.pattern in present
        if not found:
            kind = "no document matches the pattern" if entry.is_glob else "listed in the manifest, absent at the source"
            documents.append({
                "doc_id": entry.pattern, "status": "missing",
                "reason": f"{kind}{' (required)' if entry.required else ''}",
                "owner": entry.owner, "required": entry.required, "days_overdue": None, "last_reviewed": None,
            })

    counts = Counter(d["status"] for d in documents)
    failed = _verdict(documents, max_overdue_fraction)
    status = worst(*(rule.severity for rule in failed))
    findings = [rule.sentence(len(documents)) for rule in failed]
    level = {d: rule.severity for rule in reversed(failed) for d in rule.doc_ids}  # a fail wins over a warn
    findings += [said(f"{d['doc_id']}: {d['status']} — {d['reason']}", level.get(d["doc_id"]))
                 for d in documents if d["status"] != "fresh"]
    metrics = {"documents": len(documents), **{s: counts.get(s, 0) for s in STATUSES},
               "required_missing": sum(1 for d in documents if d["status"] == "missing" and d["required"])}
    return CheckResult(
        name="freshness", status=status, metrics=metrics, items=tuple(documents), findings=tuple(findings),
    )


@dataclass(frozen=True)
class FailedRule:
    """A freshness rule the inventory does not meet: what it says, how much that matters, and which documents
    break it (the sentence names them)."""

    description: str
    severity: str
    doc_ids: tuple[str, ...]
    allowed: float = 1.0  # the share of documents that must meet it (Great Expectations' `mostly`)

    @property
    def unexpected(self) -> int:
        return len(self.doc_ids)

    def sentence(self, total: int) -> str:
        n, docs = self.unexpected, named(self.doc_ids)
        if self.description.startswith("at most"):
            limit = max(0, int(total * (1.0 - self.allowed) + 1e-9))
            text = (f"{n} of {total} documents are overdue for review (limit {1.0 - self.allowed:.0%} = {limit}): "
                    f"{docs}")
        elif self.description.startswith("no required"):
            text = f"{n} required document{'s are' if n > 1 else ' is'} missing: {docs}"
        elif self.description.startswith("every document"):
            text = f"{n} document{'s are' if n > 1 else ' is'} indexed with another embedding model: {docs}"
        else:
            text = (f"{n} document{'s are' if n > 1 else ' is'} missing, unreadable, orphaned, superseded but "
                    f"indexed, or index-stale: {docs}")
        return said(text, self.severity)


def _verdict(documents: list[dict[str, Any]], max_overdue_fraction: float) -> list[FailedRule]:
    """The thresholds over the inventory table, one rule each, and the ones not met. Declared in plain Python
    because Great Expectations' import alone costs about 5 s, more than the whole audit is allowed (freshness is
    the command people run ad hoc); tests/core/test_freshness_verdict.py validates the same table against the
    equivalent Great Expectations suite and requires identical outcomes."""
    if not documents:
        return []
    total = len(documents)
    rules = [
        ("no required document is missing", "fail",
         [d for d in documents if d["status"] == "missing" and bool(d["required"])], 1.0),
        ("every document is indexed with the current embedding model", "fail",
         [d for d in documents if d["status"] == "model-mismatch"], 1.0),
        (f"at most {max_overdue_fraction:.0%} of documents are overdue for review", "warn",
         [d for d in documents if d["status"] == "review-overdue"], max(0.0, 1.0 - max_overdue_fraction)),
        ("no document is missing, unreadable, orphaned, superseded-but-indexed or index-stale", "warn",
         [d for d in documents if d["status"] in ALWAYS_WARN], 1.0),
    ]
    # Great Expectations' `mostly`: the share of rows meeting the rule must be at least `mostly`.
    return [FailedRule(description, severity, tuple(str(d["doc_id"]) for d in broken), mostly)
            for description, severity, broken, mostly in rules
            if broken and (total - len(broken)) / total < mostly]


def verdict_expectations(max_overdue_fraction: float) -> list[tuple[Any, str, str]]:
    """The same thresholds as a Great Expectations suite over the table `verdict_table` builds (for the test that
    keeps the two in agreement, and for anyone who wants to run them in GX)."""
    import great_expectations as gx

    E = gx.expectations
    return [
        (E.ExpectColumnValuesToBeInSet(column="required_missing", value_set=[False]), "fail",
         "no required document is missing"),
        (E.ExpectColumnValuesToNotBeInSet(column="status", value_set=["model-mismatch"]), "fail",
         "every document is indexed with the current embedding model"),
        (E.ExpectColumnValuesToNotBeInSet(column="status", value_set=["review-overdue"],
                                          mostly=max(0.0, 1.0 - max_overdue_fraction)), "warn",
         f"at most {max_overdue_fraction:.0%} of documents are overdue for review"),
        (E.ExpectColumnValuesToNotBeInSet(column="status", value_set=sorted(ALWAYS_WARN)), "warn",
         "no document is missing, unreadable, orphaned, superseded-but-indexed or index-stale"),
    ]


def verdict_table(documents: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame({
        "doc_id": [d["doc_id"] for d in documents],
        "status": [d["status"] for d in documents],
        "required_missing": [d["status"] == "missing" and bool(d["required"]) for d in documents],
    })


def _classify(row: _Row, entry: _ManifestEntry | None, manifest: _Manifest, today: date,
              model_fingerprint: str) -> tuple[str, str, int | None]:
    # The manifest supplies metadata for formats without front-matter; the document's own fields win.
    metadata = {**(entry.defaults() if entry else {}), **row.metadata}
    if row.indexed and row.model_fingerprint and row.model_fingerprint != model_fingerprint:
        return "model-mismatch", (f"indexed with embedding model fingerprint {row.model_fingerprint}, "
                                  f"current model is {model_fingerprint}"), None
    if row.at_source and row.error:
        kept = "previous version still indexed" if row.indexed else "never indexed"
        return "unreadable", f"{row.error} ({kept})", None
    if not row.at_source:
        return "orphaned", "indexed but no longer at the source", None
    if not row.indexed:
        return "index-stale", "at the source but not indexed yet", None
    if not row.complete:
        return "index-stale", "only part of its chunks are in the index (an interrupted write)", None
    if row.source_hash != row.indexed_hash:
        return "index-stale", "changed at the source since it was indexed", None
    superseded_by = metadata.get("superseded_by")
    if superseded_by:
        return "superseded-but-indexed", f"superseded by {superseded_by} but still indexed and retrievable", None
    last_reviewed = metadata.get("last_reviewed")
    every = metadata.get("review_every_days") or manifest.review_every_days
    if last_reviewed:
        try:
            due = date.fromisoformat(str(last_reviewed)) + timedelta(days=int(every))
        except OverflowError:  # 9999-12-31, a common way to write "never": due after the last date there is
            return "fresh", f"reviewed {last_reviewed}: no review due before the year 9999", None
        if due < today:
            days = (today - due).days
            return "review-overdue", (f"last reviewed {last_reviewed}, review due every {every} days: "
                                      f"{days} days overdue (due {due.isoformat()})"), days
        return "fresh", f"reviewed {last_reviewed}, next review due {due.isoformat()}", None
    return "fresh", "no review date recorded (last_reviewed missing)", None
