"""Drift between this run's chunks and a baseline run's: chunk statistics and embeddings, via Evidently.

Each run stores a snapshot (chunk statistics for a deterministic sample of chunks plus their vectors) in the run
archive (rag_health.archive), which also keeps the baseline pointer and publishes the HTML report.
"""

from __future__ import annotations

import hashlib
import html
import warnings
from typing import Any

import numpy as np
import pandas as pd

from rag_health.store import ChunkIndex

STAT_COLUMNS = ["n_chars", "n_tokens", "ends_mid_sentence", "chunk_index"]
EMBEDDING_DRIFT_THRESHOLD = 0.55  # Evidently's default for its classifier-based embedding drift (ROC AUC)
# Evidently's embedding plot runs t-SNE (perplexity 30), which needs more rows than that on each side.
MIN_ROWS_FOR_EMBEDDING_DRIFT = 40


def sample_key(chunk_id: str) -> int:
    """A chunk's place in a deterministic sample: the same chunks are picked on every run over the same index."""
    return int(hashlib.blake2b(chunk_id.encode(), digest_size=8).hexdigest(), 16)


def snapshot_frame(index: ChunkIndex, sample_rows: int) -> pd.DataFrame:
    """Chunk statistics and vectors for a sample chosen by chunk-id hash, so reruns pick the same chunks.

    Only ids and metadata are scanned; vectors are fetched for the sampled chunks alone."""
    ranked: list[tuple[int, str, dict[str, Any]]] = []
    for chunk_id, meta in index.iter_metadata():
        ranked.append((sample_key(chunk_id), chunk_id, meta))
        if len(ranked) > 4 * sample_rows:
            ranked = sorted(ranked)[:sample_rows]
    ranked = sorted(ranked)[:sample_rows]
    if not ranked:
        return pd.DataFrame(columns=["chunk_id", "doc_id", "group", *STAT_COLUMNS])
    ids = [chunk_id for _, chunk_id, _ in ranked]
    got = index.collection.get(ids=ids, include=["embeddings"])
    vectors_by_id = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    frame = pd.DataFrame([_stats(meta) | {"chunk_id": cid, "doc_id": str(meta.get("doc_id")), "group": group_of(meta)}
                          for _, cid, meta in ranked])
    vectors = np.vstack([vectors_by_id[cid] for cid in ids])
    emb = pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(vectors.shape[1])])
    return pd.concat([frame.reset_index(drop=True), emb], axis=1)


def group_of(meta: dict[str, Any]) -> str:
    """A chunk's document group: front-matter `product` (or the manifest's), else the doc id's top folder."""
    for key in ("fm_product", "mf_product"):
        value = meta.get(key)
        if value not in (None, ""):
            return f"product: {value}"
    doc_id = str(meta.get("doc_id") or "")
    return f"folder: {doc_id.split('/', 1)[0]}" if "/" in doc_id else "folder: (top level)"


def _stats(meta: dict[str, Any]) -> dict[str, float]:
    return {
        "n_chars": float(meta.get("n_chars", 0)),
        "n_tokens": float(meta.get("n_tokens", 0)),
        "ends_mid_sentence": float(bool(meta.get("ends_mid_sentence", False))),
        "chunk_index": float(meta.get("chunk_index", 0)),
    }


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, title: str) -> tuple[str, dict[str, Any]]:
    """Build the Evidently report; returns the self-contained HTML and the drift figures it computed."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    emb_cols = [c for c in current.columns if c.startswith("emb_")]
    ref_emb = [c for c in reference.columns if c.startswith("emb_")]
    if len(emb_cols) != len(ref_emb):
        raise ValueError(f"baseline vectors have {len(ref_emb)} dimensions, current ones {len(emb_cols)}: "
                         "the embedding model changed; promote a new baseline")
    definition = DataDefinition(numerical_columns=STAT_COLUMNS + emb_cols, embeddings={"chunk_embeddings": emb_cols})
    ref_ds = Dataset.from_pandas(reference[STAT_COLUMNS + emb_cols], data_definition=definition)
    cur_ds = Dataset.from_pandas(current[STAT_COLUMNS + emb_cols], data_definition=definition)
    metrics: list[Any] = [DataDriftPreset(columns=STAT_COLUMNS)]
    smallest = min(len(reference), len(current))
    if smallest >= MIN_ROWS_FOR_EMBEDDING_DRIFT:
        metrics.append(EmbeddingsDrift(embeddings_name="chunk_embeddings"))
    report = Report(metrics)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Constant columns (e.g. no chunk ends mid-sentence) make Evidently's correlations divide by zero.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(reference_data=ref_ds, current_data=cur_ds)
    figures: dict[str, Any] = {"columns": {}, "embedding_drift_score": None, "embedding_drift": False,
                               "mean_vector_cosine_distance": _mean_vector_distance(reference[ref_emb],
                                                                                     current[emb_cols])}
    if smallest < MIN_ROWS_FOR_EMBEDDING_DRIFT:
        figures["embedding_drift_note"] = (
            f"only {smallest} chunks on one side: too few for Evidently's classifier-based embedding drift "
            f"(needs {MIN_ROWS_FOR_EMBEDDING_DRIFT}); see mean_vector_cosine_distance")
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            figures["drifted_columns"] = int(value["count"])
            figures["drifted_share"] = round(float(value["share"]), 4)
        elif kind == "ValueDrift":
            # p-values drift when small; distances (Wasserstein, Jensen-Shannon, ...) when large.
            is_p_value = "p_value" in config["method"].lower().replace("-", "_")
            drifted = float(value) < float(config["threshold"]) if is_p_value else float(value) >= float(
                config["threshold"])
            figures["columns"][config["column"]] = {"method": config["method"], "score": round(float(value), 6),
                                                    "threshold": float(config["threshold"]), "drifted": drifted}
        elif kind == "EmbeddingsDrift":
            figures["embedding_drift_score"] = round(float(value), 4)
            figures["embedding_drift"] = float(value) > EMBEDDING_DRIFT_THRESHOLD
    body = snapshot.get_html_str(as_iframe=False)
    emb = figures["embedding_drift_score"]
    summary = (f"{len(current)} current chunks vs {len(reference)} baseline chunks (sampled). "
               f"Chunk statistics drifted: {figures.get('drifted_columns', 0)} of {len(STAT_COLUMNS)} columns. "
               + (f"Embedding drift score (classifier ROC AUC): {emb} — "
                  f"{'DRIFT' if figures['embedding_drift'] else 'no drift'} at {EMBEDDING_DRIFT_THRESHOLD}. "
                  if emb is not None else figures.get("embedding_drift_note", "") + ". ")
               + f"Cosine distance between mean vectors: {figures['mean_vector_cosine_distance']}.")
    banner = (f"<div style='font-family:sans-serif;padding:8px 16px;background:#f3f4f6'>"
              f"<h2 style='margin:4px 0'>{html.escape(title)}</h2><p>{html.escape(summary)}</p></div>")
    return body.replace("<body>", "<body>" + banner, 1) if "<body>" in body else banner + body, figures


def _mean_vector_distance(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    a, b = reference.to_numpy(dtype=np.float64).mean(axis=0), current.to_numpy(dtype=np.float64).mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return max(0.0, round(1.0 - float(a @ b) / denom, 6)) if denom else 0.0
