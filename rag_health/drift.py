"""Drift between this run's chunks and a baseline run's: chunk statistics and embeddings, via Evidently.

Each run stores a snapshot (chunk statistics for a deterministic sample of chunks plus their vectors) in the run
archive (rag_health.archive), which also keeps the baseline pointer and publishes the HTML report.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import html
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from checks.drift import EMBEDDING_DRIFT_THRESHOLD, embedding_drifted
from checks.pii import redact
from rag_health.store import ChunkIndex

STAT_COLUMNS = ["n_chars", "n_tokens", "ends_mid_sentence", "chunk_index"]
# Evidently's embedding plot runs t-SNE (perplexity 30), which needs more rows than that on each side.
MIN_ROWS_FOR_EMBEDDING_DRIFT = 40
# The t-SNE behind Evidently's embedding plot is most of the report's time (it samples up to 2,500 rows a side
# itself): the embedding section gets a deterministic sample of at most this many rows a side.
EMBEDDING_SAMPLE_ROWS = 500
GROUP_MIN_ROWS = 20  # sampled chunks a document group needs on both sides for its own drift section
MAX_GROUPS = 8  # the largest groups (by their smaller side) get a section
MIN_PROBES_FOR_RETRIEVAL_DRIFT = 5


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
    # Ids and group names come from documents (a file name or a `product` value may hold PII): redacted before
    # they reach the snapshot, the report's sections or the figures.
    frame = pd.DataFrame([_stats(meta) | {"chunk_id": redact(cid), "doc_id": redact(str(meta.get("doc_id"))),
                                          "group": group_of(meta)} for _, cid, meta in ranked])
    vectors = np.vstack([vectors_by_id[cid] for cid in ids])
    emb = pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(vectors.shape[1])])
    return pd.concat([frame.reset_index(drop=True), emb], axis=1)


def group_of(meta: dict[str, Any]) -> str:
    """A chunk's document group: front-matter `product` (or the manifest's), else the doc id's top folder."""
    for key in ("fm_product", "mf_product"):
        value = meta.get(key)
        if value not in (None, ""):
            return f"product: {_label(value)}"
    doc_id = str(meta.get("doc_id") or "")
    return f"folder: {_label(doc_id.split('/', 1)[0])}" if "/" in doc_id else "folder: (top level)"


def _label(value: Any) -> str:
    """A group name from document data, safe inside the report's inline script and titles: at most 60
    characters, markup characters replaced."""
    return re.sub(r"[<>&\"'`\\\x00-\x1f]", "_", redact(str(value)))[:60]


def _stats(meta: dict[str, Any]) -> dict[str, float]:
    return {
        "n_chars": float(meta.get("n_chars", 0)),
        "n_tokens": float(meta.get("n_tokens", 0)),
        "ends_mid_sentence": float(bool(meta.get("ends_mid_sentence", False))),
        "chunk_index": float(meta.get("chunk_index", 0)),
    }


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, title: str, *,
                 retrieval: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] | None = None,
                 first_run: bool = False, run_id: str | None = None, top_k: int = 10) -> tuple[str, dict[str, Any]]:
    """Build the Evidently report; returns the self-contained HTML and the drift figures it computed.

    Sections: chunk statistics; the same per document group (groups with at least GROUP_MIN_ROWS sampled chunks on
    both sides, at most MAX_GROUPS); embedding drift on at most EMBEDDING_SAMPLE_ROWS rows a side (Evidently's
    t-SNE plot is most of the cost); retrieval drift when `retrieval` = (baseline, current) probe ranks as the run
    archive stores them ({probe key: {rank, similarity, ...}}). A first run (first_run, or reference is current)
    gets a short report saying the baseline was established, and no drift figures (None), instead of a comparison
    with itself."""
    emb_cols, ref_emb = _emb_columns(current), _emb_columns(reference)
    if len(emb_cols) != len(ref_emb):
        raise ValueError(f"baseline vectors have {len(ref_emb)} dimensions, current ones {len(emb_cols)}: "
                         "the embedding model changed; promote a new baseline")
    if first_run or reference is current:
        return _baseline_report(current, title, run_id)
    figures: dict[str, Any] = {"baseline_established": False}
    sections: list[tuple[str, list[Any]]] = []
    widgets, found = _chunk_section(reference, current)
    sections.append((f"Chunk statistics: {len(current)} current vs {len(reference)} baseline chunks (sampled)",
                     widgets))
    figures |= found
    group_sections, figures["groups"] = _group_sections(reference, current)
    sections += group_sections
    widgets, found = _embedding_section(reference, current, ref_emb, emb_cols)
    if widgets:
        sections.append(("Embedding drift", widgets))
    figures |= found
    widgets, found = _retrieval_section(retrieval, top_k)
    if widgets:
        sections.append(("Retrieval drift: each probe's best-chunk similarity and rank, baseline vs current",
                         widgets))
    figures |= found
    return _render(sections, _banner(title, *_summary(figures, len(reference), len(current)))), figures


