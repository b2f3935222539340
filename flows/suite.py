"""The rag-health suite: every stage in order, one verdict. A fail emits an event and fails the flow run."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from flows import publish
from flows.concurrency import guard
from flows.resources import NO_OVERRIDES, keep, register, release, run_name, settings_from, unwrap
from flows.stage_run import collection_of, ended_in_error, quiet_expected_errors
from flows.stages import FLOWS
from rag_health import runner, suite
from rag_health.registry import SuiteOptions
from rag_health.results import to_json
from rag_health.run_ids import new_run_id


@flow(name="rag-health-suite", flow_run_name=run_name("suite"))
def suite_flow(docs: str = "", manifest: str = "", probes: tuple[str, ...] = (),
               rules: tuple[str, ...] = (), runbook_url_prefix: tuple[str, ...] = (),
               state_dir: str = "", collection: str = "", promote_baseline: bool = False,
               fail_under: tuple[str, ...] = (), settings_overrides: dict[str, Any] = NO_OVERRIDES,
               on_mass_change: Literal["ask", "hold", "proceed"] = "hold"):
    """Ingest, freshness, alert coverage, quality, probes and drift against one collection; one verdict.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        manifest: Manifest of expected documents (YAML path; empty: RAG_HEALTH_MANIFEST).
        probes: Probe sets (JSONL paths; empty: RAG_HEALTH_PROBES).
        rules: Prometheus rule files or folders for alert coverage (empty: RAG_HEALTH_RULES).
        runbook_url_prefix: Runbook URL prefixes mapped to the docs root, or URL=FOLDER.
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        promote_baseline: Make this run the drift and probe baseline.
        fail_under: Probe thresholds that fail the run, e.g. "hit@5=0.9" or "golden:mrr=0.8".
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
        on_mass_change: When the ingest would remove or replace more than max_delete_fraction of the indexed documents: "hold" (default) keeps the index and warns (approve it by running the reingest deployment), "ask" pauses the suite for a person's approval while it holds the collection, "proceed" goes ahead.
    """
    quiet_expected_errors()
    params = {"docs": docs, "manifest": manifest, "probes": probes or None, "rules": rules or None,
              "runbook_url_prefix": runbook_url_prefix or None, "state_dir": state_dir, "collection": collection,
              "fail_under": fail_under or None}
    try:
        settings = settings_from(params, settings_overrides)
    except Exception as exc:  # a bad setting or parameter: one line, no traceback, rag-health.stage.failed
        return ended_in_error("suite", collection_of(params, settings_overrides), None, exc)
    # Subflows get the resolved settings, so every stage sees exactly the same configuration and, within this
    # process, shares this run's runtime (one listing, one manifest, one ledger scan per state of the index).
    run_id = new_run_id()
    rt = register(settings, run_id)
    common = {"docs": settings.docs, "state_dir": str(settings.state_dir), "collection": settings.collection,
              "settings_overrides": settings.model_dump(mode="json"), "run_id": run_id}
    options = SuiteOptions(on_mass_change=on_mass_change, promote_baseline=promote_baseline)
    held = False
    try:
        with guard(rt, run_id):  # one writer per collection; the stages re-enter the lock as this run
            held = True
            done = runner.run_suite(rt, run_id, lambda name, inputs: _subflow(rt, run_id, common, name, inputs),
                                    options, flow_run_id=lambda: str(flow_run.id or ""))
    except Exception as exc:
        # A stage's error emitted rag-health.stage.failed already; the suite's own hold on the collection (busy, or
        # its shared lease out of reach) has nobody else to report it. The CLI exits with the error's code.
        return ended_in_error("suite", settings.collection, run_id, exc, emit=not held)
    finally:
        release(run_id)
    return _verdict(settings, run_id, done.outputs, to_json(done.saved))


def _subflow(rt, run_id: str, common: dict[str, Any], name: str, inputs: dict[str, Any]):
    """A stage of the suite as its own subflow run, tagged with the stage, collection and run. A failing stage
    fails its own flow run; the suite still runs the others and judges at the end."""
    flow_ = FLOWS[name]
    accepted = inspect.signature(flow_.fn).parameters
    kwargs = {k: v for k, v in {**common, **inputs}.items() if k in accepted}
    with tags("rag-health", f"stage:{name}", f"collection:{rt.settings.collection}", f"run:{run_id}"):
        return unwrap(flow_(return_state=True, **kwargs))


def _verdict(settings, run_id: str, outputs: dict[str, Any], result: dict[str, Any]):
    """The suite run's artifacts, its event and its final state."""
    publish.publish(suite.verdict_artifacts(result))
    get_run_logger().info("verdict %s: %s", result["verdict"], result["stages"])
    payload = suite.event_payload(run_id, outputs, result.get("report"))
    if payload["verdict"] != result["verdict"]:  # publishing problems make a run warn after its stages
        payload.update(verdict=result["verdict"], summary=f"rag-health verdict: {result['verdict']}")
    publish.emit_verdict(settings.collection, payload)
    if result["verdict"] == "fail":
        # A short message naming the failing checks, and no data: the whole result is in the artifacts and the
        # run archive (a dict in a Failed state makes Prefect log all of it as an error).
        keep(result)
        return Failed(message=suite.failure_message(outputs))
    return Completed(message=f"rag-health verdict: {result['verdict']}", data=result)
