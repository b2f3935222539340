"""Where documents come from. A source lists entries cheaply (id + version) and reads bytes only on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag_health.settings import ConfigError


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


class LocalFolderSource:
    """A folder of documents; doc ids are POSIX paths relative to the folder. Hidden files and folders are
    skipped; symlinked folders are followed once. Folders that cannot be listed are recorded in `unlisted` so
    ingest keeps their documents instead of taking them for deleted."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"document folder {root} does not exist or is not a folder")
        self.uri = str(self.root)
        self.unlisted: list[tuple[str, str]] = []

    def list(self) -> Iterator[SourceEntry]:
        self.unlisted = []

        def failed(exc: OSError) -> None:
            where = Path(exc.filename or self.root)
            rel = where.relative_to(self.root).as_posix() if where != self.root else ""
            self.unlisted.append((rel, exc.strerror or str(exc)))

        visited: set[str] = set()
        entries: list[tuple[str, Path]] = []
        for folder, dirs, files in os.walk(self.root, onerror=failed, followlinks=True):
            real = os.path.realpath(folder)
            if real in visited:  # a symlink loop
                dirs[:] = []
                continue
            visited.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not self._alias(Path(folder) / d))
            base = Path(folder)
            entries += [((base / f).relative_to(self.root).as_posix(), base / f) for f in files
                        if not f.startswith(".")]
        for doc_id, path in sorted(entries):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we listed: it is simply not there any more
                continue
            except OSError as exc:
                self.unlisted.append((doc_id, exc.strerror or str(exc)))
                continue
            if stat_is_file(stat):
                yield SourceEntry(doc_id=doc_id, version=f"{stat.st_mtime_ns}-{stat.st_size}", size=stat.st_size)

    def _alias(self, path: Path) -> bool:
        """A symlinked folder pointing back inside the root: following it would list documents twice."""
        if not path.is_symlink():
            return False
        target = Path(os.path.realpath(path))
        return target == self.root or self.root in target.parents

    def read(self, doc_id: str) -> bytes:
        return (self.root / doc_id).read_bytes()


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
    """Objects under an S3 prefix; doc ids are keys relative to the prefix. The listing (paginated) gives each
    object's ETag, so unchanged objects are skipped before anything is downloaded."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.downloads = 0
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            raise ConfigError(f"S3 source {self.uri}: bucket not reachable ({_s3_reason(exc)})") from exc

    def list(self) -> Iterator[SourceEntry]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                doc_id = key[len(start):]
                if not doc_id or key.endswith("/") or any(p.startswith(".") for p in doc_id.split("/")):
                    continue
                yield SourceEntry(doc_id=doc_id, version=obj["ETag"].strip('"'), size=int(obj.get("Size", 0)))

    def read(self, doc_id: str) -> bytes:
        key = f"{self.prefix}/{doc_id}" if self.prefix else doc_id
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # surfaced as an unreadable document, never a crashed run
            raise OSError(f"s3://{self.bucket}/{key}: {_s3_reason(exc)}") from exc
        self.downloads += 1
        return body


def _s3_reason(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return f"{error.get('Code')}: {error.get('Message')}" if error else str(exc)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"{uri}: an S3 source needs a bucket (s3://bucket/prefix)")
    return bucket, prefix


def open_source(uri: str, s3_client: Any = None) -> DocumentSource:
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        if s3_client is None:  # clients are built by the composition root (rag_health.runtime), never here
            raise ValueError(f"{uri}: an S3 source needs the S3 client from the runtime")
        return S3Source(s3_client, bucket, prefix)
    return LocalFolderSource(uri)