def _emb_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("emb_")]


def _run(metrics: list[Any], reference: pd.DataFrame | None, current: pd.DataFrame, numerical: list[str],
         embeddings: dict[str, list[str]] | None = None):
    from evidently import DataDefinition, Dataset, Report

    # Embedding columns are not declared numerical: Evidently would compute quantiles of each of the 384 (~9 s).
    definition = DataDefinition(numerical_columns=numerical, embeddings=embeddings)
    columns = numerical + [c for cols in (embeddings or {}).values() for c in cols]
    cur_ds = Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition)
    ref_ds = (Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition)
              if reference is not None else None)
    # One OpenMP thread for the t-SNE: on a busy 2-core machine, two spinning threads made it 4-5x slower
    # (49 s against 11 s at 500 rows a side, load average 6).
    with warnings.catch_warnings(), np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="openmp"):
        # Constant columns (e.g. no chunk ends mid-sentence) make Evidently's correlations divide by zero.
        warnings.simplefilter("ignore", RuntimeWarning)
        return Report(metrics).run(reference_data=ref_ds, current_data=cur_ds)


def _read(snapshot) -> dict[str, Any]:
    """Figures from an Evidently snapshot: per-column drift, drifted column count and share, embedding drift."""
    figures: dict[str, Any] = {"columns": {}}
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
            figures["embedding_drift"] = embedding_drifted(float(value))
    return figures


def _chunk_section(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[Any], dict[str, Any]]:
    from evidently.presets import DataDriftPreset

    snapshot = _run([DataDriftPreset(columns=STAT_COLUMNS)], reference, current, STAT_COLUMNS)
    return snapshot._widgets, _read(snapshot)


def _group_sections(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[tuple[str, list[Any]]],
                                                                           dict[str, Any]]:
    """Chunk-statistics drift per document group present on both sides with enough rows; a group holding every
    row on both sides would repeat the overall section and is left out."""
    from evidently.presets import DataDriftPreset

    if "group" not in reference.columns or "group" not in current.columns:
        return [], {}
    ref_counts, cur_counts = reference["group"].value_counts(), current["group"].value_counts()
    both = [(min(int(ref_counts[g]), int(cur_counts[g])), str(g)) for g in ref_counts.index if g in cur_counts.index]
    eligible = sorted((n, g) for n, g in both if n >= GROUP_MIN_ROWS
                      and not (ref_counts[g] == len(reference) and cur_counts[g] == len(current)))
    chosen = sorted(g for _, g in sorted(eligible, key=lambda t: (-t[0], t[1]))[:MAX_GROUPS])
    sections, figures = [], {}
    for group in chosen:
        ref, cur = reference[reference["group"] == group], current[current["group"] == group]
        snapshot = _run([DataDriftPreset(columns=STAT_COLUMNS)], ref, cur, STAT_COLUMNS)
        figures[group] = {"reference_rows": int(len(ref)), "current_rows": int(len(cur)), **_read(snapshot)}
        sections.append((f"Chunk statistics for document group {group}: {len(cur)} current vs {len(ref)} "
                         "baseline chunks", snapshot._widgets))
    return sections, figures


