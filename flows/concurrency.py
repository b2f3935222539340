"""One writer per collection: a Prefect global concurrency limit (when a Prefect server is configured, so the UI
shows who waits) and, always, the lock held in the store itself (rag_health.locks), which is the truth shared by
the CLI, other servers' workers and runs with no Prefect server at all. The Prefect limit is taken first, then the
store lock, in that order everywhere, so two runs never hold one each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rag_health.errors import LockBusy
from rag_health.locks import collection_lock, lock_holder
from rag_health.runtime import Runtime

MIN_SLOT_WAIT_S = 10.0


def limit_name(collection: str) -> str:
    return f"rag-health-collection-{collection}"


def prefect_server() -> bool:
    """A Prefect server this process talks to (not the throwaway one a flow call starts without PREFECT_API_URL)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def ensure_limit(collection: str) -> None:
    """The collection's global concurrency limit (1 slot), created when missing: Prefect ignores a limit that does
    not exist."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit_name(collection))
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=limit_name(collection), limit=1, active=True))
            except ObjectAlreadyExists:
                pass


@contextmanager
def _prefect_slot(rt: Runtime, wait_seconds: float) -> Iterator[None]:
    from prefect.concurrency.sync import concurrency

    collection = rt.settings.collection
    ensure_limit(collection)
    entered = False
    started = time.monotonic()
    try:
        # At least a few seconds even with no wait: asking the server for a free slot is itself a round trip.
        with concurrency(limit_name(collection), occupy=1, timeout_seconds=max(wait_seconds, MIN_SLOT_WAIT_S),
                         strict=True):
            entered = True
            yield
    except TimeoutError:
        if entered:  # raised by the body, not by the wait for a slot
            raise
        held = lock_holder(rt)  # the store lock usually knows who it is
        who = f" (the collection's lock is held by {held.describe()})" if held else ""
        raise LockBusy(f"collection {collection}: another run holds the Prefect concurrency limit "
                       f"{limit_name(collection)}{who}; waited {time.monotonic() - started:.0f} s "
                       f"(RAG_HEALTH_LOCK_WAIT_SECONDS: {wait_seconds:.0f}). Let that run finish, or raise the wait",
                       held, wait_seconds) from None


@contextmanager
def guard(rt: Runtime, owner: str, *, nested: bool = False) -> Iterator[Any]:
    """Hold the collection for writing. nested: inside a run that already holds it (a suite's stage): only the
    store lock, which re-enters for the same owner."""
    wait = rt.settings.lock_wait_seconds
    slot = _prefect_slot(rt, wait) if prefect_server() and not nested else nullcontext()
    with slot, collection_lock(rt, owner) as held:
        yield held


def check_held(rt: Runtime, owner: str) -> None:
    """For work done under another run's lock (an ingest shard under its coordinator): that run must hold the
    collection now, or the work would write unguarded."""
    from rag_health.errors import ConfigError

    holder = lock_holder(rt)
    if holder is None or holder.owner != owner:
        held = f"held by {holder.describe()}" if holder else "free"
        raise ConfigError(f"collection {rt.settings.collection}: this shard belongs to run {owner}, which does not "
                          f"hold the collection lock (it is {held}); shards run only from their coordinator")
