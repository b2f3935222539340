"""One Prefect flow per stage. Each opens the runtime from settings, calls one core function in one task,
publishes artifacts, and returns the stage's result."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed

from flows import publish
from flows.resources import run_name, runtime_for, settings_from
from rag_health import stages


@task(name="ingest-documents", retries=1, retry_delay_seconds=5)
def ingest_documents(params: dict[str, Any], overrides: dict[str, Any] | None, only: list[str] | None):
    result = stages.ingest_stage(runtime_for(settings_from(params, overrides)), only=only)
    publish.publish_ingest(result)
    return result


@task(name="audit-freshness")
def audit_freshness(params: dict[str, Any], overrides: dict[str, Any] | None):
    result = stages.freshness_stage(runtime_for(settings_from(params, overrides)))
    publish.publish_freshness(result)
    return result


@task(name="check-alert-coverage")
def check_alert_coverage(params: dict[str, Any], overrides: dict[str, Any] | None):
    result = stages.coverage_stage(runtime_for(settings_from(params, overrides)))
    publish.publish_coverage(result)
    return result


@task(name="score-quality")
def score_quality(params: dict[str, Any], overrides: dict[str, Any] | None, run_id: str | None):
    result = stages.quality_stage(runtime_for(settings_from(params, overrides)), run_id)
    publish.publish_quality(result)
    return result


@task(name="compare-chunking")
def compare_chunking_task(params: dict[str, Any], overrides: dict[str, Any] | None, configs: list[str] | None):
    result = stages.compare_chunking_stage(runtime_for(settings_from(params, overrides)), configs)
    publish.publish_comparison(result)
    return result


@task(name="run-probes")
def run_probe_sets(params: dict[str, Any], overrides: dict[str, Any] | None,
                   extra_sets: dict[str, list[dict[str, Any]]] | None, run_id: str | None = None):
    result = stages.probes_stage(runtime_for(settings_from(params, overrides)), extra_sets, run_id)
    publish.publish_probes(result)
    return result


@task(name="drift-report", retries=1, retry_delay_seconds=5)
def build_drift_report(params: dict[str, Any], overrides: dict[str, Any] | None, run_id: str,
                       promote_baseline: bool, verdict: str):
    result = stages.drift_stage(runtime_for(settings_from(params, overrides)), run_id, promote_baseline, verdict)
    publish.publish_drift(result)
    return result


def _finish(stage: str, result: dict[str, Any]):
    """A fail fails the flow run (with the result as its data) and emits an event automations can act on."""
    get_run_logger().info("%s: %s", stage, result.get("status"))
    if result.get("status") == "fail":
        publish.emit_failure({"verdict": "fail", "stages": {stage: "fail"}, "findings": result.get("findings", [])},
                             event="rag-health.stage.failed")
        return Failed(message=f"rag-health {stage}: fail", data=result)
    return result


def unwrap(state) -> dict[str, Any]:
    """The result of a flow run called with return_state=True: its data even when the verdict failed it,
    the original exception when it crashed."""
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return data


@flow(name="rag-health-ingest", flow_run_name=run_name("ingest"), log_prints=True)
def ingest_flow(docs: str | None = None, only: list[str] | None = None, state_dir: str | None = None,
                collection: str | None = None, settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-ingest the source (or only the named documents / prefixes / globs) into Chroma, incrementally."""
    params = {"docs": docs, "state_dir": state_dir, "collection": collection}
    result = ingest_documents(params, settings_overrides, only)
    return _finish("ingest", result)


@flow(name="rag-health-freshness", flow_run_name=run_name("freshness"))
def freshness_flow(docs: str | None = None, manifest: str | None = None, state_dir: str | None = None,
                   collection: str | None = None, settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stale, missing, orphaned, superseded and index-stale documents."""
    params = {"docs": docs, "manifest": manifest, "state_dir": state_dir, "collection": collection}
    result = audit_freshness(params, settings_overrides)
    return _finish("freshness", result)


@flow(name="rag-health-coverage", flow_run_name=run_name("coverage"))
def coverage_flow(docs: str | None = None, rules: list[str] | None = None,
                  runbook_url_prefix: list[str] | None = None, state_dir: str | None = None,
                  collection: str | None = None, settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Alert-rule coverage: alerts whose runbook is missing, runbooks no alert points to, one probe per alert."""
    params = {"docs": docs, "rules": rules or None, "runbook_url_prefix": runbook_url_prefix or None,
              "state_dir": state_dir, "collection": collection}
    result = check_alert_coverage(params, settings_overrides)
    return _finish("coverage", result)


@flow(name="rag-health-quality")
def quality_flow(docs: str | None = None, state_dir: str | None = None, collection: str | None = None,
                 run_id: str | None = None, settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chunk and embedding quality of the collection: findings per chunk, a score per document and corpus."""
    result = score_quality({"docs": docs, "state_dir": state_dir, "collection": collection}, settings_overrides,
                           run_id)
    return _finish("quality", result)


@flow(name="rag-health-probes")
def probes_flow(docs: str | None = None, probes: list[str] | None = None, state_dir: str | None = None,
                collection: str | None = None, extra_sets: dict[str, list[dict[str, Any]]] | None = None,
                run_id: str | None = None, fail_under: list[str] | None = None,
                settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrieval probes: hit@k, recall@k, precision@k, MRR, nDCG@10 per probe set, one row per probe, and the
    probes that regressed against the baseline. `extra_sets` are generated sets; `fail_under` thresholds such
    as "hit@5=0.9" or "golden:mrr=0.8" fail the run below them."""
    params = {"docs": docs, "probes": probes or None, "state_dir": state_dir, "collection": collection,
              "fail_under": fail_under or None}
    result = run_probe_sets(params, settings_overrides, extra_sets, run_id)
    return _finish("probes", result)


@flow(name="rag-health-drift")
def drift_flow(state_dir: str | None = None, collection: str | None = None, run_id: str | None = None,
               promote_baseline: bool = False, verdict: str = "",
               settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evidently drift report of this run against the baseline, written locally and published to S3."""
    run_id = run_id or stages.new_run_id()
    result = build_drift_report({"state_dir": state_dir, "collection": collection}, settings_overrides, run_id,
                                promote_baseline, verdict)
    return _finish("drift", result)


@flow(name="rag-health-compare-chunking", flow_run_name=run_name("compare-chunking"))
def compare_chunking_flow(configs: list[str] | None = None, docs: str | None = None, manifest: str | None = None,
                          probes: list[str] | None = None, rules: list[str] | None = None,
                          runbook_url_prefix: list[str] | None = None, state_dir: str | None = None,
                          collection: str | None = None,
                          settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score chunking configurations side by side ("sentence:200:24", "markdown:256", ...; default: the live one
    against the other strategy) on the same documents and probes, in temporary collections."""
    params = {"docs": docs, "manifest": manifest, "probes": probes or None, "rules": rules or None,
              "runbook_url_prefix": runbook_url_prefix or None, "state_dir": state_dir, "collection": collection}
    return _finish("compare-chunking", compare_chunking_task(params, settings_overrides, configs))
