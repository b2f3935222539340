"""Where documents come from. A source lists entries cheaply (id + version) and reads bytes only on demand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
    """A folder of documents; doc ids are POSIX paths relative to the folder. Hidden files and folders are skipped."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"document folder {root} does not exist or is not a folder")
        self.uri = str(self.root)

    def list(self) -> Iterator[SourceEntry]:
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            stat = path.stat()
            yield SourceEntry(doc_id=rel.as_posix(), version=f"{stat.st_mtime_ns}-{stat.st_size}", size=stat.st_size)

    def read(self, doc_id: str) -> bytes:
        return (self.root / doc_id).read_bytes()


def open_source(uri: str) -> DocumentSource:
    if uri.startswith("s3://"):
        raise ConfigError("S3 sources are not supported yet; use a local folder")
    return LocalFolderSource(uri)
