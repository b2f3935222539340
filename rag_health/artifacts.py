"""Key-value stores for what runs write: a local folder or an S3 prefix. Which keys exist is rag_health.archive's
business; these only put, get and list bytes."""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path
from typing import Any, Protocol

from rag_health.errors import S3_MISSING, S3_PRECONDITION, s3_error_code


class AlreadyExists(Exception):
    """A create-only write found the key taken: the stored object is kept as it is."""


class ArtifactStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
            cache_control: str | None = None, create_only: bool = False) -> str:
        """Store bytes under key; returns the URI of the stored object. create_only: raise AlreadyExists rather
        than replace an object already there."""

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

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
            cache_control: str | None = None, create_only: bool = False) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of this writer's own, then an atomic rename: a reader never sees half a file, and two
        # writers of one key (two workers rebuilding the report index) never rename each other's temporary file.
        # Create-only: a hard link, which fails when the name exists (no window between a check and the write).
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_bytes(data)
            if create_only:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise AlreadyExists(self.uri(key)) from None
            else:
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

    def __init__(self, client: Any, bucket: str, prefix: str = "", sse: str = "", kms_key_id: str | None = None):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Server-side encryption asked of every put; never an ACL (objects stay as private as the bucket).
        self.encryption: dict[str, str] = {"ServerSideEncryption": sse} if sse else {}
        if sse == "aws:kms" and kms_key_id:
            self.encryption["SSEKMSKeyId"] = kms_key_id

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
            cache_control: str | None = None, create_only: bool = False) -> str:
        extra = dict(self.encryption)
        if cache_control:
            extra["CacheControl"] = cache_control
        if create_only:
            # IfNoneMatch="*" makes the server refuse to replace (S3 since 2024, SeaweedFS); a server that ignores
            # the header is covered by looking first.
            if self.exists(key):
                raise AlreadyExists(self.uri(key))
            extra["IfNoneMatch"] = "*"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type,
                                   **extra)
        except Exception as exc:
            if create_only and s3_error_code(exc) in S3_PRECONDITION:
                raise AlreadyExists(self.uri(key)) from None
            raise
        return self.uri(key)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            if s3_error_code(exc) in S3_MISSING:
                return False
            raise

    def presign(self, key: str, expires_s: int) -> str:
        """A GET URL anyone holding it can open until it expires (signed with the client's credentials; the URL
        carries the access key id and a signature, never the secret)."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket,
                                                                        "Key": self._key(key)},
                                                  ExpiresIn=int(expires_s))

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # some S3-compatible servers answer a bare 404 ClientError
            if s3_error_code(exc) in S3_MISSING:
                return None
            raise

    def list(self, prefix: str) -> list[str]:
        start = self._key(prefix)
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            keys += [obj["Key"][len(self._key("")):] for obj in page.get("Contents", [])]
        return sorted(keys)


def s3_client(connect_timeout: float = 5.0, read_timeout: float = 15.0, max_attempts: int = 3,
              call_timeout: float | None = 90.0) -> Any:
    """An S3 client that gives up: botocore's defaults (60 s timeouts, legacy retries) cost about 180 s per call
    against an endpoint that never answers, and its timeouts are per recv, so one that trickles never trips them:
    every call also has a wall-clock bound (call_timeout, BoundedS3). The runtime passes the s3_* settings."""
    import boto3
    from botocore.config import Config

    # total_max_attempts counts the first try, as the s3_max_attempts setting does; botocore's `max_attempts`
    # key would count retries only (one attempt more than asked, measured: 3 requests for s3_max_attempts=2).
    # SigV4 for presigned URLs (expiry up to 7 days); botocore would otherwise presign with SigV2 on us-east-1.
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout, signature_version="s3v4",
                    retries={"total_max_attempts": max_attempts, "mode": "standard"})
    client = boto3.client("s3", config=config)
    return BoundedS3(client, call_timeout) if call_timeout else client


class BoundedS3:
    """An S3 client whose every call finishes within `timeout` seconds, botocore's retries included, or raises
    CallTimeout naming the operation and the endpoint. A GetObject's body is read within the same bound (callers
    ask for bounded ranges or small objects), and list_objects_v2 pages through bounded calls."""

    _AS_IS = frozenset({"meta", "exceptions", "generate_presigned_url", "can_paginate"})

    def __init__(self, client: Any, timeout: float):
        self._client = client
        self._timeout = timeout
        self._endpoint = getattr(getattr(client, "meta", None), "endpoint_url", "S3")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self._AS_IS or name.startswith("_") or not callable(attr):
            return attr
        if name == "get_paginator":
            return lambda operation: _Pages(self, operation)

        def call(**kwargs: Any) -> Any:
            def run() -> Any:
                response = attr(**kwargs)
                if name == "get_object":
                    body = response["Body"]
                    try:  # never more than the Range asked for, even from a server that ignores it
                        response["Body"] = io.BytesIO(body.read(_range_length(kwargs.get("Range"))))
                    finally:
                        body.close()
                return response

            from rag_health.deadlines import within

            return within(run, self._timeout, f"S3 {name} at {self._endpoint}",
                          "setting s3_call_timeout, RAG_HEALTH_S3_CALL_TIMEOUT")

        return call


def _range_length(header: str | None) -> int | None:
    """The bytes a `Range: bytes=A-B` asks for (None: the whole object)."""
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", header or "")
    return int(m.group(2)) - int(m.group(1)) + 1 if m else None


class _Pages:
    """A paginator over bounded calls (botocore's own would call the unbounded client)."""

    def __init__(self, client: BoundedS3, operation: str):
        if operation != "list_objects_v2":
            raise ValueError(f"no bounded paginator for {operation}")
        self.client = client

    def paginate(self, **kwargs: Any) -> Any:
        token = None
        while True:
            page = self.client.list_objects_v2(**kwargs, **({"ContinuationToken": token} if token else {}))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
