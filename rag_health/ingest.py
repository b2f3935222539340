"""Incremental ingest: list the source, skip what is unchanged, embed what changed, never lose the last good version.

New chunks of a changed document are written under new ids (the content hash is part of the id) before the old
ones are deleted, so an interrupted run leaves the previous version searchable; the ledger picks the newest
complete version and the next run removes leftovers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from checks.ingest import ingest_status
from checks.pii import redact
from rag_health.chunking import Chunk, Chunker, ends_mid_sentence, redacted_metadata, starts_mid_sentence
from rag_health.documents import (
    DEFAULT_LIMITS,
    DocumentError,
    EmptyDocument,
    Limits,
    ParsedDocument,
    Rejected,
    content_hash,
    is_supported,
    parse_document,
)
from rag_health.embedding import Embedder
from rag_health.sources import DocumentSource, SourceEntry, check_size, unlisted_reason
from rag_health.store import ChunkIndex, LedgerEntry


@dataclass(frozen=True)
class IngestError:
    doc_id: str
    reason: str


@dataclass
class _Tally:
    """What an ingest pass counts while it runs; frozen into an IngestResult at the end."""

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


@dataclass(frozen=True)
class IngestResult:
    """The tally's fields, frozen (lists become tuples)."""

    source: str
    documents: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    read: int
    chunks_embedded: int
    chunks_reused: int
    metadata_upgraded: int
    chunks_deleted: int
    skipped: tuple[IngestError, ...]
    errors: tuple[IngestError, ...]
    seconds: float

    @classmethod
    def of(cls, tally: _Tally) -> IngestResult:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(tally).items()})

    @property
    def status(self) -> str:
        return ingest_status(self.errors)

    def sentences(self) -> list[str]:
        return [f"ingest error {e.doc_id}: {e.reason}" for e in self.errors]

    def to_json(self) -> dict[str, Any]:
        """The contract's ingest object: counts, with the ids of what was added, changed and removed."""
        data = asdict(self)
        data["added"], data["changed"], data["removed"] = len(self.added), len(self.changed), len(self.removed)
        data["added_ids"], data["changed_ids"], data["removed_ids"] = (list(self.added), list(self.changed),
                                                                       list(self.removed))
        data["skipped"], data["errors"] = [asdict(e) for e in self.skipped], [asdict(e) for e in self.errors]
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
    # No PII in stored metadata either, when asked (the text was redacted once, before splitting).
    shown = replace(doc, metadata=redacted_metadata(doc.metadata)) if chunker.redact_pii else doc
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
        "title": shown.title,
        "ingested_at": ingested_at,
        "chunker": chunker.config,
        "meta_version": META_VERSION,
        **index.model.as_metadata(),
    }
    # Front-matter fields travel with each chunk (prefixed) so metadata filters and audits work from the store.
    # Manifest-supplied fields go under their own prefix: the audit always applies the live manifest instead.
    meta.update({f"mf_{k}": v for k, v in (manifest_fields or {}).items() if k not in doc.metadata})
    meta.update({f"fm_{k}": v for k, v in shown.metadata.items()})
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
    limits: Limits | None = None,
) -> IngestResult:
    """Bring the index in line with the source. Returns what changed; errors never remove what was indexed.

    known_vectors: looks up vectors already computed for chunk ids (ids encode content, chunking and model, so
    an equal id means an equal vector), e.g. from the live collection when filling a temporary one.
    limits: per-document bounds; by default the source's own (the runtime builds it with the settings')."""
    started = time.perf_counter()
    index.check_model()
    run = _IngestRun(source, index, embedder, chunker, only=only, write_batch_chunks=write_batch_chunks,
                     metadata_defaults=metadata_defaults, known_vectors=known_vectors,
                     limits=limits or getattr(source, "limits", DEFAULT_LIMITS))
    for entry in source.list():
        run.visit(entry)
    run.flush()
    run.write_bookkeeping()
    run.check_listing(remove_deleted, max_delete_fraction)
    run.result.seconds = round(time.perf_counter() - started, 3)
    return IngestResult.of(run.result)