def embedding_sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """At most `rows` rows, the same ones on every run: by chunk-id hash when there are chunk ids."""
    if len(frame) <= rows:
        return frame
    if "chunk_id" in frame.columns:
        order = np.argsort([sample_key(str(c)) for c in frame["chunk_id"]], kind="stable")
        return frame.iloc[np.sort(order[:rows])]
    return frame.sample(rows, random_state=0).sort_index()


def _embedding_section(reference: pd.DataFrame, current: pd.DataFrame, ref_emb: list[str],
                       emb_cols: list[str]) -> tuple[list[Any], dict[str, Any]]:
    from evidently.metrics import EmbeddingsDrift

    figures: dict[str, Any] = {"embedding_drift_score": None, "embedding_drift": False,
                               "mean_vector_cosine_distance": _mean_vector_distance(reference[ref_emb],
                                                                                     current[emb_cols])}
    smallest = min(len(reference), len(current))
    if smallest < MIN_ROWS_FOR_EMBEDDING_DRIFT:
        figures["embedding_drift_note"] = (
            f"only {smallest} chunks on one side: too few for Evidently's classifier-based embedding drift "
            f"(needs {MIN_ROWS_FOR_EMBEDDING_DRIFT}); see mean_vector_cosine_distance")
        return [], figures
    ref = embedding_sample(reference, EMBEDDING_SAMPLE_ROWS)[ref_emb].set_axis(emb_cols, axis=1)
    cur = embedding_sample(current, EMBEDDING_SAMPLE_ROWS)[emb_cols]
    snapshot = _run([EmbeddingsDrift(embeddings_name="chunk_embeddings")], ref, cur, [],
                    {"chunk_embeddings": emb_cols})
    figures |= {k: v for k, v in _read(snapshot).items() if k != "columns"}
    figures["embedding_sample_rows"] = int(min(len(ref), len(cur)))
    return snapshot._widgets, figures


