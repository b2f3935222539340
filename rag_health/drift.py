"""Drift between this run's chunks and a baseline run's: chunk statistics and embeddings, via Evidently.

Each run stores a snapshot (chunk statistics for a deterministic sample of chunks plus their vectors). The first
run becomes the baseline; promoting a later run moves the baseline pointer. The report is HTML, written under the
state directory and, when a bucket is configured, published to S3 with an index of past reports.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from rag_health.artifacts import ArtifactStore
from rag_health.store import ChunkIndex

STAT_COLUMNS = ["n_chars", "n_tokens", "ends_mid_sentence", "chunk_index"]
EMBEDDING_DRIFT_THRESHOLD = 0.55  # Evidently's default for its classifier-based embedding drift (ROC AUC)
BASELINE_KEY = "baseline.json"
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
        return pd.DataFrame(columns=["chunk_id", "doc_id", *STAT_COLUMNS])
    ids = [chunk_id for _, chunk_id, _ in ranked]
    got = index.collection.get(ids=ids, include=["embeddings"])
    vectors_by_id = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    frame = pd.DataFrame([_stats(meta) | {"chunk_id": cid, "doc_id": str(meta.get("doc_id"))}
                          for _, cid, meta in ranked])
    vectors = np.vstack([vectors_by_id[cid] for cid in ids])
    emb = pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(vectors.shape[1])])
    return pd.concat([frame.reset_index(drop=True), emb], axis=1)


def _stats(meta: dict[str, Any]) -> dict[str, float]:
    return {
        "n_chars": float(meta.get("n_chars", 0)),
        "n_tokens": float(meta.get("n_tokens", 0)),
        "ends_mid_sentence": float(bool(meta.get("ends_mid_sentence", False))),
        "chunk_index": float(meta.get("chunk_index", 0)),
    }


def frame_to_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def frame_from_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


@dataclass
class Baselines:
    """Run snapshots and the baseline pointer, kept in the shared artifact store (S3 when configured)."""

    store: ArtifactStore

    def save_snapshot(self, run_id: str, frame: pd.DataFrame) -> str:
        return self.store.put(f"runs/{run_id}/snapshot.parquet", frame_to_bytes(frame))

    def load_snapshot(self, run_id: str) -> pd.DataFrame | None:
        data = self.store.get(f"runs/{run_id}/snapshot.parquet")
        return frame_from_bytes(data) if data is not None else None

    def baseline_run(self) -> str | None:
        data = self.store.get(BASELINE_KEY)
        return json.loads(data)["run_id"] if data else None

    def promote(self, run_id: str) -> None:
        if self.store.get(f"runs/{run_id}/snapshot.parquet") is None:
            from rag_health.settings import ConfigError

            raise ConfigError(f"run {run_id} has no stored snapshot to promote")
        self.point_to(run_id)

    def point_to(self, run_id: str) -> None:
        self.store.put(BASELINE_KEY, json.dumps({
            "run_id": run_id, "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }).encode(), "application/json")

    def latest_run(self) -> str | None:
        data = self.store.get("runs/latest.json")
        return json.loads(data)["run_id"] if data else None

    def record_latest(self, run_id: str) -> None:
        self.store.put("runs/latest.json", json.dumps({"run_id": run_id}).encode(), "application/json")


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


def report_index_html(entries: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(e['run_id'])}</td><td>{html.escape(e['created_at'])}</td>"
        f"<td>{html.escape(str(e.get('baseline_run')))}</td><td>{html.escape(e.get('verdict', ''))}</td>"
        f"<td>{e.get('embedding_drift_score', '')}</td><td><a href='{html.escape(e['href'])}'>report</a></td></tr>"
        for e in sorted(entries, key=lambda e: e["created_at"], reverse=True)
    )
    return ("<!doctype html><html><head><meta charset='utf-8'><title>rag-health drift reports</title></head>"
            "<body style='font-family:sans-serif'><h1>rag-health drift reports</h1><table border='1' "
            "cellpadding='4'><tr><th>run</th><th>created</th><th>baseline</th><th>verdict</th>"
            f"<th>embedding drift</th><th></th></tr>{rows}</table></body></html>")


def publish_report(store: ArtifactStore, run_id: str, html_text: str, entry: dict[str, Any]) -> str:
    """Write reports/<run>/drift-report.html and refresh reports/index.json and index.html in the same store."""
    uri = store.put(f"reports/{run_id}/drift-report.html", html_text.encode("utf-8"), "text/html; charset=utf-8")
    existing = store.get("reports/index.json")
    entries = json.loads(existing) if existing else []
    entries = [e for e in entries if e.get("run_id") != run_id]
    entries.append({**entry, "run_id": run_id, "href": f"{run_id}/drift-report.html"})
    store.put("reports/index.json", json.dumps(entries, indent=1).encode(), "application/json")
    store.put("reports/index.html", report_index_html(entries).encode("utf-8"), "text/html; charset=utf-8")
    return uri
