"""The suite, written once: the stages in order, each given what it declares it takes from the stages before it
(registry.Stage.from_earlier) and the run's id where it takes one, each timed, then the run saved to the archive.
The command line executes a stage by calling its function (local.py), Prefect by running its subflow
(flows/suite.py); neither keeps any wiring of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag_health import suite
from rag_health.registry import SUITE, SuiteOptions, stages
from rag_health.results import RunResult
from rag_health.runtime import Runtime

# (stage name, its inputs) -> its result: the stage's own function, or its Prefect subflow
Execute = Callable[[str, dict[str, Any]], Any]


@dataclass
class SuiteRun:
    """What the runner hands back: each stage's result by name, their seconds, and the saved run."""

    outputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    saved: RunResult | None = None


def stage_inputs(name: str, earlier: dict[str, Any], options: SuiteOptions, run_id: str) -> dict[str, Any]:
    """What a stage of the suite is given: what it takes from the stages before it, and the run id if it takes one."""
    stage = stages()[name]
    inputs = dict(stage.from_earlier(earlier, options)) if stage.from_earlier else {}
    if stage.takes_run_id:
        inputs["run_id"] = run_id
    return inputs


def run_suite(rt: Runtime, run_id: str, execute: Execute, options: SuiteOptions,
              flow_run_id: Callable[[], str] = lambda: "") -> SuiteRun:
    """Every stage in order, then the run's result, front page and history saved (suite.save). The caller holds
    the collection lock around this."""
    done = SuiteRun()
    for name in SUITE:
        start = time.perf_counter()
        done.outputs[name] = execute(name, stage_inputs(name, done.outputs, options, run_id))
        done.timings[name] = time.perf_counter() - start
    done.saved = suite.save(rt, suite.assemble(run_id, rt, done.outputs, done.timings),
                            front_page=lambda shown: suite.render_front_page(rt, {**shown,
                                                                                  "flow_run_id": flow_run_id()}))
    return done
