"""Chunking sized in the embedding model's own tokens, so chunks fit its window.

The default, "auto", follows a document's structure where it has one (Markdown headings, and the headings,
tables, code and numbered steps that the HTML and DOCX readers turn into Markdown) and packs it into chunks whose
breaks are chosen for the whole document at once: at headings rather than inside sections, never after a
heading, never leaving a tiny chunk behind; short sibling sections share a chunk under their common heading path,
which goes into the embedding. A unit too large for a chunk is split by sentences (code and tables by lines).
A document without structure (plain text, most PDFs) is split exactly as "sentence" splits it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

from checks import heading_paths
from rag_health.documents import ParsedDocument
from rag_health.embedding import Embedder
from rag_health.structure import DocStructure, analyse_chunks, heading_path_at, parse_structure

_SENTENCE_END = re.compile(r"""[.!?:;…](?:["')\]]*)\s*$""")
_STRUCTURAL_END = re.compile(r"(```|\|)\s*$")


STRATEGIES = ("auto", "sentence", "markdown", "whole")
DEFAULT_STRATEGY = "auto"
# The default before "auto" (0.1.x): one setting away, RAG_HEALTH_CHUNK_STRATEGY=sentence (size and overlap are
# unchanged), and what compare-chunking measures the default against.
PREVIOUS_DEFAULT = "sentence:200:24"

# How "auto" weighs a break before a unit (0 for the cheapest) and a chunk's shape; see Chunker._auto_pieces.
_BREAK_BEFORE_HEADING = {1: 0.0, 2: 0.0, 3: 0.15}  # deeper headings: 0.3
_BREAK_AFTER_HEADING = 5.0  # a heading ends a chunk only when nothing else fits
_BREAK_IN_SECTION = 0.5  # between paragraphs or blocks of one section
_BREAK_AFTER_COLON = 0.5  # extra: the unit before introduces what follows ("Run:" then a code block)
_BREAK_BETWEEN_STEPS = 0.7
_BREAK_INSIDE_UNIT = 0.3  # between the pieces of one unit too large for a chunk
_CHUNK = 1.0  # every chunk costs this: fewer, fuller chunks where the breaks allow
_HEADING_INSIDE = 0.2  # per heading of level 1-2 inside a chunk (not at its start): sections stay apart if cheap
_UNDERFILL = 0.5  # times (1 - tokens/budget)^2: balanced chunks
_TINY = 3.0  # times (1 - tokens/tiny): a chunk under `tiny` tokens, unless it is the whole document


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
    """"auto:200:24", "sentence:200:24", "markdown:200" or "256" (sentence, overlap an eighth of the size) ->
    (strategy, size, overlap). Markdown-aware chunks default to no overlap: they break at block boundaries; "auto"
    uses its overlap only where it splits by sentences (plain text, a paragraph too large for a chunk)."""
    from rag_health.errors import ConfigError

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
    """strategy "auto" (the default): structure-aware packing (module docstring), "sentence" for plain text.
    "sentence": llama-index SentenceSplitter with overlap. "markdown": sections, code blocks, tables and numbered
    steps are kept whole where they fit, a new section starts a new chunk, and every chunk's embedding carries its
    section path. "whole": one chunk per document (the model truncates it at its window; quality reports what is
    lost)."""

    def __init__(self, embedder: Embedder, chunk_size: int, chunk_overlap: int, strategy: str = DEFAULT_STRATEGY,
                 redact_pii: bool = False):
        from rag_health.errors import ConfigError

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
        self._embedder = embedder
        self._window = embedder.info.max_tokens - 2  # the model's window, less its two special tokens
        self._splitter_args = None if strategy == "whole" else {
            "chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "tokenizer": embedder.tokenize,
            "paragraph_separator": "\n\n"}

    @property
    def model_fingerprint(self) -> str:
        """The fingerprint of the model whose tokens size the chunks (known without loading it)."""
        return self._embedder.info.fingerprint

    @cached_property
    def _splitter(self):
        """llama-index's SentenceSplitter, imported on first use: importing llama-index costs seconds, which a
        command that chunks nothing (nothing changed) should not pay."""
        return _sentence_splitter(**self._splitter_args) if self._splitter_args else None

    @classmethod
    def from_spec(cls, embedder: Embedder, spec: str, redact_pii: bool = False) -> Chunker:
        strategy, size, overlap = parse_spec(spec)
        return cls(embedder, size, overlap, strategy, redact_pii=redact_pii)

    @property
    def config(self) -> str:
        base = "whole" if self.strategy == "whole" else f"{self.strategy}:{self.chunk_size}:{self.chunk_overlap}"
        # "+redacted2": secrets are redacted too (issue 19), so an index redacted before is chunked again.
        return base + ("+redacted2" if self.redact_pii else "")

    def split(self, doc: ParsedDocument) -> list[Chunk]:
        if self.redact_pii:
            doc = redacted(doc)
        title = doc.title
        if self.strategy == "whole":
            pieces = [(doc.text.strip(), "")]
        elif self.strategy == "markdown":
            pieces = self._markdown_pieces(doc.text, title)
        elif self.strategy == "auto" and has_structure(structure := parse_structure(_lf(doc.text))):
            doc = replace(doc, text=_lf(doc.text))  # chunks are slices of this text, so is what analyses them
            pieces = self._auto_pieces(doc.text, title, structure)
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

    # --- auto: structure-aware packing with breaks chosen for the whole document ------------------------

    def _auto_pieces(self, text: str, title: str, structure: DocStructure) -> list[tuple[str, str]]:
        """(chunk text, section path for the embedding) pairs. The document becomes units (headings, blocks,
        paragraphs; a unit over the budget becomes its sentence or line pieces), and the breaks between units are
        chosen by dynamic programming over the whole document: each chunk costs _CHUNK, plus _UNDERFILL for the
        room it leaves, _TINY when it is tiny, _HEADING_INSIDE per top-level heading it swallows, and the cost of
        the break it starts at (_break_cost). A chunk's section path (for its embedding) is the path of the section
        it continues or, when it opens with a heading, that heading's parents; title, path and text together fit
        chunk_size as a "sentence" chunk's title and text do; the section path comes on top, within the model's
        window."""
        title_tokens = len(self._tokenize(title))
        room = max(16, self.chunk_size - title_tokens)
        units = self._auto_units(text, structure, title, title_tokens, room)
        n = len(units)
        sections = [self._section(u, title) for u in units]
        budgets = [self._budget(room, title_tokens, tokens) for _, tokens in sections]  # a chunk starting at i
        tiny = min(48, room // 4)
        breaks = [0.0] + [_break_cost(units[j - 1], units[j]) for j in range(1, n)]
        best = [0.0] + [float("inf")] * n  # best[j]: cheapest packing of units[:j]
        back = [0] * (n + 1)
        for j in range(1, n + 1):
            size, inside = 0, 0
            for i in range(j - 1, max(-1, j - 1 - _MAX_UNITS), -1):  # the chunk units[i:j]
                size += units[i].size
                if i < j - 1 and (units[i + 1].overlaps(units[i]) or size > budgets[i]):
                    break  # overlapping pieces never share a chunk; nor does more than fits
                if i < j - 1 and units[i + 1].kind == "heading" and units[i + 1].level <= 2:
                    inside += 1
                cost = best[i] + breaks[i] + _CHUNK + _HEADING_INSIDE * inside
                cost += _UNDERFILL * (1 - min(size, budgets[i]) / budgets[i]) ** 2
                if size < tiny and not (i == 0 and j == n):
                    cost += _TINY * (1 - size / tiny)
                if cost < best[j]:
                    best[j], back[j] = cost, i
        spans, j = [], n
        while j > 0:
            spans.append((back[j], j))
            j = back[j]
        pieces = []
        for i, j in reversed(spans):
            chunk_text, section = _join(text, units[i:j]), sections[i][0]
            estimate = title_tokens + sections[i][1] + sum(u.size for u in units[i:j]) + 4
            if estimate >= self._window - 16 and \
                    len(self._tokenize(embed_text_for(title, chunk_text, section))) > self._window:
                # Only where the sum of the units' sizes comes near the window (joins can tokenise differently):
                # cut the chunk again so that nothing of it is lost to the model's truncation.
                limit = max(8, self._window - title_tokens - sections[i][1] - 4)
                pieces += [(chunk_text[a:b], section) for a, b in self._word_spans(chunk_text, 0, len(chunk_text),
                                                                                    limit)]
            else:
                pieces.append((chunk_text, section))
        return pieces

    def _sizes(self, texts: list[str]) -> list[int]:
        """Tokens of each text (no special tokens), counted in one batch where the embedder can."""
        count = getattr(self._embedder, "count_tokens", None)
        if count is None:
            return [len(self._tokenize(t)) for t in texts]
        return [max(0, n - 2) for n in count(texts)]  # count_tokens includes [CLS] and [SEP]

    def _budget(self, room: int, title_tokens: int, section_tokens: int) -> int:
        """Tokens of text a chunk may hold: chunk_size for its title and text, and title, section path and text
        within the model's window."""
        return max(8, min(room, self._window - title_tokens - section_tokens - 4))

    def _section(self, unit: _Unit, title: str) -> tuple[str, int]:
        key = (unit.path[:-1] if unit.kind == "heading" else unit.path, unit.context, title)
        cache = self.__dict__.setdefault("_sections", {})
        if key not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = self._section_of(unit, title)
        return cache[key]

    def _section_of(self, unit: _Unit, title: str) -> tuple[str, int]:
        """The section path a chunk starting at `unit` carries in its embedding, and its tokens: a heading's
        parents (the heading itself is in the text), else the path of the section the unit is in. Headings further
        into the chunk are in its text."""
        path = unit.path[:-1] if unit.kind == "heading" else unit.path
        section = "\n".join(p for p in (heading_paths.join(h.text for h in path if h.text != title), unit.context) if p)
        return section, len(self._tokenize(section)) if section else 0

    def _auto_units(self, text: str, structure: DocStructure, title: str, title_tokens: int,
                    room: int) -> list[_Unit]:
        """The document as units, every one a slice of it: headings, blocks and paragraphs, and the pieces of one
        too large for a chunk (cut by sentences, by rows or lines, by words for a line too long)."""
        headings = {h.start: h for h in structure.headings}
        units: list[_Unit] = []
        above = 0  # tokens of the run of headings the units so far end with
        raw = _units(text, structure)
        sizes = self._sizes([text[a:b] for a, b, _ in raw])
        for (start, end, kind), path, size in zip(raw, _paths(structure, raw), sizes):
            piece = text[start:end]
            section_tokens = self._section(_Unit(start, end, "prose", 0, path), title)[1]
            budget = self._budget(room, title_tokens, section_tokens)
            # Headings right above must open the chunk that holds this unit (none ends a chunk, none stands alone),
            # so a unit that does not fit beside them is cut, its first piece leaving them room.
            if size <= budget and (kind == "heading" or size + above <= budget or above > budget // 2):
                units.append(_Unit(start, end, kind, size, path,
                                   heading=headings.get(start) if kind == "heading" else None,
                                   intro=kind == "prose" and piece.rstrip().endswith(":")))
                above = above + size if kind == "heading" else 0
                continue
            # A table's later pieces carry its header row into their embedding (not their text), if it is small.
            header = piece.splitlines()[0].strip() if kind == "table" and not piece.lstrip().startswith("+") else ""
            header = header if header and len(self._tokenize(header)) <= budget // 4 else ""
            cut = budget - len(self._tokenize(header)) if header else budget
            if above and above <= budget // 2:
                cut = min(cut, budget - above)
            for part_no, (a, b) in enumerate(self._spans(text, start, end, kind, cut)):
                units.append(_Unit(a, b, "part" if part_no else kind, len(self._tokenize(text[a:b])), path,
                                   whole_of=start, context=header if part_no else ""))
            above = 0
        return units

    def _spans(self, text: str, start: int, end: int, kind: str, budget: int) -> list[tuple[int, int]]:
        """text[start:end] cut into consecutive slices of at most `budget` tokens: code and tables between rows
        (a grid table's rule stays with its row) or lines, prose between sentences (llama-index's splitter, no
        overlap, each piece found right after the previous one), and by words whatever does not fit."""
        if kind in ("code", "table"):
            rows = _row_spans(text, start, end, grid=kind == "table" and text[start:end].lstrip().startswith("+"))
            spans, a, used, prev_end = [], None, 0, start
            for r0, r1 in rows:
                size = len(self._tokenize(text[r0:r1]))
                if size > budget:  # one row or line too long: by words
                    if a is not None:
                        spans.append((a, prev_end))
                    spans += self._word_spans(text, r0, r1, budget)
                    a, used = None, 0
                    continue
                if a is not None and used + size > budget:
                    spans.append((a, prev_end))
                    a, used = None, 0
                a = r0 if a is None else a
                used += size + 1
                prev_end = r1
            if a is not None:
                spans.append((a, prev_end))
            return [_strip_span(text, x, y) for x, y in spans if text[x:y].strip()]
        spans, cursor = [], start
        for part in _sentence_splitter(chunk_size=budget, chunk_overlap=0, tokenizer=self._tokenize,
                                       paragraph_separator="\n\n").split_text(text[start:end]):
            part = part.strip()
            at = text.find(part, cursor, end) if part else -1
            if at < 0 or text[cursor:at].strip():  # not the next thing in the text: cut the rest by words
                return spans + self._word_spans(text, cursor, end, budget)
            spans.append((at, at + len(part)))
            cursor = at + len(part)
        if text[cursor:end].strip():
            spans += self._word_spans(text, cursor, end, budget)
        return spans

    def _word_spans(self, text: str, start: int, end: int, budget: int) -> list[tuple[int, int]]:
        """Consecutive slices of whole words (a word longer than the budget alone), each at most `budget` tokens."""
        spans, a, used, last = [], None, 0, start
        for m in re.finditer(r"\S+", text[start:end]):
            w0, w1 = start + m.start(), start + m.end()
            size = len(self._tokenize(text[w0:w1]))
            if a is not None and used + size > budget:
                spans.append((a, last))
                a, used = None, 0
            if a is None:
                a = w0
            if size > budget:  # one "word" over the budget (a base64 blob): by characters
                step = max(1, (w1 - w0) * budget // size)
                for c in range(w0, w1, step):
                    spans.append((c, min(w1, c + step)))
                a, used = None, 0
                last = w1
                continue
            used += size
            last = w1
        if a is not None:
            spans.append((a, last))
        return spans

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
            rows = _table_rows(block) if kind == "table" else block.splitlines()
            # a row too large for a chunk goes line by line
            rows = [r for row in rows for r in ([row] if len(self._tokenize(row)) < budget else row.splitlines())]
            for line in rows:
                size = len(self._tokenize(line)) + 1
                if current and used + size > budget:
                    out.append("\n".join(current))
                    current, used = [], 0
                current.append(line)
                used += size
            if current:
                out.append("\n".join(current))
            return out
        splitter = _sentence_splitter(chunk_size=budget, chunk_overlap=min(self.chunk_overlap, budget // 4),
                                      tokenizer=self._tokenize, paragraph_separator="\n\n")
        return splitter.split_text(block)


_MAX_UNITS = 512  # units one chunk may hold (bounds the work on units of no tokens, e.g. zero-width spaces)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _paths(structure: DocStructure, units: list[tuple[int, int, str]]) -> list[tuple]:
    """The heading path in force at each unit's start (a heading's own path ends with it), in one pass: units and
    headings are both in document order."""
    out, stack, k, headings = [], [], 0, structure.headings
    for start, _, _ in units:
        while k < len(headings) and headings[k].start <= start:
            while stack and stack[-1].level >= headings[k].level:
                stack.pop()
            stack.append(headings[k])
            k += 1
        out.append(tuple(stack))
    return out


def _row_spans(text: str, start: int, end: int, grid: bool) -> list[tuple[int, int]]:
    """Lines of text[start:end] as (start, end) without their line break; for a grid table, rows: the lines down
    to and with the rule below them."""
    lines, pos = [], start
    for line in text[start:end].splitlines(keepends=True):
        lines.append((pos, pos + len(line.rstrip("\r\n"))))
        pos += len(line)
    if not grid:
        return lines
    rows, first = [], None
    for a, b in lines:
        first = a if first is None else first
        if _GRID_RULE.match(text[a:b]) and a != first:
            rows.append((first, b))
            first = None
    if first is not None:
        rows.append((first, lines[-1][1]))
    return rows


def _strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    piece = text[a:b]
    return a + (len(piece) - len(piece.lstrip())), b - (len(piece) - len(piece.rstrip()))


def _sentence_splitter(**kwargs):
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(**kwargs)


@dataclass(frozen=True)
class _Unit:
    """A piece "auto" packs: a heading, a block, a paragraph, or a sentence/line piece of one too large."""

    start: int
    end: int
    kind: str  # "heading", "prose", "code", "table", "step"; "part": a later piece of a unit split for size
    size: int  # model tokens
    path: tuple  # heading path in force at its start (a heading's own path ends with it)
    heading: object = None  # the Heading, for a heading unit
    whole_of: int = -1  # for pieces of a split unit: the unit's start
    intro: bool = False  # a paragraph ending in ":" (it introduces what follows)
    context: str = ""  # embedded in front of a chunk it opens (a split table's header row)

    @property
    def level(self) -> int:
        return self.heading.level if self.heading is not None else 0  # type: ignore[attr-defined]

    def overlaps(self, before: _Unit) -> bool:
        return self.start < before.end


def has_structure(structure: DocStructure) -> bool:
    """Headings, code blocks or tables to follow; numbered steps alone (common in prose) are not enough."""
    return bool(structure.headings) or any(b.kind in ("code", "table") for b in structure.blocks)


def _break_cost(before: _Unit, unit: _Unit) -> float:
    """The cost of starting a chunk at `unit`, right after `before`."""
    if before.kind == "heading":
        return _BREAK_AFTER_HEADING
    if unit.kind == "heading":
        return _BREAK_BEFORE_HEADING.get(unit.level, 0.3)
    if unit.kind == "part" or unit.whole_of >= 0 and unit.whole_of == before.whole_of:
        return _BREAK_INSIDE_UNIT
    cost = _BREAK_BETWEEN_STEPS if unit.kind == before.kind == "step" else _BREAK_IN_SECTION
    return cost + (_BREAK_AFTER_COLON if before.intro else 0.0)


def _join(text: str, units: list[_Unit]) -> str:
    """The chunk's text: a slice of the document (every unit is one)."""
    return text[units[0].start:units[-1].end]


_GRID_RULE = re.compile(r"^\s*\+(?:[-=:]{3,}\+)+\s*$")


def _table_rows(block: str) -> list[str]:
    """A table's rows, whole: a line of a pipe table; a grid table's lines down to the rule below them, so no piece
    of a split table is rules alone."""
    lines = block.splitlines()
    if not lines or not _GRID_RULE.match(lines[0]):
        return lines
    rows: list[str] = []
    current: list[str] = []
    for line in lines:
        current.append(line)
        if _GRID_RULE.match(line) and any(not _GRID_RULE.match(x) for x in current):
            rows.append("\n".join(current))
            current = []
    if current:
        rows.append("\n".join(current))
    return rows


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
    return heading_paths.join(h.text for h in path if h.text != title)


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
