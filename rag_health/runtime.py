"""The composition root: every client and store a run uses is built here from settings, once, lazily, and handed
to the stages. One Runtime serves one run: the source is listed once, the manifest loaded once and the ledger
scanned once per state of the index (a stage that writes the index says so, and the next reader scans again).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from rag_health.archive import OUTBOX, RunArchive
from rag_health.artifacts import LocalArtifactStore, S3ArtifactStore
from rag_health.chunking import Chunker
from rag_health.documents import Limits
from rag_health.embedding import (
    Embedder,
    LazyEmbedder,
    ModelInfo,
    load_embedder,
    model_cache_for,
    read_model_info,
    resolve_backend,
)
from rag_health.inventory import InventoryRow, build_inventory
from rag_health.locks import LockSpace
from rag_health.manifest import Manifest, load_manifest
from rag_health.settings import SCRATCH_PREFIX, Settings
from rag_health.sources import DocumentSource, SourceEntry, open_source
from rag_health.store import ChromaAuth, ChunkIndex, LedgerEntry, open_client, stored_model


class ListedSource:
    """A source whose listing is taken once and reused by every stage of the run (reads still go to the source)."""

    def __init__(self, source: DocumentSource):
        self.inner = source
        self._entries: list[SourceEntry] | None = None

    def list(self) -> Iterator[SourceEntry]:
        if self._entries is None:
            self._entries = list(self.inner.list())
        return iter(self._entries)

    def read(self, doc_id: str) -> bytes:
        return self.inner.read(doc_id)

    def __getattr__(self, name: str) -> Any:  # uri, root, unlisted, rejected, limits, downloads: the source's own
        return getattr(self.inner, name)


class Runtime:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, chroma_client: Any = None,
                 s3: Any = None):
        self.settings = settings
        self._embedder = embedder
        self._chroma = chroma_client
        self._s3 = s3
        self.progress: Callable[[int, int, int], None] | None = None  # for long stages (rag_health.progress)
        self._ledger: dict[str, LedgerEntry] | None = None
        self._inventory: list[InventoryRow] | None = None

    @cached_property
    def embedder(self) -> Embedder:
        """The model, loaded when something is first embedded or tokenised: a run with nothing to embed (nothing
        changed, freshness, coverage) never loads it."""
        if self._embedder is not None:
            return self._embedder
        s = self.settings
        return LazyEmbedder(self.model_info, lambda: load_embedder(
            s.embed_model, s.embed_device, s.embed_batch_size, self.backend,
            str(model_cache_for(s))))

    @cached_property
    def model_info(self) -> ModelInfo:
        """The model's identity without loading it (rag_health.embedding.read_model_info)."""
        if self._embedder is not None:
            return self._embedder.info
        return read_model_info(self.settings.embed_model, self.backend)

    @cached_property
    def backend(self) -> str:
        """The embedding backend (rag_health.embedding.resolve_backend): the setting, or with "auto" the one the
        collection was built with; for a new one "onnx" on the CPU, torch on another device."""
        if self._embedder is not None:
            return self._embedder.info.backend
        s = self.settings
        stored = None
        if s.embed_backend == "auto":
            stored = stored_model(self.chroma, s.collection)
        return resolve_backend(s.embed_backend, stored, s.embed_model, s.embed_device)

    @cached_property
    def chroma(self) -> Any:
        s = self.settings
        auth = ChromaAuth(token=s.chroma_auth_token.get_secret_value() if s.chroma_auth_token else "",
                          header=s.chroma_auth_header,
                          basic=s.chroma_basic_auth.get_secret_value() if s.chroma_basic_auth else "")
        return self._chroma or _client(s.chroma_mode, str(Path(s.state_dir).resolve() / "chroma"), s.chroma_host,
                                       s.chroma_port, s.chroma_connect_timeout, auth, s.chroma_ssl,
                                       s.chroma_call_timeout)

    @cached_property
    def s3(self) -> Any:
        if self._s3 is None and (self.settings.s3_bucket or self.settings.docs.startswith("s3://")):
            from rag_health.artifacts import s3_client

            s = self.settings
            self._s3 = s3_client(s.s3_connect_timeout, s.s3_read_timeout, s.s3_max_attempts, s.s3_call_timeout)
        return self._s3

    @cached_property
    def index(self) -> ChunkIndex:
        return ChunkIndex(self.chroma, self.settings.collection, self.model_info)

    @cached_property
    def chunker(self) -> Chunker:
        s = self.settings
        return Chunker(self.embedder, s.chunk_size, s.chunk_overlap, s.chunk_strategy, redact_pii=s.redact_pii)

    @cached_property
    def _source(self) -> ListedSource:
        return ListedSource(open_source(self.settings.docs, self.s3, self.limits))

    @cached_property
    def limits(self) -> Limits:
        return Limits.from_settings(self.settings)

    def source(self) -> ListedSource:
        return self._source

    @cached_property
    def manifest(self) -> Manifest:
        return load_manifest(self.settings.effective_manifest(), self.settings.review_every_days)

    @cached_property
    def local_store(self) -> LocalArtifactStore:
        return LocalArtifactStore(Path(self.settings.state_dir))

    @cached_property
    def archive(self) -> RunArchive:
        s = self.settings
        links = {"base_url": s.report_base_url, "expiry_s": s.report_url_expiry_days * 86400}
        if s.s3_bucket:
            bucket = S3ArtifactStore(self.s3, s.s3_bucket, s.s3_prefix, s.s3_sse, s.s3_sse_kms_key_id)
            return RunArchive(bucket, self.local_store, outbox=LocalArtifactStore(Path(s.state_dir) / OUTBOX),
                              deadline=s.publish_deadline, **links)
        return RunArchive(self.local_store, **links)

    @cached_property
    def locks(self) -> LockSpace:
        """Where the collection lock lives (rag_health.locks): with the store it protects. A collection on a Chroma
        server that several workers write is guarded by a lease in the archive's bucket; an embedded collection,
        whose files only this machine can write, by a file lock in the state directory (an S3 outage never stops
        it)."""
        s = self.settings
        shared = s.chroma_mode == "http" and bool(s.s3_bucket)
        return LockSpace.for_settings(s, self.archive.store if shared else None)

    def ledger(self) -> dict[str, LedgerEntry]:
        if self._ledger is None:
            self._ledger = self.index.ledger()
        return self._ledger

    def inventory(self) -> list[InventoryRow]:
        """The source listing joined with what the store holds (ledger and notes); reads only what changed."""
        if self._inventory is None:
            self._inventory = build_inventory(self.source(), self.ledger(), self.index.notes())
        return self._inventory

    def new_run(self) -> Runtime:
        """Forget what was read for the previous run (listing, manifest, ledger) but keep the clients."""
        for name in ("_source", "manifest"):
            self.__dict__.pop(name, None)
        self.index_changed()
        return self

    def index_changed(self) -> None:
        """A stage wrote the collection: the next ledger or inventory read scans it again."""
        self._ledger = None
        self._inventory = None

    @contextmanager
    def scratch_indexes(self) -> Iterator[Callable[[str], ChunkIndex]]:
        """Throwaway collections for comparisons: yields new_index(label). Embedded mode puts them in a Chroma of
        their own in a temporary folder, removed afterwards (the live database never grows); server mode puts
        them on the same server under names no live collection can have, dropped afterwards."""
        created: list[ChunkIndex] = []
        folder = None
        if self.settings.chroma_mode == "http":
            client = self.chroma
        else:
            folder = tempfile.mkdtemp(prefix="rag-health-compare-")
            client = open_client("embedded", folder)

        def new_index(label: str) -> ChunkIndex:
            name = f"{SCRATCH_PREFIX}{secrets.token_hex(8)}-{re.sub(r'[^A-Za-z0-9._-]', '-', label)}"[:60] + "-x"
            if name == self.settings.collection:
                raise RuntimeError(f"scratch collection name {name!r} is the live collection's")
            created.append(ChunkIndex(client, name, self.model_info))
            return created[-1]

        try:
            yield new_index
        finally:
            for index in created:
                try:
                    index.drop()
                except Exception:  # already dropped, or the server went away: nothing live is at stake
                    pass
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


@lru_cache(maxsize=8)
def _client(mode: str, path: str, host: str, port: int, connect_timeout: float, auth: ChromaAuth, ssl: bool,
            call_timeout: float) -> Any:
    """One Chroma client per process and location: long-lived workers and every runtime of a process share it."""
    return open_client(mode, path, host, port, connect_timeout, auth=auth, ssl=ssl, call_timeout=call_timeout)


def build_runtime(settings: Settings, *, embedder: Embedder | None = None, chroma_client: Any = None,
                  s3: Any = None) -> Runtime:
    return Runtime(settings, embedder=embedder, chroma_client=chroma_client, s3=s3)
