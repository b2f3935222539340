"""The collection lock on real backends: flock across real processes (and a SIGKILLed holder), and lease objects
on a real S3 (SeaweedFS). No timed assertions: waits have generous upper bounds only."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag_health.errors import ConfigError, LockBusy, LockLost
from rag_health.locks import Lease, collection_lock, lock_holder, lock_name
from rag_health.runtime import Runtime
from rag_health.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
HANG = 60.0  # upper bound on anything that should take a second

# A holder in a process of its own: takes the lock, says so with a marker file, holds it until `go` exists.
HOLDER = """
import pathlib, sys, time
from rag_health.locks import collection_lock
from rag_health.runtime import Runtime
from rag_health.settings import load_settings
state, collection, owner, go = sys.argv[1:5]
with collection_lock(Runtime(load_settings(state_dir=state, collection=collection)), owner, wait_seconds=0):
    pathlib.Path(go + ".held").write_text(str(__import__("os").getpid()))
    while not pathlib.Path(go).exists():
        time.sleep(0.05)
    pathlib.Path(go + ".releasing").write_text("")
"""


def runtime(state: Path, s3=None, **overrides) -> Runtime:
    return Runtime(load_settings(state_dir=str(state), **overrides), s3=s3)


def wait_for(condition, what: str, limit: float = HANG) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit} s waiting for {what}")
        time.sleep(0.05)


def start_holder(state: Path, collection: str, owner: str, go: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), collection, owner, str(go)], cwd=REPO, env=env)
    wait_for(lambda: Path(f"{go}.held").exists() or child.poll() is not None, "the holder process to lock")
    assert child.poll() is None, "the holder process exited before taking the lock"
    return child


def test_file_lock_second_process_waits_then_gets_it(tmp_path):
    """A second process gets the lock only after the first releases it; with wait 0 it fails at once, naming the
    holding run, its host and pid."""
    go = tmp_path / "go"
    child = start_holder(tmp_path / "state", "docs", "suite-run-1", go)
    rt = runtime(tmp_path / "state", collection="docs")
    try:
        with pytest.raises(LockBusy) as busy:
            with collection_lock(rt, "reingest-7", wait_seconds=0):
                pass
        message = str(busy.value)
        assert "'docs'" in message and "suite-run-1" in message and f"pid {child.pid}" in message
        assert "RAG_HEALTH_LOCK_WAIT_SECONDS" in message and busy.value.holder.owner == "suite-run-1"
        assert lock_holder(rt).owner == "suite-run-1"

        got: list[bool] = []

        def contender() -> None:
            with collection_lock(rt, "reingest-7", wait_seconds=HANG):
                got.append(Path(f"{go}.releasing").exists())  # the holder had let go before we got in

        thread = threading.Thread(target=contender)
        thread.start()
        go.write_text("")
        thread.join(HANG)
        assert got == [True]
        assert child.wait(HANG) == 0
    finally:
        go.touch()
        child.wait(HANG)
    assert lock_holder(rt) is None


def test_kernel_releases_the_lock_of_a_killed_holder(tmp_path):
    """A holder killed with SIGKILL runs no cleanup; the kernel drops its flock and the next run gets in."""
    go = tmp_path / "never"
    child = start_holder(tmp_path / "state", "docs", "crashed-run", go)
    rt = runtime(tmp_path / "state", collection="docs")
    assert lock_holder(rt).pid == child.pid
    child.send_signal(signal.SIGKILL)
    child.wait(HANG)
    assert lock_holder(rt) is None  # the file still names the dead run, but nobody holds the flock
    with collection_lock(rt, "next-run", wait_seconds=HANG) as held:
        assert held.lease.owner == "next-run" and lock_holder(rt).owner == "next-run"


def test_same_owner_reenters_and_other_owners_wait(tmp_path):
    """A suite holds the lock for its run and its stages take it again with the same run id, in the same thread
    or another: no deadlock. Another run id is kept out until the outermost hold ends."""
    rt = runtime(tmp_path, collection="docs")
    with collection_lock(rt, "suite-1", wait_seconds=0) as outer:
        with collection_lock(rt, "suite-1", wait_seconds=0) as inner:
            assert inner is outer
        entered: list[bool] = []

        def stage_in_a_worker_thread() -> None:
            with collection_lock(rt, "suite-1", wait_seconds=0):
                entered.append(True)

        thread = threading.Thread(target=stage_in_a_worker_thread)
        thread.start()
        thread.join(HANG)
        assert entered == [True]
        with pytest.raises(LockBusy, match="suite-1"):  # still held after the inner holds ended
            with collection_lock(rt, "reingest-2", wait_seconds=0):
                pass
    with collection_lock(rt, "reingest-2", wait_seconds=0):
        pass


def test_different_collections_and_state_dirs_do_not_block(tmp_path):
    """The lock is per collection and per Chroma location: two embedded state directories are two databases."""
    with collection_lock(runtime(tmp_path / "a", collection="docs"), "run-1", wait_seconds=0):
        with collection_lock(runtime(tmp_path / "a", collection="other"), "run-2", wait_seconds=0):
            with collection_lock(runtime(tmp_path / "b", collection="docs"), "run-3", wait_seconds=0):
                pass
    embedded = [lock_name(load_settings(state_dir=str(tmp_path / d))) for d in "ab"]
    served = [lock_name(load_settings(state_dir=str(tmp_path / d), chroma_mode="http")) for d in "ab"]
    assert embedded[0] != embedded[1] and served[0] == served[1] == "rag-health"


def test_http_without_a_bucket_warns_that_only_this_host_is_protected(tmp_path, caplog):
    rt = runtime(tmp_path, chroma_mode="http")
    with caplog.at_level("WARNING", logger="rag_health.locks"), collection_lock(rt, "run-1", wait_seconds=0):
        pass
    assert "only processes on this host" in caplog.text and "RAG_HEALTH_S3_BUCKET" in caplog.text


def test_lock_settings_are_validated(monkeypatch):
    """lock_wait_seconds defaults to 15 minutes; 0 means fail at once; negative and NaN are refused."""
    assert load_settings().lock_wait_seconds == 900 and load_settings(lock_wait_seconds=0).lock_wait_seconds == 0
    for value in ("nan", "-1", "inf"):
        monkeypatch.setenv("RAG_HEALTH_LOCK_WAIT_SECONDS", value)
        with pytest.raises(ConfigError, match="lock_wait_seconds"):
            load_settings()
    monkeypatch.delenv("RAG_HEALTH_LOCK_WAIT_SECONDS")
    monkeypatch.setenv("RAG_HEALTH_LOCK_LEASE_SECONDS", "0")
    with pytest.raises(ConfigError, match="lock_lease_seconds"):
        load_settings()


# --- lease objects on a real S3 ---------------------------------------------------------------------------------

@pytest.fixture
def bucket_runtime(seaweed, tmp_path):
    """Runtimes sharing one new bucket (as workers do), each with its own client and state directory."""
    bucket = f"locks-{secrets.token_hex(4)}"
    seaweed.client().create_bucket(Bucket=bucket)

    def make(name: str = "w", **overrides) -> Runtime:
        return runtime(tmp_path / name, s3=seaweed.client(), s3_bucket=bucket, s3_prefix="rh", chroma_mode="http",
                       collection="docs", **overrides)

    return make


def lease_object(rt: Runtime) -> Lease | None:
    return Lease.from_json(rt.archive.store.get(f"locks/{lock_name(rt.settings)}.json"))


def plant_lease(rt: Runtime, owner: str, ttl: float) -> None:
    """A lease written by a holder that then died: nobody renews it."""
    lease = Lease(lock=lock_name(rt.settings), owner=owner, host="gone-host", pid=4242,
                  acquired_at="2026-11-28T00:00:00+00:00", expires_at="2026-11-28T00:01:00+00:00", ttl_seconds=ttl,
                  token="dead")
    rt.archive.store.put(f"locks/{lock_name(rt.settings)}.json", lease.to_json())


def test_bucket_lease_keeps_one_writer_at_a_time(bucket_runtime, tmp_path):
    """Four workers increment a counter under the lock: no lost update, never two inside at once; the lease names
    owner, host, pid and times, holds no credentials, and is deleted on release."""
    from tests.support.seaweed import ACCESS_KEY, SECRET_KEY

    counter = tmp_path / "counter"
    counter.write_text("0")
    inside, most_inside, errors = [0], [0], []
    guard = threading.Lock()

    def worker(n: int) -> None:
        rt = bucket_runtime(f"w{n}")
        try:
            for i in range(3):
                with collection_lock(rt, f"run-{n}-{i}", wait_seconds=HANG) as held:
                    with guard:
                        inside[0] += 1
                        most_inside[0] = max(most_inside[0], inside[0])
                    stored = rt.archive.store.get(f"locks/{held.name}.json")
                    assert Lease.from_json(stored).owner == f"run-{n}-{i}"
                    assert ACCESS_KEY.encode() not in stored and SECRET_KEY.encode() not in stored
                    value = int(counter.read_text())
                    time.sleep(0.01)
                    counter.write_text(str(value + 1))
                    with guard:
                        inside[0] -= 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * HANG)
    assert errors == [] and counter.read_text() == "12" and most_inside[0] == 1
    rt = bucket_runtime()
    assert lease_object(rt) is None and lock_holder(rt) is None
    lease = Lease.from_json(b'{"lock": "x", "owner": "r", "host": "h", "pid": 1, "acquired_at": "t"}')
    assert lease is not None and lease.describe().startswith("run r on host h (pid 1)")


def test_expired_lease_is_taken_over_and_a_live_one_is_not(bucket_runtime):
    """A holder that crashed leaves its lease; while within its TTL others are told who holds it, after it the
    next run takes it over."""
    rt = bucket_runtime()
    plant_lease(rt, "crashed-run", ttl=3600)
    with pytest.raises(LockBusy) as busy:
        with collection_lock(rt, "next-run", wait_seconds=0):
            pass
    assert "crashed-run" in str(busy.value) and "gone-host" in str(busy.value) and "TTL" in str(busy.value)

    plant_lease(rt, "crashed-run", ttl=0.5)
    with collection_lock(rt, "next-run", wait_seconds=HANG) as held:
        assert lease_object(rt).owner == "next-run" and held.lease.owner == "next-run"
    assert lease_object(rt) is None


def wait_until_expired(rt: Runtime) -> None:
    backend = rt.locks.backend
    wait_for(lambda: backend._read(lock_name(rt.settings))[2], "the planted lease to expire")


def race_two_takers(bucket_runtime, owners: tuple[str, str]) -> dict[str, str]:
    """Both takers start together with wait 0; the winner holds until the loser has tried."""
    start, done = threading.Barrier(2), threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def taker(owner: str) -> None:
        start.wait(HANG)
        try:
            with collection_lock(bucket_runtime(owner), owner, wait_seconds=0):
                outcomes[owner] = "won"
                done.wait(HANG)
        except LockBusy as exc:
            outcomes[owner] = f"busy: {exc.holder.owner if exc.holder else None}"
            done.wait(HANG)

    threads = [threading.Thread(target=taker, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    return outcomes


def test_two_takers_of_an_expired_lease_never_both_win(bucket_runtime):
    """Both see the expired lease, both try; the conditional delete and the create-only write let exactly one in,
    the other is told who won."""
    for round_ in range(3):
        rt = bucket_runtime()
        plant_lease(rt, "crashed-run", ttl=0.1)
        wait_until_expired(rt)
        outcomes = race_two_takers(bucket_runtime, (f"taker-{round_}-a", f"taker-{round_}-b"))
        won = [o for o, r in outcomes.items() if r == "won"]
        assert len(won) == 1, outcomes
        loser = next(o for o in outcomes if o not in won)
        assert outcomes[loser] == f"busy: {won[0]}"


def test_heartbeat_keeps_a_long_holder_past_its_ttl(bucket_runtime):
    """A run holding longer than the lease TTL keeps renewing it: nobody takes it over meanwhile; release deletes
    the lease object."""
    holder = bucket_runtime("holder", lock_lease_seconds=2)
    other = bucket_runtime("other")
    with collection_lock(holder, "long-run", wait_seconds=0) as held:
        first_expiry = held.lease.expires_at
        deadline = time.monotonic() + 7  # 3.5 TTLs
        while time.monotonic() < deadline:
            with pytest.raises(LockBusy, match="long-run"):
                with collection_lock(other, "intruder", wait_seconds=0):
                    pass
            time.sleep(0.5)
        held.ensure()
        assert lease_object(holder).expires_at != first_expiry  # renewed
    assert lease_object(holder) is None


def test_a_lease_taken_over_is_reported_lost_and_not_deleted(bucket_runtime):
    """When a holder's lease is taken over anyway (it was suspended past its TTL), the heartbeat notices,
    ensure() raises LockLost, and the release leaves the new holder's lease alone."""
    rt = bucket_runtime(lock_lease_seconds=1)
    with collection_lock(rt, "suspended-run", wait_seconds=0) as held:
        key = f"locks/{held.name}.json"
        rt.archive.store.client.delete_object(Bucket=rt.settings.s3_bucket, Key=f"rh/{key}")
        plant_lease(rt, "usurper", ttl=3600)
        wait_for(lambda: held.lost, "the heartbeat to notice")
        with pytest.raises(LockLost, match="taken over"):
            held.ensure()
    assert lease_object(rt).owner == "usurper"


