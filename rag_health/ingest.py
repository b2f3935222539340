"""Incremental ingest: list the source, skip what is unchanged, embed what changed, never lose the last good version.

New chunks of a changed document are written under new ids (the content hash is part of the id) before the old
ones are deleted, so an interrupted run leaves the previous version searchable; the ledger picks the newest
complete version and the next run removes leftovers.

A run plans before it writes: it lists the source, compares it with the ledger and hashes the documents whose listed
version changed. When more of the index would be removed or replaced than max_delete_fraction allows, and no human
approved exactly that change, the run holds: it writes nothing at all (additions included) and says so once.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from checks.ingest import held_sentence, ingest_status
from checks.pii import find_sensitive, redact
from rag_health.bounded_parse import parse_bounded
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
)
from rag_health.embedding import Embedder, embed_counted
from rag_health.errors import ConfigError, ModelMismatchError
from rag_health.sources import DocumentSource, SourceEntry, check_size, unlisted_reason
from rag_health.store import ChunkIndex, LedgerEntry


@dataclass(frozen=True)
class IngestError:
    doc_id: str
    reason: str


PLAN_CACHE_BYTES = 64 * 2**20  # bytes read while planning that are kept for the writing pass (beyond: read again)


def shard_of(doc_id: str, n: int) -> int:
    """The shard (0..n-1) a document belongs to: stable across runs, machines and Python versions."""
    return int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:8], 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" (shard i of n, counted from 0), as given on a command line, e.g. "1/4" -> (1, 4)."""
    i, sep, n = str(text).strip().partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None:
        raise ValueError(f"shard {text!r} is not of the form i/n (e.g. 0/4: the first of four shards)")
    return check_shard(shard)


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n} does not exist: n must be at least 1 and i one of 0..n-1")
    return i, n


