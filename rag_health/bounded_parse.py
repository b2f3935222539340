"""Parsing unvetted documents within a time budget. HTML, PDF and DOCX go through third-party parsers whose cost a
hostile file can make huge (a PDF whose pages share one content stream took minutes a page); they are parsed in a
worker process of our own that is stopped when a document overruns `max_parse_seconds`, so one small file can
neither stall a run nor keep it holding the collection. Markdown and text are parsed here (our own linear code).

The worker (`python -m rag_health.bounded_parse`) reads (doc id, bytes, limits) frames on stdin and answers a
parsed document or the error on stdout; it is started on first use, kept for the process, and started again after
it was stopped or died.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from rag_health.documents import (
    DEFAULT_LIMITS,
    DocumentError,
    EmptyDocument,
    Limits,
    ParsedDocument,
    Rejected,
    parse_document,
)

SLOW_SUFFIXES = (".html", ".htm", ".pdf", ".docx")  # parsed by third-party code: bounded in the worker
WORKER_MEMORY_BYTES = 3 * 2**30  # address space of the worker: a decompression bomb fails there, not here
_HEADER = struct.Struct(">Q")


def _needs_worker(doc_id: str) -> bool:
    return os.path.splitext(doc_id)[1].lower() in SLOW_SUFFIXES


def parse_bounded(doc_id: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedDocument:
    """parse_document, with HTML, PDF and DOCX parsed in the worker within limits.max_parse_seconds; a document
    over it is Rejected naming the setting (skipped when new, its last good version kept when indexed)."""
    if not _needs_worker(doc_id) or not limits.max_parse_seconds:
        return parse_document(doc_id, data, limits)
    return _WORKER.parse(doc_id, data, limits)


class _Worker:
    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one document at a time: the reading thread and an audit may both parse

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([_repo_root(), os.environ.get("PYTHONPATH", "")]),
                   "RAG_HEALTH_PARSE_PARENT": str(os.getpid())}
            self._proc = subprocess.Popen([sys.executable, "-m", "rag_health.bounded_parse"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                          close_fds=True)
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def parse(self, doc_id: str, data: bytes, limits: Limits) -> ParsedDocument:
        budget = float(limits.max_parse_seconds)
        with self._lock:
            proc = self._start()
            frame = pickle.dumps((doc_id, data, replace(limits)), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                proc.stdin.write(_HEADER.pack(len(frame)) + frame)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                answer = _read_frame(proc.stdout, time.monotonic() + budget)  # type: ignore[arg-type]
            except TimeoutError:
                self._stop()
                raise Rejected(f"parsing took longer than {budget:g} s and was stopped (setting max_parse_seconds, "
                               "RAG_HEALTH_MAX_PARSE_SECONDS)") from None
            except (BrokenPipeError, EOFError, OSError):
                code = proc.poll()
                self._stop()
                raise DocumentError(f"the parser stopped on this document (exit code {code}): it is malformed or "
                                    "needs more memory than the parser may use") from None
            except BaseException:
                # Interrupted (SIGTERM, Ctrl-C, a cancelled run) with this document's answer still to come: a worker
                # kept would hand it to the next document as its own. Stopped, and started afresh next time.
                self._stop()
                raise
        kind, payload = pickle.loads(answer)
        if kind == "ok":
            return payload
        name, message, front_matter_only = payload
        if name == "EmptyDocument":
            raise EmptyDocument(message, front_matter_only)
        raise (Rejected if name == "Rejected" else DocumentError)(message)

    def close(self) -> None:
        with self._lock:
            self._stop()


def _read_frame(stream: Any, deadline: float) -> bytes:
    """One length-prefixed frame from the worker, or TimeoutError at the deadline."""
    fd = stream.fileno()
    buf = bytearray()
    need = _HEADER.size
    header_done = False
    poller = select.poll()  # not select(): a long-lived process may hold descriptors past FD_SETSIZE (1024)
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError
            chunk = os.read(fd, max(need - len(buf), 1 << 16))
            if not chunk:
                raise EOFError
            buf += chunk
        if header_done:
            return bytes(buf[:need])
        (length,) = _HEADER.unpack(buf[:_HEADER.size])
        del buf[:_HEADER.size]
        need, header_done = length, True


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_WORKER = _Worker()


def _die_with_parent() -> None:
    """A parent that is killed (SIGKILL) enforces no budget any more: the kernel stops the worker with it (Linux
    PR_SET_PDEATHSIG), and a worker whose parent is already gone stops at once."""
    parent = int(os.environ.get("RAG_HEALTH_PARSE_PARENT") or os.getppid())
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the parent's own stop still applies
        pass
    if os.getppid() != parent:  # gone before the kernel was told
        os._exit(0)


def _serve() -> None:
    """The worker's loop: parse each document sent, answer the result or the error; exit when stdin closes."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not every platform allows it
        pass
    _die_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        doc_id, data, limits = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        try:
            answer: tuple[str, Any] = ("ok", parse_document(doc_id, data, limits))
        except EmptyDocument as exc:
            answer = ("error", ("EmptyDocument", str(exc), exc.front_matter_only))
        except Rejected as exc:
            answer = ("error", ("Rejected", str(exc), False))
        except DocumentError as exc:
            answer = ("error", ("DocumentError", str(exc), False))
        except MemoryError:
            answer = ("error", ("DocumentError", "parsing it needs more memory than the parser may use "
                                f"({WORKER_MEMORY_BYTES // 2**30} GiB)", False))
        except Exception as exc:  # a parser bug on one document is that document's error
            answer = ("error", ("DocumentError", f"{type(exc).__name__}: {exc}", False))
        frame = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(frame)) + frame)
        stdout.flush()


if __name__ == "__main__":
    _serve()
