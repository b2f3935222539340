"""One Prefect flow per stage, all made the same way from the stage registry (rag_health.registry): the flow
resolves settings, runs the stage's core function in one task and publishes what the stage shows. The flow
functions exist one by one only because deployments and the UI read their typed parameters."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows.resources import NO_OVERRIDES, NO_SETS, run_name
from flows.stage_run import run
from rag_health.run_ids import new_run_id


@flow(name="rag-health-ingest", flow_run_name=run_name("ingest"), log_prints=True)
def ingest_flow(docs: str = "", only: tuple[str, ...] = (), state_dir: str = "",
                collection: str = "", run_id: str = "",
                settings_overrides: dict[str, Any] = NO_OVERRIDES,
                on_mass_change: Literal["ask", "hold", "proceed"] = "ask", approved: tuple[str, ...] = (),
                shards: int = 1, shard: str = ""):
    """Re-ingest the source (or only the named documents / prefixes / globs) into Chroma, incrementally.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        only: Doc ids, folder prefixes or globs to re-ingest (e.g. ["runbooks/kafka-consumer-lag.md"]); empty: everything.
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
        on_mass_change: When more than max_delete_fraction of the indexed documents would be removed or replaced: "ask" pauses for a person's approval, "hold" keeps the index and warns, "proceed" goes ahead.
        approved: Document ids a person approved removing or replacing (set by the approval gate).
        shards: Split the ingest into this many flow runs of this deployment, one per document shard (needs a Chroma server and a bucket).
        shard: The shard this run ingests, "i/n" (set by the coordinating run).
    """
    from flows import ingest

    return ingest.ingest({"docs": docs, "state_dir": state_dir, "collection": collection}, settings_overrides,
                         run_id, only, on_mass_change, approved, shards, shard)


@flow(name="rag-health-freshness", flow_run_name=run_name("freshness"))
def freshness_flow(docs: str = "", manifest: str = "", state_dir: str = "",
                   collection: str = "", run_id: str = "",
                   settings_overrides: dict[str, Any] = NO_OVERRIDES):
    """Stale, missing, orphaned, superseded and index-stale documents.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        manifest: Manifest of expected documents (YAML path; empty: RAG_HEALTH_MANIFEST).
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
    """
    return run("freshness", {"docs": docs, "manifest": manifest, "state_dir": state_dir, "collection": collection},
               settings_overrides, run_id)


@flow(name="rag-health-coverage", flow_run_name=run_name("coverage"))
def coverage_flow(docs: str = "", rules: tuple[str, ...] = (),
                  runbook_url_prefix: tuple[str, ...] = (), state_dir: str = "",
                  collection: str = "", run_id: str = "",
                  settings_overrides: dict[str, Any] = NO_OVERRIDES):
    """Alert-rule coverage: alerts whose runbook is missing, runbooks no alert points to, one probe per alert.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        rules: Prometheus rule files or folders (empty: RAG_HEALTH_RULES).
        runbook_url_prefix: Runbook URL prefixes mapped to the docs root, or URL=FOLDER.
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
    """
    return run("coverage", {"docs": docs, "rules": rules or None, "runbook_url_prefix": runbook_url_prefix or None,
                            "state_dir": state_dir, "collection": collection}, settings_overrides, run_id)


@flow(name="rag-health-quality", flow_run_name=run_name("quality"))
def quality_flow(docs: str = "", state_dir: str = "", collection: str = "",
                 run_id: str = "", settings_overrides: dict[str, Any] = NO_OVERRIDES):
    """Chunk and embedding quality of the collection: findings per chunk, a score per document and corpus.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
    """
    return run("quality", {"docs": docs, "state_dir": state_dir, "collection": collection}, settings_overrides,
               run_id, run_id=run_id)


@flow(name="rag-health-probes", flow_run_name=run_name("probes"))
def probes_flow(docs: str = "", probes: tuple[str, ...] = (), state_dir: str = "",
                collection: str = "", extra_sets: dict[str, list[dict[str, Any]]] = NO_SETS,
                run_id: str = "", fail_under: tuple[str, ...] = (),
                settings_overrides: dict[str, Any] = NO_OVERRIDES):
    """Retrieval probes: hit@k, recall@k, precision@k, MRR, nDCG@10 per probe set, one row per probe, and the
    probes that regressed against the baseline. `extra_sets` are generated sets; `fail_under` thresholds such
    as "hit@5=0.9" or "golden:mrr=0.8" fail the run below them.

    Args:
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        probes: Probe sets (JSONL paths; empty: RAG_HEALTH_PROBES).
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        extra_sets: Generated probe sets by name (the suite passes one probe per covered alert).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        fail_under: Thresholds that fail the run, e.g. "hit@5=0.9" or "golden:mrr=0.8".
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
    """
    return run("probes", {"docs": docs, "probes": probes or None, "state_dir": state_dir, "collection": collection,
                          "fail_under": fail_under or None}, settings_overrides, run_id, extra_sets=extra_sets,
               run_id=run_id)


@flow(name="rag-health-drift", flow_run_name=run_name("drift"))
def drift_flow(state_dir: str = "", collection: str = "", run_id: str = "",
               promote_baseline: bool = False, verdict: str = "", settings_overrides: dict[str, Any] = NO_OVERRIDES,
               final: bool = True):
    """Evidently drift report of this run against the baseline, written locally and published to S3. `final`:
    move the history's pointers at the end (the suite moves them itself, after the run's result).

    Args:
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        run_id: The run this stage belongs to (set by the suite; empty: a new run).
        promote_baseline: Make this run the drift and probe baseline.
        verdict: The run's verdict so far, shown in the report index (set by the suite).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
        final: Move the history's latest and baseline pointers at the end (the suite moves them itself).
    """
    run_id = run_id or new_run_id()
    return run("drift", {"state_dir": state_dir, "collection": collection}, settings_overrides, run_id,
               run_id=run_id, promote_baseline=promote_baseline, verdict=verdict, final=final)


@flow(name="rag-health-compare-chunking", flow_run_name=run_name("compare-chunking"))
def compare_chunking_flow(configs: tuple[str, ...] = (), docs: str = "", manifest: str = "",
                          probes: tuple[str, ...] = (), rules: tuple[str, ...] = (),
                          runbook_url_prefix: tuple[str, ...] = (), state_dir: str = "",
                          collection: str = "", settings_overrides: dict[str, Any] = NO_OVERRIDES):
    """Score chunking configurations side by side ("auto:200:24", "sentence:200:24", "markdown:256", ...; default:
    the live one against the previous default, sentence:200:24) on the same documents and probes, in temporary
    collections.

    Args:
        configs: Chunking configurations to compare, e.g. ["auto:200:24", "sentence:200:24"] (empty: the live one against the previous default).
        docs: Document folder or s3://bucket/prefix (empty: RAG_HEALTH_DOCS, else the sample corpus).
        manifest: Manifest of expected documents (YAML path; empty: RAG_HEALTH_MANIFEST).
        probes: Probe sets (JSONL paths; empty: RAG_HEALTH_PROBES).
        rules: Prometheus rule files or folders (empty: RAG_HEALTH_RULES).
        runbook_url_prefix: Runbook URL prefixes mapped to the docs root, or URL=FOLDER.
        state_dir: State directory for an embedded Chroma and local files (empty: RAG_HEALTH_STATE_DIR).
        collection: Chroma collection name (empty: RAG_HEALTH_COLLECTION, else rag-health).
        settings_overrides: Any other RAG_HEALTH_* setting by its field name, e.g. {"max_delete_fraction": 0.3}.
    """
    params = {"docs": docs, "manifest": manifest, "probes": probes or None, "rules": rules or None,
              "runbook_url_prefix": runbook_url_prefix or None, "state_dir": state_dir, "collection": collection}
    return run("compare-chunking", params, settings_overrides, configs=configs)


FLOWS = {"ingest": ingest_flow, "freshness": freshness_flow, "coverage": coverage_flow, "quality": quality_flow,
         "probes": probes_flow, "drift": drift_flow, "compare-chunking": compare_chunking_flow}
