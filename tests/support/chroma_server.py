"""A real Chroma server (`chroma run`) on a free port, for server-mode tests."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.seaweed import free_port


def start_chroma(path: Path, timeout: float = 60.0) -> tuple[subprocess.Popen, int]:
    port = free_port()
    path.mkdir(parents=True, exist_ok=True)
    log = (path.parent / "chroma-server.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "chroma"), "run", "--path", str(path), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("chroma server did not answer")


class AuthProxy:
    """A reverse proxy in front of a real Chroma server that lets a request through only with the credentials a
    server configured for token or basic auth expects (`chroma run` itself has no authentication: teams put it
    behind one), and answers 401 otherwise. `seen` collects the auth header values it checked."""

    def __init__(self, upstream_port: int, *, token: str | None = None, header: str = "Authorization",
                 basic: str | None = None):
        import base64
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        expected = {}
        if token:
            expected[header.lower()] = f"Bearer {token}" if header == "Authorization" else token
        if basic:
            expected["authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        proxy = self
        self.seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                given = {k.lower(): v for k, v in self.headers.items()}
                ok = all(given.get(k) == v for k, v in expected.items())
                proxy.seen.append(",".join(f"{k}={'ok' if given.get(k) == v else 'bad'}" for k, v in expected.items()))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not ok and not self.path.endswith("/heartbeat"):
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    payload = b'{"error": "Unauthorized", "message": "Unauthorized"}'
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
