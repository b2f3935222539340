"""Running it the Prefect way, end to end: a real Prefect server, the process pool and two real workers, every
flow deployed from prefect.yaml. A failing suite's state, artifacts and event; the approval gate both ways; two
suites at once on one collection; an ingest fanned out over shards against one Chroma server and one bucket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts.prefect_local import ensure_variables
from tests.conftest import REPO, write_doc
from tests.support.prefect_server import start_server

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def api(server, path, body=None, method="POST"):
    """One call to the server's REST API; a 503 (SQLite busy under two workers) is tried again, as Prefect's own
    client does."""
    data = None if method == "GET" else json.dumps(body or {}).encode()
    for attempt in range(20):
        req = urllib.request.Request(f"{server.api_url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 19:
                raise
            time.sleep(1.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, seaweed):
    """Server, pool, variables, every deployment, and two workers (their flow runs reach SeaweedFS)."""
    home = tmp_path_factory.mktemp("prefect")
    server = start_server(home / "prefect-home")
    env = {**server.env, **seaweed.env(), "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    workers = []
    try:
        run = lambda *a: subprocess.run([str(BIN / "prefect"), *a], cwd=REPO, env=env,  # noqa: E731
                                        capture_output=True, text=True, timeout=300)
        assert run("work-pool", "create", "rag-health", "--type", "process").returncode == 0
        ensure_variables(server.api_url, REPO)
        deployed = run("--no-prompt", "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        for name in ("worker-a", "worker-b"):
            log = (home / f"{name}.log").open("wb")
            workers.append(subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "rag-health", "--name", name], cwd=home,
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        server.home = home
        server.deployments = {d["name"]: d for d in api(server, "/deployments/filter")}
        yield server
    finally:
        for w in workers:  # a worker that ran a flow may ignore SIGTERM for a long time
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.wait()
        server.stop()


def start(stack, deployment: str, **parameters) -> str:
    run = api(stack, f"/deployments/{stack.deployments[deployment]['id']}/create_flow_run",
              {"parameters": parameters})
    return run["id"]


def wait(stack, run_id: str, until=TERMINAL, timeout: float = 420.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(stack, f"/flow_runs/{run_id}", method="GET")
        if run["state"]["type"] in until:
            return run
        time.sleep(1.0)
    logs = "".join((stack.home / f"worker-{w}.log").read_text()[-3000:] for w in "ab")
    raise AssertionError(f"flow run {run_id} still {run['state']['type']} after {timeout} s\n{logs}")


def artifacts_of(stack, run_id: str) -> dict[str, dict]:
    found = api(stack, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {a["key"]: a for a in found}


def events(stack, name: str) -> list[dict]:
    page = api(stack, "/events/filter", {"filter": {"event": {"name": [name]}}, "limit": 50})
    return page["events"]


def event_of(stack, name: str, flow_run_id: str, timeout: float = 60.0) -> dict:
    """The event `name` related to this flow run (events reach the server a moment after the run emits them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(stack, name)
                 if any(r["prefect.resource.id"] == f"prefect.flow-run.{flow_run_id}" for r in e["related"])]
        if found or time.monotonic() > deadline:
            assert found, f"no {name} event related to flow run {flow_run_id}"
            return found[0]
        time.sleep(1)


def result_json(state_dir: Path, run_id: str) -> dict:
    return json.loads((state_dir / "runs" / run_id / "result.json").read_text())


def corpus(root: Path, n: int) -> Path:
    for i in range(n):
        write_doc(root, f"runbooks/service-{i:02d}.md", f"# Service {i}\n\nRestart service {i} when its queue "
                  f"backs up. Check the consumer lag dashboard for service {i} first, then page the owner.\n",
                  owner="sre", reviewed="2026-11-01")
    return root


