"""Thin wrapper over Great Expectations: validate a DataFrame against a declarative list of expectations.

Each expectation carries a severity in its meta (warn or fail), so thresholds stay declarative: a failed
expectation with severity "warn" makes the check warn, one with "fail" makes it fail.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int
    unexpected_index: tuple[int, ...]
    description: str


@lru_cache(maxsize=1)
def _context():
    # GX analytics are switched off with the other telemetry by rag_health.settings.disable_telemetry(), which
    # every entry point calls first (checks/ stays free of rag_health imports).
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False, "profilers": False, "metric_calculations": False}
    except Exception:  # older GX variants spell it differently; progress bars are cosmetic
        pass
    return ctx, ctx.data_sources.add_pandas("rag-health-frames")


_counter = itertools.count()


def validate_frame(df: pd.DataFrame, suite_name: str, expectations: list[tuple[Any, str, str]]) -> list[ExpectationOutcome]:
    """expectations: (gx expectation, severity, description). Returns one outcome per expectation, in order."""
    import great_expectations as gx

    ctx, source = _context()
    name = f"{suite_name}-{next(_counter)}"
    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
    suite = gx.ExpectationSuite(name=name)
    for position, (expectation, severity, _) in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), "severity": severity, "position": position}
        suite.add_expectation(expectation)
    result = batch.validate(suite, result_format="COMPLETE")
    source.delete_asset(name)
    outcomes = []
    for res in sorted(result.results, key=lambda r: r.expectation_config.meta["position"]):
        _, severity, description = expectations[res.expectation_config.meta["position"]]
        r = res.result or {}
        outcomes.append(ExpectationOutcome(
            expectation=res.expectation_config.type,
            column=res.expectation_config.kwargs.get("column"),
            severity=severity,
            success=bool(res.success),
            unexpected_count=int(r.get("unexpected_count") or 0),
            unexpected_index=tuple(int(i) for i in (r.get("unexpected_index_list") or [])),
            description=description,
        ))
    return outcomes
