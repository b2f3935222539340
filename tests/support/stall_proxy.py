"""A TCP proxy for fault tests: forwards bytes both ways between clients and an upstream server, except that a
connection whose request contains a marker (an object key, a query string) is held open and never answered, as a
stuck S3 server or a black-holed path would do. Also a silent server: accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit


class StallProxy:
    def __init__(self, upstream: str, marker: bytes | None = None, trickle_s: float | None = None):
        parts = urlsplit(upstream)
        self.trickle_s = trickle_s  # answers reach the client one byte per this many seconds (a slow-loris server)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.marker = marker  # may be changed while running; None forwards everything
        self.stalled = 0  # requests held without an answer
        self.stalled_requests: list[bytes] = []  # their first lines
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            stall = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, stall, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, stall, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, stall: threading.Event, from_client: bool) -> None:
        """Copy src to dst. Once a client chunk holds the marker, nothing more goes either way on this
        connection, and both sockets stay open: the client waits until its read timeout."""
        try:
            while data := src.recv(65536):
                if from_client and self.marker is not None and self.marker in data:
                    stall.set()
                    self.stalled += 1
                    self.stalled_requests.append(data.split(b"\r\n", 1)[0])
                if stall.is_set():
                    continue
                if self.trickle_s and not from_client:
                    for i in range(len(data)):
                        dst.sendall(data[i:i + 1])
                        time.sleep(self.trickle_s)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not stall.is_set():
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for s in self._sockets:
            s.close()


class SilentServer:
    """Accepts TCP connections and never sends a byte: a server that is up but hung."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()
