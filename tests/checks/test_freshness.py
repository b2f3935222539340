"""Freshness audit on hand-built inventory rows: every status is planted and found."""

from datetime import date

from checks.freshness import audit_freshness
from rag_health.inventory import InventoryRow
from rag_health.manifest import Manifest, ManifestEntry

TODAY = date(2026, 11, 28)
FP = "model-a"


def row(doc_id, **kw):
    base = dict(at_source=True, indexed=True, source_hash="h", indexed_hash="h", model_fingerprint=FP,
                metadata={"last_reviewed": "2026-10-01", "review_every_days": 365})
    base.update(kw)
    return InventoryRow(doc_id, **base)


def statuses(result):
    return {d["doc_id"]: d["status"] for d in result.items}


def test_each_status_is_detected():
    rows = [
        row("fresh.md"),
        row("overdue.md", metadata={"last_reviewed": "2025-01-01", "review_every_days": 365}),
        row("orphan.md", at_source=False),
        row("superseded.md", metadata={"last_reviewed": "2026-10-01", "superseded_by": "fresh.md"}),
        row("changed.md", source_hash="new"),
        row("new.md", indexed=False, indexed_hash=None, model_fingerprint=None),
        row("broken.md", error="invalid YAML front-matter: line 3"),
        row("other-model.md", model_fingerprint="model-b"),
    ]
    manifest = Manifest(entries=[ManifestEntry("fresh.md", False), ManifestEntry("absent.md", False, required=False)])
    result = audit_freshness(rows, manifest, TODAY, FP)
    assert statuses(result) == {
        "fresh.md": "fresh", "overdue.md": "review-overdue", "orphan.md": "orphaned",
        "superseded.md": "superseded-but-indexed", "changed.md": "index-stale", "new.md": "index-stale",
        "broken.md": "unreadable", "other-model.md": "model-mismatch", "absent.md": "missing",
    }
    overdue = next(d for d in result.items if d["doc_id"] == "overdue.md")
    assert overdue["days_overdue"] == (TODAY - date(2026, 1, 1)).days
    assert "line 3" in next(d for d in result.items if d["doc_id"] == "broken.md")["reason"]
    assert result.status == "fail"  # model-mismatch fails


def test_review_interval_falls_back_to_manifest_then_default():
    """It uses front-matter first, then the manifest entry, then the manifest default."""
    rows = [row("a.md", metadata={"last_reviewed": "2026-06-01"}), row("b.md", metadata={"last_reviewed": "2026-06-01"})]
    manifest = Manifest(entries=[ManifestEntry("a.md", False, review_every_days=90)], review_every_days=365)
    result = audit_freshness(rows, manifest, TODAY, FP)
    assert statuses(result) == {"a.md": "review-overdue", "b.md": "fresh"}


def test_required_missing_fails_optional_missing_warns():
    rows = [row("a.md")]
    assert audit_freshness(rows, Manifest(entries=[ManifestEntry("gone.md", False, required=True)]),
                           TODAY, FP).status == "fail"
    assert audit_freshness(rows, Manifest(entries=[ManifestEntry("gone.md", False, required=False)]),
                           TODAY, FP).status == "warn"
    assert audit_freshness(rows, Manifest(entries=[ManifestEntry("a.md", False)]), TODAY, FP).status == "pass"


def test_glob_entry_is_missing_only_when_nothing_matches():
    rows = [row("runbooks/x.md")]
    manifest = Manifest(entries=[ManifestEntry("runbooks/*.md", True), ManifestEntry("policies/*.md", True)])
    result = audit_freshness(rows, manifest, TODAY, FP)
    assert statuses(result) == {"runbooks/x.md": "fresh", "policies/*.md": "missing"}


def test_overdue_share_threshold_is_declarative():
    """'At most 5% overdue' is an expectation with severity warn: 1 of 30 passes, 3 of 30 warns."""
    fresh = [row(f"d{i}.md") for i in range(27)]
    overdue = [row(f"o{i}.md", metadata={"last_reviewed": "2024-01-01", "review_every_days": 30}) for i in range(3)]
    empty = Manifest()
    assert audit_freshness(fresh + overdue[:1] + [row("x.md"), row("y.md")], empty, TODAY, FP,
                           max_overdue_fraction=0.05).status == "pass"
    result = audit_freshness(fresh + overdue, empty, TODAY, FP, max_overdue_fraction=0.05)
    assert result.status == "warn" and result.metrics["review-overdue"] == 3
    assert any(f.startswith("3 of ") and "documents are overdue for review (limit 5% = " in f and f.endswith("(warn)")
               for f in result.findings)


def test_manifest_supplies_review_metadata_for_documents_without_front_matter():
    """A PDF has no front-matter: its review date comes from its manifest entry."""
    rows = [row("scan.pdf", metadata={})]
    manifest = Manifest(entries=[ManifestEntry("scan.pdf", False, review_every_days=30,
                                               metadata=(("last_reviewed", "2026-01-01"),))])
    result = audit_freshness(rows, manifest, TODAY, FP)
    doc = result.items[0]
    assert doc["status"] == "review-overdue" and doc["last_reviewed"] == "2026-01-01"
