"""Incremental ingest: list the source, skip what is unchanged, embed what changed, never lose the last good version.

New chunks of a changed document are written under new ids (the content hash is part of the id) before the old
ones are deleted, so an interrupted run leaves the previous version searchable; the ledger picks the newest
complete version and the next run removes leftovers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from rag_health.chunking import Chunk, Chunker, ends_mid_sentence, starts_mid_sentence
from rag_health.documents import (
    DocumentError,
    EmptyDocument,
    ParsedDocument,
    content_hash,
    is_supported,
    parse_document,
)
from rag_health.embedding import Embedder
from rag_health.sources import DocumentSource, SourceEntry, unlisted_reason
from rag_health.store import ChunkIndex, LedgerEntry


@dataclass
class IngestError:
    doc_id: str
    reason: str


@dataclass
class IngestResult:
    source: str
    documents: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    read: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0  # vectors already stored (same chunk id) instead of embedded again
    metadata_upgraded: int = 0  # unchanged documents whose chunks got the current metadata fields
    chunks_deleted: int = 0
    skipped: list[IngestError] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "warn" if self.errors else "pass"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["added"], data["changed"], data["removed"] = len(self.added), len(self.changed), len(self.removed)
        data["added_ids"], data["changed_ids"], data["removed_ids"] = self.added, self.changed, self.removed
        data["status"] = self.status
        return data


@dataclass
class _Pending:
    doc: ParsedDocument
    entry: SourceEntry
    chunks: list[Chunk]
    replaces: list[str]
    is_new: bool
    manifest_fields: dict[str, Any] = field(default_factory=dict)
    upgrade: bool = False  # same bytes and chunking, only the chunk metadata is rewritten


META_VERSION = 2  # 2: structure fields (section, headings, heading_lost, split_blocks, starts_mid_sentence)


def chunk_metadata(doc: ParsedDocument, chunk: Chunk, n_chunks: int, n_tokens: int, entry: SourceEntry,
                   index: ChunkIndex, ingested_at: str, chunker: Chunker,
                   manifest_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "doc_id": doc.doc_id,
        "content_hash": doc.content_hash,
        "source_version": entry.version,
        "chunk_index": chunk.index,
        "n_chunks": n_chunks,
        "n_chars": len(chunk.text),
        "n_tokens": n_tokens,
        "ends_mid_sentence": ends_mid_sentence(chunk.text),
        "starts_mid_sentence": starts_mid_sentence(chunk.text),
        # Structure found at ingest, where the whole document is at hand (see rag_health.structure).
        "section": chunk.section,
        "headings": chunk.headings,
        "heading_lost": chunk.heading_lost,
        "split_blocks": chunk.split_blocks,
        "structure_known": chunk.located,
        "title": doc.title,
        "ingested_at": ingested_at,
        "chunker": chunker.config,
        "meta_version": META_VERSION,
        **index.model.as_metadata(),
    }
    # Front-matter fields travel with each chunk (prefixed) so metadata filters and audits work from the store.
    # Manifest-supplied fields go under their own prefix: the audit always applies the live manifest instead.
    meta.update({f"mf_{k}": v for k, v in (manifest_fields or {}).items() if k not in doc.metadata})
    meta.update({f"fm_{k}": v for k, v in doc.metadata.items()})
    return meta


def version_key(content_hash: str, chunker: Chunker, index: ChunkIndex) -> str:
    """What a set of chunks was made from: the bytes, the chunking and the model. Part of every chunk id, so a
    re-chunk or a re-embed writes new ids instead of colliding with (and being ignored next to) the old ones."""
    recipe = hashlib.blake2b(f"{chunker.config}|{index.model.fingerprint}".encode(), digest_size=3).hexdigest()
    return f"{content_hash[:12]}{recipe}"


def chunk_id(doc: ParsedDocument, index: int, version: str) -> str:
    return f"{doc.doc_id}#{version}:{index:04d}"


def ingest(
    source: DocumentSource,
    index: ChunkIndex,
    embedder: Embedder,
    chunker: Chunker,
    *,
    only: list[str] | None = None,
    remove_deleted: bool = True,
    max_delete_fraction: float = 0.5,
    write_batch_chunks: int = 512,
    metadata_defaults: Callable[[str], dict[str, Any]] | None = None,
    known_vectors: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
) -> IngestResult:
    """Bring the index in line with the source. Returns what changed; errors never remove what was indexed.

    known_vectors: looks up vectors already computed for chunk ids (ids encode content, chunking and model, so
    an equal id means an equal vector), e.g. from the live collection when filling a temporary one."""
    started = time.perf_counter()
    index.check_model()
    result = IngestResult(source=source.uri)
    ledger = index.ledger()
    ingested_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seen: set[str] = set()
    pending: list[_Pending] = []
    pending_chunks = 0

    written: set[str] = set()

    def flush() -> None:
        nonlocal pending, pending_chunks
        if pending:
            written.update(_write(pending, index, embedder, chunker, ingested_at, result, known_vectors))
        pending, pending_chunks = [], 0

    touched: list[tuple[list[str], str]] = []  # (chunk ids, new source version) of re-hashed unchanged docs
    leftovers: list[str] = []
    notes = index.notes()
    new_notes: dict[str, dict[str, Any]] = {}

    def report(doc_id: str, kind: str, reason: str) -> None:
        (result.skipped if kind == "skipped" else result.errors).append(IngestError(doc_id, reason))

    def note(entry: SourceEntry, kind: str, reason: str) -> None:
        report(entry.doc_id, kind, reason)
        new_notes[entry.doc_id] = {"source_version": entry.version, "kind": kind, "reason": reason}

    for entry in source.list():
        if only and not _selected(entry.doc_id, only):
            continue
        if not is_supported(entry.doc_id):
            result.skipped.append(IngestError(entry.doc_id, "unsupported file type"))
            continue
        seen.add(entry.doc_id)
        result.documents += 1
        known = ledger.get(entry.doc_id)
        if known:
            leftovers += known.leftover_ids
        # A version written by other chunk settings or left half-written is rebuilt even if the bytes match; one
        # written before the chunk metadata it should carry (META_VERSION) is re-chunked, its vectors reused.
        same_recipe = known is not None and known.complete and known.chunker == chunker.config
        current = same_recipe and known.meta_version >= META_VERSION
        if current and known.source_version == entry.version:
            result.unchanged += 1
            continue
        noted = notes.get(entry.doc_id)
        if noted and noted.get("source_version") == entry.version and (not known or current):
            # Same bytes as when it was last found empty or unreadable: report it again without a download.
            report(entry.doc_id, str(noted["kind"]), str(noted["reason"]))
            continue
        try:
            data = source.read(entry.doc_id)
            result.read += 1
        except OSError as exc:  # not noted: a read failure is usually transient, try again next run
            result.errors.append(IngestError(entry.doc_id, f"cannot read: {exc.strerror or exc}"))
            continue
        if current and known.content_hash == content_hash(data):
            # Same bytes, new mtime (a touch, a checkout): remember the version so the next run skips the read.
            touched.append((known.chunk_ids, entry.version))
            result.unchanged += 1
            continue
        try:
            doc = parse_document(entry.doc_id, data)
            chunks = chunker.split(doc)
            if not chunks:
                raise DocumentError("no text to index after chunking")
        except EmptyDocument as exc:
            # An indexed document whose body vanished is suspicious: an error, and the last good version stays.
            note(entry, "skipped" if exc.front_matter_only and not known else "error", str(exc))
            continue
        except DocumentError as exc:
            note(entry, "error", str(exc))
            continue
        except Exception as exc:  # a parser bug on one document must not stop the run
            note(entry, "error", f"{type(exc).__name__}: {exc}")
            continue
        fields = metadata_defaults(entry.doc_id) if metadata_defaults else {}
        # Everything the store holds for this document may be replaced, leftovers of interrupted writes too.
        replaces = (known.chunk_ids + known.leftover_ids) if known else []
        upgrade = same_recipe and known.content_hash == doc.content_hash
        pending.append(_Pending(doc, entry, chunks, replaces, known is None, fields, upgrade))
        pending_chunks += len(chunks)
        if pending_chunks >= write_batch_chunks:
            flush()
    flush()

    # Batched bookkeeping: one Chroma call per batch, never one per document.
    # Leftovers of interrupted writes go, unless this run just wrote the same ids again.
    leftovers = [cid for cid in leftovers if cid not in written]
    if leftovers:
        index.delete(leftovers)
        result.chunks_deleted += len(leftovers)
    by_version: dict[str, list[str]] = {}
    for ids, version in touched:
        by_version.setdefault(version, []).extend(ids)
    for version, ids in by_version.items():
        index.update_metadata(ids, {"source_version": version})
    if new_notes:
        index.put_notes(new_notes)
    indexed_now = set(result.added) | set(result.changed)
    settled = [d for d in notes if d not in new_notes and (d in indexed_now or (d not in seen and not only))]
    if settled:
        index.delete_notes(settled)

    unlisted = list(getattr(source, "unlisted", []))
    for folder, reason in unlisted:
        result.errors.append(IngestError(folder, f"cannot list folder: {reason}; its documents stay indexed"))
    for pattern in only or []:
        if not any(_selected(d, [pattern]) for d in seen):
            result.errors.append(IngestError(pattern, "--only pattern matched no supported document at the source"))
    if remove_deleted and not only:
        protected = {d for d in ledger if unlisted_reason(d, unlisted)}
        _remove_deleted(ledger, seen | protected, index, result, max_delete_fraction)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _selected(doc_id: str, only: list[str]) -> bool:
    return any(doc_id == o or doc_id.startswith(o.rstrip("/") + "/") or fnmatchcase(doc_id, o) for o in only)


def _write(pending: list[_Pending], index: ChunkIndex, embedder: Embedder, chunker: Chunker,
           ingested_at: str, result: IngestResult,
           known_vectors: Callable[[list[str]], dict[str, np.ndarray]] | None = None) -> set[str]:
    """Embed all pending chunks in one batched call, add them, then delete the versions they replace."""
    texts = [c.embed_text for p in pending for c in p.chunks]
    token_counts = embedder.count_tokens(texts)
    ids = [chunk_id(p.doc, c.index, version_key(p.doc.content_hash, chunker, index))
           for p in pending for c in p.chunks]
    known = index.vectors_for(ids)  # same id: same bytes, chunking and model, so the same vector
    if known_vectors is not None and len(known) < len(ids):
        known.update(known_vectors([cid for cid in ids if cid not in known]))
    todo = [i for i, cid in enumerate(ids) if cid not in known]
    vectors = np.zeros((len(texts), embedder.info.dimension), dtype=np.float32)
    if todo:
        vectors[todo] = embedder.embed([texts[i] for i in todo])
    for i, cid in enumerate(ids):
        if cid in known:
            vectors[i] = known[cid]
    result.chunks_reused += len(texts) - len(todo)
    docs = [c.text for p in pending for c in p.chunks]
    metas = [chunk_metadata(p.doc, c, len(p.chunks), n_tokens, p.entry, index, ingested_at, chunker,
                            p.manifest_fields)
             for (p, c), n_tokens in zip(((p, c) for p in pending for c in p.chunks), token_counts)]
    # Rewriting a version the store already holds (half-written, or restored after a revert) reuses its ids;
    # Chroma's add() would silently keep the old rows, so upsert whenever ids overlap.
    written = set(ids)
    index.add(ids, vectors, docs, metas, upsert=any(cid in written for p in pending for cid in p.replaces))
    result.chunks_embedded += len(todo)
    stale = [cid for p in pending for cid in p.replaces if cid not in written]
    if stale:
        index.delete(stale)
        result.chunks_deleted += len(stale)
    for p in pending:
        if p.upgrade:
            result.unchanged += 1
            result.metadata_upgraded += 1
        else:
            (result.added if p.is_new else result.changed).append(p.doc.doc_id)
    return written


def _remove_deleted(ledger: dict[str, LedgerEntry], seen: set[str], index: ChunkIndex, result: IngestResult,
                    max_delete_fraction: float) -> None:
    gone = sorted(set(ledger) - seen)
    if not gone:
        return
    if ledger and (not seen or len(gone) / len(ledger) > max_delete_fraction):
        # A source that suddenly lists (almost) nothing is far more often a broken mount or a wrong path than a
        # real mass deletion: keep the index and say so.
        for doc_id in gone:
            result.errors.append(IngestError(
                doc_id,
                f"gone from the source but kept in the index: {len(gone)} of {len(ledger)} indexed documents "
                f"vanished at once (over the max_delete_fraction of {max_delete_fraction:.0%})",
            ))
        return
    doomed = [cid for doc_id in gone for cid in ledger[doc_id].chunk_ids + ledger[doc_id].leftover_ids]
    index.delete(doomed)
    result.chunks_deleted += len(doomed)
    result.removed.extend(gone)