def retrieval_frames(baseline: Mapping[str, Any], current: Mapping[str, Any],
                     top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per probe present in both runs: its best-chunk similarity (NaN when no relevant document was
    found) and the rank of its relevant document (a miss, or anything below top_k, counts as top_k + 1)."""
    keys = sorted(set(baseline) & set(current))

    def frame(ranks: Mapping[str, Any]) -> pd.DataFrame:
        rows = []
        for key in keys:
            entry = ranks[key] or {}
            rank, sim = entry.get("rank"), entry.get("similarity")
            rows.append({"probe": key, "similarity": float(sim) if sim is not None else np.nan,
                         "rank": float(min(int(rank), top_k + 1)) if rank is not None else float(top_k + 1)})
        return pd.DataFrame(rows, columns=["probe", "similarity", "rank"])

    return frame(baseline), frame(current)


def _retrieval_section(retrieval: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] | None,
                       top_k: int) -> tuple[list[Any], dict[str, Any]]:
    from evidently.metrics import ValueDrift

    figures: dict[str, Any] = {"probes_compared": 0, "retrieval_similarity_drift_score": None,
                               "retrieval_similarity_drift": False, "retrieval_rank_drift_score": None,
                               "retrieval_rank_drift": False, "retrieval_columns": {}}
    baseline, current = retrieval or (None, None)
    if not baseline or not current:
        figures["retrieval_note"] = "no per-probe ranks stored for the baseline run or this run"
        return [], figures
    ref, cur = retrieval_frames(baseline, current, top_k)
    paired = ref["similarity"].notna() & cur["similarity"].notna()
    figures |= {"probes_compared": int(len(ref)), "probes_with_similarity": int(paired.sum()),
                "probes_rank_worse": int((cur["rank"] > ref["rank"]).sum()),
                "probes_rank_better": int((cur["rank"] < ref["rank"]).sum()),
                "retrieval_mean_similarity_change": (round(float((cur["similarity"] - ref["similarity"])[paired]
                                                                 .mean()), 6) if paired.any() else None)}
    columns = ["rank"] + (["similarity"] if paired.sum() >= MIN_PROBES_FOR_RETRIEVAL_DRIFT else [])
    if len(ref) < MIN_PROBES_FOR_RETRIEVAL_DRIFT:
        figures["retrieval_note"] = (f"only {len(ref)} probes in both runs: too few for a drift test "
                                     f"(needs {MIN_PROBES_FOR_RETRIEVAL_DRIFT})")
        return [], figures
    if "similarity" not in columns:
        figures["retrieval_note"] = "too few probes with a stored similarity in both runs (older baseline?)"
    snapshot = _run([ValueDrift(column=c) for c in columns], ref, cur, columns)
    found = _read(snapshot)["columns"]
    figures["retrieval_columns"] = found
    for column in columns:
        figures[f"retrieval_{column}_drift_score"] = found[column]["score"]
        figures[f"retrieval_{column}_drift"] = found[column]["drifted"]
    return snapshot._widgets, figures


def _baseline_report(current: pd.DataFrame, title: str, run_id: str | None) -> tuple[str, dict[str, Any]]:
    """The first run: say the baseline was established, show its chunk statistics, compare nothing."""
    from evidently.presets import DataSummaryPreset

    who = f"run {run_id}" if run_id else "this run"
    text = (f"Baseline established: {who} is the baseline; later runs are compared with it. "
            f"{len(current)} chunks sampled; no drift is computed on a first (or promoted) run.")
    # Counts are 0 (nothing drifted: nothing was compared); scores are null (there is nothing to score).
    figures: dict[str, Any] = {"baseline_established": True, "columns": {}, "drifted_columns": 0,
                               "drifted_share": 0.0, "embedding_drift_score": None, "embedding_drift": False,
                               "mean_vector_cosine_distance": None, "groups": {}, "probes_compared": 0,
                               "probes_rank_worse": 0, "probes_rank_better": 0,
                               "retrieval_similarity_drift_score": None, "retrieval_similarity_drift": False,
                               "retrieval_rank_drift_score": None, "retrieval_rank_drift": False}
    snapshot = _run([DataSummaryPreset(columns=STAT_COLUMNS)], None, current, STAT_COLUMNS)
    sections = [(f"Chunk statistics of the baseline ({len(current)} sampled chunks)", snapshot._widgets)]
    return _render(sections, _banner(title, text, "baseline")), figures


def _summary(figures: Mapping[str, Any], reference_rows: int, current_rows: int) -> tuple[str, str]:
    """The banner's sentence and its tone: 'drift' when Evidently flagged anything, else 'ok'."""
    drifted = [c for c, f in figures["columns"].items() if f["drifted"]]
    groups = [g for g, f in figures.get("groups", {}).items() if f.get("drifted_columns")]
    emb = figures.get("embedding_drift_score")
    parts = [f"{current_rows} current chunks vs {reference_rows} baseline chunks (sampled).",
             f"Chunk statistics drifted: {len(drifted)} of {len(STAT_COLUMNS)} columns"
             + (f" ({', '.join(drifted)})." if drifted else "."),
             (f"Document groups with drifted statistics: {', '.join(groups)}." if groups else
              f"Document groups compared: {len(figures.get('groups', {}))}, none drifted.")]
    parts.append(f"Embedding drift score (classifier ROC AUC): {emb} — "
                 f"{'DRIFT' if figures['embedding_drift'] else 'no drift'} at {EMBEDDING_DRIFT_THRESHOLD}."
                 if emb is not None else figures.get("embedding_drift_note", "") + ".")
    parts.append(f"Cosine distance between mean vectors: {figures['mean_vector_cosine_distance']}.")
    if figures.get("retrieval_rank_drift_score") is not None:
        parts.append(f"Retrieval over {figures['probes_compared']} probes: rank "
                     f"{'DRIFT' if figures['retrieval_rank_drift'] else 'no drift'}, similarity "
                     f"{'DRIFT' if figures['retrieval_similarity_drift'] else 'no drift'}; "
                     f"{figures['probes_rank_worse']} ranked worse, {figures['probes_rank_better']} better.")
    else:
        parts.append(f"Retrieval drift: {figures.get('retrieval_note', 'not computed')}.")
    flagged = bool(drifted or groups or figures["embedding_drift"] or figures.get("retrieval_rank_drift")
                   or figures.get("retrieval_similarity_drift"))
    return " ".join(parts), "drift" if flagged else "ok"


TONES = {"drift": ("#fef3c7", "#b45309", "Drift found"), "ok": ("#dcfce7", "#15803d", "No drift found"),
         "baseline": ("#dbeafe", "#1d4ed8", "Baseline established")}


def _banner(title: str, text: str, tone: str) -> str:
    background, border, label = TONES[tone]
    label = "" if text.startswith(label) else f"<strong>{label}.</strong> "
    return (f"<div style='font-family:sans-serif;padding:8px 16px;background:{background};"
            f"border-left:6px solid {border}'><h2 style='margin:4px 0'>{html.escape(title)}</h2>"
            f"<p style='margin:4px 0'>{label}{html.escape(text)}</p></div>")


def _render(sections: list[tuple[str, list[Any]]], banner: str) -> str:
    """One self-contained page for several Evidently snapshots, a titled group per section."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    body = render_widgets([group_widget(title=title, widgets=widgets) for title, widgets in sections])
    body = compact_html(body)
    return body.replace("<body>", "<body>" + banner, 1) if "<body>" in body else banner + body


# Evidently inlines its whole UI bundle (3.5 MB of minified JavaScript with Plotly) and the report's data (about
# 1 MB of JSON here) in every report. Both are shipped gzip-compressed and unpacked by the browser
# (DecompressionStream: Chrome/Edge 80+, Firefox 113+, Safari 16.4+): the page stays self-contained.
_LOADER = """<script>
(function () {
  if (!window.DecompressionStream) {
    document.body.insertAdjacentHTML("beforeend", "<p style='font-family:sans-serif'>This report needs a browser "
      + "with DecompressionStream (Chrome or Edge 80+, Firefox 113+, Safari 16.4+) to draw its charts.</p>");
    return;
  }
  function unpack(packed) {
    var bytes = Uint8Array.from(atob(packed), function (c) { return c.charCodeAt(0); });
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  }
  function run(code) {
    var script = document.createElement("script");
    script.text = code;
    document.body.appendChild(script);
  }
  Promise.all([unpack("%s"), unpack("%s")]).then(function (parts) {
    run(parts[0]);
    run(parts[1]);
    %s
  });
})();
</script>"""
_DRAW = re.compile(r"<script>\s*(window\.drawDashboard\((metric_\w+),.*?\);)\s*</script>", re.DOTALL)


def _gzip64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), 9, mtime=0)).decode("ascii")


@functools.lru_cache(maxsize=1)
def _packed_lib() -> tuple[str, str]:
    """Evidently's UI bundle as it appears in its reports, and gzip-compressed in base64."""
    from evidently.legacy.utils.dashboard import STATIC_PATH

    with open(os.path.join(STATIC_PATH, "index.js"), encoding="utf-8") as f:
        code = f.read()
    return code, _gzip64(code)


def compact_html(body: str) -> str:
    """The report with Evidently's bundle and data compressed; unchanged when its layout is not the one expected."""
    code, packed = _packed_lib()
    lib_block = f"<script>{code}</script>"
    at = body.find(lib_block)
    draw = _DRAW.search(body, at + len(lib_block)) if at >= 0 else None
    data_at = body.find(f"<script>\n    var {draw.group(2)} = ") if draw else -1
    data_end = body.find("</script>", data_at) if data_at >= 0 else -1
    if draw is None or data_at < 0 or data_end < 0 or data_end > at:
        return body
    data = body[data_at + len("<script>"):data_end]
    loader = _LOADER % (_gzip64(data), packed, draw.group(1))
    return (body[:data_at] + body[data_end + len("</script>"):at] + loader + body[at + len(lib_block):draw.start()]
            + body[draw.end():])


def _mean_vector_distance(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    a, b = reference.to_numpy(dtype=np.float64).mean(axis=0), current.to_numpy(dtype=np.float64).mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return max(0.0, round(1.0 - float(a @ b) / denom, 6)) if denom else 0.0
