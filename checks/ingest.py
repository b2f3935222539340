"""Ingest verdict: a document that could not be read warns (its last good version stays indexed), and so does a mass
change held back for approval (nothing was written); nothing fails."""

from __future__ import annotations

from collections.abc import Sized

from checks.result import Status


def ingest_status(errors: Sized, held: bool = False) -> Status:
    return "warn" if held or len(errors) else "pass"


def held_sentence(would_change: int, indexed: int, fraction: float, threshold: float) -> str:
    """The one sentence a held-back mass change is reported with (not one line per document). A change at or under
    the threshold is only held when the source lists nothing at all."""
    why = f"over max_delete_fraction {threshold:.0%}" if fraction > threshold else "the source lists no documents"
    return (f"held back: {would_change} of {indexed} indexed documents would be removed or replaced "
            f"({fraction:.0%}, {why}); nothing was written; approve the run in Prefect or rerun with "
            "--allow-mass-delete")