@dataclass(frozen=True)
class MassChange:
    """What a run would destroy: indexed documents gone from the source (removed) and indexed documents whose
    content changed (replaced), against all documents the index holds. A touch (same bytes) or a re-chunk of the
    same bytes replaces nothing."""

    removed: tuple[str, ...]
    replaced: tuple[str, ...]
    indexed: int
    fraction: float
    threshold: float
    listed: int = 0  # supported documents the source listed, all shards

    @classmethod
    def of(cls, removed: Iterable[str], replaced: Iterable[str], indexed: int, threshold: float,
           listed: int) -> MassChange:
        removed, replaced = tuple(sorted(removed)), tuple(sorted(replaced))
        fraction = (len(removed) + len(replaced)) / indexed if indexed else 0.0
        return cls(removed, replaced, indexed, round(fraction, 6), threshold, listed)

    @property
    def doc_ids(self) -> frozenset[str]:
        return frozenset(self.removed) | frozenset(self.replaced)

    @property
    def over_threshold(self) -> bool:
        """Past the gate: more than the threshold, or a source that lists nothing while documents would go (a
        broken mount or a wrong path is far more common than a real mass deletion)."""
        if not self.indexed or not self.doc_ids:
            return False
        return self.fraction > self.threshold or (self.listed == 0 and bool(self.removed))

    def holds(self, approved: Approval | None) -> bool:
        """Whether a run must hold back this change: over the threshold and not covered by the approval."""
        return self.over_threshold and not (approved is not None and approved.covers(self))

    def sentence(self) -> str:
        return held_sentence(len(self.doc_ids), self.indexed, self.fraction, self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {"removed_ids": list(self.removed), "replaced_ids": list(self.replaced), "indexed": self.indexed,
                "fraction": self.fraction, "threshold": self.threshold, "listed": self.listed}


class OnMassChange(str, Enum):
    """What a run does with a change it holds back (more than max_delete_fraction removed or replaced): ask a
    person (a flow pauses), hold (keep the index and warn), or proceed. Translated from a flow parameter or the
    CLI's --allow-mass-delete here, once."""

    ASK = "ask"
    HOLD = "hold"
    PROCEED = "proceed"

    @classmethod
    def of(cls, value: str | OnMassChange | None, default: OnMassChange | None = None) -> OnMassChange:
        if value in (None, ""):
            return default or cls.HOLD
        try:
            return cls(value)
        except ValueError:
            from rag_health.errors import ConfigError

            raise ConfigError(f"on_mass_change: {value!r} is none of ask, hold, proceed") from None

    @classmethod
    def for_terminal(cls, allow_mass_delete: bool) -> OnMassChange:
        """The CLI: nobody can approve at a terminal later, so hold unless allowed now."""
        return cls.PROCEED if allow_mass_delete else cls.HOLD

    def approval(self, approved: Iterable[str] | None = ()) -> Approval | None:
        """The approval a run starts with: everything when it proceeds, else the ids a person approved (if any)."""
        if self is OnMassChange.PROCEED:
            return Approval.allow_all()
        ids = list(approved or ())
        return Approval.of(ids) if ids else None


@dataclass(frozen=True)
class Approval:
    """A human's go-ahead for a mass change: everything (--allow-mass-delete), or the document ids they were shown.
    An id approval covers a run only while its planned removals and replacements stay within those ids."""

    doc_ids: frozenset[str] = frozenset()
    everything: bool = False

    @classmethod
    def allow_all(cls) -> Approval:
        return cls(everything=True)

    @classmethod
    def of(cls, doc_ids: Iterable[str]) -> Approval:
        return cls(doc_ids=frozenset(doc_ids))

    def covers(self, change: MassChange) -> bool:
        return self.everything or change.doc_ids <= self.doc_ids

    def to_json(self) -> dict[str, Any]:
        return {"everything": self.everything, "doc_ids": sorted(self.doc_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        return cls(doc_ids=frozenset(data.get("doc_ids") or ()), everything=bool(data.get("everything")))


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
    held: MassChange | None = None  # the change this run held back; nothing was written
    shard: tuple[int, int] | None = None
    chunking: str = ""  # the chunking this run writes with
    rechunked: dict[str, int] = field(default_factory=dict)  # documents re-chunked, by the chunking they had


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
    held: MassChange | None = None
    shard: tuple[int, int] | None = None
    chunking: str = ""
    rechunked: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, tally: _Tally) -> IngestResult:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(tally).items()})

    @property
    def status(self) -> str:
        return ingest_status(self.errors, held=self.held is not None)

    def notices(self) -> list[str]:
        """What a person should know though nothing is wrong: documents re-embedded because the chunking changed
        (said once: the next run finds them current)."""
        from rag_health.chunking import DEFAULT_STRATEGY, PREVIOUS_DEFAULT

        out = []
        for old, n in sorted(self.rechunked.items()):
            line = (f"{n} document(s) indexed with chunking {old} were re-chunked and re-embedded with "
                    f"{self.chunking}")
            was, now = old.split("+")[0].split(":", 1), self.chunking.split("+")[0].split(":", 1)
            if was[0] == PREVIOUS_DEFAULT.split(":")[0] and now[0] == DEFAULT_STRATEGY and was[1:] == now[1:]:
                line += (": the default chunking is now structure-aware (auto); RAG_HEALTH_CHUNK_STRATEGY=sentence "
                         "keeps the previous one; probe and drift baselines still describe the old chunks until "
                         "promoted")
            out.append(line)
        return out

    def sentences(self) -> list[str]:
        held = [f"ingest {self.held.sentence()} (warn)"] if self.held else []
        return held + [f"ingest error {e.doc_id}: {e.reason} (warn)" for e in self.errors]

    def failures(self) -> list[str]:
        return []  # an ingest warns at worst: what could not be read keeps its last good version

    def to_json(self) -> dict[str, Any]:
        """The contract's ingest object: counts, with the ids of what was added, changed and removed; `held` (null
        or the change held back), `shard` (null or [i, n]), `chunking`, `rechunked` ({previous chunking: documents})
        and `notices` (sentences) were added later."""
        data = asdict(self)
        data["added"], data["changed"], data["removed"] = len(self.added), len(self.changed), len(self.removed)
        data["added_ids"], data["changed_ids"], data["removed_ids"] = (list(self.added), list(self.changed),
                                                                       list(self.removed))
        data["skipped"], data["errors"] = [asdict(e) for e in self.skipped], [asdict(e) for e in self.errors]
        data["held"] = self.held.to_json() if self.held else None
        data["shard"] = list(self.shard) if self.shard else None
        data["status"] = self.status
        data["notices"] = self.notices()
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
    approved: Approval | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> IngestResult:
    """Bring the index in line with the source. Returns what changed; errors never remove what was indexed.

    known_vectors: looks up vectors already computed for chunk ids (ids encode content, chunking and model, so
    an equal id means an equal vector), e.g. from the live collection when filling a temporary one.
    limits: per-document bounds; by default the source's own (the runtime builds it with the settings').
    approved: a human's go-ahead for a change over max_delete_fraction (see MassChange); without one covering
    the planned change, the run holds and writes nothing.
    shard: (i, n): only documents with shard_of(doc_id, n) == i, removals included. The gate counts this shard's
    change against its own share of the index (so n shards cannot each pass what is too much as a whole); a
    coordinator plans the whole change with plan_changes() and passes the approval to every shard.
    progress(documents done, documents planned, chunks embedded): called as the run goes (rag_health.progress)."""
    started = time.perf_counter()
    index.check_model()
    limits = limits or getattr(source, "limits", DEFAULT_LIMITS)
    plan = _plan(source, index, chunker, only=only, shard=shard, remove_deleted=remove_deleted,
                 max_delete_fraction=max_delete_fraction, limits=limits)
    run = _IngestRun(source, index, embedder, chunker, plan, only=only, write_batch_chunks=write_batch_chunks,
                     metadata_defaults=metadata_defaults, known_vectors=known_vectors, limits=limits)
    if plan.change.holds(approved):
        run.hold()
    else:
        total = len(plan.entries)
        try:
            for done, entry in enumerate(plan.entries, 1):
                run.visit(entry)
                if progress is not None:
                    progress(done - run.in_flight, total, run.wrote.chunks_embedded)  # queued ones are not done
            run.flush()
        except BaseException:
            run.finish(abort=True)  # the workers stop after their current batch; this error goes on
            raise
        run.finish()  # waits for the batches in flight; raises the first error of a worker thread
        if progress is not None:
            progress(total, total, run.result.chunks_embedded)
        run.write_bookkeeping()
        run.check_listing(remove_deleted)
    run.result.seconds = round(time.perf_counter() - started, 3)
    return IngestResult.of(run.result)


