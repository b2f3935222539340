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

from rag_health import suite
from rag_health.locks import collection_lock
from rag_health.progress import terminal_progress
from rag_health.registry import SUITE, stages
from rag_health.results import to_json
from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import ConfigError, Settings


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
    """The command's inputs as the stage's core function takes them (the flows do the same, flows/stages.py)."""
    inputs = {k: v for k, v in inputs.items() if v is not None}
    if name == "ingest":
        from rag_health.ingest import Approval

        mode = inputs.pop("on_mass_change", "hold")
        if int(inputs.pop("shards", 1) or 1) > 1:
            raise ConfigError("ingest in shards runs its shards as Prefect flow runs: set PREFECT_API_URL (make up) "
                              "or drop --shards")
        inputs["approved"] = Approval.allow_all() if mode == "proceed" else None
    if name in ("quality", "probes") and run_id:
        inputs["run_id"] = run_id
    if name == "drift":
        inputs["run_id"] = run_id or suite.new_run_id()
    return inputs


def run_stage(settings: Settings, name: str, inputs: dict[str, Any], run_id: str | None = None) -> Any:
    """One stage's command: its typed result. A stage that writes holds the collection lock as its run."""
    stage = stages()[name]
    rt = build_runtime(settings)
    rt.progress = terminal_progress(name) if stage.reports_progress else None
    owner = run_id or f"{name}-{suite.new_run_id()}"
    with collection_lock(rt, owner) if stage.writes else nullcontext():
        return stage.run(rt, **_stage_inputs(name, inputs, run_id))


def run_suite(settings: Settings, *, on_mass_change: str = "hold", promote_baseline: bool = False) -> dict[str, Any]:
    """`rag-health run`: every stage in order against one runtime, under one collection lock; the run saved to the
    archive (result, front page, history) as the suite flow saves it. Returns the run's JSON."""
    run_id = suite.new_run_id()
    rt = build_runtime(settings)
    outputs: dict[str, Any] = {}
    timings: dict[str, float] = {}
    with collection_lock(rt, run_id):
        for name in SUITE:
            inputs: dict[str, Any] = {}
            if name == "ingest":
                inputs = {"on_mass_change": on_mass_change}
            elif name == "probes":
                from rag_health.probes import probe_rows

                inputs = {"extra_sets": {"alerts": probe_rows(getattr(outputs["coverage"], "probes", ()))}}
            elif name == "drift":
                inputs = {"promote_baseline": promote_baseline, "final": False,
                          "verdict": suite.overall_verdict(suite.statuses(outputs))}
            rt.progress = terminal_progress(name) if stages()[name].reports_progress else None
            outputs[name], timings[name] = _timed(rt, name, _stage_inputs(name, inputs, run_id))
        saved = suite.save(rt, suite.assemble(run_id, rt, outputs, timings),
                           front_page=lambda shown: suite.render_front_page(rt, {**shown, "flow_run_id": ""}))
    return to_json(saved)


def _timed(rt: Runtime, name: str, inputs: dict[str, Any]) -> tuple[Any, float]:
    import time

    start = time.perf_counter()
    result = stages()[name].run(rt, **inputs)
    return result, time.perf_counter() - start
