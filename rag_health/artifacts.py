"""Key-value stores for what runs write: a local folder or an S3 prefix. Which keys exist is rag_health.archive's
business; these only put, get and list bytes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Protocol


class ArtifactStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes under key; returns the URI of the stored object."""

    def get(self, key: str) -> bytes | None:
        """The bytes under key, or None when absent."""

    def uri(self, key: str) -> str: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix, sorted."""


class LocalArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str((self.root / key).resolve())

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of this writer's own, then an atomic rename: a reader never sees half a file, and two
        # writers of one key (two workers rebuilding the report index) never rename each other's temporary file.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)  # only left when the write or the rename failed
        return self.uri(key)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def list(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
                      if p.is_file() and not p.name.endswith(".tmp"))


class S3ArtifactStore:
    """An S3 prefix. The client is passed in (boto3 honours AWS_ENDPOINT_URL for S3-compatible servers)."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        return self.uri(key)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # some S3-compatible servers answer a bare 404 ClientError
            if s3_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def list(self, prefix: str) -> list[str]:
        start = self._key(prefix)
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            keys += [obj["Key"][len(self._key("")):] for obj in page.get("Contents", [])]
        return sorted(keys)


def s3_client(connect_timeout: float = 5.0, read_timeout: float = 15.0, max_attempts: int = 3) -> Any:
    """An S3 client that gives up: botocore's defaults (60 s timeouts, legacy retries) cost about 180 s per call
    against an endpoint that never answers. The runtime passes the s3_* settings."""
    import boto3
    from botocore.config import Config

    # total_max_attempts counts the first try, as the s3_max_attempts setting does; botocore's `max_attempts`
    # key would count retries only (one attempt more than asked, measured: 3 requests for s3_max_attempts=2).
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={"total_max_attempts": max_attempts, "mode": "standard"})
    return boto3.client("s3", config=config)


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