def plan_changes(
    source: DocumentSource,
    index: ChunkIndex,
    chunker: Chunker,
    *,
    only: list[str] | None = None,
    remove_deleted: bool = True,
    max_delete_fraction: float = 0.5,
    limits: Limits | None = None,
    shard: tuple[int, int] | None = None,
) -> MassChange:
    """What an ingest with these arguments would remove and replace, writing nothing: lists the source, compares it
    with the ledger and reads (to hash) only indexed documents whose listed version changed. `.holds(approved)`
    says whether a run would hold; `Approval.of(change.doc_ids)` is what a human approves."""
    return _plan(source, index, chunker, only=only, shard=shard, remove_deleted=remove_deleted,
                 max_delete_fraction=max_delete_fraction,
                 limits=limits or getattr(source, "limits", DEFAULT_LIMITS), cache_bytes=0).change


@dataclass
class _Plan:
    """The first pass of a run: the listing in scope, the store's view of it, and the change it amounts to."""

    entries: list[SourceEntry]  # selected by --only, in this shard, supported: what the run visits
    selected: set[str]  # supported documents --only selects, all shards (for the "matched nothing" check)
    skipped: list[IngestError]  # unsupported files of this shard
    ledger: dict[str, LedgerEntry]
    notes: dict[str, dict[str, Any]]
    shard: tuple[int, int] | None
    reads: int = 0
    outcomes: dict[str, bytes | Exception] = field(default_factory=dict)  # reads kept for the writing pass
    hashes: dict[str, str] = field(default_factory=dict)  # content hash of every document read while planning
    change: MassChange = MassChange((), (), 0, 0.0, 0.0)

    def mine(self, doc_id: str) -> bool:
        return self.shard is None or shard_of(doc_id, self.shard[1]) == self.shard[0]


