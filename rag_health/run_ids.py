"""What a run id is: its UTC start time, then a random suffix (20261129T170004Z-79e2fa). Made here and read back
here, by the archive, the history and the report pages alike."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

RUN_TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # a run id starts with its UTC start time: 20261129T170004Z-79e2fa


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime(RUN_TIME_FORMAT) + "-" + secrets.token_hex(3)


def run_created(run_id: str) -> str:
    """When a run started, read from its id (ISO 8601, seconds); '' for ids made otherwise."""
    try:
        stamp = datetime.strptime(str(run_id)[:16], RUN_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return ""
    return stamp.isoformat(timespec="seconds")
