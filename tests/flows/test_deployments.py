"""prefect.yaml against a real Prefect server and a real process worker: deploy, schedule, run ad hoc."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.prefect_server import start_server

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
BIN = Path(sys.executable).parent


def api(server, path, body=None):
    req = urllib.request.Request(f"{server.api_url}{path}", data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(tmp_path):
    srv = start_server(tmp_path / "prefect-home")
    yield srv
    srv.stop()


def test_deploy_schedule_and_adhoc_reingest(server, tmp_path, small_corpus):
    env = {**server.env, "PWD": str(REPO)}
    run = lambda *args, **kw: subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env,  # noqa: E731
                                             capture_output=True, text=True, timeout=kw.get("timeout", 300))
    created = run("work-pool", "create", "rag-health", "--type", "process")
    assert created.returncode == 0, created.stderr
    deployed = run("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    deployments = {d["name"]: d for d in api(server, "/deployments/filter")}
    assert {"nightly", "reingest", "freshness", "compare-chunking"} <= set(deployments)
    schedules = deployments["nightly"]["schedules"]
    assert [s["schedule"]["cron"] for s in schedules] == ["0 2 * * *"]
    assert deployments["reingest"]["schedules"] == []

    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "rag-health"], cwd=tmp_path,
                              env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        state = tmp_path / "state"
        triggered = run("deployment", "run", "rag-health-ingest/reingest",
                        "--param", f"docs={small_corpus}", "--param", f"state_dir={state}",
                        "--watch", "--watch-timeout", "420", timeout=480)
        assert triggered.returncode == 0, triggered.stdout[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
        runs = api(server, "/flow_runs/filter", {"sort": "START_TIME_DESC"})
        ingest_run = next(r for r in runs if r["deployment_id"] == deployments["reingest"]["id"])
        assert ingest_run["state"]["type"] == "COMPLETED"
        artifacts = api(server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["ingest-summary"]}}})
        assert artifacts and "4 added" in artifacts[0]["data"]
        import chromadb

        count = chromadb.PersistentClient(path=str(state / "chroma")).get_collection("rag-health").count()
        assert count > 0
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # a worker that ran a flow may ignore SIGTERM for a long time
        worker.wait()
