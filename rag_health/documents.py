"""Turning the bytes of a source document into text plus metadata (front-matter), or a clear reason why not.

Documents are unvetted: every step is bounded by `Limits` (bytes, PDF pages, decompressed zip members, text
characters, front-matter bytes), and a document over a limit is refused with the limit and its setting named."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

from rag_health import safe_yaml

MARKDOWN_SUFFIXES = (".md", ".markdown", "")  # no extension: read as Markdown if the bytes look like text
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
DATE_FIELDS = ("last_reviewed", "effective_date")
INT_FIELDS = ("review_every_days",)
STRING_FIELDS = ("title", "owner", "superseded_by", "classification", "jurisdiction", "product")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FENCE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Limits:
    """Per-document bounds; field names are the settings' names (rag_health.settings), so a refusal can name the
    setting that raises it. The defaults are the settings' defaults."""

    max_document_bytes: int = 20_000_000
    max_pdf_pages: int = 500
    max_archive_member_bytes: int = 10_000_000
    max_text_chars: int = 2_000_000
    max_front_matter_bytes: int = 16_384
    read_extensionless: bool = True
    max_archive_members: int = 2_000
    max_parse_seconds: float = 120.0  # HTML, PDF and DOCX (rag_health.bounded_parse); 0: unbounded, in-process

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


DEFAULT_LIMITS = Limits()


class DocumentError(ValueError):
    """A document that cannot be read or parsed; the message is the reason shown to the user."""


class EmptyDocument(DocumentError):
    """No body text. With front-matter only (a Hugo section page, say) it is metadata, not a broken document."""

    def __init__(self, message: str, front_matter_only: bool):
        super().__init__(message)
        self.front_matter_only = front_matter_only


class Rejected(DocumentError):
    """Refused by policy before or while parsing (over a limit, binary without an extension): nothing is wrong
    with the rest of the run, and the document is skipped rather than half-read."""


def over_limit(what: str, amount: int, unit: str, setting: str, limit: int) -> Rejected:
    return Rejected(f"{what} is over the limit: {amount:,} {unit} > {limit:,} (setting {setting}, "
                    f"RAG_HEALTH_{setting.upper()})")


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


