"""What a stage shows people, as plain data: Prefect artifacts described without Prefect (flows/publish.py turns
them into real ones), so the core can say what to show and the flows only how."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 200  # rows per table artifact; the run's files hold all of them
LISTED_IDS = 50  # document ids shown per list in an artifact; the result's JSON holds all of them


@dataclass(frozen=True)
class Table:
    key: str
    rows: tuple[dict[str, Any], ...]
    description: str  # every artifact says what it is: the UI lists it beside the key


@dataclass(frozen=True)
class Markdown:
    key: str
    markdown: str
    description: str


@dataclass(frozen=True)
class Link:
    key: str
    link: str
    text: str
    description: str


Artifact = Table | Markdown | Link


def table(key: str, rows: list[dict[str, Any]], description: str) -> list[Artifact]:
    """A table artifact, or none when there are no rows."""
    return [Table(key, tuple(rows[:MAX_ROWS]), description)] if rows else []



def id_list(label: str, ids: tuple[str, ...] | list[str]) -> str:
    """A bounded, escaped Markdown list of document ids under a bold label ("" when there are none)."""
    if not ids:
        return ""
    lines = [f"- {md(d)}" for d in ids[:LISTED_IDS]]
    if len(ids) > LISTED_IDS:
        lines.append(f"- … and {len(ids) - LISTED_IDS} more")
    return f"**{label}** ({len(ids)}):\n\n" + "\n".join(lines)


# Control characters, line separators and the bidirectional overrides and isolates (an RTL override in a file
# name reverses how the rest of a line reads): shown escaped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-!|~>])")


def shown(value: Any, none: str = "n/a", digits: int | None = None) -> str:
    """A figure in text: a missing one reads "n/a" (never Python's None), a float rounded when asked."""
    if value is None:
        return none
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def one_line(text: Any) -> str:
    """A document-derived string for line-based output: personal data and secrets redacted (checks.pii), control
    and bidirectional characters (a newline or an RTL override in a file name) shown escaped, so no document can
    start a line of its own or reorder what it shows."""
    from checks.pii import redact

    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), redact(str(text)))


def md(text: Any) -> str:
    """A document-derived string inside Markdown: one line, HTML escaped, Markdown punctuation escaped, so it shows
    as the text it is and never as markup, a link or a new list item."""
    return _MARKDOWN.sub(r"\\\1", html.escape(one_line(text), quote=False))
