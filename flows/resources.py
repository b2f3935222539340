"""Settings and runtimes for flow runs. A suite run's stages (each its own subflow run, in one process) share the
Runtime the suite registered, so the source is listed and the manifest loaded once per run; the suite releases
it when it ends. Anything else (a stage flow on its own, the CLI) gets a fresh runtime that nothing keeps."""

from __future__ import annotations

import json
from typing import Any

from rag_health.errors import ConfigError
from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import ENV_ONLY, Settings, disable_telemetry, load_settings

_runs: dict[tuple[str, str], Runtime] = {}


# Flow parameters are never Optional (the Prefect UI's form would offer "None" for each): an empty value means
# "not given", so the setting comes from the environment or its default.
NO_OVERRIDES: dict[str, Any] = {}  # shared defaults, never mutated
NO_SETS: dict[str, Any] = {}


def given(value: Any) -> bool:
    return value is not None and value != "" and value != () and value != []


def settings_from(params: dict[str, Any], overrides: dict[str, Any] | None = None) -> Settings:
    """A flow run's settings: the worker's environment, then the run's settings overrides and parameters, except
    what only the environment may set (credentials, the allowed roots): whoever may start a deployment must not
    widen what the worker reads or where it sends its credentials."""
    disable_telemetry()
    given_keys = {k for k, v in {**(overrides or {}), **params}.items() if given(v)}
    # Present at all, even empty: an empty allowed_roots would lift the worker's roots, an empty token its auth.
    refused = sorted(({*(overrides or {}), *given_keys}) & ENV_ONLY)
    if refused:
        raise ConfigError(f"{', '.join(refused)} may only be set in the worker's environment "
                          f"({', '.join('RAG_HEALTH_' + k.upper() for k in refused)}), not as a flow parameter")
    settings = load_settings(**{**(overrides or {}), **{k: v for k, v in params.items() if given(v)}})
    if settings.chroma_auth_token or settings.chroma_basic_auth:
        # The credentials go to whichever server the settings name: with credentials, the worker's environment
        # names it too (a suite's subflows pass the same server on, which is fine).
        worker = load_settings()
        moved = [k for k in CREDENTIAL_TARGET if getattr(settings, k) != getattr(worker, k)]
        if moved:
            raise ConfigError(f"{', '.join(moved)}: with Chroma credentials in the worker's environment the server "
                              "they are sent to is the environment's too "
                              f"({', '.join('RAG_HEALTH_' + k.upper() for k in moved)}), not a flow parameter")
    return settings


CREDENTIAL_TARGET = ("chroma_mode", "chroma_host", "chroma_port", "chroma_ssl", "chroma_auth_header")


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


def registered(settings: Settings, run_id: str | None) -> bool:
    """Whether a suite registered this run (its stages then leave the run's events to the suite)."""
    return bool(run_id) and _key(settings, run_id) in _runs


def release(run_id: str) -> None:
    for key in [k for k in _runs if k[0] == run_id]:
        del _runs[key]


def run_name(prefix: str):
    """A flow_run_name callable: '<prefix> <collection> <docs>', defaults spelled out rather than 'None', a long
    docs location shortened from the left (its end names it)."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        docs = str(params.get("docs") or "default docs")
        docs = docs if len(docs) <= 48 else "…" + docs[-47:]
        collection = params.get("collection") or "rag-health"
        shard = f" shard {params['shard']}" if params.get("shard") else ""
        return f"{prefix}{shard} · {collection} · {docs}"

    return name


# What each flow run ended with, by flow run id, for the caller in this process (the suite, the CLI). A failed
# flow run's state carries a short message and no data (Prefect cannot turn a dict into an exception), so the
# result travels here; an error the caller should see as itself (a bad setting) travels here too.
_outcomes: dict[str, Any] = {}


def keep(outcome: Any) -> None:
    from prefect.runtime import flow_run

    if flow_run.id:
        _outcomes[str(flow_run.id)] = outcome


def unwrap(state) -> Any:
    """The result of a flow run called with return_state=True: what it kept, or its data; the original exception
    when it ended in an error."""
    run_id = str(state.state_details.flow_run_id or "")
    if run_id in _outcomes:
        outcome = _outcomes.pop(run_id)
    else:
        outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
