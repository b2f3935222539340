"""Markdown structure of a document (headings, code blocks, tables, numbered steps) and what chunking did to it.

Computed once at ingest, where the whole document and its chunks are both at hand, and stored on each chunk:
its section, whether its section heading is missing from what was embedded, and which blocks it splits. A block
counts as split when no single chunk holds all of it, so the overlap between chunks never causes a false alarm.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from checks import heading_paths

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_STEP = re.compile(r"^\s{0,3}(\d{1,3})[.)]\s+\S")
_BULLET = re.compile(r"^\s{0,3}[-*+]\s+\S")
_TABLE_ROW = re.compile(r"^\s*(\|.*\||\+(?:[-=:]{3,}\+)+)\s*$")  # pipe rows, and the rules of grid tables
HEADING_GRACE_CHARS = 120


@dataclass(frozen=True)
class Heading:
    start: int
    level: int
    text: str


@dataclass(frozen=True)
class Block:
    """A unit that only makes sense whole: a fenced code block, a table, or one numbered step."""

    kind: str  # "code", "table" or "step"
    start: int
    end: int
    line: int  # 1-based line of the block's first line in the document text
    label: str


@dataclass(frozen=True)
class DocStructure:
    headings: tuple[Heading, ...]
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ChunkStructure:
    section: str  # heading path at the chunk's start ("Runbook > Mitigation"), "" before any heading
    heading_lost: bool  # the chunk continues a section whose heading is neither in its text nor in its embedding
    split_blocks: str  # "; "-joined labels of blocks this chunk holds only part of ("" when none)
    located: bool  # False when the chunk's text could not be found in the document (structure unknown)
    headings: str = ""  # " | "-joined: the section the chunk starts in, then every heading inside it


def parse_structure(text: str) -> DocStructure:
    headings: list[Heading] = []
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    i = 0
    n = len(lines)

    def block(kind: str, first: int, last: int, label: str) -> None:
        """Lines first..last (0-based, inclusive) as one block; its label names the 1-based first line."""
        end = offsets[last] + len(lines[last].rstrip("\r\n"))
        blocks.append(Block(kind, offsets[first], end, first + 1, f"{label} at line {first + 1}"))

    while i < n:
        line = lines[i].rstrip("\r\n")
        if _FENCE.match(line):
            fence = _FENCE.match(line).group(1)
            j = i + 1
            while j < n and not lines[j].lstrip().startswith(fence):
                j += 1
            end_line = min(j, n - 1)
            block("code", i, end_line, "code block")
            i = end_line + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            headings.append(Heading(offsets[i], len(heading.group(1)), heading.group(2).strip()))
            i += 1
            continue
        if _TABLE_ROW.match(line):
            j = i
            while j + 1 < n and _TABLE_ROW.match(lines[j + 1].rstrip("\r\n")):
                j += 1
            if j > i:
                block("table", i, j, "table")
            i = j + 1
            continue
        step = _STEP.match(line)
        if step:
            j = i
            while j + 1 < n:
                nxt = lines[j + 1].rstrip("\r\n")
                if (not nxt.strip() or _STEP.match(nxt) or _BULLET.match(nxt) and not nxt.startswith((" ", "\t"))
                        or _HEADING.match(nxt) or _FENCE.match(nxt)):
                    break
                j += 1
            block("step", i, j, f"step {step.group(1)}")
            i = j + 1
            continue
        i += 1
    return DocStructure(tuple(headings), tuple(blocks))


def locate_chunks(text: str, chunks: Sequence[str]) -> list[tuple[int, int] | None]:
    """Character span of each chunk in the document. Chunks come in order and may overlap their predecessor."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for chunk in chunks:
        piece = chunk.strip()
        start = text.find(piece, cursor) if piece else -1
        if start < 0:
            start = text.find(piece)
        if start < 0 and len(piece) > 80:  # whitespace rewritten inside: anchor on both ends instead
            head, tail = piece[:40], piece[-40:]
            s = text.find(head, cursor)
            e = text.find(tail, s + 1) if s >= 0 else -1
            spans.append((s, e + len(tail)) if s >= 0 and e >= 0 else None)
            if s >= 0:
                cursor = s
            continue
        if start < 0:
            spans.append(None)
            continue
        spans.append((start, start + len(piece)))
        cursor = start
    return spans


def analyse_chunks(text: str, chunks: Sequence[str], embed_texts: Sequence[str],
                   structure: DocStructure | None = None) -> list[ChunkStructure]:
    structure = structure or parse_structure(text)
    spans = locate_chunks(text, chunks)
    split_labels: list[list[str]] = [[] for _ in chunks]
    for block in structure.blocks:
        touching = [i for i, span in enumerate(spans)
                    if span is not None and span[0] < block.end and span[1] > block.start]
        whole = any(spans[i][0] <= block.start and spans[i][1] >= block.end for i in touching)  # type: ignore[index]
        if len(touching) > 1 and not whole:
            for i in touching:
                split_labels[i].append(f"{block.label} (chunks {', '.join(str(t) for t in touching)})")
    out = []
    headings = structure.headings
    starts = [h.start for h in headings]
    after = _paths_after(headings)  # after[k]: the path in force once headings[k] has started
    for i, span in enumerate(spans):
        if span is None:
            out.append(ChunkStructure("", False, "", False))
            continue
        k = bisect_right(starts, span[0])
        path = list(after[k - 1]) if k else []
        inside_from, inside_to = bisect_left(starts, span[0]), bisect_left(starts, span[1])
        section = heading_paths.join(h.text for h in path)
        lost = False
        if path:
            own = path[-1]
            # A chunk that opens with a sentence or two of the previous section and then its own heading is fine.
            first_own = headings[inside_from] if inside_from < inside_to else None
            near_start = first_own is not None and first_own.start - span[0] < HEADING_GRACE_CHARS
            lost = own.start < span[0] and not near_start and own.text not in embed_texts[i]
        inside = [h.text for h in headings[inside_from:inside_to]]
        names = ([path[-1].text] if path else []) + inside
        out.append(ChunkStructure(section, lost, "; ".join(split_labels[i]), True,
                                  " | ".join(dict.fromkeys(names))))
    return out


def _paths_after(headings: Sequence[Heading]) -> list[tuple[Heading, ...]]:
    """The heading path in force right after each heading starts, in one pass."""
    out, stack = [], []
    for h in headings:
        while stack and stack[-1].level >= h.level:
            stack.pop()
        stack.append(h)
        out.append(tuple(stack))
    return out


def heading_path_at(headings: Sequence[Heading], offset: int) -> list[Heading]:
    """The heading path in force at `offset`, outermost first; a heading starting exactly there is its last
    element. Headings must be in document order, as parse_structure gives them."""
    path: list[Heading] = []
    for h in headings:
        if h.start > offset:
            break
        while path and path[-1].level >= h.level:
            path.pop()
        path.append(h)
    return path
