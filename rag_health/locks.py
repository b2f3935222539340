"""The collection lock: one writer at a time per Chroma collection (and the run archive beside it), held in the store
itself, so it holds with no Prefect server and is the source of truth whatever else is configured.

With a bucket, the lock is a lease object `locks/<name>.json` under the archive prefix: created create-only
(IfNoneMatch), renewed by a heartbeat with a conditional overwrite (IfMatch), deleted on release (IfMatch); a lease
nobody renewed within its TTL (the holder died) is taken over by a conditional delete and a create-only write, so
two takers cannot both win. Without a bucket, it is an OS file lock (flock) in the state directory, released by
the kernel when the holding process dies. Either way the same owner (a run id) taking it again in one process
re-enters instead of waiting for itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

from rag_health.artifacts import S3ArtifactStore
from rag_health.errors import S3_MISSING, S3_PRECONDITION, LockBusy, LockLost, LockUnavailable, s3_error_code
from rag_health.settings import Settings

log = logging.getLogger(__name__)


class HasLocks(Protocol):
    """What collection_lock needs of a run's runtime (rag_health.runtime.Runtime): its settings and lock space."""

    settings: Settings

    @property
    def locks(self) -> LockSpace: ...

LOCKS_PREFIX = "locks/"  # under the archive prefix in the bucket, under the state directory otherwise
MAX_POLL_S = 2.0  # longest pause between two tries while waiting
RENEW_RETRY_S = 2.0  # a lease renewal that failed is tried again this soon
MAX_LOCK_NAME = 180  # longer names are shortened with a digest: a file name holds at most 255 bytes
CLOCK_GRACE_S = 1.0  # the server's Date header has whole seconds: a lease counts as expired only this much later


@dataclass(frozen=True)
class Lease:
    """Who holds a lock, as the lease object or the lock file records it. Nothing secret: ids, host, times."""

    lock: str
    owner: str  # the run id
    host: str
    pid: int
    acquired_at: str  # ISO-8601, UTC
    expires_at: str | None = None  # a bucket lease: unless renewed before then; a file lock: None (the kernel's)
    ttl_seconds: float | None = None
    token: str = ""  # one per acquisition: tells two acquisitions by the same owner apart
    process: str = ""  # boot id, pid namespace, pid and start time: which process on which boot (see _dead_here)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> Lease | None:
        """None for an absent, empty or unreadable record (a lock file between truncate and write)."""
        try:
            raw = json.loads(data or b"")
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        until = f", lease until {self.expires_at}" if self.expires_at else ""
        return f"run {self.owner} on host {self.host} (pid {self.pid}) since {self.acquired_at}{until}"


def short_name(name: str) -> str:
    """A lock name that fits a file name (255 bytes) and an S3 key: long collection names keep their start and
    get a digest of the whole name, so two long names never share a lock."""
    if len(name.encode()) <= MAX_LOCK_NAME:
        return name
    return name[:MAX_LOCK_NAME - 17] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _new_lease(name: str, owner: str, ttl: float | None) -> Lease:
    now = _now()
    token = secrets.token_hex(8)
    _mine.add(token)  # ours until released (or until a release was tried): never taken over from ourselves
    return Lease(lock=name, owner=owner, host=socket.gethostname(), pid=os.getpid(), acquired_at=_stamp(now),
                 expires_at=_stamp(now + timedelta(seconds=ttl)) if ttl else None, ttl_seconds=ttl,
                 token=token, process=_process_identity(os.getpid()))


_mine: set[str] = set()  # tokens of leases this process wrote and has not let go of


