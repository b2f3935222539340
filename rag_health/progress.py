"""Progress of a long stage, for people watching: documents done of planned, chunks embedded, documents/s and the
time left. One reporter object, throttled (at most one update per `every` seconds, and always the last), drawn on
a terminal (TerminalProgress) or in Prefect (flows.publish.PrefectProgress)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def describe(done: int, total: int, chunks: int, seconds: float) -> str:
    rate = done / seconds if seconds > 0 else 0.0
    left = (total - done) / rate if rate > 0 else None
    eta = "" if left is None or done >= total else f" · about {_duration(left)} left"
    return f"{done:,}/{total:,} documents · {chunks:,} chunks embedded · {rate:.1f} documents/s{eta}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Throttled:
    """Calls `show(done, total, chunks, text)` at most every `every` seconds, and for the last update."""

    def __init__(self, show: Callable[[int, int, int, str], None], every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.show, self.every, self.clock = show, every, clock
        self.started = clock()
        self.last = float("-inf")

    def __call__(self, done: int, total: int, chunks: int) -> None:
        now = self.clock()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        self.show(done, total, chunks, describe(done, total, chunks, now - self.started))


def terminal_progress(label: str = "ingest", stream: TextIO | None = None,
                      every: float = 0.5) -> Callable[[int, int, int], None] | None:
    """A progress line redrawn in place on a terminal (stderr); None when stderr is not a terminal (CI, a pipe,
    a Prefect worker), so logs and --json output stay clean."""
    out = stream or sys.stderr
    if not out.isatty():
        return None

    def show(done: int, total: int, chunks: int, text: str) -> None:
        width = 24
        filled = int(width * done / total) if total else width
        end = "\n" if done >= total else ""
        out.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {text}\033[K{end}")
        out.flush()

    return Throttled(show, every)
