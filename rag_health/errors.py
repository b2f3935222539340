"""Which errors are worth another try. A stage that talks to S3 or a Chroma server is retried (with backoff) only
for these: a timeout, a refused or dropped connection, a throttled or 5xx answer. A bad setting, a model mismatch
or a held lock fails at once, because trying again changes nothing."""

from __future__ import annotations

import socket

_RETRYABLE_S3_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                       "ServiceUnavailable", "InternalError", "503", "500", "502", "504"}


def transient(exc: BaseException) -> bool:
    """True for a failure of the network or of a remote service that may pass; False for everything else."""
    from rag_health.archive import Unreachable
    from rag_health.settings import ConfigError
    from rag_health.store import ModelMismatchError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the cause chain: a wrapped timeout is still a timeout
        seen.add(id(exc))
        if isinstance(exc, (ConfigError, ModelMismatchError)):
            return False
        if isinstance(exc, (Unreachable, TimeoutError, ConnectionError, socket.timeout)):
            return True
        if _botocore_transient(exc) or _http_transient(exc):
            return True
        if "could not connect to a chroma server" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _botocore_transient(exc: BaseException) -> bool:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.ConnectionClosedError)):
        return True  # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ProxyConnectionError, ...
    if isinstance(exc, bx.ClientError):
        from rag_health.artifacts import s3_error_code

        status = ((exc.response or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return s3_error_code(exc) in _RETRYABLE_S3_CODES or (isinstance(status, int) and status >= 500)
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
