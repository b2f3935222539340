"""The run archive: one store owns every key of a run and of the history; the report index is rebuilt from one
entry object per run, never read-modify-written."""

import json
import threading

import pandas as pd

from rag_health.archive import REPORT_ENTRIES, RunArchive, report_key, run_key
from rag_health.artifacts import LocalArtifactStore, S3ArtifactStore


def entry(created: str) -> dict:
    return {"created_at": created, "baseline_run": "run-0", "verdict": "pass", "embedding_drift_score": None}


def test_every_run_file_lives_under_its_run(tmp_path):
    archive = RunArchive(LocalArtifactStore(tmp_path))
    archive.save_result("r1", {"verdict": "pass"})
    archive.save_table("r1", "chunks.csv", pd.DataFrame({"chunk_id": ["a"]}))
    archive.save_quality_sample("r1", {"sample": []})
    archive.save_probe_ranks("r1", {"golden/p1": {"rank": 1, "retrieved": ["a"]}})
    archive.save_snapshot("r1", pd.DataFrame({"chunk_id": ["a"], "n_chars": [1.0]}))
    assert LocalArtifactStore(tmp_path).list("runs/r1/") == [run_key("r1", n) for n in (
        "chunks.csv", "probes.json", "quality.json", "result.json", "snapshot.parquet")]
    assert archive.quality_sample("r1") == {"sample": []} and archive.probe_ranks(None) is None
    assert archive.snapshot("r1")["chunk_id"].tolist() == ["a"]


def test_concurrent_workers_never_drop_each_others_index_entry(tmp_path):
    """Regression: reports/index.json was rewritten by read-modify-write, so two workers finishing at once lost
    an entry. Eight workers publish at once; every entry is kept and the next rebuild lists all of them."""
    store = LocalArtifactStore(tmp_path)
    barrier = threading.Barrier(8)
    errors = []

    def worker(i: int) -> None:
        archive = RunArchive(store)
        barrier.wait()
        try:
            archive.publish_report(f"run-{i}", f"<html>{i}</html>", entry(f"2026-11-28T00:00:0{i}"))
        except Exception as exc:  # a writer that trips over another's temporary file is a failure too
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list(REPORT_ENTRIES)) == 8
    RunArchive(store).publish_report("run-9", "<html>9</html>", entry("2026-11-28T00:00:09"))
    index = json.loads((tmp_path / "reports" / "index.json").read_text())
    assert [e["run_id"] for e in index] == [f"run-{i}" for i in (9, *range(7, -1, -1))]  # newest first


def test_an_index_written_before_entries_existed_is_kept(tmp_path):
    store = LocalArtifactStore(tmp_path)
    old = [{**entry("2026-01-01T00:00:00"), "run_id": "old-run", "href": "old-run/drift-report.html"}]
    store.put("reports/index.json", json.dumps(old).encode())
    RunArchive(store).publish_report("new-run", "<html/>", entry("2026-11-28T00:00:00"))
    index = json.loads((tmp_path / "reports" / "index.json").read_text())
    assert [e["run_id"] for e in index] == ["new-run", "old-run"]  # newest first


def test_with_a_bucket_the_history_is_in_the_bucket_alone(tmp_path, seaweed):
    """One history: baseline, latest, snapshots and the index are only in the bucket; the state directory gets
    copies of what a person opens (report, result, tables), which are never read back."""
    client = seaweed.client()
    client.create_bucket(Bucket="one-history")
    local = LocalArtifactStore(tmp_path)
    archive = RunArchive(S3ArtifactStore(client, "one-history", "p"), local)
    archive.save_snapshot("r1", pd.DataFrame({"chunk_id": ["a"]}))
    archive.point_baseline("r1")
    archive.record_latest("r1")
    uri, path = archive.publish_report("r1", "<html>r1</html>", entry("2026-11-28T00:00:00"))
    archive.save_result("r1", {"verdict": "pass"})
    assert uri == "s3://one-history/p/" + report_key("r1") and open(path).read() == "<html>r1</html>"
    assert sorted(local.list("")) == [report_key("r1"), run_key("r1", "result.json")]
    keys = S3ArtifactStore(client, "one-history", "p").list("")
    assert {"baseline.json", "runs/latest.json", "reports/index.json", "reports/index.html",
            "reports/entries/r1.json", run_key("r1", "snapshot.parquet")} <= set(keys)
    assert RunArchive(S3ArtifactStore(client, "one-history", "p")).baseline_run() == "r1"
