"""The document inventory: the source listing joined with the index ledger, reading only what changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rag_health.bounded_parse import parse_bounded
from rag_health.documents import (
    DEFAULT_LIMITS,
    DocumentError,
    EmptyDocument,
    Limits,
    content_hash,
    is_supported,
)
from rag_health.sources import DocumentSource, SourceEntry, check_size, unlisted_reason
from rag_health.store import LedgerEntry


@dataclass(frozen=True)
class InventoryRow:
    doc_id: str
    at_source: bool
    indexed: bool
    source_hash: str | None = None
    indexed_hash: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    model_fingerprint: str | None = None
    ingested_at: str | None = None
    complete: bool = True  # False when only part of the indexed version's chunks are in the store
    supported: bool = True


def build_inventory(source: DocumentSource, ledger: dict[str, LedgerEntry],
                    notes: dict[str, dict[str, Any]] | None = None, limits: Limits | None = None
                    ) -> list[InventoryRow]:
    """One row per document at the source or in the index. Unchanged documents are not read again, nor are
    documents whose unchanged version ingest already found empty or unreadable (its notes). limits: by default
    the source's own, as at ingest."""
    notes = notes or {}
    limits = limits or getattr(source, "limits", DEFAULT_LIMITS)
    rows: list[InventoryRow] = []
    listed: set[str] = set()
    for entry in source.list():
        listed.add(entry.doc_id)
        row = _listed_row(source, entry, ledger.get(entry.doc_id), notes.get(entry.doc_id), limits)
        if row is not None:
            rows.append(row)
    rows += _unlisted_rows(ledger, listed, list(getattr(source, "unlisted", [])))
    return rows


def _listed_row(source: DocumentSource, entry: SourceEntry, known: LedgerEntry | None,
                noted: dict[str, Any] | None, limits: Limits = DEFAULT_LIMITS) -> InventoryRow | None:
    """The row for a document the source lists (None for one that is not a document to audit), reading it only
    when neither the ledger nor ingest's note already describes this version."""
    if not is_supported(entry.doc_id, limits):
        # Kept so a manifest entry for it is not called missing; the audit ignores it otherwise.
        return InventoryRow(entry.doc_id, True, False, error="unsupported file type", supported=False)
    indexed = {
        "indexed": known is not None,
        "indexed_hash": known.content_hash if known else None,
        "model_fingerprint": known.model_fingerprint if known else None,
        "ingested_at": known.ingested_at if known else None,
        "complete": known.complete if known else True,
    }
    if known and known.source_version == entry.version:
        return InventoryRow(entry.doc_id, True, source_hash=known.content_hash, metadata=dict(known.metadata),
                            **indexed)
    if noted and noted.get("source_version") == entry.version:
        if noted.get("kind") == "skipped" and not known:
            return None
        if noted.get("kind") == "error":
            return InventoryRow(entry.doc_id, True, error=str(noted.get("reason")),
                                metadata=dict(known.metadata) if known else {}, **indexed)
    try:
        check_size(entry.size, limits)
        data = source.read(entry.doc_id)
    except (OSError, DocumentError) as exc:  # unreadable, or refused (over a limit, a link out of the root)
        reason = f"cannot read: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        return InventoryRow(entry.doc_id, True, error=reason, metadata=dict(known.metadata) if known else {},
                            **indexed)
    try:
        doc = parse_bounded(entry.doc_id, data, limits)
    except Exception as exc:  # DocumentError, or a reader bug: the audit goes on either way
        if not isinstance(exc, DocumentError):
            exc = DocumentError(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, EmptyDocument) and exc.front_matter_only and not known:
            return None  # metadata-only pages (section indexes) are not documents to audit
        return InventoryRow(entry.doc_id, True, source_hash=content_hash(data), error=str(exc),
                            metadata=dict(known.metadata) if known else {}, **indexed)
    return InventoryRow(entry.doc_id, True, source_hash=doc.content_hash, metadata=doc.metadata, **indexed)


def _unlisted_rows(ledger: dict[str, LedgerEntry], listed: set[str],
                   unlisted: list[tuple[str, str]]) -> list[InventoryRow]:
    """Indexed documents the source did not list: gone, or in a folder that could not be listed."""
    rows: list[InventoryRow] = []
    for doc_id, known in ledger.items():
        blocked = unlisted_reason(doc_id, unlisted)
        if doc_id not in listed and blocked:
            # Present as far as we know, but unreadable: its folder could not be listed.
            rows.append(InventoryRow(doc_id, at_source=True, indexed=True, source_hash=known.content_hash,
                                     indexed_hash=known.content_hash, metadata=dict(known.metadata),
                                     error=f"cannot list its folder: {blocked}",
                                     model_fingerprint=known.model_fingerprint, ingested_at=known.ingested_at,
                                     complete=known.complete))
        elif doc_id not in listed:
            rows.append(InventoryRow(doc_id, at_source=False, indexed=True, indexed_hash=known.content_hash,
                                     metadata=dict(known.metadata), model_fingerprint=known.model_fingerprint,
                                     ingested_at=known.ingested_at))
    return rows
