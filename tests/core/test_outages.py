"""An outage costs a publish, never a run: the run archive's bucket (a real SeaweedFS) stopped before a suite and
in the middle of one, with an embedded Chroma and with a Chroma server (a real `chroma run`). An embedded
collection is locked on its own disk, so it never needs the bucket; a collection on a server needs the shared
lease, and when that cannot be reached the run does not start: one line, exit 75."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from rag_health import local
from rag_health.errors import LockUnavailable
from rag_health.locks import _BucketLocks, _FileLocks
from rag_health.runtime import Runtime
from rag_health.settings import load_settings
from tests.conftest import REPO
from tests.support.chroma_server import start_chroma
from tests.support.seaweed import start_seaweed

BIN = Path(sys.executable).parent
FAST_FAIL = {"publish_deadline": 3, "s3_connect_timeout": 1, "s3_read_timeout": 2, "s3_max_attempts": 1}


@pytest.fixture
def weed(tmp_path):
    server = start_seaweed(tmp_path / "weed")
    bucket = f"archive-{secrets.token_hex(3)}"
    server.client().create_bucket(Bucket=bucket)
    server.bucket = bucket
    yield server
    server.stop()


@pytest.fixture
def chroma(tmp_path):
    proc, port = start_chroma(tmp_path / "chroma-server")
    yield port
    proc.kill()
    proc.wait()


def settings_for(mode: str, tmp_path: Path, docs: Path, bucket: str, chroma_port: int | None) -> dict:
    s = {"docs": str(docs), "state_dir": str(tmp_path / "state"), "s3_bucket": bucket, **FAST_FAIL}
    if mode == "http":
        s.update(chroma_mode="http", chroma_port=chroma_port, collection=f"outage-{secrets.token_hex(3)}")
    return s


def env_for(settings: dict, weed) -> dict[str, str]:
    env = {**os.environ, **weed.env(), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    env.update({f"RAG_HEALTH_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def test_an_embedded_collection_is_locked_on_its_disk_even_with_a_bucket(tmp_path, seaweed):
    """Regression: with a bucket set, every run took its lock as a lease in the bucket, so an S3 outage stopped runs
    on an embedded Chroma that no other machine can write. The lock lives with the store it protects."""
    embedded = Runtime(load_settings(state_dir=str(tmp_path / "a"), s3_bucket="any"), s3=seaweed.client())
    shared = Runtime(load_settings(state_dir=str(tmp_path / "b"), s3_bucket="any", chroma_mode="http"),
                     s3=seaweed.client())
    assert isinstance(embedded.locks.backend, _FileLocks)
    assert isinstance(shared.locks.backend, _BucketLocks)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["embedded", "http"])
def test_bucket_stopped_before_the_suite(mode, tmp_path, small_corpus, weed, request):
    """`rag-health run --json` with the bucket's server stopped. Embedded: the whole suite runs, its files wait in
    the outbox, exit 0 with a publish warn (it exited 1 with the raw client message before any stage). Server mode:
    the shared lease cannot be reached, so nothing starts: one line naming the lease and the cause, exit 75, and
    the JSON error object; no traceback."""
    port = request.getfixturevalue("chroma") if mode == "http" else None
    settings = settings_for(mode, tmp_path, small_corpus, weed.bucket, port)
    weed.stop()
    done = subprocess.run([str(BIN / "rag-health"), "run", "--json"], cwd=REPO, env=env_for(settings, weed),
                          capture_output=True, text=True, timeout=600)
    data = json.loads(done.stdout)
    assert "Traceback" not in done.stderr
    if mode == "embedded":
        assert done.returncode == 0, done.stderr[-2000:]
        assert data["stages"]["ingest"] == "pass" and data["ingest"]["added"] == len(list(small_corpus.rglob("*.*")))
        waiting = data["report"]["outbox"]
        assert waiting and f"publish: warn — {len(waiting)} files in the outbox, not published (warn)" in data["findings"]
        outbox = tmp_path / "state" / "outbox" / data["run_id"]
        assert all((outbox / key).is_file() for key in waiting)
    else:
        assert done.returncode == 75, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rag-health: error: collection ")
        assert f"s3://{weed.bucket}/rag-health/locks/" in lines[0] and "cannot be reached" in lines[0]
        assert data == {"verdict": "error", "error": lines[0].removeprefix("rag-health: error: "), "exit_code": 75}
        assert not (tmp_path / "state" / "runs").exists()  # nothing was written


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["embedded", "http"])
def test_bucket_stopped_mid_suite_then_back(mode, tmp_path, small_corpus, weed, request, monkeypatch, caplog):
    """The bucket goes away after the ingest, while the suite holds the collection: the suite still runs every
    stage and ends with a publish warn, its files in the outbox. When the bucket is back, the next run uploads them
    first, and on a Chroma server it takes over the lease the first run could not release (its holder is gone),
    instead of waiting out the lease's TTL."""
    port = request.getfixturevalue("chroma") if mode == "http" else None
    settings = load_settings(**settings_for(mode, tmp_path, small_corpus, weed.bucket, port))
    for key, value in weed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    timed = local._execute

    def stop_after_ingest(rt, name, inputs):
        if name == "freshness" and weed.process.poll() is None:
            weed.stop()
        return timed(rt, name, inputs)

    monkeypatch.setattr(local, "_execute", stop_after_ingest)
    first = local.run_suite(settings)
    assert weed.process.poll() is not None, "the bucket was meant to stop during the run"
    assert set(first["stages"].values()) <= {"pass", "warn", "skip"} and first["verdict"] == "warn"
    assert first["ingest"]["added"] == len(list(small_corpus.rglob("*.*")))
    assert first["report"]["outbox"] and any(f.startswith("publish: warn") for f in first["findings"])

    monkeypatch.setattr(local, "_execute", timed)
    restarted = start_seaweed(tmp_path / "weed")  # same data, new ports
    try:
        for key, value in restarted.env().items():
            monkeypatch.setenv(key, value)
        with caplog.at_level(logging.WARNING, logger="rag_health.locks"):
            second = local.run_suite(settings)
        assert second["report"]["outbox"] == [] and not any(f.startswith("publish") for f in second["findings"])
        assert not list((tmp_path / "state" / "outbox").rglob("*.*"))
        index = json.loads(restarted.client().get_object(Bucket=weed.bucket, Key="rag-health/reports/index.json")
                           ["Body"].read())
        assert [e["run_id"] for e in index] == [second["run_id"], first["run_id"]]
        if mode == "http":
            assert any("taking over" in r.getMessage() and first["run_id"] in r.getMessage() for r in caplog.records)
    finally:
        restarted.stop()


