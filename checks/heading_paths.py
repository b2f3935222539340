"""How a chunk's heading path is written and read back: "Runbook > Rolling back > Steps". The one owner of that
format, for the chunker and the structure parser that write it and the checks and probes that read it."""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = " > "


def join(headings: Iterable[str]) -> str:
    """The path of a section from its headings, outermost first."""
    return SEPARATOR.join(headings)


def last(section: str) -> str:
    """The innermost heading of a path ("" for no section)."""
    return section.rsplit(SEPARATOR, 1)[-1] if section else ""


def nested(section: str) -> bool:
    """Whether the path has more than one heading."""
    return SEPARATOR in section


def shown(section: str, separator: str = " | ") -> str:
    """The path with another separator, e.g. as a key where " > " would read as markup."""
    return section.replace(SEPARATOR, separator)
