"""Where documents come from. A source lists entries cheaply (id + version) and reads bytes only on demand."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag_health.documents import DEFAULT_LIMITS, Limits, Rejected, over_limit
from rag_health.errors import ConfigError, s3_error_code, s3_reason


@dataclass(frozen=True)
class SourceEntry:
    """One document at the source. `version` changes whenever the content may have changed (mtime+size, ETag)."""

    doc_id: str
    version: str
    size: int


class DocumentSource(Protocol):
    uri: str

    def list(self) -> Iterator[SourceEntry]: ...

    def read(self, doc_id: str) -> bytes: ...


HIDDEN_TARGET = "symlink into a hidden path of the docs root; not followed"
OUTSIDE_ROOT = "symlink to a path outside the docs root; not followed"


class LocalFolderSource:
    """A folder of documents; doc ids are POSIX paths relative to the folder. Hidden files and folders are
    skipped; symlinks are followed only where they resolve inside the folder (a link to /etc/passwd must not get
    indexed), and symlinked folders that alias another part of the folder are not listed twice. Folders that
    cannot be listed are recorded in `unlisted` so ingest keeps their documents instead of taking them for
    deleted; symlinks refused are recorded in `rejected` as (doc id, reason), reported by ingest as skipped.
    read() returns at most limits.max_document_bytes bytes or refuses the document."""

    def __init__(self, root: str | Path, limits: Limits = DEFAULT_LIMITS):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"document folder {root} does not exist or is not a folder")
        self.uri = str(self.root)
        self.limits = limits
        self.unlisted: list[tuple[str, str]] = []
        self.rejected: list[tuple[str, str]] = []

    def list(self) -> Iterator[SourceEntry]:
        self.unlisted, self.rejected = [], []

        def failed(exc: OSError) -> None:
            where = Path(exc.filename or self.root)
            rel = where.relative_to(self.root).as_posix() if where != self.root else ""
            self.unlisted.append((rel, exc.strerror or str(exc)))

        visited: set[str] = set()
        entries: list[tuple[str, Path]] = []
        for folder, dirs, files in walk(str(self.root), failed):
            real = os.path.realpath(folder)
            if real in visited:  # a symlink loop
                dirs[:] = []
                continue
            visited.add(real)
            base = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and self._follow(base / d))
            entries += [(self._rel(base / f), base / f) for f in files
                        if not f.startswith(".") and self._inside(base / f)]
        for doc_id, path in sorted(entries):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we listed (or a dangling link): it is simply not there
                continue
            except OSError as exc:
                self.unlisted.append((doc_id, exc.strerror or str(exc)))
                continue
            if stat_is_file(stat):
                yield SourceEntry(doc_id=doc_id, version=f"{stat.st_mtime_ns}-{stat.st_size}", size=stat.st_size)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _within(self, target: Path) -> bool:
        return target == self.root or self.root in target.parents

    def _hidden(self, target: Path) -> bool:
        """A link into a hidden part of the root (.git, .env): hidden files are never listed, nor through a
        link. Kubernetes' mounted volumes link into `..data/`, which stays readable."""
        parts = target.relative_to(self.root).parts if target != self.root else ()
        return any(p.startswith(".") and not p.startswith("..") for p in parts)

    def _inside(self, path: Path) -> bool:
        """A file, or a symlink resolving inside the root and not into a hidden part of it; a refused link is
        recorded in `rejected`."""
        if not path.is_symlink():
            return True
        target = Path(os.path.realpath(path))
        if self._within(target) and not self._hidden(target):
            return True
        self.rejected.append((self._rel(path), OUTSIDE_ROOT if not self._within(target) else HIDDEN_TARGET))
        return False

    def _follow(self, path: Path) -> bool:
        """Whether to descend into a subfolder: not a symlink aliasing part of the root (it would list documents
        twice), and not one resolving outside the root (recorded in `rejected`)."""
        if not path.is_symlink():
            return True
        target = Path(os.path.realpath(path))
        if self._within(target):
            return False
        self.rejected.append((self._rel(path) + "/", OUTSIDE_ROOT))
        return False

    def read(self, doc_id: str) -> bytes:
        """The file's bytes, refusing a path that resolves outside the root (the link may have changed since the
        listing) or anything but a regular file, and reading at most max_document_bytes + 1 bytes."""
        real = Path(os.path.realpath(self.root / doc_id))
        if not self._within(real):
            raise Rejected(OUTSIDE_ROOT)
        # O_NONBLOCK: opening a FIFO swapped in after the listing must not hang the run.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat_is_file(os.fstat(fd)):
                raise OSError(f"{doc_id}: not a regular file")
            data = fh.read(self.limits.max_document_bytes + 1)
        check_size(len(data), self.limits, bounded=True)
        return data


def walk(top: str, onerror) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top, followlinks=True) without recursion: a folder tree thousands of levels deep is listed (or
    reported through onerror) instead of overflowing Python's stack. Callers may prune `dirs` in place."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                found = list(it)
        except OSError as exc:
            onerror(exc)
            continue
        dirs, files = [], []
        for entry in found:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs))


