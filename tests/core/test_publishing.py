"""Publishing the run archive to a real S3 (SeaweedFS): content types, Cache-Control, encryption, two-phase
order, presigned links, the outbox when S3 is down, the create-only audit record, and the commands that read the
archive back (issue 11, items 4-7)."""

import json
import time
import urllib.error
import urllib.request

import boto3
import pandas as pd
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from flows.cli import main
from rag_health import suite
from rag_health.archive import (
    BASELINE,
    IMMUTABLE,
    LATEST,
    NO_CACHE,
    REPORT_INDEX_HTML,
    REPORT_INDEX_JSON,
    RunArchive,
    entry_key,
    front_page_key,
    report_key,
    run_key,
)
from rag_health.artifacts import LocalArtifactStore, S3ArtifactStore
from rag_health.errors import ConfigError
from rag_health.registry import stages
from rag_health.runtime import build_runtime
from rag_health.settings import load_settings
from rag_health.stages.drift import artifacts
from tests.support.seaweed import start_seaweed


def entry(created: str) -> dict:
    return {"created_at": created, "baseline_run": "r1", "verdict": "pass", "embedding_drift_score": None}


def s3v4(endpoint: str, attempts: int = 3):
    from tests.support.seaweed import ACCESS_KEY, SECRET_KEY

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1", config=Config(signature_version="s3v4", connect_timeout=1,
                                                               read_timeout=2,
                                                               retries={"total_max_attempts": attempts}))


def publish_run(archive: RunArchive, run_id: str, created: str) -> None:
    """A run's writes in the order the suite makes them: objects, the result, then commit() moves the pointers."""
    archive.save_snapshot(run_id, pd.DataFrame({"chunk_id": ["a"], "n_chars": [1.0]}))
    archive.save_table(run_id, "chunks.csv", pd.DataFrame({"chunk_id": ["a"]}))
    archive.publish_report(run_id, f"<html>{run_id}</html>", entry(created), commit=False)
    archive.defer_pointers(run_id, baseline=True)
    archive.save_result(run_id, {"run_id": run_id, "verdict": "pass", "stages": {"drift": "pass"}})
    archive.commit(run_id)


def test_objects_carry_type_cache_control_and_encryption(tmp_path, seaweed):
    client = s3v4(seaweed.endpoint)
    client.create_bucket(Bucket="published")
    archive = RunArchive(S3ArtifactStore(client, "published", "p", sse="AES256"), LocalArtifactStore(tmp_path))
    publish_run(archive, "r1", "2026-11-29T00:00:00")
    expected = {run_key("r1", "snapshot.parquet"): ("application/vnd.apache.parquet", IMMUTABLE),
                run_key("r1", "chunks.csv"): ("text/csv; charset=utf-8", IMMUTABLE),
                run_key("r1", "result.json"): ("application/json", IMMUTABLE),
                report_key("r1"): ("text/html; charset=utf-8", IMMUTABLE),
                entry_key("r1"): ("application/json", IMMUTABLE),
                REPORT_INDEX_HTML: ("text/html; charset=utf-8", NO_CACHE), REPORT_INDEX_JSON: ("application/json", NO_CACHE),
                LATEST: ("application/json", NO_CACHE), BASELINE: ("application/json", NO_CACHE)}
    for key, (ctype, cache) in expected.items():
        head = client.head_object(Bucket="published", Key=f"p/{key}")
        assert (head["ContentType"], head["CacheControl"], head.get("ServerSideEncryption")) == (ctype, cache, "AES256"), key


def test_kms_encryption_is_asked_and_no_acl_is_ever_sent():
    """SeaweedFS answers aws:kms with InternalError, so the request itself is checked: Stubber compares the exact
    parameters (an ACL would make it fail)."""
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    store = S3ArtifactStore(client, "b", "p", sse="aws:kms", kms_key_id="alias/rag-health")
    with Stubber(client) as stub:
        stub.add_response("put_object", {}, {"Bucket": "b", "Key": "p/reports/index.html", "Body": b"<html/>",
                                             "ContentType": "text/html; charset=utf-8", "CacheControl": "no-cache",
                                             "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/rag-health"})
        store.put("reports/index.html", b"<html/>", "text/html; charset=utf-8", cache_control="no-cache")
        stub.assert_no_pending_responses()


def test_pointers_move_only_after_every_object_of_the_run(tmp_path):
    order: list[str] = []

    class Recording(LocalArtifactStore):
        def put(self, key, data, content_type="application/octet-stream", **kw):
            order.append(key)
            return super().put(key, data, content_type, **kw)

    publish_run(RunArchive(Recording(tmp_path)), "r1", "2026-11-29T00:00:00")
    first_pointer = min(order.index(k) for k in (entry_key("r1"), REPORT_INDEX_JSON, LATEST, BASELINE))
    assert max(order.index(k) for k in order if k.startswith(("runs/r1/", "reports/r1/"))) < first_pointer
    assert order[-1] == LATEST


