"""The shipped automations against a real Prefect server: applied through the Python API, read back through the
REST API, and fired by real events into a real notification block that posts to a local webhook receiver."""

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows import automations
from rag_health.errors import ConfigError
from rag_health.settings import Settings
from tests.support.prefect_server import start_server
from tests.support.seaweed import free_port

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
BLOCK = "rag-health-test"
WAIT_S = 60.0


def api(server, path, body=None, method="POST"):
    req = urllib.request.Request(f"{server.api_url}{path}", data=json.dumps(body or {}).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("prefect-home"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def received():
    """A local webhook receiver: every POST body lands in the returned queue."""
    inbox: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            inbox.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    inbox.url = f"http://127.0.0.1:{httpd.server_port}/hook"
    yield inbox
    httpd.shutdown()


@pytest.fixture(scope="module")
def on_server(server):
    """This process's Prefect client talks to the test server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


@pytest.fixture(scope="module")
def block_id(on_server, received):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name="rag-health", url=received.url,
                                           json_data={"subject": "{{subject}}", "body": "{{body}}"})
    return block.save(BLOCK, overwrite=True)


@pytest.fixture(scope="module")
def applied(on_server, block_id):
    settings = Settings(notify_block=f"custom-webhook/{BLOCK}")
    first = automations.apply(settings)
    second = automations.apply(settings)
    return first, second


def emit(server, **event):
    """Emit an event from another process, as a flow run on a worker would."""
    code = "import json, sys; from prefect.events import emit_event; emit_event(**json.loads(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(event)], env=server.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def wait_for(inbox: queue.Queue, predicate, timeout: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if predicate(message):
            return message
        seen.append(message)
    pytest.fail(f"no matching notification within {timeout:.0f} s; received: {seen}")


def test_apply_creates_each_automation_once_with_its_trigger_and_block(server, applied, block_id):
    """It creates the three automations, updates them by name on a second apply, and the server holds one of
    each: triggered by the rag-health events on rag-health.collection.*, notifying through the named block."""
    first, second = applied
    assert [a.created for a in first] == [True, True, True]
    assert [a.created for a in second] == [False, False, False]
    assert [a.id for a in first] == [a.id for a in second]

    found = api(server, "/automations/filter", {})
    by_name = {}
    for a in found:
        by_name.setdefault(a["name"], []).append(a)
    assert {n: len(v) for n, v in by_name.items()} == {
        "rag-health-failed": 1, "rag-health-approval-pending": 1, "rag-health-warned": 1}
    failed = by_name["rag-health-failed"][0]
    assert set(failed["trigger"]["expect"]) == {"rag-health.check.failed", "rag-health.stage.failed"}
    assert failed["trigger"]["match"] == {"prefect.resource.id": "rag-health.collection.*"}
    assert failed["trigger"]["posture"] == "Reactive" and failed["trigger"]["threshold"] == 1
    assert set(by_name["rag-health-approval-pending"][0]["trigger"]["expect"]) == {"rag-health.approval.requested"}
    for [a] in by_name.values():
        [action] = a["actions"]
        assert action["type"] == "send-notification"
        assert action["block_document_id"] == str(block_id)
        assert a["tags"] == ["rag-health"]
    assert failed["enabled"] and not by_name["rag-health-warned"][0]["enabled"]
    assert [a.name for a in automations.list_automations()] == sorted(by_name)


def test_apply_keeps_an_automation_a_user_switched(server, applied):
    """Re-applying updates triggers and actions but not the enabled flag someone set in the UI."""
    warned = next(a for a in applied[0] if a.name == "rag-health-warned")
    api(server, f"/automations/{warned.id}", {"enabled": True}, method="PATCH")
    automations.apply(Settings(notify_block=f"custom-webhook/{BLOCK}"))
    assert api(server, f"/automations/{warned.id}", method="GET")["enabled"] is True
    api(server, f"/automations/{warned.id}", {"enabled": False}, method="PATCH")


def test_a_failed_check_event_sends_the_notification(server, applied, received):
    """A rag-health.check.failed event on a collection reaches the webhook, with the verdict and findings."""
    emit(server, event="rag-health.check.failed", resource={"prefect.resource.id": "rag-health.collection.test"},
         payload={"verdict": "fail", "stages": {"probes": "fail", "freshness": "pass"},
                  "summary": "rag-health verdict: fail — probes: hit@5 0.42 below 0.5",
                  "failing": [{"stage": "probes", "finding": "hit@5 0.42 below 0.5"}]})
    message = wait_for(received, lambda m: "FAILED" in m["subject"])
    assert message["subject"] == "rag-health FAILED: test"
    assert "rag-health.check.failed on collection test" in message["body"]
    assert "probes=fail" in message["body"] and "- probes: hit@5 0.42 below 0.5" in message["body"]
    assert "rag-health verdict: fail — probes: hit@5 0.42 below 0.5" in message["body"]


def test_a_stage_failed_event_sends_its_error_without_empty_lines(server, applied, received):
    """Regression: a stage.failed notification showed empty "Verdict:" and "Stages:" lines (that event carries
    neither); now it shows the stage and its one-line error only."""
    emit(server, event="rag-health.stage.failed", resource={"prefect.resource.id": "rag-health.collection.test"},
         payload={"stage": "quality", "run_id": "r1", "error_type": "ConfigError",
                  "error": "rag-health quality: error: invalid settings: chunk_size (RAG_HEALTH_CHUNK_SIZE): ..."})
    message = wait_for(received, lambda m: "FAILED" in m["subject"])
    assert "rag-health.stage.failed on collection test" in message["body"]
    assert "- quality: rag-health quality: error: invalid settings: chunk_size" in message["body"]
    assert "Verdict:" not in message["body"] and "Stages:" not in message["body"]
    assert not any(line.strip() in ("", "None") for line in message["body"].splitlines()[1:-1])


def test_an_approval_request_links_the_flow_run(server, applied, received):
    """rag-health.approval.requested with a related flow run: the notification carries the summary and a UI link
    to that flow run."""
    flow = api(server, "/flows/", {"name": "rag-health-test"})
    run = api(server, "/flow_runs/", {"flow_id": flow["id"], "name": "waiting-for-approval"})
    emit(server, event="rag-health.approval.requested", resource={"prefect.resource.id": "rag-health.collection.test"},
         related=[{"prefect.resource.id": f"prefect.flow-run.{run['id']}", "prefect.resource.role": "flow-run"}],
         payload={"summary": "ingest would delete 3 of 40 documents"})
    message = wait_for(received, lambda m: "approval" in m["subject"])
    assert message["subject"] == "rag-health approval pending: test"
    assert "Approval pending on collection test: ingest would delete 3 of 40 documents" in message["body"]
    assert "Flow run: waiting-for-approval http" in message["body"]
    assert f"/runs/flow-run/{run['id']}" in message["body"]


def test_a_warned_event_sends_nothing_while_disabled_and_other_events_are_ignored(server, applied, received):
    """The disabled warn automation stays quiet; an event on a resource outside rag-health.collection.* too."""
    emit(server, event="rag-health.check.warned", resource={"prefect.resource.id": "rag-health.collection.test"},
         payload={"summary": "x"})
    emit(server, event="rag-health.check.failed", resource={"prefect.resource.id": "other.thing"},
         payload={"verdict": "fail"})
    time.sleep(10)  # the events above have had the time the failed one took to notify
    leftovers = []
    while not received.empty():
        leftovers.append(received.get_nowait())
    assert leftovers == []


def test_apply_without_a_notification_block_names_the_setting():
    """No block, no automations: an automation notifying nobody would look like a working alert."""
    with pytest.raises(ConfigError, match="RAG_HEALTH_NOTIFY_BLOCK"):
        automations.apply(Settings(notify_block=None))
    with pytest.raises(ConfigError, match="BLOCK-TYPE-SLUG/BLOCK-NAME"):
        automations.apply(Settings(notify_block="ops-alerts"))
