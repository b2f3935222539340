"""Every error rag-health raises on purpose, in one table: which are expected (the message says everything, so the
CLI prints one line and a flow run ends Failed without a traceback), the CLI's exit code for each, and which are
worth another try (a stage that talks to S3 or a Chroma server is retried, with backoff, only for a timeout, a
refused or dropped connection, a throttled or 5xx answer). A bad setting, a model mismatch or a held lock fails at
once, because trying again changes nothing. The S3 error codes the code branches on live here too.

This module imports nothing of rag_health, so any module can raise from it."""

from __future__ import annotations

import socket
from dataclasses import dataclass

CONFIG, FAILED, BUSY, SIGINT, SIGTERM = 2, 1, 75, 130, 143  # exit codes (BUSY: EX_TEMPFAIL, try again later)


class ConfigError(ValueError):
    """Bad usage or configuration: the CLI turns it into exit code 2."""


class ManifestError(ConfigError):
    """The manifest cannot be used: the message names the file, the line and the reason."""


class ModelMismatchError(RuntimeError):
    """The collection was built with another embedding model; writing to it would mix vector spaces."""


class ModelLoadError(ConfigError):
    """The embedding model cannot be loaded (a truncated export, missing weights): the run's error, never one
    document's. A configuration error: the CLI exits 2, a flow ends Failed with the message."""


class LockBusy(RuntimeError):
    """Another run holds the collection lock and did not let go within the wait. The CLI prints the message as its
    one-line error; it says who holds the lock, where, since when, and what to do."""

    def __init__(self, message: str, holder: object | None, waited_s: float):
        super().__init__(message)
        self.holder = holder  # a locks.Lease
        self.waited_s = waited_s


class LockUnavailable(LockBusy):
    """The shared lease in the bucket could not be reached (S3 down, timing out) within the outage wait: nobody can
    tell who holds the collection, so the run does not start. Like LockBusy, a try-again-later (CLI exit 75)."""


class LockLost(RuntimeError):
    """The heartbeat found this run's lease taken over (it went unrenewed past its TTL, e.g. the process was
    suspended): another run may be writing. Raised by HeldLock.ensure()."""


class ChromaUnreachable(ConnectionError):
    """The Chroma server stopped answering mid-run (refused, reset): transient, and the message names it."""


class StoreWriteError(RuntimeError):
    """Embedded Chroma could not write its files (a full disk, most often): the message names the folder and the
    free space."""


class Unreachable(Exception):
    """The run archive's store failed past its retries or the publish deadline; the message says why."""


class CallTimeout(TimeoutError):
    """A remote call did not finish within its wall-clock bound (rag_health.deadlines): transient."""


class Terminated(BaseException):
    """SIGTERM or SIGINT, raised where the process is, so it unwinds like Ctrl-C: locks released, the ingest
    pipeline stopped after its current batch, one line and the JSON error object instead of silence. Not a
    KeyboardInterrupt: one that passes through native code on its way up (a PyO3 or PyRun_* frame) marks the
    interpreter to kill itself with SIGINT at exit whatever the program did with it (seen: exit -2, not 130)."""

    def __init__(self, name: str = "SIGTERM", code: int = SIGTERM):
        super().__init__(name)
        self.name, self.code = name, code


@dataclass(frozen=True)
class Kind:
    """What one error class means to the CLI, the flows and the retries."""

    exit_code: int
    expected: bool  # the message says everything: one line, no traceback
    transient: bool | None  # worth another try; None: decided by its cause (a wrapped timeout is still a timeout)


# First match wins, so subclasses come before their bases.
TAXONOMY: tuple[tuple[type[BaseException], Kind], ...] = (
    (Terminated, Kind(SIGTERM, False, False)),  # the CLI says which signal; a flow run lets Prefect handle it
    (KeyboardInterrupt, Kind(SIGINT, False, False)),
    (ConfigError, Kind(CONFIG, True, False)),  # ManifestError and ModelLoadError too
    (ModelMismatchError, Kind(CONFIG, True, False)),
    (FileNotFoundError, Kind(CONFIG, True, False)),
    (LockUnavailable, Kind(BUSY, True, None)),
    (LockBusy, Kind(BUSY, True, False)),
    (ChromaUnreachable, Kind(FAILED, True, True)),
    (StoreWriteError, Kind(FAILED, True, False)),
    (Unreachable, Kind(FAILED, False, True)),
    (CallTimeout, Kind(FAILED, False, True)),
)
UNEXPECTED = Kind(FAILED, False, None)


def kind_of(exc: BaseException) -> Kind:
    for cls, kind in TAXONOMY:
        if isinstance(exc, cls):
            return kind
    return UNEXPECTED


def exit_code(exc: BaseException) -> int:
    """The CLI's exit code for an error: 2 configuration, 75 try again later, 130/143 a signal, 1 otherwise."""
    if isinstance(exc, Terminated):
        return exc.code
    return kind_of(exc).exit_code


def expected(exc: BaseException) -> bool:
    """An error whose message says everything: the CLI prints it as its one line and a flow run ends Failed with it,
    without a traceback."""
    return kind_of(exc).expected


# --- S3 error codes ------------------------------------------------------------------------------------------------

S3_MISSING = ("404", "NoSuchKey", "NotFound")
S3_PRECONDITION = ("PreconditionFailed", "412")
S3_CONFIG = ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
             "InvalidBucketName", "403", "404")  # the bucket or the credentials are wrong: no retry helps
S3_RETRYABLE = ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                "ServiceUnavailable", "InternalError", "503", "500", "502", "504")


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code of a ClientError; None for anything else. botocore's ReadTimeoutError and
    ConnectTimeoutError carry `response = None`, not a dict, so nothing here assumes a dict."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return str(code) if code is not None else None


def s3_reason(exc: BaseException) -> str:
    """Any exception from an S3 call as one line: "Code: Message" for an error the server answered, the
    exception's class and message otherwise (timeouts and connection errors name the endpoint)."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    if isinstance(error, dict) and (error.get("Code") or error.get("Message")):
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- transient or not ----------------------------------------------------------------------------------------------

def transient(exc: BaseException | None) -> bool:
    """True for a failure of the network or of a remote service that may pass; False for everything else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the cause chain: a wrapped timeout is still a timeout
        seen.add(id(exc))
        decided = kind_of(exc).transient
        if decided is not None:
            return decided
        if isinstance(exc, (TimeoutError, ConnectionError, socket.timeout)):
            return True
        if _botocore_transient(exc) or _http_transient(exc):
            return True
        if "could not connect to a chroma server" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _botocore_transient(exc: BaseException) -> bool:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.ConnectionClosedError)):
        return True  # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ProxyConnectionError, ...
    if isinstance(exc, bx.ClientError):
        status = ((exc.response or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return s3_error_code(exc) in S3_RETRYABLE or (isinstance(status, int) and status >= 500)
    return False


def _http_transient(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False
