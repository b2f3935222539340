"""One Prefect flow per stage, all made the same way from the stage registry (rag_health.registry): the flow
resolves settings, runs the stage's core function in one task and publishes what the stage shows. The flow
functions exist one by one only because deployments and the UI read their typed parameters."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed

from flows import publish
from flows.resources import run_name, runtime_for, settings_from
from rag_health.registry import stages
from rag_health.suite import new_run_id


@task(name="run-stage")
def run_stage(name: str, settings: dict[str, Any], inputs: dict[str, Any], run_key: str | None):
    stage = stages()[name]
    result = stage.run(runtime_for(settings_from(settings), run_key), **inputs)
    publish.publish(stage.artifacts(result))
    return result


def run(name: str, params: dict[str, Any], overrides: dict[str, Any] | None, run_key: str | None = None,
        **inputs: Any):
    """Run one stage as a task of the current flow (run_key: the run whose runtime it shares, if any); a fail
    fails the flow run (with the result as its data) and emits an event automations can act on."""
    stage = stages()[name]
    settings = settings_from(params, overrides)
    task_ = run_stage.with_options(name=stage.task_name, retries=stage.retries,
                                   retry_delay_seconds=5 if stage.retries else 0)
    result = task_(name, settings.model_dump(mode="json"), inputs, run_key)
    get_run_logger().info("%s: %s", name, result.status)
    if result.status == "fail":
        publish.emit_failure({"verdict": "fail", "stages": {name: "fail"}, "findings": list(result.sentences())},
                             event="rag-health.stage.failed")
        return Failed(message=f"rag-health {name}: fail", data=result)
    return result


def unwrap(state) -> Any:
    """The result of a flow run called with return_state=True: its data even when the verdict failed it,
    the original exception when it crashed."""
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return data


@flow(name="rag-health-ingest", flow_run_name=run_name("ingest"), log_prints=True)
def ingest_flow(docs: str | None = None, only: list[str] | None = None, state_dir: str | None = None,
                collection: str | None = None, run_id: str | None = None,
                settings_overrides: dict[str, Any] | None = None):
    """Re-ingest the source (or only the named documents / prefixes / globs) into Chroma, incrementally."""
    return run("ingest", {"docs": docs, "state_dir": state_dir, "collection": collection}, settings_overrides,
               run_id, only=only)


@flow(name="rag-health-freshness", flow_run_name=run_name("freshness"))
def freshness_flow(docs: str | None = None, manifest: str | None = None, state_dir: str | None = None,
                   collection: str | None = None, run_id: str | None = None,
                   settings_overrides: dict[str, Any] | None = None):
    """Stale, missing, orphaned, superseded and index-stale documents."""
    return run("freshness", {"docs": docs, "manifest": manifest, "state_dir": state_dir, "collection": collection},
               settings_overrides, run_id)


@flow(name="rag-health-coverage", flow_run_name=run_name("coverage"))
def coverage_flow(docs: str | None = None, rules: list[str] | None = None,
                  runbook_url_prefix: list[str] | None = None, state_dir: str | None = None,
                  collection: str | None = None, run_id: str | None = None,
                  settings_overrides: dict[str, Any] | None = None):
    """Alert-rule coverage: alerts whose runbook is missing, runbooks no alert points to, one probe per alert."""
    return run("coverage", {"docs": docs, "rules": rules or None, "runbook_url_prefix": runbook_url_prefix or None,
                            "state_dir": state_dir, "collection": collection}, settings_overrides, run_id)


@flow(name="rag-health-quality")
def quality_flow(docs: str | None = None, state_dir: str | None = None, collection: str | None = None,
                 run_id: str | None = None, settings_overrides: dict[str, Any] | None = None):
    """Chunk and embedding quality of the collection: findings per chunk, a score per document and corpus."""
    return run("quality", {"docs": docs, "state_dir": state_dir, "collection": collection}, settings_overrides,
               run_id, run_id=run_id)


@flow(name="rag-health-probes")
def probes_flow(docs: str | None = None, probes: list[str] | None = None, state_dir: str | None = None,
                collection: str | None = None, extra_sets: dict[str, list[dict[str, Any]]] | None = None,
                run_id: str | None = None, fail_under: list[str] | None = None,
                settings_overrides: dict[str, Any] | None = None):
    """Retrieval probes: hit@k, recall@k, precision@k, MRR, nDCG@10 per probe set, one row per probe, and the
    probes that regressed against the baseline. `extra_sets` are generated sets; `fail_under` thresholds such
    as "hit@5=0.9" or "golden:mrr=0.8" fail the run below them."""
    return run("probes", {"docs": docs, "probes": probes or None, "state_dir": state_dir, "collection": collection,
                          "fail_under": fail_under or None}, settings_overrides, run_id, extra_sets=extra_sets,
               run_id=run_id)


@flow(name="rag-health-drift")
def drift_flow(state_dir: str | None = None, collection: str | None = None, run_id: str | None = None,
               promote_baseline: bool = False, verdict: str = "", settings_overrides: dict[str, Any] | None = None,
               final: bool = True):
    """Evidently drift report of this run against the baseline, written locally and published to S3. `final`:
    move the history's pointers at the end (the suite moves them itself, after the run's result)."""
    run_id = run_id or new_run_id()
    return run("drift", {"state_dir": state_dir, "collection": collection}, settings_overrides, run_id,
               run_id=run_id, promote_baseline=promote_baseline, verdict=verdict, final=final)


@flow(name="rag-health-compare-chunking", flow_run_name=run_name("compare-chunking"))
def compare_chunking_flow(configs: list[str] | None = None, docs: str | None = None, manifest: str | None = None,
                          probes: list[str] | None = None, rules: list[str] | None = None,
                          runbook_url_prefix: list[str] | None = None, state_dir: str | None = None,
                          collection: str | None = None, settings_overrides: dict[str, Any] | None = None):
    """Score chunking configurations side by side ("sentence:200:24", "markdown:256", ...; default: the live one
    against the other strategy) on the same documents and probes, in temporary collections."""
    params = {"docs": docs, "manifest": manifest, "probes": probes or None, "rules": rules or None,
              "runbook_url_prefix": runbook_url_prefix or None, "state_dir": state_dir, "collection": collection}
    return run("compare-chunking", params, settings_overrides, configs=configs)


FLOWS = {"ingest": ingest_flow, "freshness": freshness_flow, "coverage": coverage_flow, "quality": quality_flow,
         "probes": probes_flow, "drift": drift_flow, "compare-chunking": compare_chunking_flow}
