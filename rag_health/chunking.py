"""Sentence-aware chunking sized in the embedding model's own tokens, so chunks fit its window."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from llama_index.core.node_parser import SentenceSplitter

from rag_health.documents import ParsedDocument
from rag_health.embedding import Embedder
from rag_health.structure import DocStructure, analyse_chunks, heading_path_at, parse_structure

_SENTENCE_END = re.compile(r"""[.!?:;…](?:["')\]]*)\s*$""")
_STRUCTURAL_END = re.compile(r"(```|\|)\s*$")


STRATEGIES = ("sentence", "markdown", "whole")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int
    text: str  # the chunk as stored and shown to the assistant
    embed_text: str  # what the model embeds: the document title (and, markdown-aware, the section), then the chunk
    section: str = ""  # heading path in force where the chunk starts
    heading_lost: bool = False  # continues a section whose heading is neither in the text nor in the embedding
    split_blocks: str = ""  # code blocks, tables or numbered steps this chunk holds only part of
    located: bool = True  # its text was found in the document, so the structure fields above are known
    headings: str = ""  # " | "-joined: its section's heading, then every heading inside it


def parse_spec(spec: str) -> tuple[str, int, int]:
    """"sentence:200:24", "markdown:200" or "256" (sentence, overlap an eighth of the size) -> (strategy, size,
    overlap). Markdown-aware chunks default to no overlap: they break at block boundaries."""
    from rag_health.settings import ConfigError

    parts = spec.strip().split(":")
    if parts[0] == "whole":  # one chunk per document, as benchmarks like MTEB embed them (truncated by the model)
        return "whole", 0, 0
    if parts[0].isdigit():
        parts = ["sentence", *parts]
    try:
        strategy, size = parts[0], int(parts[1])
        overlap = int(parts[2]) if len(parts) > 2 else (0 if strategy == "markdown" else size // 8)
    except (IndexError, ValueError):
        raise ConfigError(f"bad chunking configuration {spec!r}: use STRATEGY:SIZE[:OVERLAP], e.g. sentence:256:32 "
                          "or markdown:256") from None
    if strategy not in STRATEGIES:
        raise ConfigError(f"bad chunking configuration {spec!r}: strategy must be one of {', '.join(STRATEGIES)}")
    if size < 16 or overlap < 0 or overlap >= size:
        raise ConfigError(f"bad chunking configuration {spec!r}: need size >= 16 and 0 <= overlap < size")
    return strategy, size, overlap


def embed_text_for(title: str, text: str, section: str = "") -> str:
    head = "\n".join(p for p in (title, section) if p)
    return f"{head}\n\n{text}" if head else text


def redacted_metadata(metadata: dict) -> dict:
    """Front-matter with PII replaced: strings, and numbers that read as PII (a card number parsed as an int)."""
    from checks.pii import redact

    out = {}
    for key, value in metadata.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            clean = redact(str(value))
            out[key] = value if clean == str(value) else clean
        else:
            out[key] = value
    return out


def redacted(doc: ParsedDocument) -> ParsedDocument:
    """The document with every PII match in its text and metadata replaced (checks.pii.redact)."""
    from checks.pii import redact

    return replace(doc, text=redact(doc.text), metadata=redacted_metadata(doc.metadata))


class Chunker:
    """strategy "sentence": llama-index SentenceSplitter with overlap. "markdown": sections, code blocks, tables
    and numbered steps are kept whole where they fit, and every chunk's embedding carries its section path.
    "whole": one chunk per document (the model truncates it at its window; quality reports what is lost)."""

    def __init__(self, embedder: Embedder, chunk_size: int, chunk_overlap: int, strategy: str = "sentence",
                 redact_pii: bool = False):
        from rag_health.settings import ConfigError

        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown chunking strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if strategy == "whole":
            chunk_size, chunk_overlap = 0, 0
        elif chunk_overlap >= chunk_size:
            raise ConfigError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})")
        self.strategy = strategy
        # PII replaced before splitting, so neither vectors nor stored text hold it; part of the recipe, so
        # turning it on or off re-chunks and re-embeds every document.
        self.redact_pii = redact_pii
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._tokenize = embedder.tokenize
        self._splitter = None if strategy == "whole" else SentenceSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=embedder.tokenize,
            paragraph_separator="\n\n",
        )

    @classmethod
    def from_spec(cls, embedder: Embedder, spec: str, redact_pii: bool = False) -> Chunker:
        strategy, size, overlap = parse_spec(spec)
        return cls(embedder, size, overlap, strategy, redact_pii=redact_pii)

    @property
    def config(self) -> str:
        base = "whole" if self.strategy == "whole" else f"{self.strategy}:{self.chunk_size}:{self.chunk_overlap}"
        return base + ("+redacted" if self.redact_pii else "")

    def split(self, doc: ParsedDocument) -> list[Chunk]:
        if self.redact_pii:
            doc = redacted(doc)
        title = doc.title
        if self.strategy == "whole":
            pieces = [(doc.text.strip(), "")]
        elif self.strategy == "markdown":
            pieces = self._markdown_pieces(doc.text, title)
        else:
            assert self._splitter is not None
            pieces = [(p, "") for p in self._splitter.split_text_metadata_aware(doc.text, metadata_str=title)]
        pieces = [(text, section) for text, section in pieces if text.strip()]
        texts = [text for text, _ in pieces]
        embed_texts = [embed_text_for(title, text, section) for text, section in pieces]
        shapes = analyse_chunks(doc.text, texts, embed_texts)
        return [
            Chunk(doc_id=doc.doc_id, index=i, text=text, embed_text=embed, section=shape.section,
                  heading_lost=shape.heading_lost, split_blocks=shape.split_blocks, located=shape.located,
                  headings=shape.headings)
            for i, (text, embed, shape) in enumerate(zip(texts, embed_texts, shapes))
        ]

    # --- markdown-aware packing ---------------------------------------------------------------------------

    def _markdown_pieces(self, text: str, title: str) -> list[tuple[str, str]]:
        """(chunk text, section path for the embedding) pairs. Chunk texts are slices of the document."""
        structure = parse_structure(text)
        budget = max(16, self.chunk_size - len(self._tokenize(title)) - 16)  # room for the section path
        pieces: list[tuple[str, str]] = []
        current: list[tuple[int, int, str, int]] = []

        def flush() -> None:
            """Emit the packed units; headings at the end move on to the next chunk with their section."""
            nonlocal current
            carry = []
            while current and current[-1][2] == "heading":
                carry.insert(0, current.pop())
            if current:
                start, end = current[0][0], current[-1][1]
                pieces.append((text[start:end], _section_for(structure, start, title, current[0][2])))
            current = carry

        for start, end, kind in _units(text, structure):
            size = len(self._tokenize(text[start:end]))
            used = sum(u[3] for u in current)
            if kind == "heading" and any(u[2] != "heading" for u in current) and used >= budget // 3:
                flush()  # a new section starts a new chunk once the current one has some substance
            elif size > budget:
                flush()
                parts = self._split_large(text[start:end], kind, budget)
                if current:  # the headings right above an oversized block open its first piece
                    parts[0] = text[current[0][0]:start] + parts[0]
                    pieces.append((parts[0], ""))
                    parts = parts[1:]
                    current = []
                section = _section_for(structure, start, title, kind)
                pieces.extend((part, section) for part in parts)
                continue
            elif used + size > budget:
                flush()
                if current and sum(u[3] for u in current) + size > budget:
                    # a run of headings with little under them (a table of contents): a chunk of their own
                    pieces.append((text[current[0][0]:current[-1][1]], _section_for(structure, current[0][0], title,
                                                                                    "heading")))
                    current = []
            current.append((start, end, kind, size))
        flush()
        if current:  # headings with nothing after them at the end of the document
            pieces.append((text[current[0][0]:current[-1][1]], ""))
        return pieces

    def _split_large(self, block: str, kind: str, budget: int) -> list[str]:
        if kind in ("code", "table"):
            out, current, used = [], [], 0
            for line in block.splitlines():
                size = len(self._tokenize(line)) + 1
                if current and used + size > budget:
                    out.append("\n".join(current))
                    current, used = [], 0
                current.append(line)
                used += size
            if current:
                out.append("\n".join(current))
            return out
        splitter = SentenceSplitter(chunk_size=budget, chunk_overlap=min(self.chunk_overlap, budget // 4),
                                    tokenizer=self._tokenize, paragraph_separator="\n\n")
        return splitter.split_text(block)


def _units(text: str, structure: DocStructure) -> list[tuple[int, int, str]]:
    """The document as consecutive units: headings, whole blocks, and the paragraphs between them."""
    marks = sorted([(h.start, text.find("\n", h.start) if text.find("\n", h.start) >= 0 else len(text), "heading")
                    for h in structure.headings] + [(b.start, b.end, b.kind) for b in structure.blocks])
    units: list[tuple[int, int, str]] = []
    pos = 0

    def prose(a: int, b: int) -> None:
        for m in re.finditer(r"\S(?:.*?\S)?(?=\n\s*\n|\s*\Z)", text[a:b], flags=re.DOTALL):
            units.append((a + m.start(), a + m.end(), "prose"))

    for start, end, kind in marks:
        if start < pos:
            continue
        prose(pos, start)
        units.append((start, end, kind))
        pos = end
    prose(pos, len(text))
    return units


def _section_for(structure: DocStructure, offset: int, title: str, first_kind: str) -> str:
    """The heading path to put in front of a chunk's embedding. A chunk that opens with its own heading gets
    only that heading's parents (the heading itself is in the text)."""
    path = heading_path_at(structure.headings, offset)
    if first_kind == "heading" and path and path[-1].start == offset:
        path = path[:-1]
    return " > ".join(h.text for h in path if h.text != title)


def ends_mid_sentence(text: str) -> bool:
    """True when a chunk stops inside a sentence (no closing punctuation, code fence or table row at its end)."""
    stripped = text.rstrip()
    if not stripped:
        return False
    last_line = stripped.splitlines()[-1].strip()
    if last_line.startswith(("#", "-", "*", "|", "```")) or re.match(r"^\d+[.)]\s", last_line):
        # Headings, list items and table rows end at the line break.
        return False
    return not (_SENTENCE_END.search(stripped) or _STRUCTURAL_END.search(stripped))


_CONTINUATION_START = re.compile(r"""^(?:[a-z]|[,;:)\]}]|\.\s)""")


def starts_mid_sentence(text: str) -> bool:
    """True when a chunk opens inside a sentence: a lower-case word or closing punctuation, not a heading,
    list item, table row or code fence."""
    stripped = text.lstrip()
    if not stripped or stripped.startswith(("#", "-", "*", "|", "```", ">", "+")):
        return False
    return bool(_CONTINUATION_START.match(stripped))
