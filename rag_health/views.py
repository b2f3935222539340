"""What a stage shows people, as plain data: Prefect artifacts described without Prefect (flows/publish.py turns
them into real ones), so the core can say what to show and the flows only how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_ROWS = 200  # rows per table artifact; the run's files hold all of them


@dataclass(frozen=True)
class Table:
    key: str
    rows: tuple[dict[str, Any], ...]
    description: str = ""


@dataclass(frozen=True)
class Markdown:
    key: str
    markdown: str
    description: str = ""


@dataclass(frozen=True)
class Link:
    key: str
    link: str
    text: str
    description: str = ""


Artifact = Table | Markdown | Link


def table(key: str, rows: list[dict[str, Any]], description: str) -> list[Artifact]:
    """A table artifact, or none when there are no rows."""
    return [Table(key, tuple(rows[:MAX_ROWS]), description)] if rows else []