def _process_identity(pid: int) -> str:
    """boot id | pid namespace | pid | start time (clock ticks since boot). Two containers sharing a host name
    (host networking) have different pid namespaces; a pid taken again after a reboot or by a new process has
    another boot id or start time. '' where /proc cannot tell (then no lease is judged dead early)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        stat = Path(f"/proc/{pid}/stat").read_text()
        started = stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
    except (OSError, IndexError):
        return ""
    return f"{boot}|{namespace}|{pid}|{started}"


@dataclass
class HeldLock:
    """A lock this process holds: what to log, and whether it is still ours."""

    name: str
    label: str  # the collection, for messages
    owner: str
    where: str  # the lease object's URI or the lock file's path
    scope: str  # who it keeps out, in words
    lease: Lease
    lost: bool = False
    _handle: Any = field(default=None, repr=False)

    def ensure(self) -> None:
        """Raise LockLost when the heartbeat found the lease taken over; a long stage may call it between writes."""
        if self.lost:
            raise LockLost(f"the lock on collection {self.label!r} ({self.where}) was taken over while run "
                           f"{self.owner} held it (its lease went unrenewed past its TTL); another run may be "
                           "writing: stop and rerun")


class _FileLocks:
    """flock on `<state dir>/locks/<name>.lock`. The file stays (unlinking a lock file lets a waiter lock a dead
    inode); its content names the holder while it is held and is emptied on release."""

    def __init__(self, folder: Path):
        self.folder = folder

    def where(self, name: str) -> str:
        return str((self.folder / f"{short_name(name)}.lock").resolve())

    def try_acquire(self, name: str, owner: str) -> tuple[Any, Lease | None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.where(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None, self.holder(name)
        except BaseException:
            os.close(fd)
            raise
        lease = _new_lease(name, owner, None)
        os.ftruncate(fd, 0)
        os.pwrite(fd, lease.to_json(), 0)
        return fd, lease

    def release(self, held: HeldLock) -> None:
        fd = held._handle
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor of the open file releases the flock

    def holder(self, name: str) -> Lease | None:
        try:
            fd = os.open(self.where(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:  # a shared lock we can take means nobody holds the exclusive one
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pass
            lease = Lease.from_json(os.pread(fd, 65536, 0))
            return lease or Lease(lock=name, owner="(not yet recorded)", host="?", pid=0, acquired_at="?")
        finally:
            os.close(fd)  # also drops the shared lock, if taken

    def start_heartbeat(self, held: HeldLock) -> None:
        pass  # the kernel holds a file lock for as long as the process lives

    def stop_heartbeat(self, held: HeldLock) -> None:
        pass


@dataclass
class _BucketHandle:
    etag: str
    lease: Lease
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class _BucketLocks:
    """Lease objects in the bucket. Expiry is judged on the server's clock (its Date header against the object's
    Last-Modified plus the holder's TTL), so clock skew between workers does not matter; the lease's own
    expires_at is for people."""

    def __init__(self, store: S3ArtifactStore, lease_seconds: float):
        self.store = store
        self.client = store.client
        self.lease_seconds = lease_seconds

    def _key(self, name: str) -> str:
        return self.store._key(f"{LOCKS_PREFIX}{short_name(name)}.json")

    def where(self, name: str) -> str:
        return self.store.uri(f"{LOCKS_PREFIX}{short_name(name)}.json")

    def _put(self, name: str, lease: Lease, **condition: str) -> str:
        response = self.client.put_object(Bucket=self.store.bucket, Key=self._key(name), Body=lease.to_json(),
                                          ContentType="application/json", CacheControl="no-cache",
                                          **self.store.encryption, **condition)
        return response["ETag"]

    def _read(self, name: str) -> tuple[Lease | None, str | None, bool]:
        """The lease there now, its ETag, and whether it expired; (None, None, False) when there is none."""
        try:
            response = self.client.get_object(Bucket=self.store.bucket, Key=self._key(name))
        except Exception as exc:
            if s3_error_code(exc) in S3_MISSING:
                return None, None, False
            raise
        body = response["Body"].read()
        lease = Lease.from_json(body)
        return lease, response.get("ETag"), _expired(lease, response)

    def try_acquire(self, name: str, owner: str) -> tuple[Any, Lease | None]:
        lease = _new_lease(name, owner, self.lease_seconds)
        try:
            return _BucketHandle(self._put(name, lease, IfNoneMatch="*"), lease), lease
        except Exception as exc:
            if s3_error_code(exc) not in S3_PRECONDITION:
                raise
        current, etag, expired = self._read(name)
        if current is None and etag is None:  # released between our write and our read: try again at once
            return self.try_acquire_once(name, lease)
        if not expired and not _dead_here(current):
            return None, current
        # Taken over only if it is still the expired lease we read (IfMatch): of two takers, the second one's
        # delete fails, or its create-only write does; never both succeed.
        log.warning("taking over the expired lock %s held by %s", self.where(name),
                    current.describe() if current else "an unreadable lease")
        try:
            self.client.delete_object(Bucket=self.store.bucket, Key=self._key(name), IfMatch=etag)
        except Exception as exc:
            if s3_error_code(exc) not in S3_PRECONDITION + S3_MISSING:
                raise
        return self.try_acquire_once(name, lease)

    def try_acquire_once(self, name: str, lease: Lease) -> tuple[Any, Lease | None]:
        try:
            return _BucketHandle(self._put(name, lease, IfNoneMatch="*"), lease), lease
        except Exception as exc:
            if s3_error_code(exc) not in S3_PRECONDITION:
                raise
        return None, self._read(name)[0]

    def renew(self, held: HeldLock) -> None:
        """Extend the lease. The ETag condition alone makes this safe; reading first (is it still our token?)
        also narrows the window on a server that ignored IfMatch. The condition is the ETag just read: a renewal
        that landed although its answer was lost (a timeout) changed the ETag, and is still ours."""
        handle: _BucketHandle = held._handle
        current, etag, _ = self._read(held.name)
        if current is None or current.token != handle.lease.token:
            raise LockLost(held.where)
        ttl = handle.lease.ttl_seconds or self.lease_seconds
        renewed = Lease(**{**asdict(handle.lease), "expires_at": _stamp(_now() + timedelta(seconds=ttl))})
        try:
            handle.etag = self._put(held.name, renewed, IfMatch=etag or handle.etag)
        except Exception as exc:
            if s3_error_code(exc) in S3_PRECONDITION:
                raise LockLost(held.where) from None
            raise
        handle.lease = held.lease = renewed

    def start_heartbeat(self, held: HeldLock) -> None:
        handle: _BucketHandle = held._handle
        interval = (handle.lease.ttl_seconds or self.lease_seconds) / 3

        def beat() -> None:
            wait = interval
            while not handle.stop.wait(wait):
                try:
                    self.renew(held)
                    wait = interval
                except LockLost:
                    held.lost = True
                    log.error("lost the lock on collection %r (%s): its lease was taken over", held.label,
                              held.where)
                    return
                except Exception as exc:  # a slow or absent server: try again soon, the TTL gives room
                    log.warning("could not renew the lock lease %s: %s", held.where, exc)
                    # Soon, not a third of the TTL later: once the server is back, a waiting run could take an
                    # expired lease over before our next beat would have renewed it.
                    wait = min(interval, RENEW_RETRY_S)

        handle.thread = threading.Thread(target=beat, name=f"lock-heartbeat-{held.name}", daemon=True)
        handle.thread.start()

    def stop_heartbeat(self, held: HeldLock) -> None:
        handle: _BucketHandle = held._handle
        handle.stop.set()
        if handle.thread is not None:
            handle.thread.join()

    def release(self, held: HeldLock) -> None:
        if held.lost:
            return  # someone else's lease now: never delete it
        handle: _BucketHandle = held._handle
        try:
            self.client.delete_object(Bucket=self.store.bucket, Key=self._key(held.name), IfMatch=handle.etag)
        except Exception as exc:
            if s3_error_code(exc) not in S3_PRECONDITION + S3_MISSING:
                raise

    def holder(self, name: str) -> Lease | None:
        return self._read(name)[0]


def _dead_here(lease: Lease | None) -> bool:
    """A lease written on this host by a process that no longer runs (its release failed, e.g. while S3 was down):
    nobody renews it, so the next run here need not wait out its TTL. A pid that is taken again by another process
    reads as alive, which only means waiting for the TTL as before."""
    if lease is None or lease.host != socket.gethostname() or lease.pid <= 0 or not lease.process:
        return False
    here = _process_identity(os.getpid())
    if not here or here.split("|")[:2] != lease.process.split("|")[:2]:
        return False  # another boot, or another pid namespace (a container sharing the host name): can't tell
    if lease.pid == os.getpid():  # this process: dead unless it holds the lock (a release that failed earlier)
        return lease.token not in _mine
    now = _process_identity(lease.pid)
    return now != lease.process  # gone ('' for a pid nobody has), or the pid now belongs to another process


def _expired(lease: Lease | None, response: dict[str, Any]) -> bool:
    """Past the holder's TTL since the last write, on the server's clock when it says the time. An unreadable
    lease (not ours to parse) expires a minute after its last write."""
    ttl = lease.ttl_seconds if lease and lease.ttl_seconds else 60.0
    modified = response.get("LastModified")
    date = (response.get("ResponseMetadata") or {}).get("HTTPHeaders", {}).get("date")
    if isinstance(modified, datetime) and date:
        try:
            server_now = parsedate_to_datetime(date)
            return (server_now - modified).total_seconds() > ttl + CLOCK_GRACE_S
        except (TypeError, ValueError):
            pass
    if lease and lease.expires_at:  # no server time: the holder's own clock, through its expires_at
        return _now() > datetime.fromisoformat(lease.expires_at) + timedelta(seconds=CLOCK_GRACE_S)
    return False


@dataclass
class _Entry:
    held: HeldLock
    depth: int


# Locks this process holds, by (where, owner): the same owner taking one again re-enters. One mutex per key makes
# a second thread of the same owner wait for the first's acquisition and then re-enter, never contend with it.
_held: dict[tuple[str, str], _Entry] = {}
_mutexes: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child holds nothing of its parent's (it would otherwise re-enter a lock it does not own)."""
    global _guard
    _held.clear()
    _mine.clear()
    _mutexes.clear()
    _guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _mutex(key: tuple[str, str]) -> threading.Lock:
    with _guard:
        return _mutexes.setdefault(key, threading.Lock())


