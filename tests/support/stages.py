"""Run one stage the way a flow does, without Prefect, and read its result as the JSON contract shows it."""

from __future__ import annotations

from typing import Any

from rag_health.registry import stages
from rag_health.results import to_json


def stage(rt, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One stage as its own command: a run of its own, so it lists the source and reads the manifest afresh."""
    return to_json(stages()[name].run(rt.new_run(), *args, **kwargs))
