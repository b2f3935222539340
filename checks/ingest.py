"""Ingest verdict: a document that could not be read warns (its last good version stays indexed); nothing fails."""

from __future__ import annotations

from collections.abc import Sized

from checks.result import Status


def ingest_status(errors: Sized) -> Status:
    return "warn" if len(errors) else "pass"
