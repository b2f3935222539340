"""Settings and runtimes for flow runs. A suite run's stages (each its own subflow run, in one process) share the
Runtime the suite registered, so the source is listed and the manifest loaded once per run; the suite releases
it when it ends. Anything else (a stage flow on its own, the CLI) gets a fresh runtime that nothing keeps."""

from __future__ import annotations

import json
from typing import Any

from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import Settings, disable_telemetry, load_settings

_runs: dict[tuple[str, str], Runtime] = {}


def settings_from(params: dict[str, Any], overrides: dict[str, Any] | None = None) -> Settings:
    disable_telemetry()
    return load_settings(**{**(overrides or {}), **{k: v for k, v in params.items() if v is not None}})


def _key(settings: Settings, run_id: str) -> tuple[str, str]:
    return run_id, json.dumps(settings.model_dump(mode="json"), sort_keys=True)


def register(settings: Settings, run_id: str) -> Runtime:
    """The suite's runtime for this run: its stages' flows find it by run id and settings."""
    _runs[_key(settings, run_id)] = build_runtime(settings)
    return _runs[_key(settings, run_id)]


def runtime_for(settings: Settings, run_id: str | None = None) -> Runtime:
    """The registered runtime of this run and settings, or a fresh one."""
    registered = _runs.get(_key(settings, run_id)) if run_id else None
    return registered or build_runtime(settings)


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
