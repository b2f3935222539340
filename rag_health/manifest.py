"""The manifest: which documents the organisation expects, who owns them and how often they must be reviewed."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from rag_health import safe_yaml
from rag_health.errors import ManifestError

# Fields a manifest entry may carry for documents without front-matter (PDF, DOCX, HTML, plain text).
_METADATA_KEYS = {"title", "last_reviewed", "effective_date", "superseded_by", "jurisdiction", "product"}
_ENTRY_KEYS = {"id", "glob", "owner", "review_every_days", "required", "classification"} | _METADATA_KEYS
_DEFAULT_KEYS = {"review_every_days", "required", "owner", "classification"}


@dataclass(frozen=True)
class ManifestEntry:
    pattern: str
    is_glob: bool
    owner: str | None = None
    review_every_days: int | None = None
    required: bool = True
    classification: str | None = None
    line: int = 0
    metadata: tuple[tuple[str, Any], ...] = ()

    def defaults(self) -> dict[str, Any]:
        """Metadata this entry supplies to a matching document (the document's own front-matter wins)."""
        out = dict(self.metadata)
        for key in ("owner", "review_every_days", "classification"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def matches(self, doc_id: str) -> bool:
        return fnmatchcase(doc_id, self.pattern) if self.is_glob else doc_id == self.pattern


@dataclass(frozen=True)
class Manifest:
    entries: list[ManifestEntry] = field(default_factory=list)
    review_every_days: int = 365
    path: str | None = None

    @cached_property
    def _exact(self) -> dict[str, ManifestEntry]:
        return {e.pattern: e for e in self.entries if not e.is_glob}

    @cached_property
    def _globs(self) -> list[ManifestEntry]:
        return [e for e in self.entries if e.is_glob]

    def entry_for(self, doc_id: str) -> ManifestEntry | None:
        """Exact ids win over globs; among globs the first listed wins. O(1) for exact ids."""
        entry = self._exact.get(doc_id)
        if entry is not None:
            return entry
        return next((e for e in self._globs if e.matches(doc_id)), None)

    def defaults_for(self, doc_id: str) -> dict[str, Any]:
        entry = self.entry_for(doc_id)
        return entry.defaults() if entry else {}


def load_manifest(path: str | Path | None, default_review_days: int = 365) -> Manifest:
    if path is None:
        return Manifest(review_every_days=default_review_days)
    path = Path(path)
    text, root = _read_yaml(path)
    if root is None:
        return Manifest(review_every_days=default_review_days, path=str(path))
    data = safe_yaml.load(text)
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise ManifestError(f"{path}: line {root.start_mark.line + 1}: the manifest must be a mapping "
                            "with 'defaults' and 'documents'")
    nodes = {k.value: v for k, v in root.value}
    unknown = set(data) - {"defaults", "documents"}
    if unknown:
        key = sorted(unknown)[0]
        raise ManifestError(f"{path}: line {_key_line(root, key)}: unknown top-level key {key!r}")

    defaults = _defaults(data, nodes, path)
    review_default = _positive_int(defaults.get("review_every_days", default_review_days), path,
                                   nodes.get("defaults"), "review_every_days")
    required_default = defaults.get("required", True)

    docs = data.get("documents") or []
    if not isinstance(docs, list):
        raise ManifestError(f"{path}: line {nodes['documents'].start_mark.line + 1}: 'documents' must be a list")
    seen: dict[str, int] = {}
    entries = [_entry(raw, node, path, defaults, required_default, seen)
               for raw, node in zip(docs, nodes["documents"].value if docs else [])]
    return Manifest(entries=entries, review_every_days=review_default, path=str(path))


def _read_yaml(path: Path) -> tuple[str, yaml.Node | None]:
    """The file's text and its YAML node tree (None for an empty file)."""
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
    try:
        root = safe_yaml.compose(text)
    except RecursionError:  # thousands of nested brackets: hostile or broken, either way not a manifest
        raise ManifestError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise ManifestError(f"{path}: {line}invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    return text, root


def _defaults(data: dict[str, Any], nodes: dict[str, Any], path: Path) -> dict[str, Any]:
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ManifestError(f"{path}: line {nodes['defaults'].start_mark.line + 1}: 'defaults' must be a mapping")
    for key in defaults:
        if key not in _DEFAULT_KEYS:
            raise ManifestError(f"{path}: line {_key_line(nodes['defaults'], key)}: unknown default {key!r}")
    return defaults


def _entry(raw: Any, node: Any, path: Path, defaults: dict[str, Any], required_default: Any,
           seen: dict[str, int]) -> ManifestEntry:
    """One item of 'documents'. seen: patterns so far and their lines, to report one listed twice."""
    line = node.start_mark.line + 1
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: line {line}: each document must be a mapping with 'id' or 'glob'")
    for key in raw:
        if key not in _ENTRY_KEYS:
            raise ManifestError(f"{path}: line {_key_line(node, key)}: unknown field {key!r}")
    if ("id" in raw) == ("glob" in raw):
        raise ManifestError(f"{path}: line {line}: give exactly one of 'id' or 'glob'")
    pattern = str(raw.get("id") or raw.get("glob") or "").strip()
    if not pattern:
        raise ManifestError(f"{path}: line {line}: empty document id")
    if pattern in seen:
        raise ManifestError(f"{path}: line {line}: {pattern!r} is listed twice (first at line {seen[pattern]})")
    seen[pattern] = line
    required = raw.get("required", required_default)
    if not isinstance(required, bool):
        raise ManifestError(f"{path}: line {_key_line(node, 'required')}: 'required' must be true or false")
    return ManifestEntry(
        pattern=pattern,
        is_glob="glob" in raw,
        owner=str(raw["owner"]) if raw.get("owner") else defaults.get("owner"),
        review_every_days=_positive_int(raw["review_every_days"], path, node, "review_every_days")
        if "review_every_days" in raw else None,
        required=required,
        classification=raw.get("classification") or defaults.get("classification"),
        line=line,
        metadata=_entry_metadata(raw, path, node),
    )


def _entry_metadata(raw: dict[str, Any], path: Path, node: Any) -> tuple[tuple[str, Any], ...]:
    from rag_health.documents import DocumentError, normalise_metadata

    fields = {k: v for k, v in raw.items() if k in _METADATA_KEYS}
    try:
        return tuple(sorted(normalise_metadata(fields).items()))
    except DocumentError as exc:
        key = next((k for k in fields if repr(k) in str(exc)), "id")
        raise ManifestError(f"{path}: line {_key_line(node, key)}: {str(exc).replace('front-matter ', '')}") from exc


def _key_line(node: Any, key: str) -> int:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k.start_mark.line + 1
    return (node.start_mark.line + 1) if node is not None else 1


def _positive_int(value: Any, path: Path, node: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ManifestError(f"{path}: line {_key_line(node, key)}: {key!r} must be a positive whole number of days, "
                            f"got {value!r}")
    return value
