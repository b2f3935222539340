"""Drift verdict: whether this run's chunks moved away from the baseline run's, from the figures Evidently computed
(rag_health.drift). A run compared with itself (the first run, or a promoted one) never drifts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from checks.result import CheckResult

EMBEDDING_DRIFT_THRESHOLD = 0.55  # Evidently's default for its classifier-based embedding drift (ROC AUC)


def embedding_drifted(score: float | None) -> bool:
    """Whether a classifier ROC AUC between the baseline's and this run's embeddings is drift: above the
    threshold, the classifier tells the two apart."""
    return score is not None and float(score) > EMBEDDING_DRIFT_THRESHOLD


def drift_check(figures: Mapping[str, Any], *, baseline_run: str | None, max_drifted_share: float) -> CheckResult:
    """figures: embedding_drift (Evidently's classifier verdict), drifted_share (share of chunk statistics that
    drifted), drifted_columns, embedding_drift_score. Warns when the embeddings drifted or more than
    max_drifted_share of the chunk statistics did, or when Evidently finds the probes' best-chunk similarity or
    rank drifted. baseline_run: None when the run was compared with itself."""
    drifted = bool(figures.get("embedding_drift")) or float(figures.get("drifted_share", 0) or 0) > max_drifted_share
    retrieval = bool(figures.get("retrieval_similarity_drift") or figures.get("retrieval_rank_drift"))
    if not (drifted or retrieval) or baseline_run is None:
        return CheckResult("drift", "pass", dict(figures))
    findings = []
    if drifted:
        findings.append(f"drift against baseline {baseline_run}: embedding drift score "
                        f"{figures.get('embedding_drift_score')}, {figures.get('drifted_columns', 0)} chunk statistics "
                        "drifted (warn)")
    if retrieval:
        findings.append(f"retrieval drift against baseline {baseline_run}: {figures.get('probes_rank_worse', 0)} of "
                        f"{figures.get('probes_compared', 0)} probes rank worse, best-chunk similarity changed by "
                        f"{figures.get('retrieval_mean_similarity_change')} on average (warn)")
    return CheckResult("drift", "warn", dict(figures), findings=tuple(findings))
