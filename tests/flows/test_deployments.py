"""prefect.yaml against a real Prefect server and a real process worker: deploy, schedule, run ad hoc."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from scripts.prefect_local import ensure_variables
from tests.conftest import REPO
from tests.support.prefect_server import start_server

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
BIN = Path(sys.executable).parent
SCHEDULES = {  # deployment: [(cron, active)]
    "nightly": [("0 2 * * *", True)], "freshness": [("0 * * * *", True)], "compare-chunking": [("0 4 * * 0", False)],
    "reingest": [], "coverage": [], "quality": [], "probes": [], "drift": []}


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


def test_make_up_creates_every_variable_prefect_yaml_reads():
    """A variable prefect.yaml reads but `make up` does not create would deploy as an empty string."""
    read = set(re.findall(r"\{\{\s*prefect\.variables\.(\w+)\s*\}\}", (REPO / "prefect.yaml").read_text()))
    from scripts.prefect_local import variable_defaults

    assert read == {"rag_health_checkout", *variable_defaults(REPO)}


def test_deploy_schedule_and_adhoc_reingest(server, tmp_path, small_corpus):
    """Every flow is deployed with its schedule, job variables resolved from the Prefect variables at deploy time
    and a pull step that reads the checkout from a variable at run time; an ad-hoc reingest runs on a worker
    started outside the checkout."""
    env = server.env
    run = lambda *args, **kw: subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env,  # noqa: E731
                                             capture_output=True, text=True, timeout=kw.get("timeout", 300))
    created = run("work-pool", "create", "rag-health", "--type", "process")
    assert created.returncode == 0, created.stderr
    variables = ensure_variables(server.api_url, REPO)  # what `make up` does before it deploys
    deployed = run("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    deployments = {d["name"]: d for d in api(server, "/deployments/filter")}
    assert set(deployments) == set(SCHEDULES)
    for name, d in deployments.items():
        schedules = [(s["schedule"]["cron"], s["active"]) for s in d["schedules"]]
        assert schedules == SCHEDULES[name], name
        assert all(s["schedule"]["timezone"] == "UTC" for s in d["schedules"]), name
        assert d["description"], name
        assert d["work_pool_name"] == "rag-health", name
        assert d["job_variables"]["env"] == {  # rag_health_docs -> RAG_HEALTH_DOCS, resolved at deploy time
            var.upper(): value for var, value in variables.items() if var != "rag_health_checkout"}, name
        # the checkout is read on the worker at run time, never the deployer's literal path
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
            "directory": "{{ prefect.variables.rag_health_checkout }}"}}], name

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

        # Errors whose message says everything end the run Failed with one line and no traceback in the worker's
        # log: a bad setting (found in the flow) and a missing probe file (found inside the stage's task, where
        # Prefect's task engine used to log a 35-line traceback first).
        before = (tmp_path / "worker.log").read_text()
        for deployment, params, expected in [
            ("rag-health-quality/quality", ["--param", f"state_dir={state}", "--param",
                                            'settings_overrides={"chunk_size": 0}'],
             "rag-health quality: error: invalid settings: chunk_size (RAG_HEALTH_CHUNK_SIZE)"),
            ("rag-health-probes/probes", ["--param", f"docs={small_corpus}", "--param", f"state_dir={state}",
                                          "--param", f'probes=["{tmp_path / "absent.jsonl"}"]'],
             "rag-health probes: error: "),
        ]:
            run("deployment", "run", deployment, *params, "--watch", "--watch-timeout", "300", timeout=360)
            failed = next(r for r in api(server, "/flow_runs/filter", {"sort": "START_TIME_DESC"})
                          if r["deployment_id"] == deployments[deployment.split("/")[1]]["id"])
            assert failed["state"]["type"] == "FAILED" and failed["state"]["message"].startswith(expected)
            assert "\n" not in failed["state"]["message"]
        log = (tmp_path / "worker.log").read_text()[len(before):]
        assert "Traceback" not in log and "NoneType: None" not in log, log[-4000:]
        assert "rag-health quality: error: invalid settings: chunk_size" in log
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # a worker that ran a flow may ignore SIGTERM for a long time
        worker.wait()
