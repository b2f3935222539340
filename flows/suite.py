"""The rag-health suite: every stage in order, one verdict. A fail emits an event and fails the flow run."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed

from flows import publish
from flows.resources import run_name, runtime_for, settings_from
from flows.stages import (
    coverage_flow,
    drift_flow,
    freshness_flow,
    ingest_flow,
    probes_flow,
    quality_flow,
    unwrap,
)
from rag_health import stages


@flow(name="rag-health-suite", flow_run_name=run_name("suite"))
def suite_flow(docs: str | None = None, manifest: str | None = None, probes: list[str] | None = None,
               rules: list[str] | None = None, runbook_url_prefix: list[str] | None = None,
               state_dir: str | None = None, collection: str | None = None, promote_baseline: bool = False,
               fail_under: list[str] | None = None, settings_overrides: dict[str, Any] | None = None):
    """Ingest, freshness, coverage, quality, probes and drift against one collection. Returns the JSON result."""
    settings = settings_from({"docs": docs, "manifest": manifest, "probes": probes or None, "rules": rules or None,
                              "runbook_url_prefix": runbook_url_prefix or None, "state_dir": state_dir,
                              "collection": collection, "fail_under": fail_under or None}, settings_overrides)
    # Subflows get the resolved settings so every stage sees exactly the same configuration.
    resolved = settings.model_dump(mode="json")
    common = {"state_dir": str(settings.state_dir), "collection": settings.collection,
              "settings_overrides": resolved}
    run_id = stages.new_run_id()
    outputs: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    def timed(name, fn, **kwargs):
        start = time.perf_counter()
        # A failing stage fails its own flow run; the suite still runs the other stages and judges at the end.
        outputs[name] = unwrap(fn(return_state=True, **kwargs))
        timings[name] = time.perf_counter() - start

    timed("ingest", ingest_flow, docs=settings.docs, **common)
    timed("freshness", freshness_flow, docs=settings.docs,
          manifest=str(m) if (m := settings.effective_manifest()) else None, **common)
    timed("coverage", coverage_flow, docs=settings.docs, **common)
    timed("quality", quality_flow, docs=settings.docs, run_id=run_id, **common)
    generated = {"alerts": outputs["coverage"].get("probes", [])}
    timed("probes", probes_flow, docs=settings.docs, probes=[str(p) for p in settings.effective_probes()] or None,
          extra_sets=generated, run_id=run_id, **common)
    verdict_so_far = stages.overall_verdict({k: v.get("status", "pass") for k, v in outputs.items()})
    timed("drift", drift_flow, run_id=run_id, promote_baseline=promote_baseline, verdict=verdict_so_far, **common)

    rt = runtime_for(settings)
    result = stages.assemble_result(run_id, rt, outputs, timings)
    result["result_file"] = stages.save_run_result(rt, run_id, result)
    publish.publish_verdict(result)
    get_run_logger().info("verdict %s: %s", result["verdict"], result["stages"])
    if result["verdict"] == "fail":
        publish.emit_failure(result)
        return Failed(message=f"rag-health verdict: fail ({'; '.join(result['findings'][:3])})", data=result)
    return Completed(message=f"rag-health verdict: {result['verdict']}", data=result)