class LockSpace:
    """Where one deployment's locks live: a bucket prefix (shared by every worker) or a state directory (this
    host). Built from settings by Runtime.locks."""

    def __init__(self, state_dir: Path, store: S3ArtifactStore | None = None, lease_seconds: float = 120.0,
                 warning: str | None = None, outage_wait: float = 60.0):
        self.backend: _FileLocks | _BucketLocks = (
            _BucketLocks(store, lease_seconds) if store is not None else _FileLocks(Path(state_dir) / LOCKS_PREFIX))
        self.warning = warning
        self.outage_wait = outage_wait  # how long an unreachable lease store is tried before LockUnavailable
        if store is not None:
            self.scope = "every worker using this bucket prefix"
        else:
            self.scope = "processes on this host using this state directory"

    @classmethod
    def for_settings(cls, settings: Settings, store: S3ArtifactStore | None) -> LockSpace:
        warning = None
        if store is None and settings.chroma_mode == "http":
            warning = (f"collection lock: without a bucket the lock is a file in {settings.state_dir}, which keeps "
                       f"out only processes on this host; another host writing collection {settings.collection!r} "
                       f"on the Chroma server {settings.chroma_host}:{settings.chroma_port} is not kept out "
                       "(set RAG_HEALTH_S3_BUCKET to share the lock)")
        return cls(Path(settings.state_dir), store, settings.lock_lease_seconds, warning,
                   outage_wait=settings.publish_deadline)

    def where(self, name: str) -> str:
        return self.backend.where(name)

    def holder(self, name: str) -> Lease | None:
        """The current holder of lock `name`, or None when it is free."""
        return self.backend.holder(name)

    @contextmanager
    def lock(self, name: str, owner: str, wait_seconds: float, label: str | None = None) -> Iterator[HeldLock]:
        """Hold lock `name` for `owner` (a run id) for the block; re-entrant for the same owner in this process.
        Waits up to wait_seconds (0: one try), then raises LockBusy."""
        if not owner:
            raise ValueError("a lock needs an owner (the run id)")
        if not (math.isfinite(wait_seconds) and wait_seconds >= 0):
            raise ValueError(f"wait_seconds must be a finite number of seconds >= 0, got {wait_seconds!r}")
        key = (self.where(name), owner)
        with _mutex(key):
            entry = _held.get(key)
            if entry is not None:
                entry.depth += 1
            else:
                if self.warning:
                    log.warning(self.warning)
                held = self._acquire(name, owner, wait_seconds, label or name)
                entry = _held[key] = _Entry(held, 1)
        try:
            yield entry.held
        finally:
            with _mutex(key):
                entry.depth -= 1
                if entry.depth == 0:
                    del _held[key]
                    self.backend.stop_heartbeat(entry.held)
                    try:
                        self.backend.release(entry.held)
                    except Exception as exc:  # the run's work is done; an unreleased lease expires after its TTL
                        log.warning("could not release the lock %s: %s", entry.held.where, exc)
                    finally:  # let go of, even if the lease stays behind: the next run here may take it over
                        _mine.discard(entry.held.lease.token)

    def _acquire(self, name: str, owner: str, wait_seconds: float, label: str) -> HeldLock:
        started = time.monotonic()
        pause = 0.05
        failing_since: float | None = None
        while True:
            try:
                handle, lease = self.backend.try_acquire(name, owner)
            except Exception as exc:
                failing_since = self._unreachable(exc, label, name, failing_since)
                time.sleep(min(pause * random.uniform(0.5, 1.0), MAX_POLL_S))
                pause = min(pause * 2, MAX_POLL_S)
                continue
            failing_since = None
            if handle is not None:
                held = HeldLock(name, label, owner, self.where(name), self.scope, lease, _handle=handle)
                self.backend.start_heartbeat(held)
                return held
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                raise LockBusy(self._busy_message(label, name, lease, waited, wait_seconds), lease, waited)
            time.sleep(min(pause * random.uniform(0.5, 1.0), wait_seconds - waited))
            pause = min(pause * 2, MAX_POLL_S)

    def _unreachable(self, exc: Exception, label: str, name: str, failing_since: float | None) -> float:
        """The lease store failed: a passing failure (rag_health.errors.transient) is tried again for outage_wait
        seconds, then LockUnavailable; anything else (access denied, a missing bucket) is a configuration error."""
        from rag_health.errors import ConfigError, s3_reason, transient

        if not transient(exc):
            raise ConfigError(f"collection {label!r}: the lock {self.where(name)} cannot be used: "
                              f"{s3_reason(exc)}") from exc
        now = time.monotonic()
        since = now if failing_since is None else failing_since
        if now - since >= self.outage_wait:
            raise LockUnavailable(
                f"collection {label!r}: the shared lock {self.where(name)} cannot be reached ({s3_reason(exc)}); "
                f"tried for {now - since:.0f} s (RAG_HEALTH_PUBLISH_DEADLINE). Nothing was written; try again when "
                "the bucket answers", None, now - since) from exc
        log.info("the lock %s cannot be reached (%s); trying again", self.where(name), s3_reason(exc))
        return since

    def _busy_message(self, label: str, name: str, holder: Lease | None, waited: float, wait_seconds: float) -> str:
        who = holder.describe() if holder else "another run (its lease could not be read)"
        if isinstance(self.backend, _BucketLocks):
            after = "if that run is gone, its lease is taken over once it goes unrenewed past its TTL"
        else:
            after = "the lock is freed as soon as that process exits"
        return (f"collection {label!r} is locked by {who}; waited {waited:.1f} s of {wait_seconds:g} s "
                f"(lock {self.where(name)}). Let that run finish and try again, or raise RAG_HEALTH_LOCK_WAIT_SECONDS; "
                f"{after}")


