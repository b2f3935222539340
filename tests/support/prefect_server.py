"""A real Prefect server (SQLite, temp PREFECT_HOME) on a free port, for deployment tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.seaweed import free_port


@dataclass
class PrefectServer:
    api_url: str
    env: dict[str, str]
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
    return env


def start_server(home: Path, timeout: float = 90.0) -> PrefectServer:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(home, api_url)
    prefect = str(Path(sys.executable).parent / "prefect")
    log = (home / "server.log").open("wb")
    process = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return PrefectServer(api_url, env, process)
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("prefect server did not become healthy")
