"""Turning the bytes of a source document into text plus metadata (front-matter), or a clear reason why not."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

MARKDOWN_SUFFIXES = (".md", ".markdown", "")  # no extension: read as Markdown if it decodes as text
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
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
    """Markdown, text, HTML, PDF and DOCX by extension; a file with no extension is tried as Markdown."""
    return _suffix(doc_id) in SUPPORTED_SUFFIXES or _suffix(doc_id) == ""


def _suffix(doc_id: str) -> str:
    return PurePosixPath(doc_id).suffix.lower()


def parse_document(doc_id: str, data: bytes) -> ParsedDocument:
    """Text plus the document's own metadata, or DocumentError with the reason. Manifest fields are applied
    separately (at ingest under their own prefix, and live at audit time), never mixed in here."""
    suffix = _suffix(doc_id)
    if not is_supported(doc_id):
        raise DocumentError(f"unsupported file type {suffix}")
    if suffix in (".html", ".htm"):
        text, metadata = _read_html(data)
    elif suffix == ".pdf":
        text, metadata = _read_pdf(data)
    elif suffix == ".docx":
        text, metadata = _read_docx(data)
    else:
        text, metadata = _read_text(data, markdown=suffix in MARKDOWN_SUFFIXES)
    return ParsedDocument(doc_id=doc_id, text=text, content_hash=content_hash(data), metadata=metadata)


def _decode(data: bytes) -> str:
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    if "\x00" in raw:
        raise DocumentError("binary content (NUL bytes) in a text document")
    return raw


def _read_text(data: bytes, markdown: bool) -> tuple[str, dict[str, Any]]:
    raw = _decode(data)
    metadata: dict[str, Any] = {}
    body = raw
    if markdown:
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
    return text, metadata


_HTML_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "footer")
_BLOCKS = ("p", "div", "section", "article", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
           "br", "ul", "ol", "blockquote")


def _read_html(data: bytes) -> tuple[str, dict[str, Any]]:
    """Visible text and the title; <meta name=...> tags for known fields become metadata."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    metadata: dict[str, Any] = {}
    for tag in soup.find_all("meta"):
        name, content = (tag.get("name") or "").strip().lower(), tag.get("content")
        if name in DATE_FIELDS + INT_FIELDS + STRING_FIELDS and content:
            metadata[name] = int(content) if name in INT_FIELDS and content.strip().isdecimal() and \
                content.strip().isascii() else content
    head_title = soup.head.find("title") if soup.head else None
    title = head_title.get_text(" ", strip=True) if head_title else ""
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for tag in soup.find_all(lambda t: t.has_attr("hidden") or t.get("aria-hidden") == "true"
                             or "display:none" in (t.get("style") or "").replace(" ", "")):
        tag.decompose()
    for cell in soup.find_all(("td", "th", "dt", "dd", "caption", "figcaption")):
        cell.insert_after(" \t ")
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
    for level in range(1, 7):  # keep headings visible to the splitter and to heading-aware checks
        for h in soup.find_all(f"h{level}"):
            h.insert_before("\n\n" + "#" * level + " ")
            h.insert_after("\n\n")
    for block in soup.find_all(_BLOCKS):
        block.insert_after("\n")
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ ]*\t[ \t]*", " | ", soup.get_text()))
    text = re.sub(r"[ ]{2,}", " ", text)
    text = "\n".join(line.strip() for line in text.splitlines()).strip()
    if title:
        metadata.setdefault("title", title)
    if not text:
        raise EmptyDocument("HTML page has no visible text", front_matter_only=False)
    return text, normalise_metadata(metadata)


def _read_pdf(data: bytes) -> tuple[str, dict[str, Any]]:
    """The PDF's text layer. A PDF without one (a scan) is an error, never an empty document in the index."""
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        # Many PDFs carry only an owner password (no opening password): they decrypt with an empty one.
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF: it needs a password to read its text")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata or {}
    except DocumentError:
        raise
    except PdfReadError as exc:
        raise DocumentError(f"corrupt or unreadable PDF: {exc}") from exc
    except Exception as exc:  # pypdf raises many kinds (NotImplementedError for odd filters, limits, ...)
        raise DocumentError(f"corrupt or unreadable PDF: {type(exc).__name__}: {exc}") from exc
    if not pages:
        raise DocumentError("corrupt or unreadable PDF: no pages")
    if not any(pages):
        raise DocumentError(f"PDF has no text layer ({len(pages)} page(s) of images only: scanned?); "
                            "it needs OCR before it can be indexed")
    metadata: dict[str, Any] = {}
    title = str(info.get("/Title") or "").strip()
    if title:
        metadata["title"] = title
    return "\n\n".join(p for p in pages if p), metadata


def _read_docx(data: bytes) -> tuple[str, dict[str, Any]]:
    """Paragraphs (headings as Markdown headings) and tables, in document order."""
    import io
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"corrupt or unreadable DOCX: {exc}") from exc
    except Exception as exc:  # python-docx raises its own PackageNotFoundError for non-DOCX bytes
        raise DocumentError(f"corrupt or unreadable DOCX: {type(exc).__name__}: {exc}") from exc
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = docx.text.paragraph.Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name or "") if para.style is not None else ""
            if style.startswith("Heading") and style[-1:].isdigit():
                lines.append("#" * int(style[-1]) + " " + text)
            elif style == "Title":
                lines.append("# " + text)
            else:
                lines.append(text)
        elif tag == "tbl":
            table = docx.table.Table(child, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                # Merged cells come back once per grid column: keep one copy of each run.
                cells = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
                lines.append("| " + " | ".join(cells) + " |")
    metadata: dict[str, Any] = {}
    title = (document.core_properties.title or "").strip()
    if not title:
        title = next((ln.lstrip("# ") for ln in lines if ln.startswith("# ")), "")
    if title:
        metadata["title"] = title
    text = "\n\n".join(lines).strip()
    if not text:
        raise EmptyDocument("DOCX has no text", front_matter_only=False)
    return text, metadata


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