def test_a_slow_taker_cannot_delete_the_new_holders_lease(bucket_runtime):
    """The takeover race made deterministic: a taker reads the expired lease and stalls before its delete; another
    takes the lock over meanwhile. The stalled delete is conditional on the expired lease's ETag, so it fails and
    the slow taker is told who holds the lock, instead of deleting the new lease and both runs writing."""
    rt = bucket_runtime()
    plant_lease(rt, "crashed-run", ttl=0.1)
    wait_until_expired(rt)
    slow = bucket_runtime("slow")
    reached, proceed = threading.Event(), threading.Event()

    class StallingDelete:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def delete_object(self, **kwargs):
            reached.set()
            proceed.wait(HANG)
            return self.inner.delete_object(**kwargs)

    slow.locks.backend.client = StallingDelete(slow.locks.backend.client)
    outcome: list[str] = []

    def slow_taker() -> None:
        try:
            with collection_lock(slow, "slow-taker", wait_seconds=0):
                outcome.append("won")
        except LockBusy as exc:
            outcome.append(f"busy: {exc.holder.owner if exc.holder else None}")

    thread = threading.Thread(target=slow_taker)
    thread.start()
    wait_for(reached.is_set, "the slow taker to reach its delete")
    with collection_lock(bucket_runtime("fast"), "fast-taker", wait_seconds=0):
        proceed.set()
        thread.join(HANG)
        assert outcome == ["busy: fast-taker"] and lease_object(rt).owner == "fast-taker"
