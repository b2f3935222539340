"""Settings and runtimes for flow runs. A suite run's stages (each its own subflow run, in one process) share one
Runtime, so the source is listed and the manifest loaded once per run; a runtime is released when its run ends."""

from __future__ import annotations

import json
from typing import Any

from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import Settings, disable_telemetry, load_settings

_runs: dict[tuple[str, str], Runtime] = {}


def settings_from(params: dict[str, Any], overrides: dict[str, Any] | None = None) -> Settings:
    disable_telemetry()
    return load_settings(**{**(overrides or {}), **{k: v for k, v in params.items() if v is not None}})


def runtime_for(settings: Settings, run_id: str | None = None) -> Runtime:
    """The run's runtime (one per run id and settings); without a run id, a fresh one."""
    if run_id is None:
        return build_runtime(settings)
    key = (run_id, json.dumps(settings.model_dump(mode="json"), sort_keys=True))
    if key not in _runs:
        _runs[key] = build_runtime(settings)
    return _runs[key]


def release(run_id: str) -> None:
    for key in [k for k in _runs if k[0] == run_id]:
        del _runs[key]


def run_name(prefix: str):
    """A flow_run_name callable: '<prefix> <docs>' with the default docs spelled out rather than 'None'."""

    def name() -> str:
        from prefect.runtime import flow_run

        docs = (flow_run.parameters or {}).get("docs") or "default docs"
        return f"{prefix} {docs}"

    return name