def test_an_unreachable_lease_is_tried_again_then_unavailable(tmp_path, weed, monkeypatch):
    """The lease store failing with a passing error (connection refused) is tried again within the outage wait,
    then LockUnavailable (a LockBusy: exit 75) naming the lease and the cause."""
    from rag_health.artifacts import s3_client
    from rag_health.errors import LockBusy
    from rag_health.locks import collection_lock

    weed.stop()
    for key, value in weed.env().items():
        monkeypatch.setenv(key, value)
    rt = Runtime(load_settings(state_dir=str(tmp_path / "s"), s3_bucket=weed.bucket, chroma_mode="http",
                               publish_deadline=2), s3=s3_client(1, 1, 1))
    with pytest.raises(LockUnavailable) as unavailable:
        with collection_lock(rt, "run-x", wait_seconds=900):
            pass
    assert isinstance(unavailable.value, LockBusy)
    message = str(unavailable.value)
    assert "locks/rag-health.json" in message and "cannot be reached" in message and "Could not connect" in message


def test_only_a_lease_of_a_gone_process_of_this_boot_and_pid_namespace_is_taken_over_early():
    """Review of issue 19: the early takeover trusted host name and pid, so a live holder in another container
    sharing the host name (host networking; its own pid namespace, where our kill(pid, 0) finds nobody) lost its
    lease at once; and one process could take over its own lease between writing it and recording it held."""
    import dataclasses
    import socket

    from rag_health import locks

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = locks.Lease(lock="x", owner="r1", host=socket.gethostname(), pid=child.pid, acquired_at="t",
                       token="t1", process=locks._process_identity(os.getpid()).rsplit("|", 2)[0]
                       + f"|{child.pid}|123")
    assert locks._dead_here(gone)
    boot = gone.process.split("|")[0]
    other_namespace = dataclasses.replace(gone, process=f"{boot}|pid:[4026531999]|{child.pid}|123")
    assert not locks._dead_here(other_namespace)
    assert not locks._dead_here(dataclasses.replace(gone, process=""))  # a lease written before: its TTL decides
    alive = dataclasses.replace(gone, pid=os.getppid(), process=locks._process_identity(os.getppid()))
    assert not locks._dead_here(alive)
    mine = locks._new_lease("x", "r2", 60)  # written by this process and not yet let go of
    assert not locks._dead_here(mine)
    locks._mine.discard(mine.token)  # a release was tried (and failed): the next run here takes it over
    assert locks._dead_here(mine)
