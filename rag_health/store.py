"""The Chroma collection and the ledger of what is indexed, read back from chunk metadata alone.

Every chunk carries its document id, content hash, source version and the embedding model's fingerprint, so
any worker pointed at the same Chroma can tell what is indexed without a local side file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag_health.deadlines import CallTimeout
from rag_health.embedding import ModelInfo
from rag_health.errors import ChromaUnreachable, ConfigError, ModelMismatchError, StoreWriteError

PAGE = 2000
MAX_QUERY_HITS = 20000  # query vectors x results per Chroma call (SQLite's variable limit is 32,766)


@dataclass
class LedgerEntry:
    """What the index holds for one document (its current version) plus leftovers of interrupted writes."""

    doc_id: str
    content_hash: str
    source_version: str
    ingested_at: str
    model_fingerprint: str
    chunk_ids: list[str]
    metadata: dict[str, Any]
    leftover_ids: list[str] = field(default_factory=list)
    complete: bool = True  # every chunk of the version is present (n_chunks of n_chunks)
    chunker: str = ""
    meta_version: int = 1  # the chunk metadata layout it was written with (rag_health.ingest.META_VERSION)


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    doc_id: str
    text: str
    metadata: dict[str, Any]


@lru_cache(maxsize=1)
def scrub_freed_memory() -> bool:
    """Have glibc overwrite memory when it is freed (mallopt M_PERTURB), in every process that writes to Chroma.
    Embedded Chroma writes parts of its HNSW files (length.bin) from buffers it never fully initialises: they can
    carry whatever the process freed before, and a test found a raw IBAN from a document (redacted everywhere
    else) in one. Scrubbed memory never carries freed text into a file. False where there is no glibc."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-6, 0xA5))  # M_PERTURB
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ChromaAuth:
    """How a Chroma server wants to be authenticated (settings chroma_auth_token / chroma_basic_auth, from the
    environment only): through chromadb's own client auth providers. Never written anywhere."""

    token: str = ""
    header: str = "Authorization"  # or X-Chroma-Token
    basic: str = ""  # user:password

    def client_settings(self) -> dict[str, Any]:
        if self.token:
            return {"chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
                    "chroma_client_auth_credentials": self.token,
                    "chroma_auth_token_transport_header": self.header}
        if self.basic:
            return {"chroma_client_auth_provider": "chromadb.auth.basic_authn.BasicAuthClientProvider",
                    "chroma_client_auth_credentials": self.basic}
        return {}


def open_client(mode: str, path: str | Path, host: str = "127.0.0.1", port: int = 8000,
                connect_timeout: float = 5.0, *, auth: ChromaAuth | None = None, ssl: bool = False,
                call_timeout: float | None = None) -> Any:
    """Embedded PersistentClient at path, or (mode "http") an HttpClient for a shared Chroma server, after
    checking within connect_timeout that the server answers. Either way wrapped so every call is bounded
    (call_timeout, server mode) and its failures name the server or the database folder (ChromaCalls)."""
    import chromadb

    extra = (auth or ChromaAuth()).client_settings() if mode == "http" else {}
    chroma_settings = chromadb.Settings(anonymized_telemetry=False, **extra)
    if mode == "http":
        from rag_health.deadlines import within

        where, bound = f"Chroma server at {host}:{port}", "setting chroma_connect_timeout, chroma_call_timeout"
        # A server that answers the first bytes and then stalls trips no per-packet timeout: both are bounded.
        within(lambda: check_server(host, port, connect_timeout, ssl), connect_timeout * 2 + 1,
               f"{where}: heartbeat", bound)
        try:
            client = within(lambda: chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings),
                            call_timeout, f"{where}: handshake", bound)
        except CallTimeout:
            raise
        except Exception as exc:  # it answered the heartbeat but not the client's own handshake
            raise ConfigError(f"Chroma server at {host}:{port} is not usable: {type(exc).__name__}: "
                              f"{_auth_hint(exc)}") from exc
        _bound_session(client, connect_timeout, call_timeout)
        return ChromaCalls(client, where, call_timeout)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return ChromaCalls(chromadb.PersistentClient(path=str(path), settings=chroma_settings),
                       f"embedded Chroma at {path}", None, folder=path)


