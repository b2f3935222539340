"""SIGKILL an ingest at several points of a changing corpus, then run it again: the index converges to exactly
what one clean run gives (same documents, hashes and chunk ids, no leftovers), nothing good is lost on the way,
and the rerun's peak memory stays within 20% of the model's own: a process that only embeds the same chunk texts,
measured on the same machine, each as its own VmHWM (ru_maxrss carries pytest's size across exec)."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, SMALL_CORPUS, write_doc

# Every one is reached by the change below (the test fails if the process is not killed).
KILL_POINTS = [("add", 1), ("add", 2), ("delete", 1), ("put_notes", 1), ("update_metadata", 1)]


def drive(docs, state, method="none", nth=0):
    return subprocess.run([sys.executable, "-m", "tests.support.kill_driver", str(docs), str(state), method,
                           str(nth)], cwd=REPO, capture_output=True, text=True, timeout=300)


def peak_mb(run) -> int:
    return int(run.stdout.split("peak_mb=")[1])


def change(root):
    """Edit one document, delete one, add one, add an unreadable one, touch one (same bytes, new version): every
    kind of write ingest makes (new chunks in several batches, deletions, notes, metadata re-tags)."""
    write_doc(root, "runbooks/kafka-lag.md", "# Kafka lag\n" + "Page the streaming team first, then check lag. " * 80)
    (root / "policies/chargebacks.md").unlink()
    write_doc(root, "runbooks/ledger-replay.md", "# Ledger replay\n" + "Replay the ledger from the last snapshot. " * 80)
    (root / "notes" / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    touched = root / "runbooks/card-declines.md"
    touched.write_bytes(touched.read_bytes())
    os.utime(touched, (1_900_000_000, 1_900_000_000))


def ledger_view(state, docs):
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    rt = build_runtime(load_settings(docs=str(docs), state_dir=str(state)))
    ledger = rt.index.ledger()
    return ({d: (e.content_hash, tuple(e.chunk_ids), tuple(e.leftover_ids), e.complete) for d, e in ledger.items()},
            rt.index.count())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The corpus before and after the change, the state after the first ingest, and one clean run's ledger."""
    root = tmp_path_factory.mktemp("kill")
    docs, initial, clean = root / "docs", root / "initial", root / "clean"
    for doc_id, (body, front) in SMALL_CORPUS.items():
        write_doc(docs, doc_id, body, **front)
    assert drive(docs, initial).returncode == 0
    before = ledger_view(initial, docs)[0]
    change(docs)
    assert drive(docs, clean).returncode == 0
    reference = drive(docs, clean, "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    return docs, initial, before, ledger_view(clean, docs), peak_mb(reference)


@pytest.mark.slow
@pytest.mark.parametrize("method,nth", KILL_POINTS)
def test_killed_ingest_converges_on_rerun(tmp_path, scenario, method, nth):
    docs, initial, before, clean, reference_mb = scenario
    state = tmp_path / "state"
    shutil.copytree(initial, state)
    killed = drive(docs, state, method, nth)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    survivors = ledger_view(state, docs)[0]
    # Nothing good is lost: every document indexed before the kill, and still at the source, is still searchable.
    assert {d for d in before if (docs / d).exists()} <= set(survivors)
    rerun = drive(docs, state)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert ledger_view(state, docs) == clean
    assert peak_mb(rerun) <= 1.2 * reference_mb, (peak_mb(rerun), reference_mb)