def lock_name(settings: Settings) -> str:
    """One lock per collection and Chroma location. A Chroma server is one location whatever name a worker calls
    it by, so http mode locks the collection name alone (two servers sharing one bucket prefix and a collection
    name over-lock, which is safe); embedded mode adds a digest of the state directory, so two embedded databases
    do not block each other."""
    if settings.chroma_mode == "http":
        return settings.collection
    digest = hashlib.sha256(str(Path(settings.state_dir).resolve()).encode()).hexdigest()[:12]
    return f"{settings.collection}.embedded-{digest}"


@contextmanager
def collection_lock(rt: HasLocks, owner: str, *, wait_seconds: float | None = None) -> Iterator[HeldLock]:
    """Hold the run's collection for writing: `with collection_lock(rt, run_id): ...`. The owner is the rag-health
    run id: the suite's, which its stage subflows receive as run_id and so re-enter; an ad-hoc stage's own
    new_run_id(). wait_seconds defaults to the lock_wait_seconds setting; LockBusy after it. A stage writing for
    long may call held.ensure() between batches (LockLost if its bucket lease was taken over)."""
    s = rt.settings
    wait = s.lock_wait_seconds if wait_seconds is None else wait_seconds
    with rt.locks.lock(lock_name(s), owner, wait, label=s.collection) as held:
        yield held


def lock_holder(rt: HasLocks) -> Lease | None:
    """Who holds the run's collection lock now (None: free), for status lines and messages."""
    return rt.locks.holder(lock_name(rt.settings))
