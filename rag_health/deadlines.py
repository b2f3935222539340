"""Wall-clock bounds on calls to remote services. Client timeouts are per connect and per received packet: an S3
endpoint that trickles a byte every half second, or a Chroma server that stops answering mid-request (SIGSTOP),
never trips them, and a run would hang with the collection held. Every call to S3 or a Chroma server goes through
`within`, which gives it a deadline for the whole call (its own retries included) and names what timed out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from rag_health.errors import CallTimeout

T = TypeVar("T")


def within(fn: Callable[[], T], timeout: float | None, what: str, setting: str = "") -> T:
    """fn() if it finishes within `timeout` seconds, else CallTimeout naming `what` (and the setting that bounds
    it). The call runs on a thread of its own; one that overran is left to finish or fail in the background (a
    daemon thread: it never keeps the process alive), and its result is discarded."""
    if not timeout:
        return fn()
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"rag-health-call {what}"[:60], daemon=True).start()
    if not done.wait(timeout):
        raise CallTimeout(f"{what} did not finish within {timeout:g} s" + (f" ({setting})" if setting else ""))
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