def test_result_json_is_never_overwritten(tmp_path, seaweed):
    client = s3v4(seaweed.endpoint)
    client.create_bucket(Bucket="audit")
    for archive in (RunArchive(LocalArtifactStore(tmp_path / "local")),
                    RunArchive(S3ArtifactStore(client, "audit"), LocalArtifactStore(tmp_path / "copies"))):
        archive.save_result("r1", {"verdict": "pass"})
        with pytest.raises(ConfigError, match="never overwritten"):
            archive.save_result("r1", {"verdict": "fail"})
        assert archive.result("r1") == {"verdict": "pass"}


def test_presigned_link_opens_the_report_and_a_tampered_one_is_refused(small_corpus, embedder, tmp_path, seaweed):
    client = s3v4(seaweed.endpoint)
    client.create_bucket(Bucket="links")
    settings = load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "s"), s3_bucket="links",
                             report_url_expiry_days=1)
    rt = build_runtime(settings, embedder=embedder, s3=client)
    stages()["ingest"].run(rt)
    result = stages()["drift"].run(rt.new_run(), "run-1")
    assert result.presigned_url and "X-Amz-Expires=86400" in result.presigned_url
    assert result.s3_uri == "s3://links/rag-health/reports/run-1/drift-report.html" and result.outbox == ()
    with urllib.request.urlopen(result.presigned_url) as page:
        assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"run-1" in page.read()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(result.presigned_url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert refused.value.code == 403
    link = artifacts(result)[0]
    assert link.key == "drift-report" and link.link == result.url and link.link.startswith("http")
    assert "rag-health-test-secret" not in json.dumps([a.link for a in artifacts(result)])
    based = RunArchive(S3ArtifactStore(client, "links", "rag-health"), LocalArtifactStore(tmp_path / "s"),
                       base_url="https://reports.example.com/rag-health/")
    assert based.link(front_page_key("run-1")) == "https://reports.example.com/rag-health/reports/run-1/index.html"
    assert RunArchive(LocalArtifactStore(tmp_path / "l")).link(report_key("r")) == str(
        (tmp_path / "l" / report_key("r")).resolve())


def test_without_a_bucket_the_report_link_is_a_file(small_corpus, make_runtime):
    rt = make_runtime(small_corpus)
    stages()["ingest"].run(rt)
    result = stages()["drift"].run(rt.new_run(), "run-1")
    assert result.presigned_url is None and result.outbox is None and result.s3_uri is None
    assert [(a.key, a.link) for a in artifacts(result)] == [("drift-report", f"file://{result.html}")]


@pytest.mark.slow
def test_s3_down_the_run_completes_and_the_next_run_uploads_the_outbox_first(small_corpus, embedder, tmp_path):
    server = start_seaweed(tmp_path / "weed")
    s3v4(server.endpoint).create_bucket(Bucket="outbox")
    server.stop()

    def runtime(client):
        settings = load_settings(docs=str(small_corpus), state_dir=str(tmp_path / "state"), s3_bucket="outbox",
                                 publish_deadline=2)
        return build_runtime(settings, embedder=embedder, s3=client)

    rt = runtime(s3v4(server.endpoint, attempts=1))
    stages()["ingest"].run(rt)
    started = time.monotonic()
    down = stages()["drift"].run(rt.new_run(), "run-1", final=False)
    assert down.s3_uri is None and down.presigned_url is None and not down.url.startswith("http")
    result = suite.save(rt, suite.assemble("run-1", rt, {"drift": down}, {}), front_page=lambda r: "<html>front</html>")
    assert time.monotonic() - started < 2 + 30  # the deadline, plus the drift report itself
    data = result.to_json()
    waiting = data["report"]["outbox"]
    assert {report_key("run-1"), run_key("run-1", "snapshot.parquet"), run_key("run-1", "result.json"),
            front_page_key("run-1"), entry_key("run-1"), LATEST} <= set(waiting)
    assert f"publish: warn — {len(waiting)} files in the outbox, not published (warn)" in data["findings"]
    assert data["verdict"] == "warn" and not data["report"]["index_html"].startswith("http")
    assert all((tmp_path / "state" / "outbox" / "run-1" / key).is_file() for key in waiting)
    assert data["documents"] and {"content_hash", "chunks", "chunker", "model_fingerprint"} <= set(data["documents"][0])

    server = start_seaweed(tmp_path / "weed")  # the same data directory, new ports
    try:
        client = s3v4(server.endpoint)
        puts: list[str] = []
        client.meta.events.register("provide-client-params.s3.PutObject",
                                    lambda params, **kw: puts.append(params["Key"]))
        rt2 = runtime(client)
        second = stages()["drift"].run(rt2.new_run(), "run-2")
        assert second.outbox == () and second.presigned_url, rt2.archive.unreachable
        assert puts.index("rag-health/" + run_key("run-2", "snapshot.parquet")) > max(
            puts.index(f"rag-health/{key}") for key in waiting if key != LATEST)
        index = json.loads(client.get_object(Bucket="outbox", Key="rag-health/reports/index.json")["Body"].read())
        assert [e["run_id"] for e in index] == ["run-2", "run-1"]  # newest first
        assert json.loads(client.get_object(Bucket="outbox", Key="rag-health/runs/run-1/result.json")["Body"].read(
        ))["run_id"] == "run-1"
        assert not list((tmp_path / "state" / "outbox").rglob("*.*"))
    finally:
        server.stop()


def cli_json(capsys, *args: str) -> tuple[int, dict]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.mark.parametrize("bucket", [False, True])
def test_runs_list_show_and_baseline_list(bucket, tmp_path, seaweed, monkeypatch, capsys):
    state = tmp_path / "state"
    if bucket:
        for key, value in seaweed.env().items():
            monkeypatch.setenv(key, value)
        client = s3v4(seaweed.endpoint)
        client.create_bucket(Bucket="history")
        monkeypatch.setenv("RAG_HEALTH_S3_BUCKET", "history")
        archive = RunArchive(S3ArtifactStore(client, "history", "rag-health"), LocalArtifactStore(state))
    else:
        archive = RunArchive(LocalArtifactStore(state))
    publish_run(archive, "20261128T010000Z-aaaaaa", "2026-11-28T01:00:00")
    archive.save_snapshot("20261129T010000Z-bbbbbb", pd.DataFrame({"chunk_id": ["a"]}))
    archive.save_result("20261129T010000Z-bbbbbb", {"verdict": "fail", "stages": {"probes": "fail"}})
    code, listing = cli_json(capsys, "runs", "list", "--state", str(state))
    assert code == 0 and [r["run_id"] for r in listing["runs"]] == ["20261129T010000Z-bbbbbb", "20261128T010000Z-aaaaaa"]
    assert listing["runs"][0] == {"run_id": "20261129T010000Z-bbbbbb", "created": "2026-11-29T01:00:00+00:00",
                                  "verdict": "fail", "stages": {"probes": "fail"}}
    code, shown = cli_json(capsys, "runs", "show", "20261129T010000Z-bbbbbb", "--state", str(state))
    assert code == 0 and shown == {"verdict": "fail", "stages": {"probes": "fail"}}
    assert main(["runs", "show", "20261130T000000Z-nope00", "--state", str(state)]) == 2
    assert "no run 20261130T000000Z-nope00" in capsys.readouterr().err
    code, base = cli_json(capsys, "baseline", "list", "--state", str(state))
    assert code == 0 and base["baseline"]["run_id"] == "20261128T010000Z-aaaaaa"
    assert [(c["run_id"], c["baseline"]) for c in base["candidates"]] == [
        ("20261129T010000Z-bbbbbb", False), ("20261128T010000Z-aaaaaa", True)]
    assert main(["runs", "list", "--state", str(state)]) == 0 and "20261129T010000Z-bbbbbb" in capsys.readouterr().out


def test_health_verdict_artifact_links_the_published_pages_only():
    url = "https://b.s3.amazonaws.com/p/reports/r1/drift-report.html?X-Amz-Signature=abc&X-Amz-Expires=604800"
    result = {"verdict": "warn", "stages": {"drift": "warn"}, "findings": [],
              "report": {"url": url, "index_html": "/state/reports/r1/index.html", "outbox": []}}
    markdown = suite.verdict_artifacts(result)[0].markdown
    assert f"[drift report](<{url}>)" in markdown and "front page" not in markdown
    waiting = {**result, "report": {"url": "/state/reports/r1/drift-report.html", "outbox": ["a", "b"]}}
    markdown = suite.verdict_artifacts(waiting)[0].markdown
    assert "](" not in markdown and "2 files wait in the outbox" in markdown


def test_the_front_page_renders_while_the_history_is_unreachable(small_corpus, make_runtime):
    """Review: the front page read the baseline's result and the run list straight from the store, so a bucket
    that went down mid-run crashed the run instead of sending its files to the outbox."""
    from rag_health.archive import RunArchive
    from rag_health.errors import Unreachable
    from rag_health.suite import render_front_page

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("endpoint down")
            return fail

    rt = make_runtime(small_corpus)
    archive = RunArchive(Down(), rt.local_store)
    archive.unreachable = "put failed: ConnectionError: endpoint down"
    rt.__dict__["archive"] = archive
    with pytest.raises(Unreachable):
        archive.run_ids()
    page = render_front_page(rt, {"run_id": "run-2", "verdict": "warn", "stages": {"drift": "warn"},
                                  "drift": {"baseline_run": "run-1"}, "findings": []})
    assert "WARN" in page


def test_a_waiting_pointer_never_moves_the_bucket_back(tmp_path):
    """Review: a latest pointer left in the outbox by a run while S3 was down was uploaded over a newer run's."""
    import json as _json

    from rag_health.archive import LATEST, RunArchive
    from rag_health.artifacts import LocalArtifactStore

    bucket = LocalArtifactStore(tmp_path / "bucket")
    bucket.put(LATEST, _json.dumps({"run_id": "20261129T120000Z-cccccc"}).encode())
    archive = RunArchive(bucket, LocalArtifactStore(tmp_path / "state"))
    assert archive._superseded(LATEST, _json.dumps({"run_id": "20261129T100000Z-aaaaaa"}).encode())
    assert not archive._superseded(LATEST, _json.dumps({"run_id": "20261129T130000Z-dddddd"}).encode())