def _bound_session(client: Any, connect_timeout: float, call_timeout: float | None) -> None:
    """chromadb's HTTP session waits forever (timeout=None): a call that overran its wall-clock bound would keep
    its thread and socket for good. A read timeout of the call bound lets such a thread end. Best effort: the
    session is chromadb's own attribute, absent from other client versions."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is None or not call_timeout:
        return
    import httpx

    session.timeout = httpx.Timeout(call_timeout, connect=connect_timeout)


def _auth_hint(exc: BaseException) -> str:
    text = str(exc)
    if any(w in text.lower() for w in ("unauthorized", "forbidden", "401", "403", "authentication")):
        return (f"{text} (the server wants credentials: RAG_HEALTH_CHROMA_AUTH_TOKEN or RAG_HEALTH_CHROMA_BASIC_AUTH "
                "in the environment)")
    return text


class ChromaCalls:
    """A Chroma client, or one of its collections, whose calls are bounded in time (server mode: a server that
    stops answering mid-request would otherwise hang the run) and whose failures say where: "[Errno 111]
    Connection refused" becomes a connection error naming the server, and "Error in compaction" one naming the
    database folder and the free space on its disk. Everything else passes through."""

    _RETURNS_COLLECTION = frozenset({"get_or_create_collection", "get_collection", "create_collection"})

    def __init__(self, target: Any, where: str, timeout: float | None, folder: Path | None = None):
        self._target, self._where, self._timeout, self._folder = target, where, timeout, folder

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name.startswith("_") or not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from rag_health.deadlines import within

            try:
                result = within(lambda: attr(*args, **kwargs), self._timeout, f"{self._where}: {name}",
                                "setting chroma_call_timeout, RAG_HEALTH_CHROMA_CALL_TIMEOUT")
            except Exception as exc:
                explained = self._explained(exc)
                if explained is exc:
                    raise  # as it was: its own cause chain (a wrapped 503 stays transient)
                raise explained from exc
            if name in self._RETURNS_COLLECTION:
                return ChromaCalls(result, self._where, self._timeout, self._folder)
            return result

        return call

    def _explained(self, exc: Exception) -> Exception:
        from rag_health.errors import CallTimeout

        if isinstance(exc, (CallTimeout, ConfigError, ModelMismatchError)) or self._where in str(exc):
            return exc
        text = f"{type(exc).__name__}: {exc}"
        if self._folder is None and _is_transport(exc):
            return ChromaUnreachable(f"{self._where}: {text}")
        if self._folder is not None and _out_of_space(exc):
            import shutil

            free = shutil.disk_usage(self._folder).free // 2**20
            return StoreWriteError(f"{self._where}: {text} ({free:,} MB free on its disk)")
        return exc


_NO_SPACE = ("no space left on device", "database or disk is full", "errno 28", "error in compaction",
             "failed to apply logs to the hnsw segment writer")


def _out_of_space(exc: BaseException) -> bool:
    """Whether embedded Chroma failed to write its files: ENOSPC, or the phrases Chroma and SQLite use for it.
    Never a lookup that found nothing (a collection or document named "disk-..." must not read as a full disk)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "NotFoundError":
            return False
        if isinstance(exc, OSError) and exc.errno == 28:
            return True
        if any(p in f"{type(exc).__name__}: {exc}".lower() for p in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _is_transport(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return isinstance(exc, ConnectionError)
    return isinstance(exc, (httpx.TransportError, ConnectionError))


def check_server(host: str, port: int, timeout: float, ssl: bool = False) -> None:
    """Fail fast, naming the server, when nothing answers an HTTP request at host:port within timeout. The
    chromadb client itself waits far longer and its error names neither host nor port."""
    import http.client

    conn = (http.client.HTTPSConnection if ssl else http.client.HTTPConnection)(host, port, timeout=timeout)
    try:
        conn.request("GET", "/api/v2/heartbeat")
        conn.getresponse().read(1024)  # any HTTP answer will do: the client reports auth and version problems
    except (OSError, http.client.HTTPException) as exc:
        reason = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else \
            f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"Chroma server at {host}:{port} is not reachable: {reason} "
                          "(settings chroma_host, chroma_port, chroma_connect_timeout)") from exc
    finally:
        conn.close()


def stored_model(client: Any, name: str) -> dict[str, Any] | None:
    """The model metadata a collection was created with, or None when there is no such collection (nothing is
    created: reading which backend a collection uses must not make one)."""
    from chromadb.errors import NotFoundError

    try:
        collection = client.get_collection(name=name, embedding_function=None)
    except (NotFoundError, ValueError):  # ValueError: what older Chroma raised for a missing collection
        return None
    return dict(collection.metadata or {})


class ChunkIndex:
    """One Chroma collection bound to one embedding model."""

    def __init__(self, client: Any, name: str, model: ModelInfo):
        scrub_freed_memory()
        self.client = client
        self.model = model
        self.collection = client.get_or_create_collection(
            name=name,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", **model.as_metadata()},
        )
        self.max_batch = int(client.get_max_batch_size()) if hasattr(client, "get_max_batch_size") else 5000
        self._notes_name = f"{name}-notes"
        self._notes = None

    # --- notes: source versions that have no indexed chunks (skipped or unreadable) -------------------------
    # Kept in Chroma too, so every worker can skip re-reading an unchanged bad or empty document. Chroma needs a
    # vector per record: a constant one-dimensional placeholder, in a collection nothing ever queries.

    @property
    def notes_collection(self):
        if self._notes is None:
            self._notes = self.client.get_or_create_collection(
                name=self._notes_name, embedding_function=None, metadata={"purpose": "rag-health document notes"})
        return self._notes

    def notes(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.notes_collection.get(include=["metadatas"], limit=PAGE, offset=offset)
            if not page["ids"]:
                return out
            out.update(zip(page["ids"], page["metadatas"]))
            offset += len(page["ids"])

    def put_notes(self, notes: dict[str, dict[str, Any]]) -> None:
        ids = list(notes)
        for start in range(0, len(ids), self.max_batch):
            batch = ids[start:start + self.max_batch]
            self.notes_collection.upsert(ids=batch, embeddings=np.ones((len(batch), 1), dtype=np.float32),
                                         metadatas=[notes[i] for i in batch])

    def delete_notes(self, doc_ids: Sequence[str]) -> None:
        ids = list(doc_ids)
        for start in range(0, len(ids), self.max_batch):
            self.notes_collection.delete(ids=ids[start:start + self.max_batch])

    @property
    def name(self) -> str:
        return self.collection.name

    def drop(self) -> None:
        """Delete the collection and its notes (for throwaway collections only)."""
        self.client.delete_collection(self.name)
        if self._notes is not None:
            self.client.delete_collection(self._notes_name)
            self._notes = None

    def stored_model(self) -> dict[str, Any]:
        meta = self.collection.metadata or {}
        return {k: meta.get(k) for k in ("model_name", "model_dimension", "model_max_tokens", "model_fingerprint")}

    def check_model(self) -> None:
        """Refuse to write vectors of one model into a collection built with another."""
        stored = self.stored_model()
        if stored.get("model_fingerprint") not in (None, self.model.fingerprint) or (
            stored.get("model_dimension") not in (None, self.model.dimension)
        ):
            raise ModelMismatchError(
                f"collection {self.name!r} was built with {stored.get('model_name')} "
                f"(dimension {stored.get('model_dimension')}, fingerprint {stored.get('model_fingerprint')}), "
                f"not {self.model.name} (dimension {self.model.dimension}, fingerprint {self.model.fingerprint}); "
                "use another collection or re-ingest into a new one"
            )

    def count(self) -> int:
        return self.collection.count()

    # --- reading -------------------------------------------------------------------------------------------

    def iter_metadata(self) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = 0
        while True:
            page = self.collection.get(include=["metadatas"], limit=PAGE, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            yield from zip(ids, page["metadatas"])
            offset += len(ids)

    def iter_chunks(
        self, with_embeddings: bool = False, page_size: int = PAGE
    ) -> Iterator[tuple[list[ChunkRecord], np.ndarray | None]]:
        """Pages of chunks (and their vectors), so a whole corpus never sits in memory at once."""
        include = ["metadatas", "documents"] + (["embeddings"] if with_embeddings else [])
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=page_size, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            records = [
                ChunkRecord(chunk_id=i, doc_id=str(m.get("doc_id")), text=d or "", metadata=m)
                for i, m, d in zip(ids, page["metadatas"], page["documents"])
            ]
            vectors = np.asarray(page["embeddings"], dtype=np.float32) if with_embeddings else None
            yield records, vectors
            offset += len(ids)

    def ledger(self) -> dict[str, LedgerEntry]:
        """Per document: the newest complete version in the store, plus ids of any older or partial versions."""
        versions: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = defaultdict(lambda: defaultdict(list))
        for chunk_id, meta in self.iter_metadata():
            versions[str(meta.get("doc_id"))][str(meta.get("content_hash"))].append((chunk_id, meta))
        ledger: dict[str, LedgerEntry] = {}
        for doc_id, by_hash in versions.items():
            def rank(item):
                chunks = item[1]
                meta = chunks[0][1]
                complete = len(chunks) == int(meta.get("n_chunks", len(chunks)))
                return (complete, str(meta.get("ingested_at", "")))

            ordered = sorted(by_hash.items(), key=rank, reverse=True)
            current_hash, chunks = ordered[0]
            chunks.sort(key=lambda c: int(c[1].get("chunk_index", 0)))
            meta = chunks[0][1]
            complete = len(chunks) == int(meta.get("n_chunks", len(chunks)))
            ledger[doc_id] = LedgerEntry(
                doc_id=doc_id,
                content_hash=current_hash,
                source_version=str(meta.get("source_version", "")),
                ingested_at=str(meta.get("ingested_at", "")),
                model_fingerprint=str(meta.get("model_fingerprint", "")),
                chunk_ids=[c[0] for c in chunks],
                metadata={k[3:]: v for k, v in meta.items() if k.startswith("fm_")},
                leftover_ids=[cid for _, other in ordered[1:] for cid, _ in other],
                complete=complete,
                chunker=str(meta.get("chunker", "")),
                meta_version=min(int(m.get("meta_version", 1)) for _, m in chunks),
            )
        return ledger

    # --- writing -------------------------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str], metadatas: Sequence[dict],
            upsert: bool = False) -> None:
        """Chroma's add() silently ignores existing ids; pass upsert=True where ids may already exist."""
        self.check_model()
        write = self.collection.upsert if upsert else self.collection.add
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            write(
                ids=list(ids[start:end]), embeddings=vectors[start:end],
                documents=list(texts[start:end]), metadatas=list(metadatas[start:end]),
            )

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), self.max_batch):
            self.collection.delete(ids=ids[start:start + self.max_batch])

    def update_metadata(self, ids: Sequence[str], patch: dict[str, Any]) -> None:
        """Merge `patch` into the metadata of the given chunks (Chroma merges keys on update)."""
        ids = list(ids)
        for start in range(0, len(ids), self.max_batch):
            batch = ids[start:start + self.max_batch]
            self.collection.update(ids=batch, metadatas=[dict(patch) for _ in batch])

    # --- querying ------------------------------------------------------------------------------------------

    def query(self, vectors: np.ndarray, n_results: int, where: dict | None = None,
              include: list[str] | None = None) -> dict[str, list]:
        """Batched nearest-chunk queries. Chroma reads every hit's metadata in one SQL statement, and SQLite
        refuses more than ~32k variables, so the queries are sent in groups of at most MAX_QUERY_HITS hits."""
        n_results = max(1, min(n_results, self.count()))
        include = include or ["metadatas", "distances"]
        step = max(1, MAX_QUERY_HITS // n_results)
        merged: dict[str, list] = {key: [] for key in ("ids", *include)}
        for start in range(0, len(vectors), step):
            result = self.collection.query(query_embeddings=vectors[start:start + step], n_results=n_results,
                                           where=where, include=include)
            for key in ("ids", *include):
                merged[key].extend(result[key] or [])
        return merged

    def vectors_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of those ids that exist (read only)."""
        out: dict[str, np.ndarray] = {}
        ids = list(ids)
        for start in range(0, len(ids), PAGE):
            got = self.collection.get(ids=ids[start:start + PAGE], include=["embeddings"])
            out.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
        return out

    def metadata_for(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of those ids that exist (read only)."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(ids)
        for start in range(0, len(ids), PAGE):
            got = self.collection.get(ids=ids[start:start + PAGE], include=["metadatas"])
            out.update(zip(got["ids"], got["metadatas"]))
        return out

    def nearest(self, vectors: np.ndarray, n_results: int) -> tuple[list[list[str]], list[list[float]]]:
        """Ids and cosine distances of the nearest stored chunks, from the collection's HNSW index."""
        result = self.query(vectors, n_results, include=["distances"])
        return result["ids"], result["distances"]