def test_two_failing_suites_at_once_show_their_failure_the_prefect_way(stack, tmp_path, small_corpus):
    """Two nightly runs started together on one collection, with a manifest whose required runbook is missing.
    Each ends Failed with a short message naming the failing check (no 205 KB TypeError, no traceback in the
    worker's log), carries the verdict's artifacts itself, has readable tagged subflows, and emits its event on the
    collection. They ran one after the other under the collection's limit and lock: the ledger matches the index
    and each run's ingest counts say what it did (one added everything, the other found it unchanged)."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("documents:\n  - id: runbooks/kafka-lag.md\n  - id: runbooks/absent.md\n    required: true\n")
    state = tmp_path / "state"
    params = {"docs": str(small_corpus), "manifest": str(manifest), "collection": "e2e-fail", "state_dir": str(state)}
    runs = [start(stack, "nightly", **params), start(stack, "nightly", **params)]
    finished = [wait(stack, r, timeout=600) for r in runs]
    assert [f["state"]["type"] for f in finished] == ["FAILED", "FAILED"], [f["state"] for f in finished]
    for run in finished:
        message = run["state"]["message"]
        assert message.startswith("rag-health verdict: fail — freshness: ") and len(message) <= 400, message
    logs = "".join((stack.home / f"worker-{w}.log").read_text() for w in "ab")
    assert "Unexpected result for failed state" not in logs and "cannot be resolved into an exception" not in logs
    assert "Engine execution exited with unexpected exception" not in logs

    for run_id in runs:
        arts = artifacts_of(stack, run_id)
        assert {"health-verdict", "health-findings"} <= set(arts), sorted(arts)
        assert all(a["description"] for a in arts.values())
        verdict = arts["health-verdict"]["data"]
        assert "verdict: **fail**" in verdict and "What the ingest changed" in verdict and "None" not in verdict
        assert any(r["stage"] == "freshness" and r["status"] == "fail"
                   for r in json.loads(arts["health-findings"]["data"]))
        event = event_of(stack, "rag-health.check.failed", run_id)
        assert event["resource"]["prefect.resource.id"] == "rag-health.collection.e2e-fail"
        assert {"prefect.flow-run." + run_id, "prefect.deployment." + stack.deployments["nightly"]["id"]} <= {
            r["prefect.resource.id"] for r in event["related"]}
        assert event["payload"]["verdict"] == "fail" and event["payload"]["failing"][0]["stage"] == "freshness"
        assert len(json.dumps(event["payload"])) < 20_000

    children = api(stack, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["collection:e2e-fail"]}}})
    names = sorted(c["name"] for c in children)
    assert len(names) == 12 and all(" · e2e-fail · " in n for n in names), names
    assert all({"rag-health", "collection:e2e-fail"} <= set(c["tags"]) for c in children)
    for child in children:  # every stage's own artifacts carry a description too
        assert all(a["description"] for a in artifacts_of(stack, child["id"]).values()), child["name"]

    results = [result_json(state, p.name) for p in (state / "runs").iterdir() if (p / "result.json").exists()]
    assert len(results) == 2
    n = results[0]["ingest"]["documents"]
    # Run ids are taken when a run starts, not when it gets the collection: either may have gone first.
    first, second = sorted(results, key=lambda r: -r["ingest"]["added"])
    assert (first["ingest"]["added"], first["ingest"]["unchanged"]) == (n, 0)
    assert (second["ingest"]["added"], second["ingest"]["unchanged"]) == (0, n)
    import chromadb

    stored = chromadb.PersistentClient(path=str(state / "chroma")).get_collection("e2e-fail").get(
        include=["metadatas"])
    audited = {d["doc_id"] for d in second["documents"]}
    assert {m["doc_id"] for m in stored["metadatas"]} == audited == {d["doc_id"] for d in first["documents"]}
    assert sum(d["chunks"] for d in second["documents"]) == len(stored["ids"])
    limits = api(stack, "/v2/concurrency_limits/filter", {})
    assert any(limit["name"] == "rag-health-collection-e2e-fail" and limit["limit"] == 1 for limit in limits)


def test_the_approval_gate_both_ways(stack, tmp_path):
    """60 % of the documents gone: the reingest pauses showing them; rejecting keeps the index (warn, event),
    approving removes exactly them."""
    docs = corpus(tmp_path / "docs", 10)
    state = tmp_path / "state"
    params = {"docs": str(docs), "state_dir": str(state), "collection": "e2e-gate"}
    assert wait(stack, start(stack, "reingest", **params))["state"]["type"] == "COMPLETED"
    import chromadb

    def indexed() -> set[str]:
        col = chromadb.PersistentClient(path=str(state / "chroma")).get_collection("e2e-gate")
        return {m["doc_id"] for m in col.get(include=["metadatas"])["metadatas"]}

    assert len(indexed()) == 10
    gone = [f"runbooks/service-{i:02d}.md" for i in range(6)]
    for doc_id in gone:
        (docs / doc_id).unlink()

    for approve in (False, True):
        run_id = start(stack, "reingest", **params, settings_overrides={"approval_poll_seconds": 1})
        paused = wait(stack, run_id, until={"PAUSED"} | TERMINAL, timeout=300)
        assert paused["state"]["type"] == "PAUSED", paused["state"]
        shown = artifacts_of(stack, run_id)["ingest-approval"]["data"]
        assert all(d.replace("-", "\\-") in shown or d in shown for d in gone) and "6 of 10" in shown, shown
        requested = event_of(stack, "rag-health.approval.requested", run_id)
        assert requested["resource"]["prefect.resource.id"] == "rag-health.collection.e2e-gate"
        assert requested["payload"]["removed"] == 6
        api(stack, f"/flow_runs/{run_id}/resume", {"run_input": {"approve": approve, "reason": "e2e test"}})
        done = wait(stack, run_id)
        assert done["state"]["type"] == "COMPLETED", done["state"]
        if not approve:
            assert len(indexed()) == 10  # nothing removed
            warned = event_of(stack, "rag-health.check.warned", run_id)
            assert warned["payload"]["approval"] == "rejected" and warned["payload"]["verdict"] == "warn"
        else:
            assert indexed() == {f"runbooks/service-{i:02d}.md" for i in range(6, 10)}


def test_ingest_in_shards_on_two_workers_equals_one_worker(stack, tmp_path, seaweed, embedder):
    """shards=3 against one Chroma server and one bucket: the same chunk ids and content hashes as one
    unsharded ingest of the same documents, and the coordinator's counts add up."""
    from tests.support.chroma_server import start_chroma

    docs = corpus(tmp_path / "docs", 12)
    bucket = "e2e-shards"
    seaweed.client().create_bucket(Bucket=bucket)
    chroma, port = start_chroma(tmp_path / "chroma-server")
    try:
        overrides = {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": port, "s3_bucket": bucket}
        common = {"docs": str(docs), "state_dir": str(tmp_path / "state")}
        run_id = start(stack, "reingest", **common, collection="e2e-sharded", shards=3,
                       settings_overrides=overrides)
        done = wait(stack, run_id, timeout=600)
        assert done["state"]["type"] == "COMPLETED", done["state"]
        shard_runs = api(stack, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["shard"]}}})
        assert sorted(r["parameters"]["shard"] for r in shard_runs) == ["0/3", "1/3", "2/3"]
        assert all(r["state"]["type"] == "COMPLETED" for r in shard_runs)
        # The reference: one ingest of the same documents, in this process, into another collection of the server.
        from rag_health.runtime import build_runtime
        from rag_health.settings import load_settings
        from rag_health.stages.ingest import run as ingest

        single = ingest(build_runtime(load_settings(**common, collection="e2e-single", chroma_mode="http",
                                                    chroma_host="127.0.0.1", chroma_port=port)))
        assert len(single.added) == 12

        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=port)

        def content(name: str) -> dict[str, str]:
            got = client.get_collection(name).get(include=["metadatas"])
            return {cid: m["content_hash"] for cid, m in zip(got["ids"], got["metadatas"])}

        sharded, one = content("e2e-sharded"), content("e2e-single")
        assert sharded == one and len({cid.split("#")[0] for cid in one}) == 12
        summary = artifacts_of(stack, run_id)["ingest-summary"]["data"]
        assert "12 documents" in summary and "12 added" in summary, summary
    finally:
        os.killpg(chroma.pid, signal.SIGKILL)
        chroma.wait()
        shutil.rmtree(tmp_path / "chroma-server", ignore_errors=True)