def _recipe(known: LedgerEntry | None, chunker: Chunker) -> tuple[bool, bool]:
    """(same_recipe, current): the stored version was written complete by this chunking, and with the chunk
    metadata it should carry (META_VERSION)."""
    same_recipe = known is not None and known.complete and known.chunker == chunker.config
    return same_recipe, same_recipe and known.meta_version >= META_VERSION  # type: ignore[union-attr]


def _must_read(entry: SourceEntry, known: LedgerEntry | None, noted: dict[str, Any] | None,
               chunker: Chunker) -> bool:
    """Whether a run reads this document: not when the ledger holds this version, nor when it was noted bad or
    empty at this version."""
    _, current = _recipe(known, chunker)
    if current and known.source_version == entry.version:  # type: ignore[union-attr]
        return False
    return not (noted and noted.get("source_version") == entry.version and (not known or current)
                and _note_current(noted, chunker))


def _note_current(noted: dict[str, Any], chunker: Chunker) -> bool:
    """A note stands while it was written by this chunking and model: one written by an older version (which
    also noted a model that failed to load against each document) or another recipe is read again once."""
    return noted.get("chunker") == chunker.config and noted.get("model_fingerprint") == chunker.model_fingerprint


def _plan(source: DocumentSource, index: ChunkIndex, chunker: Chunker, *, only: list[str] | None,
          shard: tuple[int, int] | None, remove_deleted: bool, max_delete_fraction: float, limits: Limits,
          cache_bytes: int | None = None) -> _Plan:
    cache_bytes = PLAN_CACHE_BYTES if cache_bytes is None else cache_bytes
    if shard is not None:
        shard = check_shard(shard)
    plan = _Plan([], set(), [], index.ledger(), index.notes(), shard)
    listed = 0
    for entry in source.list():
        supported = is_supported(entry.doc_id, limits)
        listed += supported
        if only and not _selected(entry.doc_id, only):
            continue
        if supported:
            plan.selected.add(entry.doc_id)
        if not plan.mine(entry.doc_id):
            continue
        if not supported:
            reason = "no extension (read_extensionless is off)" if is_supported(entry.doc_id) else \
                "unsupported file type"
            plan.skipped.append(IngestError(entry.doc_id, reason))
            continue
        if chunker.redact_pii and (named := find_sensitive(entry.doc_id)):
            # Its id is its path: every chunk id and the ledger would carry what redact_pii keeps out of the index.
            plan.skipped.append(IngestError(redact(entry.doc_id), f"its file name holds {named[0].kind} "
                                            "(redact_pii is on, and a document's path is stored in every chunk id): "
                                            "rename the file to index it"))
            continue
        plan.entries.append(entry)
    replaced, cached = [], 0
    for entry in plan.entries:
        known = plan.ledger.get(entry.doc_id)
        if known is None or not _must_read(entry, known, plan.notes.get(entry.doc_id), chunker):
            continue  # a new document replaces nothing; its bytes are read when it is written
        try:
            check_size(entry.size, limits)  # the listed size: an oversized document is never downloaded
            data = source.read(entry.doc_id)
            plan.reads += 1
        except (Rejected, OSError) as exc:  # reported by the writing pass, which does not read it again
            plan.outcomes[entry.doc_id] = exc
            continue
        plan.hashes[entry.doc_id] = content_hash(data)
        if plan.hashes[entry.doc_id] != known.content_hash:
            replaced.append(entry.doc_id)
        if cached + len(data) <= cache_bytes:
            plan.outcomes[entry.doc_id] = data
            cached += len(data)
    removed: list[str] = []
    if remove_deleted and not only:
        unlisted = list(getattr(source, "unlisted", []))
        seen = {e.doc_id for e in plan.entries}
        removed = [d for d in plan.ledger
                   if d not in seen and plan.mine(d) and not unlisted_reason(d, unlisted)]
    # A shard judges its own share of the index: against the whole index its fraction would be about 1/n of the
    # real one, and n shards could each pass the gate while together they remove most of it.
    indexed = sum(1 for d in plan.ledger if plan.mine(d)) if shard else len(plan.ledger)
    plan.change = MassChange.of(removed, replaced, indexed, max_delete_fraction, listed)
    return plan


