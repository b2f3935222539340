"""Probes on the real index; drift reports written locally and published to a real S3 (SeaweedFS)."""

import json

import pytest

from rag_health.runtime import build_runtime
from rag_health.settings import load_settings
from rag_health.stages.drift import promote
from tests.conftest import write_doc
from tests.support.stages import stage


@pytest.fixture
def probes_file(tmp_path):
    path = tmp_path / "probes.jsonl"
    rows = [
        {"id": "p1", "query": "consumers falling behind on the payments topic", "relevant": ["runbooks/kafka-lag.md"]},
        {"id": "p2", "query": "issuer timeouts causing declined card payments", "relevant": ["runbooks/card-declines.md"]},
        {"id": "p3", "query": "deadline to answer a dispute from the card scheme", "relevant": ["policies/chargebacks.md"]},
        {"id": "p4", "query": "how do we rotate HSM keys", "relevant": ["policies/key-rotation.md"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    return path


def test_probes_rank_documents_and_flag_absent_ones(small_corpus, make_runtime, probes_file):
    rt = make_runtime(small_corpus, probes=[probes_file])
    stage(rt, "ingest")
    out = stage(rt, "probes")
    per = {p["probe_id"]: p for p in out["per_probe"]}
    assert per["p1"]["rank"] == 1 and per["p1"]["retrieved"][0] == "runbooks/kafka-lag.md"
    assert per["p4"]["rank"] is None and per["p4"]["relevant_missing"] is True
    assert len(per["p4"]["retrieved"]) == 4  # the whole small corpus, best first, no duplicates
    m = out["sets"]["probes"]
    assert m["n"] == 4
    hits = sum(1 for p in per.values() if p["rank"] is not None and p["rank"] <= 5)
    assert m["hit@5"] == pytest.approx(hits / 4, abs=1e-4)
    assert out["errors"] == [{"file": str(probes_file), "line": 5, "reason": out["errors"][0]["reason"]}]
    assert out["status"] in ("warn", "fail")  # the bad line alone makes it at least a warn


def test_drift_baseline_and_local_reports(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    first = stage(rt, "drift", "run-1")
    assert first["baseline_run"] == "run-1" and first["baseline_promoted"]
    html = open(first["html"], encoding="utf-8").read()
    assert "run-1" in html and len(html) > 10_000
    write_doc(small_corpus, "runbooks/extra.md", "# Extra\n" + "A new runbook about ledger replays. " * 40)
    stage(rt, "ingest")
    second = stage(rt, "drift", "run-2")
    assert second["baseline_run"] == "run-1" and not second["baseline_promoted"]
    assert promote(rt) == "run-2"
    assert stage(rt, "drift", "run-3")["baseline_run"] == "run-2"
    index = json.loads((rt.local_store.root / "reports" / "index.json").read_text())
    assert [e["run_id"] for e in index] == ["run-3", "run-2", "run-1"]  # newest first


def test_drift_report_published_to_s3(small_corpus, embedder, tmp_path, seaweed, monkeypatch):
    """Baseline and reports live in the bucket, so a second worker with another state dir continues from them."""
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    client = seaweed.client()
    client.create_bucket(Bucket="rag-reports")

    def runtime(state):
        settings = load_settings(docs=str(small_corpus), state_dir=str(tmp_path / state), s3_bucket="rag-reports",
                                 s3_prefix="team/health")
        return build_runtime(settings, embedder=embedder, s3=client)

    worker_a = runtime("a")
    stage(worker_a, "ingest")
    first = stage(worker_a, "drift", "run-a")
    assert first["s3_uri"] == "s3://rag-reports/team/health/reports/run-a/drift-report.html"
    body = client.get_object(Bucket="rag-reports", Key="team/health/reports/run-a/drift-report.html")["Body"].read()
    assert body.decode().lstrip().startswith("<!DOCTYPE html>") and b"run-a" in body
    worker_b = runtime("b")  # another worker: its own state dir and own embedded Chroma
    stage(worker_b, "ingest")
    second = stage(worker_b, "drift", "run-b")
    assert second["baseline_run"] == "run-a"
    index = json.loads(client.get_object(Bucket="rag-reports", Key="team/health/reports/index.json")["Body"].read())
    assert [e["run_id"] for e in index] == ["run-b", "run-a"]  # newest first
    page = client.get_object(Bucket="rag-reports", Key="team/health/reports/index.html")["Body"].read().decode()
    assert "run-a/drift-report.html" in page and "run-b/drift-report.html" in page
    assert open(second["html"]).read() == client.get_object(
        Bucket="rag-reports", Key="team/health/reports/run-b/drift-report.html")["Body"].read().decode()
