"""Turning the bytes of a source document into text plus metadata (front-matter), or a clear reason why not."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt")
DATE_FIELDS = ("last_reviewed", "effective_date")
INT_FIELDS = ("review_every_days",)
STRING_FIELDS = ("title", "owner", "superseded_by", "classification", "jurisdiction", "product")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class DocumentError(ValueError):
    """A document that cannot be read or parsed; the message is the reason shown to the user."""


class EmptyDocument(DocumentError):
    """No body text. With front-matter only (a Hugo section page, say) it is metadata, not a broken document."""

    def __init__(self, message: str, front_matter_only: bool):
        super().__init__(message)
        self.front_matter_only = front_matter_only


@dataclass(frozen=True)
class ParsedDocument:
    doc_id: str
    text: str
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or PurePosixPath(self.doc_id).stem)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_supported(doc_id: str) -> bool:
    """Markdown and text by extension; a file with no extension is read as Markdown if it decodes as text."""
    return _suffix(doc_id) in SUPPORTED_SUFFIXES or _suffix(doc_id) == ""


def _suffix(doc_id: str) -> str:
    return PurePosixPath(doc_id).suffix.lower()


def parse_document(doc_id: str, data: bytes) -> ParsedDocument:
    """Parse Markdown (with optional YAML front-matter) or plain text. Raises DocumentError with the reason."""
    if not is_supported(doc_id):
        raise DocumentError(f"unsupported file type {_suffix(doc_id)}")
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    if "\x00" in raw:
        raise DocumentError("binary content (NUL bytes) in a text document")

    metadata: dict[str, Any] = {}
    body = raw
    if _suffix(doc_id) in (".md", ".markdown", ""):
        match = _FRONT_MATTER.match(raw)
        if match:
            metadata = _parse_front_matter(match.group(1))
            body = raw[match.end():]
        elif raw.startswith("---\n"):
            raise DocumentError("front-matter opened with '---' but never closed")
        if "title" not in metadata:
            heading = _HEADING.search(body)
            if heading:
                metadata["title"] = heading.group(1).strip()
    text = body.strip()
    if not text:
        if metadata and body is not raw:
            raise EmptyDocument("front-matter only, no body text to index", front_matter_only=True)
        raise EmptyDocument("empty document: no text to index", front_matter_only=False)
    return ParsedDocument(doc_id=doc_id, text=text, content_hash=content_hash(data), metadata=metadata)


def _parse_front_matter(block: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"front-matter line {mark.line + 2}: " if mark is not None else ""
        raise DocumentError(f"invalid YAML front-matter: {where}{getattr(exc, 'problem', None) or exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DocumentError(f"front-matter must be a mapping of fields, got {type(loaded).__name__}")
    return normalise_metadata(loaded)


def normalise_metadata(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the fields rag-health relies on and coerce them to types Chroma metadata can hold."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        key = str(key)
        if value is None:
            continue
        if key in DATE_FIELDS:
            out[key] = _as_date(key, value).isoformat()
        elif key in INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DocumentError(f"front-matter field {key!r} must be a positive whole number of days, got {value!r}")
            out[key] = value
        elif key in STRING_FIELDS:
            out[key] = str(value).strip()
        elif isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, (date, datetime)):
            out[key] = value.isoformat()
        # Lists and nested mappings are kept out of chunk metadata: Chroma only stores scalars.
    return out


def _as_date(key: str, value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise DocumentError(f"front-matter field {key!r} is not a date (YYYY-MM-DD): {value!r}") from None