def is_supported(doc_id: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Markdown, text, HTML, PDF and DOCX by extension; a file with no extension is tried as Markdown when
    read_extensionless is on (and only read as such when its bytes look like text)."""
    suffix = _suffix(doc_id)
    return suffix in SUPPORTED_SUFFIXES or (suffix == "" and limits.read_extensionless)


def _suffix(doc_id: str) -> str:
    return PurePosixPath(doc_id).suffix.lower()


def parse_document(doc_id: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedDocument:
    """Text plus the document's own metadata, or DocumentError with the reason (Rejected when over a limit).
    Manifest fields are applied separately (at ingest under their own prefix, and live at audit time), never
    mixed in here."""
    suffix = _suffix(doc_id)
    if not is_supported(doc_id, limits):
        raise Rejected(f"unsupported file type {suffix or '(no extension; read_extensionless is off)'}")
    if len(data) > limits.max_document_bytes:
        raise over_limit("document", len(data), "bytes", "max_document_bytes", limits.max_document_bytes)
    if suffix in (".html", ".htm"):
        text, metadata = _read_html(data)
    elif suffix == ".pdf":
        text, metadata = _read_pdf(data, limits)
    elif suffix == ".docx":
        text, metadata = _read_docx(data, limits)
    else:
        if suffix == "" and not looks_like_text(data):
            raise Rejected("no extension and the bytes do not look like text (binary content)")
        text, metadata = _read_text(data, suffix in MARKDOWN_SUFFIXES, limits)
    if len(text) > limits.max_text_chars:
        raise over_limit("text after parsing", len(text), "characters", "max_text_chars", limits.max_text_chars)
    return ParsedDocument(doc_id=doc_id, text=text, content_hash=content_hash(data), metadata=metadata)


def looks_like_text(data: bytes) -> bool:
    """No NUL byte in the first 8 KB, and those bytes decode as UTF-8 (a character cut at the end allowed) or are
    mostly printable."""
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return True
    printable = sum(1 for b in head if b >= 0x20 or b in b"\t\n\r\f")
    return printable >= 0.95 * len(head)


def _decode(data: bytes) -> str:
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    if "\x00" in raw:
        raise DocumentError("binary content (NUL bytes) in a text document")
    return raw


def _read_text(data: bytes, markdown: bool, limits: Limits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    raw = _decode(data)
    metadata: dict[str, Any] = {}
    body = raw
    if markdown:
        metadata, body = _split_front_matter(raw, limits)
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


def _split_front_matter(raw: str, limits: Limits) -> tuple[dict[str, Any], str]:
    """(front-matter fields, body). The closing fence is looked for only within max_front_matter_bytes (a
    character is at least a byte), so a huge block is refused before YAML ever sees it."""
    if not raw.startswith("---"):
        return {}, raw
    window = raw[:limits.max_front_matter_bytes + 16]  # room for the two fences around a block at the limit
    match = _FRONT_MATTER.match(window)
    if match is None:
        if _FRONT_MATTER.match(raw) is None:
            if raw.startswith("---\n") or raw.startswith("---\r\n"):
                raise DocumentError("front-matter opened with '---' but never closed")
            return {}, raw  # '---' followed by text on the same line: a thematic break, not front-matter
        end = _FENCE.search(raw, 4)
        size = len(raw[:end.start() if end else len(raw)].encode("utf-8"))
        raise over_limit("front-matter", size, "bytes", "max_front_matter_bytes", limits.max_front_matter_bytes)
    block = match.group(1)
    size = len(block.encode("utf-8"))
    if size > limits.max_front_matter_bytes:
        raise over_limit("front-matter", size, "bytes", "max_front_matter_bytes", limits.max_front_matter_bytes)
    return _parse_front_matter(block), raw[match.end():]


_HTML_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "footer")
_BLOCKS = ("p", "div", "section", "article", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
           "br", "ul", "ol", "blockquote")


def _read_html(data: bytes) -> tuple[str, dict[str, Any]]:
    """Visible text and the title; <meta name=...> tags for known fields become metadata. One pass over the tree,
    never a change to it: inserting separators into the tree cost time in proportion to its depth per insertion,
    so a page of 100,000 nested <div>s ran for many minutes."""
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
    pieces, first_h1 = _visible_text(soup)
    if not title and first_h1 is not None:
        title = first_h1.get_text(" ", strip=True)
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ ]*\t[ \t]*", " | ", "".join(pieces)))
    text = re.sub(r"[ ]{2,}", " ", text)
    text = "\n".join(line.strip() for line in text.splitlines()).strip()
    if title:
        metadata.setdefault("title", title)
    if not text:
        raise EmptyDocument("HTML page has no visible text", front_matter_only=False)
    return text, normalise_metadata(metadata)


_HTML_CELLS = ("td", "th", "dt", "dd", "caption", "figcaption")


def _hidden(tag: Any) -> bool:
    return (tag.name in _HTML_DROP or tag.has_attr("hidden") or tag.get("aria-hidden") == "true"
            or "display:none" in (tag.get("style") or "").replace(" ", ""))


def _visible_text(soup: Any) -> tuple[list[str], Any]:
    """The page's visible strings in document order, with the separators the chunker reads: a Markdown heading
    marker before h1-h6 and blank lines around it, a line break after each block, a tab after each table cell (a
    cell separator once tabs become " | "). Iterative, so nesting depth costs no stack. Also the first visible
    h1, for the title."""
    from bs4 import NavigableString, Tag
    from bs4.element import CData

    pieces: list[str] = []
    first_h1 = None
    stack: list[Any] = [iter(soup.contents)]
    closing: list[str] = []  # what to write when each open tag ends
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            if closing:
                pieces.append(closing.pop())
            continue
        if isinstance(node, Tag):
            if _hidden(node):
                continue
            level = int(node.name[1]) if len(node.name) == 2 and node.name[0] == "h" and node.name[1] in "123456" \
                else 0
            if level:
                pieces.append("\n\n" + "#" * level + " ")
                if level == 1 and first_h1 is None:
                    first_h1 = node
            # As the tree was once changed: after a block its line break, then a heading's blank lines, then a
            # cell's tab.
            closing.append(("\n" if node.name in _BLOCKS else "") + ("\n\n" if level else "")
                           + (" \t " if node.name in _HTML_CELLS else ""))
            stack.append(iter(node.contents))
        elif type(node) in (NavigableString, CData):  # not comments, doctypes, declarations or script text
            pieces.append(str(node))
    return pieces, first_h1


def _read_pdf(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    """The PDF's text layer. A PDF without one (a scan) is an error, never an empty document in the index."""
    import logging

    from pypdf import apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    # One stream may inflate to max_archive_member_bytes, as one DOCX member may (pypdf's own bound is 75 MB, and a
    # small PDF whose pages share a 70 MB stream took minutes a page).
    bound = limits.max_archive_member_bytes
    try:
        with apply_configuration(**{f"{kind}_maximum_output_length": bound for kind in
                                    ("array_based_stream", "jbig2", "lzw", "run_length", "zlib", "brotli")}):
            pages, info = _pdf_pages(data, limits)
    except LimitReachedError as exc:
        raise Rejected(f"PDF is over a decompression limit: {exc} (a stream may inflate to {bound:,} bytes: setting "
                       "max_archive_member_bytes, RAG_HEALTH_MAX_ARCHIVE_MEMBER_BYTES)") from None
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


def _pdf_pages(data: bytes, limits: Limits) -> tuple[list[str], Any]:
    """Each page's text and the document info, stopping as soon as the text is over max_text_chars (no point
    extracting the rest)."""
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    # Many PDFs carry only an owner password (no opening password): they decrypt with an empty one.
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentError("encrypted PDF: it needs a password to read its text")
    # Counted from the page tree before any page is extracted: extraction is the expensive part.
    if len(reader.pages) > limits.max_pdf_pages:
        raise over_limit("PDF", len(reader.pages), "pages", "max_pdf_pages", limits.max_pdf_pages)
    pages: list[str] = []
    total = 0
    for page in reader.pages:
        pages.append((page.extract_text() or "").strip())
        total += len(pages[-1]) + 2
        if total > limits.max_text_chars:
            raise over_limit("text after parsing", total, "characters (at least)", "max_text_chars",
                             limits.max_text_chars)
    return pages, reader.metadata or {}


ARCHIVE_TOTAL_MEMBERS = 3  # all members together may inflate to this many times max_archive_member_bytes


def _check_zip(data: bytes, limits: Limits) -> None:
    """Refuse a DOCX whose members decompress past max_archive_member_bytes before python-docx inflates them.
    The declared size is checked first (cheap), then every member is inflated with a bound, because the header
    can lie; a lying header also fails zipfile's CRC check and the document is reported as corrupt."""
    import io
    import zipfile

    limit = limits.max_archive_member_bytes
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DocumentError(f"corrupt or unreadable DOCX: {exc}") from exc
    # The whole archive may inflate to a few members' worth, no more: many members each just under the limit
    # would otherwise cost minutes of CPU.
    budget, total = ARCHIVE_TOTAL_MEMBERS * limit, 0
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_archive_members:
            raise over_limit("DOCX", len(members), "members", "max_archive_members", limits.max_archive_members)
        for info in members:
            if info.file_size > limit:
                raise over_limit(f"DOCX member {info.filename}", info.file_size, "bytes decompressed",
                                 "max_archive_member_bytes", limit)
        declared = sum(info.file_size for info in members)
        if declared > budget:
            raise over_limit("DOCX", declared, "bytes decompressed in all", "max_archive_member_bytes", budget)
        for info in members:
            size = 0
            try:
                with archive.open(info) as member:
                    while chunk := member.read(1 << 20):
                        size += len(chunk)
                        total += len(chunk)
                        if size > limit:
                            raise over_limit(f"DOCX member {info.filename}", size, "bytes decompressed (at least)",
                                             "max_archive_member_bytes", limit)
                        if total > budget:
                            raise over_limit("DOCX", total, "bytes decompressed in all (at least)",
                                             "max_archive_member_bytes", budget)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                raise DocumentError(f"corrupt or unreadable DOCX: {info.filename}: {exc}") from exc


def _read_docx(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, dict[str, Any]]:
    """Paragraphs (headings as Markdown headings) and tables, in document order."""
    import io
    import zipfile

    import docx

    _check_zip(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"corrupt or unreadable DOCX: {exc}") from exc
    except Exception as exc:  # python-docx raises its own PackageNotFoundError for non-DOCX bytes
        raise DocumentError(f"corrupt or unreadable DOCX: {type(exc).__name__}: {exc}") from exc
    lines = _docx_lines(document)
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


def _docx_lines(document: Any) -> list[str]:
    import docx

    lines: list[str] = []
    for child in document.element.body.iterchildren():
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
    return lines


def _parse_front_matter(block: str) -> dict[str, Any]:
    try:
        loaded = safe_yaml.load(block)  # aliases refused: a 391-byte alias bomb once grew past 4 GB here
    except RecursionError:
        raise DocumentError("invalid YAML front-matter: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"front-matter line {mark.line + 2}: " if mark is not None else ""
        raise DocumentError(f"invalid YAML front-matter: {where}{getattr(exc, 'problem', None) or exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DocumentError(f"front-matter must be a mapping of fields, got {type(loaded).__name__}")
    return normalise_metadata(loaded)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_REVIEW_DAYS = 36_500  # a century: anything longer is a typo, and day arithmetic on it overflows dates


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
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_REVIEW_DAYS:
                raise DocumentError(f"front-matter field {key!r} must be a positive whole number of days (at most "
                                    f"{MAX_REVIEW_DAYS}), got {value!r}")
            out[key] = value
        elif key in STRING_FIELDS:
            out[key] = str(value).strip()
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            # Chroma stores 64-bit integers; a bigger one would silently become a float. Keep its exact digits.
            out[key] = str(value)
        elif isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)  # NaN and infinity cannot be filtered on; keep them visible as text
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
