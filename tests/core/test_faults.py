"""Failing S3 and an unreachable Chroma server (issue 10): a stuck object is one document's error within the
configured timeouts, a stuck listing deletes nothing, and a Chroma server that does not answer is a
configuration error naming host and port within chroma_connect_timeout."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from rag_health.artifacts import S3ArtifactStore
from rag_health.errors import ConfigError, s3_error_code, s3_reason
from tests.support.seaweed import free_port
from tests.support.stages import stage
from tests.support.stall_proxy import SilentServer, StallProxy

CORPUS = {
    "kb/runbooks/kafka-lag.md": "# Kafka lag\nRestart the consumer pod that owns the stuck partition.\n",
    "kb/runbooks/declines.md": "# Card declines\nFail over to the secondary processor link on timeouts.\n",
    "kb/policies/chargebacks.md": "# Chargebacks\nAnswer every chargeback within the scheme deadline.\n",
    "kb/stall-me.md": "# Stuck\nThis object's server never answers.\n",
}


# --- unit: every kind of botocore exception becomes a reason, never an AttributeError -----------------------

@pytest.mark.parametrize("exc, expected", [
    (ReadTimeoutError(endpoint_url="http://s3.test/b/k"), "ReadTimeoutError: Read timeout on endpoint URL"),
    (ConnectTimeoutError(endpoint_url="http://s3.test"), "ConnectTimeoutError: Connect timeout"),
    (EndpointConnectionError(endpoint_url="http://s3.test"), "Could not connect to the endpoint URL"),
    (NoCredentialsError(), "NoCredentialsError: Unable to locate credentials"),
    (ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject"),
     "AccessDenied: Access Denied"),
    (ClientError({}, "GetObject"), "ClientError"),
    (TimeoutError(), "TimeoutError"),
])
def test_any_s3_exception_becomes_a_reason(exc, expected):
    assert expected in s3_reason(exc)


def test_artifact_get_lets_a_timeout_through_and_answers_none_for_404():
    class Client:
        class exceptions:  # noqa: N801 - botocore's attribute name
            NoSuchKey = type("NoSuchKey", (Exception,), {})

        def __init__(self, exc):
            self.exc = exc

        def get_object(self, **kw):
            raise self.exc

    store = S3ArtifactStore(Client(ReadTimeoutError(endpoint_url="http://s3.test")), "b")
    with pytest.raises(ReadTimeoutError):  # not the AttributeError of `None.get(...)`
        store.get("index.json")
    assert S3ArtifactStore(Client(ClientError({"Error": {"Code": "404"}}, "GetObject")), "b").get("x") is None
    assert s3_error_code(ReadTimeoutError(endpoint_url="x")) is None


# --- S3 through a stalling proxy in front of SeaweedFS -----------------------------------------------------

@pytest.fixture
def stalled_s3(seaweed, monkeypatch):
    """A bucket with CORPUS and a proxy in front of SeaweedFS; the runtime's S3 client (built from settings and
    the environment, as in production) goes through the proxy."""
    client = seaweed.client()
    bucket = f"faults-{free_port()}"
    client.create_bucket(Bucket=bucket)
    for key, text in CORPUS.items():
        client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    proxy = StallProxy(seaweed.endpoint)
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy, client, bucket
    proxy.close()


def _runtime(make_runtime, bucket: str, tmp_path):
    return make_runtime(f"s3://{bucket}/kb", state_dir=tmp_path / "state", s3_connect_timeout=1,
                        s3_read_timeout=1, s3_max_attempts=2)


def test_s3_read_timeout_is_one_document_error(stalled_s3, make_runtime, tmp_path):
    proxy, client, bucket = stalled_s3
    rt = _runtime(make_runtime, bucket, tmp_path)
    first = stage(rt, "ingest")
    assert first["added"] == 4 and first["errors"] == []
    before = rt.index.ledger()["stall-me.md"].chunk_ids
    client.put_object(Bucket=bucket, Key="kb/stall-me.md", Body=b"# Stuck\nA new version nobody can read.\n")
    client.put_object(Bucket=bucket, Key="kb/new.md", Body=b"# New\nA new runbook for wire cut-offs.\n")
    proxy.marker = b"stall-me.md"
    started = time.perf_counter()
    second = stage(rt, "ingest")
    seconds = time.perf_counter() - started
    print(f"ingest with one stalled object: {seconds:.1f} s, stalled: {proxy.stalled_requests}")
    assert [e["doc_id"] for e in second["errors"]] == ["stall-me.md"]
    assert "ReadTimeoutError" in second["errors"][0]["reason"] and "stall-me.md" in second["errors"][0]["reason"]
    assert second["added_ids"] == ["new.md"] and second["removed_ids"] == []
    assert rt.index.ledger()["stall-me.md"].chunk_ids == before  # the last good version stays indexed
    assert proxy.stalled == 2  # s3_max_attempts=2: one try and one retry, each 1 s
    assert seconds < 15


def test_s3_listing_timeout_deletes_nothing(stalled_s3, make_runtime, tmp_path):
    proxy, _, bucket = stalled_s3
    rt = _runtime(make_runtime, bucket, tmp_path)
    assert stage(rt, "ingest")["added"] == 4
    count = rt.index.count()
    proxy.marker = b"list-type=2"  # ListObjectsV2
    started = time.perf_counter()
    result = stage(rt, "ingest")
    assert time.perf_counter() - started < 15
    assert result["removed_ids"] == [] and rt.index.count() == count
    (error,) = result["errors"]
    assert f"listing s3://{bucket}/kb failed: ReadTimeoutError" in error["reason"]
    assert "stay indexed" in error["reason"]


def test_unreachable_s3_endpoint_is_a_configuration_error_in_bounded_time(small_corpus, make_runtime, monkeypatch):
    server = SilentServer()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        rt = make_runtime("s3://nowhere/kb", s3_connect_timeout=1, s3_read_timeout=1, s3_max_attempts=1)
        started = time.perf_counter()
        with pytest.raises(ConfigError, match="bucket not reachable .*ReadTimeoutError"):
            rt.source().list()
        assert time.perf_counter() - started < 5
    finally:
        server.close()


# --- Chroma server ------------------------------------------------------------------------------------------

def test_closed_chroma_port_is_a_configuration_error_naming_host_and_port(small_corpus, make_runtime):
    port = free_port()
    rt = make_runtime(small_corpus, chroma_mode="http", chroma_port=port, chroma_connect_timeout=2)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"Chroma server at 127.0.0.1:{port} is not reachable"):
        rt.index  # noqa: B018 - building the index opens the client
    assert time.perf_counter() - started < 3


def test_hung_chroma_server_fails_within_the_connect_timeout(small_corpus, make_runtime):
    server = SilentServer()
    try:
        rt = make_runtime(small_corpus, chroma_mode="http", chroma_port=server.port, chroma_connect_timeout=1)
        started = time.perf_counter()
        with pytest.raises(ConfigError, match=f"127.0.0.1:{server.port} is not reachable: no answer within 1 s"):
            rt.chroma  # noqa: B018
        assert time.perf_counter() - started < 3
    finally:
        server.close()