class _IngestRun:
    """The state one ingest pass builds up: what it has seen, what waits to be written, and the bookkeeping it
    owes the store at the end (done in batches, not per document)."""

    def __init__(self, source: DocumentSource, index: ChunkIndex, embedder: Embedder, chunker: Chunker,
                 plan: _Plan, *, only: list[str] | None, write_batch_chunks: int,
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
        self.plan = plan
        self.result = _Tally(source=source.uri, skipped=list(plan.skipped), read=plan.reads, shard=plan.shard,
                             chunking=chunker.config)
        self.ledger = plan.ledger
        self.ingested_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.seen: set[str] = set()
        self.pending: list[_Pending] = []
        self.pending_chunks = 0
        self.queued_docs = 0  # handed to the write pipeline (queued or pending), of which wrote.documents are done
        self.wrote = _Tally(source=source.uri)  # counted by the storing thread only; merged in finish()
        self.written: set[str] = set()
        self._pipeline: _Pipeline | None = None
        self.touched: list[tuple[list[str], str]] = []  # (chunk ids, new source version) of re-hashed unchanged docs
        self.leftovers: list[str] = []
        self.notes = plan.notes
        self.new_notes: dict[str, dict[str, Any]] = {}

    def report(self, doc_id: str, kind: str, reason: str) -> str:
        # A reason may quote the document (a bad front-matter value): no PII in what the run reports or stores.
        reason = redact(reason)
        (self.result.skipped if kind == "skipped" else self.result.errors).append(IngestError(doc_id, reason))
        return reason

    def note(self, entry: SourceEntry, kind: str, reason: str) -> None:
        reason = self.report(entry.doc_id, kind, reason)
        self.new_notes[entry.doc_id] = {"source_version": entry.version, "kind": kind, "reason": reason,
                                        "chunker": self.chunker.config, "model_fingerprint": self.index.model.fingerprint}

    def visit(self, entry: SourceEntry) -> None:
        """One planned document: skip it, report it again, remember its new version, or parse and queue it."""
        result = self.result
        self.seen.add(entry.doc_id)
        result.documents += 1
        known = self.ledger.get(entry.doc_id)
        if known:
            self.leftovers += known.leftover_ids
        # A version written by other chunk settings or left half-written is rebuilt even if the bytes match; one
        # written before the chunk metadata it should carry (META_VERSION) is re-chunked, its vectors reused.
        same_recipe, current = _recipe(known, self.chunker)
        noted = self.notes.get(entry.doc_id)
        if not _must_read(entry, known, noted, self.chunker):
            if noted and not (current and known.source_version == entry.version):  # type: ignore[union-attr]
                # Same bytes as when it was last found empty or unreadable: report it again without a download.
                self.report(entry.doc_id, str(noted["kind"]), str(noted["reason"]))
            else:
                result.unchanged += 1
            return
        try:
            data = self.fetch(entry)
        except Rejected as exc:  # over a limit, or a link out of the root: noted, not read again while unchanged
            self.note(entry, "error" if known else "skipped", str(exc))
            return
        except OSError as exc:  # not noted: a read failure is usually transient, try again next run
            result.errors.append(IngestError(entry.doc_id, f"cannot read: {exc.strerror or exc}"))
            return
        if not self.as_planned(entry.doc_id, data):
            result.errors.append(IngestError(entry.doc_id, "changed at the source while this run was planning; "
                                                           "left as indexed for the next run"))
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

    def fetch(self, entry: SourceEntry) -> bytes:
        """The document's bytes: those the plan kept (or the error it met), else a read from the source."""
        planned = self.plan.outcomes.pop(entry.doc_id, None)
        if isinstance(planned, Exception):
            raise planned
        if planned is not None:
            return planned
        check_size(entry.size, self.limits)  # the listed size: an oversized document is never downloaded
        data = self.source.read(entry.doc_id)
        self.result.read += 1
        return data

    def as_planned(self, doc_id: str, data: bytes) -> bool:
        """Bytes read again after planning are what the plan hashed, or a replacement the plan counted: a document
        that changed in between is not replaced behind the gate's back."""
        planned = self.plan.hashes.get(doc_id)
        return planned is None or doc_id in self.plan.change.replaced or content_hash(data) == planned

    def parse(self, entry: SourceEntry, data: bytes, known: LedgerEntry | None
              ) -> tuple[ParsedDocument, list[Chunk]] | None:
        """The document and its chunks, or None once the reason there are none is noted."""
        try:
            doc = parse_bounded(entry.doc_id, data, self.limits)
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
        except (ConfigError, ModelMismatchError):
            # The model or the settings, not this document (a model that cannot load, a backend that cannot run on
            # this device): the run stops and nothing is noted against the document.
            raise
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
        if known and known.complete and known.chunker and known.chunker != self.chunker.config:
            self.result.rechunked[known.chunker] = self.result.rechunked.get(known.chunker, 0) + 1
        self.pending.append(_Pending(doc, entry, chunks, replaces, known is None, fields, upgrade))
        self.pending_chunks += len(chunks)
        self.queued_docs += 1
        if self.pending_chunks >= self.write_batch_chunks:
            self.flush()

    @property
    def in_flight(self) -> int:
        """Documents read and chunked whose chunks are not stored yet."""
        return self.queued_docs - self.wrote.documents

    def flush(self) -> None:
        """Hand the pending batch to the pipeline: it is embedded while the next one is read and chunked, and
        stored while the one after is embedded."""
        if self.pending:
            if self._pipeline is None:
                # One Chroma call at a time: embedded Chroma can fail a read that meets the first write of a
                # collection ("Error creating hnsw segment reader: Nothing found on disk").
                store_lock = threading.Lock()
                self._pipeline = _Pipeline([
                    lambda batch: _embed(batch, self.index, self.embedder, self.chunker, self.known_vectors,
                                         store_lock),
                    lambda batch: self.written.update(_store(batch, self.index, self.chunker, self.ingested_at,
                                                             self.wrote, store_lock)),
                ])
            self._pipeline.put(self.pending)
        self.pending, self.pending_chunks = [], 0

    def finish(self, abort: bool = False) -> None:
        """Wait for every batch handed over, then count what was stored into the run's tally. On an error (here or
        in a worker) the batches not yet stored are dropped, as a crash would drop them: the store keeps its last
        complete versions and the ledger says what is there."""
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            try:
                pipeline.close(abort)
            finally:
                w, r = self.wrote, self.result
                r.added.extend(w.added)
                r.changed.extend(w.changed)
                r.unchanged += w.unchanged
                for name in ("chunks_embedded", "chunks_reused", "metadata_upgraded", "chunks_deleted"):
                    object.__setattr__(r, name, getattr(r, name) + getattr(w, name))

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
        settled = [d for d in self.notes if d not in self.new_notes and self.plan.mine(d)
                   and (d in indexed_now or (d not in self.seen and not self.only))]
        if settled:
            index.delete_notes(settled)

    def check_listing(self, remove_deleted: bool) -> None:
        """What the listing as a whole says: folders that could not be listed, --only patterns that matched
        nothing, and documents gone from the source (removed here: the plan let them go)."""
        unlisted = list(getattr(self.source, "unlisted", []))
        for path, reason in getattr(self.source, "rejected", []):  # links out of the root, odd S3 keys
            if (not self.only or _selected(path, self.only)) and self.plan.mine(path):
                self.result.skipped.append(IngestError(path, reason))
        for folder, reason in unlisted:
            self.result.errors.append(
                IngestError(folder, f"cannot list folder: {reason}; its documents stay indexed"))
        for pattern in self.only or []:
            if not any(_selected(d, [pattern]) for d in self.plan.selected):
                self.result.errors.append(
                    IngestError(pattern, "--only pattern matched no supported document at the source"))
        if remove_deleted and self.plan.change.removed:
            self.remove(self.plan.change.removed)

    def remove(self, gone: tuple[str, ...]) -> None:
        doomed = [cid for doc_id in gone for cid in self.ledger[doc_id].chunk_ids + self.ledger[doc_id].leftover_ids]
        self.index.delete(doomed)
        self.result.chunks_deleted += len(doomed)
        self.result.removed.extend(gone)

    def hold(self) -> None:
        """The change is over the gate and not approved: write nothing (no additions either, so the index stays
        exactly the last approved state), report what was found while planning, and the held change once."""
        self.result.held = self.plan.change
        self.result.documents = len(self.plan.entries)
        for doc_id, outcome in self.plan.outcomes.items():
            if isinstance(outcome, Rejected):  # not noted: noting is a write
                self.report(doc_id, "error", str(outcome))
            elif isinstance(outcome, OSError):
                self.result.errors.append(IngestError(doc_id, f"cannot read: {outcome.strerror or outcome}"))
        self.check_listing(remove_deleted=False)


def _selected(doc_id: str, only: list[str]) -> bool:
    return any(doc_id == o or doc_id.startswith(o.rstrip("/") + "/") or fnmatchcase(doc_id, o) for o in only)


class _Pipeline:
    """Worker threads behind the reading thread, one per step (embed, then store), joined by queues of one batch:
    the model embeds one batch while Chroma stores the previous one and the reader chunks the next, and at most
    five batches are in memory (being chunked, queued, embedded, queued, stored). Batches keep their order. The first error stops the work: later batches are
    dropped, and the error is raised in the reading thread at its next hand-over or at close()."""

    _STOP = object()

    def __init__(self, steps: list[Callable[[Any], Any]]):
        self.error: BaseException | None = None
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in steps]
        self._threads = [threading.Thread(target=self._loop, args=(i, step), name=f"rag-health-ingest-{i}",
                                          daemon=True) for i, step in enumerate(steps)]
        for thread in self._threads:
            thread.start()

    def _loop(self, i: int, step: Callable[[Any], Any]) -> None:
        inbox = self._queues[i]
        outbox = self._queues[i + 1] if i + 1 < len(self._queues) else None
        while True:
            item = inbox.get()
            if item is self._STOP:
                if outbox is not None:
                    outbox.put(self._STOP)
                return
            if self.error is not None:
                continue  # drain: nothing after a failure is written
            try:
                out = step(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                self.error = self.error or exc
                continue
            if outbox is not None:
                outbox.put(out)

    def put(self, item: Any) -> None:
        self._raise()
        self._queues[0].put(item)

    def close(self, abort: bool = False) -> None:
        """Wait for every batch and raise the first error. abort: the reading thread failed; the workers stop after
        their current batch and nothing is raised here (the reading thread's error goes on)."""
        if abort and self.error is None:
            self.error = _Aborted()
        try:
            self._queues[0].put(self._STOP)
            for thread in self._threads:
                thread.join()
        except BaseException:  # interrupted while waiting (Ctrl-C, a timeout): stop after the current batch
            if self.error is None:
                self.error = _Aborted()
            self._queues[0].put(self._STOP)  # the workers drain once error is set, so there is room for it
            for thread in self._threads:
                thread.join()
            raise
        if not abort:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


class _Aborted(Exception):
    """Set as a pipeline's error when its reading thread failed: the workers write nothing more."""


@dataclass
class _Embedded:
    """A batch between the two steps: its chunks' ids, vectors and token counts."""

    pending: list[_Pending]
    ids: list[str]
    vectors: np.ndarray
    token_counts: list[int]
    embedded: int


def _embed(pending: list[_Pending], index: ChunkIndex, embedder: Embedder, chunker: Chunker,
           known_vectors: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
           store_lock: threading.Lock | None = None) -> _Embedded:
    """Vectors for a batch: those the store already holds under the same id (same bytes, chunking and model, so
    the same vector) are reused, the rest embedded in one call that also counts their tokens. A chunk id starts
    with its document's id, so only ids the ledger lists for these documents (what each replaces) can be stored
    already: a new or changed document costs no lookup."""
    lock = store_lock or threading.Lock()
    texts = [c.embed_text for p in pending for c in p.chunks]
    ids = [chunk_id(p.doc, c.index, version_key(p.doc.content_hash, chunker, index))
           for p in pending for c in p.chunks]
    stored = {cid for p in pending for cid in p.replaces}
    known: dict[str, np.ndarray] = {}
    if any(cid in stored for cid in ids):
        with lock:
            known = index.vectors_for([cid for cid in ids if cid in stored])
    if known_vectors is not None and len(known) < len(ids):
        with lock:
            known.update(known_vectors([cid for cid in ids if cid not in known]))
    todo = [i for i, cid in enumerate(ids) if cid not in known]
    reused = [i for i, cid in enumerate(ids) if cid in known]
    vectors = np.zeros((len(texts), embedder.info.dimension), dtype=np.float32)
    counts = [0] * len(texts)
    if todo:
        fresh, fresh_counts = embed_counted(embedder, [texts[i] for i in todo])
        vectors[todo] = fresh
        for i, n in zip(todo, fresh_counts):
            counts[i] = n
    if reused:
        for i, n in zip(reused, embedder.count_tokens([texts[i] for i in reused])):
            counts[i] = n
            vectors[i] = known[ids[i]]
    return _Embedded(pending, ids, vectors, counts, len(todo))


def _store(batch: _Embedded, index: ChunkIndex, chunker: Chunker, ingested_at: str, result: _Tally,
           store_lock: threading.Lock | None = None) -> set[str]:
    """Add a batch's chunks, then delete the versions they replace; count it."""
    lock = store_lock or threading.Lock()
    pending, ids = batch.pending, batch.ids
    docs = [c.text for p in pending for c in p.chunks]
    metas = [chunk_metadata(p.doc, c, len(p.chunks), n_tokens, p.entry, index, ingested_at, chunker,
                            p.manifest_fields)
             for (p, c), n_tokens in zip(((p, c) for p in pending for c in p.chunks), batch.token_counts)]
    # Rewriting a version the store already holds (half-written, or restored after a revert) reuses its ids;
    # Chroma's add() would silently keep the old rows, so upsert whenever ids overlap.
    written = set(ids)
    stale = [cid for p in pending for cid in p.replaces if cid not in written]
    with lock:
        index.add(ids, batch.vectors, docs, metas, upsert=any(cid in written for p in pending for cid in p.replaces))
        if stale:
            index.delete(stale)
    result.chunks_embedded += batch.embedded
    result.chunks_reused += len(ids) - batch.embedded
    result.chunks_deleted += len(stale)
    for p in pending:
        if p.upgrade:
            result.unchanged += 1
            result.metadata_upgraded += 1
        else:
            (result.added if p.is_new else result.changed).append(p.doc.doc_id)
    result.documents += len(pending)
    return written