class _IngestRun:
    """The state one ingest pass builds up: what it has seen, what waits to be written, and the bookkeeping it
    owes the store at the end (done in batches, not per document)."""

    def __init__(self, source: DocumentSource, index: ChunkIndex, embedder: Embedder, chunker: Chunker, *,
                 only: list[str] | None, write_batch_chunks: int,
                 metadata_defaults: Callable[[str], dict[str, Any]] | None,
                 known_vectors: Callable[[list[str]], dict[str, np.ndarray]] | None, limits: Limits):
        self.source = source
        self.limits = limits
        self.index = index
        self.embedder = embedder
        self.chunker = chunker
        self.only = only
        self.write_batch_chunks = write_batch_chunks
        self.metadata_defaults = metadata_defaults
        self.known_vectors = known_vectors
        self.result = _Tally(source=source.uri)
        self.ledger = index.ledger()
        self.ingested_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.seen: set[str] = set()
        self.pending: list[_Pending] = []
        self.pending_chunks = 0
        self.written: set[str] = set()
        self.touched: list[tuple[list[str], str]] = []  # (chunk ids, new source version) of re-hashed unchanged docs
        self.leftovers: list[str] = []
        self.notes = index.notes()
        self.new_notes: dict[str, dict[str, Any]] = {}

    def report(self, doc_id: str, kind: str, reason: str) -> str:
        # A reason may quote the document (a bad front-matter value): no PII in what the run reports or stores.
        reason = redact(reason)
        (self.result.skipped if kind == "skipped" else self.result.errors).append(IngestError(doc_id, reason))
        return reason

    def note(self, entry: SourceEntry, kind: str, reason: str) -> None:
        reason = self.report(entry.doc_id, kind, reason)
        self.new_notes[entry.doc_id] = {"source_version": entry.version, "kind": kind, "reason": reason}

    def visit(self, entry: SourceEntry) -> None:
        """One listed document: skip it, report it again, remember its new version, or parse and queue it."""
        result = self.result
        if self.only and not _selected(entry.doc_id, self.only):
            return
        if not is_supported(entry.doc_id, self.limits):
            reason = "no extension (read_extensionless is off)" if is_supported(entry.doc_id) else \
                "unsupported file type"
            result.skipped.append(IngestError(entry.doc_id, reason))
            return
        self.seen.add(entry.doc_id)
        result.documents += 1
        known = self.ledger.get(entry.doc_id)
        if known:
            self.leftovers += known.leftover_ids
        # A version written by other chunk settings or left half-written is rebuilt even if the bytes match; one
        # written before the chunk metadata it should carry (META_VERSION) is re-chunked, its vectors reused.
        same_recipe = known is not None and known.complete and known.chunker == self.chunker.config
        current = same_recipe and known.meta_version >= META_VERSION
        if current and known.source_version == entry.version:
            result.unchanged += 1
            return
        noted = self.notes.get(entry.doc_id)
        if noted and noted.get("source_version") == entry.version and (not known or current):
            # Same bytes as when it was last found empty or unreadable: report it again without a download.
            self.report(entry.doc_id, str(noted["kind"]), str(noted["reason"]))
            return
        try:
            check_size(entry.size, self.limits)  # the listed size: an oversized document is never downloaded
            data = self.source.read(entry.doc_id)
            result.read += 1
        except Rejected as exc:  # over a limit, or a link out of the root: noted, not read again while unchanged
            self.note(entry, "error" if known else "skipped", str(exc))
            return
        except OSError as exc:  # not noted: a read failure is usually transient, try again next run
            result.errors.append(IngestError(entry.doc_id, f"cannot read: {exc.strerror or exc}"))
            return
        if current and known.content_hash == content_hash(data):
            # Same bytes, new mtime (a touch, a checkout): remember the version so the next run skips the read.
            self.touched.append((known.chunk_ids, entry.version))
            result.unchanged += 1
            return
        parsed = self.parse(entry, data, known)
        if parsed is not None:
            doc, chunks = parsed
            self.queue(entry, doc, chunks, known, same_recipe)

    def parse(self, entry: SourceEntry, data: bytes, known: LedgerEntry | None
              ) -> tuple[ParsedDocument, list[Chunk]] | None:
        """The document and its chunks, or None once the reason there are none is noted."""
        try:
            doc = parse_document(entry.doc_id, data, self.limits)
            chunks = self.chunker.split(doc)
            if not chunks:
                raise DocumentError("no text to index after chunking")
        except Rejected as exc:
            # Over a limit: skipped when new; an error when indexed, whose last good version stays searchable.
            self.note(entry, "error" if known else "skipped", str(exc))
            return None
        except EmptyDocument as exc:
            # An indexed document whose body vanished is suspicious: an error, and the last good version stays.
            self.note(entry, "skipped" if exc.front_matter_only and not known else "error", str(exc))
            return None
        except DocumentError as exc:
            self.note(entry, "error", str(exc))
            return None
        except Exception as exc:  # a parser bug on one document must not stop the run
            self.note(entry, "error", f"{type(exc).__name__}: {exc}")
            return None
        return doc, chunks

    def queue(self, entry: SourceEntry, doc: ParsedDocument, chunks: list[Chunk], known: LedgerEntry | None,
              same_recipe: bool) -> None:
        fields = self.metadata_defaults(entry.doc_id) if self.metadata_defaults else {}
        # Everything the store holds for this document may be replaced, leftovers of interrupted writes too.
        replaces = (known.chunk_ids + known.leftover_ids) if known else []
        upgrade = same_recipe and known.content_hash == doc.content_hash
        self.pending.append(_Pending(doc, entry, chunks, replaces, known is None, fields, upgrade))
        self.pending_chunks += len(chunks)
        if self.pending_chunks >= self.write_batch_chunks:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.written.update(_write(self.pending, self.index, self.embedder, self.chunker, self.ingested_at,
                                       self.result, self.known_vectors))
        self.pending, self.pending_chunks = [], 0

    def write_bookkeeping(self) -> None:
        """Batched bookkeeping: one Chroma call per batch, never one per document."""
        index, result = self.index, self.result
        # Leftovers of interrupted writes go, unless this run just wrote the same ids again.
        leftovers = [cid for cid in self.leftovers if cid not in self.written]
        if leftovers:
            index.delete(leftovers)
            result.chunks_deleted += len(leftovers)
        by_version: dict[str, list[str]] = {}
        for ids, version in self.touched:
            by_version.setdefault(version, []).extend(ids)
        for version, ids in by_version.items():
            index.update_metadata(ids, {"source_version": version})
        if self.new_notes:
            index.put_notes(self.new_notes)
        indexed_now = set(result.added) | set(result.changed)
        settled = [d for d in self.notes
                   if d not in self.new_notes and (d in indexed_now or (d not in self.seen and not self.only))]
        if settled:
            index.delete_notes(settled)

    def check_listing(self, remove_deleted: bool, max_delete_fraction: float) -> None:
        """What the listing as a whole says: folders that could not be listed, --only patterns that matched
        nothing, and documents gone from the source."""
        unlisted = list(getattr(self.source, "unlisted", []))
        for path, reason in getattr(self.source, "rejected", []):  # links out of the root, odd S3 keys
            if not self.only or _selected(path, self.only):
                self.result.skipped.append(IngestError(path, reason))
        for folder, reason in unlisted:
            self.result.errors.append(
                IngestError(folder, f"cannot list folder: {reason}; its documents stay indexed"))
        for pattern in self.only or []:
            if not any(_selected(d, [pattern]) for d in self.seen):
                self.result.errors.append(
                    IngestError(pattern, "--only pattern matched no supported document at the source"))
        if remove_deleted and not self.only:
            protected = {d for d in self.ledger if unlisted_reason(d, unlisted)}
            _remove_deleted(self.ledger, self.seen | protected, self.index, self.result, max_delete_fraction)


def _selected(doc_id: str, only: list[str]) -> bool:
    return any(doc_id == o or doc_id.startswith(o.rstrip("/") + "/") or fnmatchcase(doc_id, o) for o in only)


def _write(pending: list[_Pending], index: ChunkIndex, embedder: Embedder, chunker: Chunker,
           ingested_at: str, result: _Tally,
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


def _remove_deleted(ledger: dict[str, LedgerEntry], seen: set[str], index: ChunkIndex, result: _Tally,
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
