"""A local Prefect stack for this checkout (`make up` / `make down`): server, work pool, the rag_health_* variables
prefect.yaml reads, every deployment, and a process worker; state, pids and logs under .prefect-local/.

Standard library only, so `make down` works without the virtual environment; it runs `prefect` from the
environment of the Python that runs it.

    python scripts/prefect_local.py up      # PREFECT_PORT (default 4200)
    python scripts/prefect_local.py down
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / ".prefect-local"
POOL = "rag-health"
GRACE_S = 10.0  # SIGTERM, then SIGKILL: a process worker that has run a flow may ignore SIGTERM


def variable_defaults(repo: Path = REPO) -> dict[str, str]:
    """Every Prefect variable prefect.yaml reads, with its local default. A RAG_HEALTH_* variable in the
    environment (e.g. RAG_HEALTH_S3_BUCKET) gives the value instead. Values are strings: they become
    environment variables of the flow run."""
    defaults = {
        "rag_health_docs": str(repo / "datasets" / "docs"),
        "rag_health_state_dir": str(repo / ".rag-health"),
        "rag_health_collection": "rag-health",
        "rag_health_s3_bucket": "",  # empty: no bucket, the run archive stays in the state directory
        "rag_health_chroma_mode": "embedded",
        "rag_health_chroma_host": "127.0.0.1",
        "rag_health_chroma_port": "8000",
    }
    return {name: os.environ.get(name.upper(), value) for name, value in defaults.items()}


def ensure_variables(api_url: str, repo: Path = REPO) -> dict[str, str]:
    """Create the variables prefect.yaml reads. The checkout is always this repository; the others are created
    when missing and overwritten only when the matching RAG_HEALTH_* environment variable is set, so values set
    in the UI survive another `make up`. Returns the values now on the server."""
    wanted = {"rag_health_checkout": str(repo), **variable_defaults(repo)}
    result = {}
    for name, value in wanted.items():
        current = _read_variable(api_url, name)
        force = name == "rag_health_checkout" or name.upper() in os.environ
        if current is None:
            _request(api_url, "/variables/", {"name": name, "value": value})
        elif force and current != value:
            _request(api_url, f"/variables/name/{name}", {"value": value}, method="PATCH")
        else:
            value = current
        result[name] = value
    return result


def up(port: int) -> int:
    LOCAL.mkdir(exist_ok=True)
    env = stack_env(port)
    api_url = env["PREFECT_API_URL"]
    prefect = str(Path(sys.executable).parent / "prefect")
    server_pid = _live_pid("server")
    if server_pid:
        print(f"server already running (pid {server_pid})")
        if not _healthy(api_url):
            _fail(f"pid {server_pid} holds .prefect-local/server.pid but {api_url} does not answer: "
                  "`make down`, or set PREFECT_PORT to the port it was started on")
    else:
        if _healthy(api_url):
            _fail(f"something else already serves {api_url}: choose another PREFECT_PORT")
        log = (LOCAL / "server.log").open("ab")
        proc = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=LOCAL)
        _write_pid("server", proc.pid, port)
        print(f"server starting (pid {proc.pid}, log .prefect-local/server.log)")
        _wait_healthy(api_url, proc)

    if subprocess.run([prefect, "work-pool", "inspect", POOL], env=env, cwd=REPO, capture_output=True).returncode:
        _run([prefect, "work-pool", "create", POOL, "--type", "process"], env)
    for name, value in ensure_variables(api_url).items():
        print(f"  variable {name} = {value!r}")
    _run([prefect, "--no-prompt", "deploy", "--all"], env)

    worker_pid = _live_pid("worker")
    if worker_pid:
        print(f"worker already running (pid {worker_pid})")
    else:
        log = (LOCAL / "worker.log").open("ab")
        proc = subprocess.Popen([prefect, "worker", "start", "--pool", POOL], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        _write_pid("worker", proc.pid, port)
        print(f"worker started (pid {proc.pid}, log .prefect-local/worker.log)")

    ui = api_url.removesuffix("/api")
    print(f"\nPrefect UI: {ui}\n\nNext:\n"
          f"  export PREFECT_API_URL={api_url}\n"
          "  prefect deployment run rag-health-freshness/freshness --watch\n"
          "  rag-health automations apply      # with RAG_HEALTH_NOTIFY_BLOCK=block-type-slug/block-name\n"
          "  make down")
    return 0


def down() -> int:
    """Stop the worker, then the server: SIGTERM to the process group, SIGKILL after a grace period."""
    stopped = False
    for role in ("worker", "server"):
        pid = _live_pid(role)
        if pid:
            _stop_group(pid, role)
            stopped = True
        (LOCAL / f"{role}.pid").unlink(missing_ok=True)
    if not stopped:
        print("nothing running")
    return 0


def stack_env(port: int) -> dict[str, str]:
    """Environment for the server, the CLI calls and the worker. Without PREFECT_SERVER_API_PORT and
    PREFECT_UI_API_URL the UI served on another port still calls 127.0.0.1:4200/api."""
    api_url = f"http://127.0.0.1:{port}/api"
    return {**os.environ, "PREFECT_HOME": str(LOCAL / "home"), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": api_url, "PREFECT_UI_URL": api_url.removesuffix("/api"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def _stop_group(pid: int, role: str) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        print(f"{role} (pid {pid}) ignored SIGTERM for {GRACE_S:.0f} s: SIGKILL")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while _group_alive(pid):
            time.sleep(0.1)
    print(f"{role} stopped (pid {pid})")


def _group_alive(pgid: int) -> bool:
    """Any process left in the group (zombies excluded: they are gone, only not yet reaped)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _live_pid(role: str) -> int | None:
    """The pid in .prefect-local/ROLE.pid when that process is still a prefect process (not a reused pid)."""
    try:
        pid = int(json.loads((LOCAL / f"{role}.pid").read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError):
        return None
    return pid if b"prefect" in cmdline else None


def _write_pid(role: str, pid: int, port: int) -> None:
    (LOCAL / f"{role}.pid").write_text(json.dumps({"pid": pid, "port": port}))


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait_healthy(api_url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fail(f"prefect server exited ({proc.returncode}); see .prefect-local/server.log")
        if _healthy(api_url):
            return
        time.sleep(0.5)
    _fail(f"prefect server not healthy at {api_url} after {timeout:.0f} s; see .prefect-local/server.log")


def _read_variable(api_url: str, name: str):
    try:
        return _request(api_url, f"/variables/name/{name}", method="GET")["value"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _request(api_url: str, path: str, body=None, method: str = "POST"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{api_url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        _fail(f"{' '.join(cmd[1:])} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def _fail(message: str):
    print(f"prefect_local: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["up"]:
        return up(int(os.environ.get("PREFECT_PORT", "4200")))
    if argv[:1] == ["down"]:
        return down()
    print("usage: prefect_local.py up|down   (PREFECT_PORT picks the port, default 4200)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