def check_size(size: int, limits: Limits, *, bounded: bool = False) -> None:
    """Refuse a document over max_document_bytes: a listed size, or (bounded) the bytes read with a bound of
    limit + 1, where reaching the bound means "at least"."""
    if size > limits.max_document_bytes:
        raise over_limit("document", size, "bytes (at least)" if bounded else "bytes", "max_document_bytes",
                         limits.max_document_bytes)


def unlisted_reason(doc_id: str, unlisted: list[tuple[str, str]]) -> str | None:
    """Why `doc_id` may be missing from a listing: it sits in (or is) a path the source could not list."""
    for path, reason in unlisted:
        if not path or doc_id == path or doc_id.startswith(path.rstrip("/") + "/"):
            return reason
    return None


def stat_is_file(stat: os.stat_result) -> bool:
    import stat as st

    return st.S_ISREG(stat.st_mode)


class S3Source:
    """Objects under an S3 prefix; doc ids are keys relative to the prefix, normalised (repeated '/' collapsed,
    no leading '/'). The listing (paginated) gives each object's ETag, so unchanged objects are skipped before
    anything is downloaded. Keys that cannot be a document id ('.' or '..' segments, control characters) are
    recorded in `rejected` as (key, reason); a listing that fails part-way is recorded in `unlisted` so ingest
    deletes nothing. read() fetches at most max_document_bytes + 1 bytes (a Range request)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", limits: Limits = DEFAULT_LIMITS):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.limits = limits
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.downloads = 0
        self.unlisted: list[tuple[str, str]] = []
        self.rejected: list[tuple[str, str]] = []
        self._keys: dict[str, str] = {}  # doc id -> the object's key, where normalising changed it
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            raise ConfigError(f"S3 source {self.uri}: bucket not reachable ({s3_reason(exc)})") from exc

    def list(self) -> Iterator[SourceEntry]:
        self.unlisted, self.rejected, self._keys = [], [], {}
        start = f"{self.prefix}/" if self.prefix else ""
        entries: dict[str, SourceEntry] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    self._add(obj, obj["Key"][len(start):], entries)
        except Exception as exc:  # a timeout or an error page: what was listed is used, nothing is deleted
            self.unlisted.append(("", f"listing {self.uri} failed: {s3_reason(exc)}"))
        yield from (entries[d] for d in sorted(entries))

    def _add(self, obj: dict[str, Any], rel: str, entries: dict[str, SourceEntry]) -> None:
        """Add one listed object under its normalised doc id, or record why it cannot be a document."""
        if not rel.strip("/") or rel.endswith("/"):
            return  # the prefix itself or a folder marker
        doc_id, problem = normalise_key(rel)
        if problem:
            self.rejected.append((printable_key(obj["Key"]), problem))
            return
        if doc_id is None:
            return  # hidden, like dot-files in a folder source
        if doc_id in entries:
            # `a//b.md` next to `a/b.md`: the key that needed no normalising wins, the other is reported.
            loser = obj["Key"] if doc_id != rel else self._keys.pop(doc_id)
            self.rejected.append((loser, f"same document id as another key after normalising: {doc_id}"))
            if doc_id != rel:
                return
        elif doc_id != rel:
            self._keys[doc_id] = obj["Key"]
        entries[doc_id] = SourceEntry(doc_id=doc_id, version=obj["ETag"].strip('"'), size=int(obj.get("Size", 0)))

    def read(self, doc_id: str) -> bytes:
        key = self._keys.get(doc_id) or (f"{self.prefix}/{doc_id}" if self.prefix else doc_id)
        bound = self.limits.max_document_bytes + 1
        try:
            # Range bounds what the server sends; read(bound) bounds what we hold if it ignores the Range.
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{bound - 1}")
            with closing(response["Body"]) as body:
                data = body.read(bound)
        except Exception as exc:  # surfaced as an unreadable document, never a crashed run
            if s3_error_code(exc) == "InvalidRange":  # a zero-byte object has no byte 0 to range over
                return b""
            raise OSError(f"s3://{self.bucket}/{key}: {s3_reason(exc)}") from exc
        self.downloads += 1
        check_size(len(data), self.limits, bounded=True)
        return data


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable_key(key: str) -> str:
    """The key with control characters escaped (\\x0a for a newline), fit for a report line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", key)


def normalise_key(rel: str) -> tuple[str | None, str | None]:
    """(doc id, None) for a usable key relative to the prefix; (None, reason) for one to report; (None, None) for
    a hidden one (a segment starting with '.') to pass over silently."""
    if _CONTROL.search(rel):
        return None, "key contains control characters (a newline, a tab, ...)"
    segments = [seg for seg in rel.split("/") if seg]  # collapses '//' and drops a leading '/'
    if any(seg in (".", "..") for seg in segments):
        return None, "key has a '.' or '..' segment; it cannot be a document id"
    if any(seg.startswith(".") for seg in segments):
        return None, None
    return "/".join(segments), None


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"{uri}: an S3 source needs a bucket (s3://bucket/prefix)")
    return bucket, prefix


def open_source(uri: str, s3_client: Any = None, limits: Limits = DEFAULT_LIMITS) -> DocumentSource:
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        if s3_client is None:  # clients are built by the composition root (rag_health.runtime), never here
            raise ValueError(f"{uri}: an S3 source needs the S3 client from the runtime")
        return S3Source(s3_client, bucket, prefix, limits)
    return LocalFolderSource(uri, limits)
