"""Stages and the suite run in this process, without Prefect: what the command line does when no Prefect server is
configured, so an ad-hoc command pays neither a temporary Prefect server nor Prefect's import. The same stages,
inputs, collection lock (held in the store), run archive and results as the flows (flows/), without flow runs,
artifacts or events; those come with a Prefect server (PREFECT_API_URL, or `--prefect`)."""

from __future__ import annotations

import os
import tomllib
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rag_health import runner
from rag_health.errors import ConfigError
from rag_health.locks import collection_lock
from rag_health.progress import terminal_progress
from rag_health.registry import SuiteOptions, stages
from rag_health.results import to_json
from rag_health.run_ids import new_run_id
from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import Settings


def prefect_configured(environ: dict[str, str] | None = None) -> bool:
    """Whether a Prefect API is configured: PREFECT_API_URL in the environment or in the active Prefect profile
    (read from profiles.toml without importing Prefect, which costs seconds)."""
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return True
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    active = env.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return bool((profiles.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL"))


def _stage_inputs(name: str, inputs: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """A command's inputs as the stage's function takes them: what was not given left out; a stage that stores
    what it finds under a run (drift) is given a new run id when it has none."""
    inputs = {k: v for k, v in inputs.items() if v is not None}
    if name == "ingest" and int(inputs.pop("shards", 1) or 1) > 1:
        raise ConfigError("ingest in shards runs its shards as Prefect flow runs: set PREFECT_API_URL (make up) "
                          "or drop --shards")
    if stages()[name].takes_run_id and (run_id or name == "drift"):
        inputs["run_id"] = run_id or new_run_id()
    return inputs


def run_stage(settings: Settings, name: str, inputs: dict[str, Any], run_id: str | None = None) -> Any:
    """One stage's command: its typed result. A stage that writes holds the collection lock as its run."""
    stage = stages()[name]
    rt = build_runtime(settings)
    owner = run_id or f"{name}-{new_run_id()}"
    with collection_lock(rt, owner) if stage.writes else nullcontext():
        return _execute(rt, name, _stage_inputs(name, inputs, run_id))


def run_suite(settings: Settings, *, on_mass_change: str = "hold", promote_baseline: bool = False) -> dict[str, Any]:
    """`rag-health run`: the suite (rag_health.runner) against one runtime, under one collection lock, each stage
    called in this process; the run saved to the archive as the suite flow saves it. Returns the run's JSON."""
    run_id = new_run_id()
    rt = build_runtime(settings)
    options = SuiteOptions(on_mass_change=on_mass_change, promote_baseline=promote_baseline)
    with collection_lock(rt, run_id):
        done = runner.run_suite(rt, run_id, lambda name, inputs: _execute(rt, name, inputs), options)
    return to_json(done.saved)


def _execute(rt: Runtime, name: str, inputs: dict[str, Any]) -> Any:
    """A stage called in this process, a progress bar on the terminal for a stage that reports progress."""
    stage = stages()[name]
    rt.progress = terminal_progress(name) if stage.reports_progress else None
    return stage.run(rt, **inputs)
