"""Embedding quality: one model's vectors throughout, all finite, unit-length and distinct; the space's shape
(anisotropy, outliers) and its stability against the baseline run (neighbours of a fixed sample of chunks).

The finding kinds (dimension-mismatch, model-mismatch, nan-vector, zero-vector, non-normalised, shared-vector,
embedding-outlier, neighbour-shift), their penalties and thresholds are in checks.findings.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from checks.expectations import validate_frame
from checks.findings import Finding, FindingKind, default_max_fractions, penalty
from checks.result import CheckResult, Metrics, keep_none, worst

NORM_TOLERANCE = 1e-3
MIN_CHUNKS_FOR_OUTLIERS = 20
# An outlier must also sit this far (in cosine) below the median: on a tight corpus a small absolute gap can
# still be many MADs, and that is ordinary topic variety, not a broken chunk.
OUTLIER_MIN_GAP = 0.2


@dataclass(frozen=True)
class EmbeddingMetrics(Metrics):
    vectors: int
    dimension: int
    expected_dimension: int
    model_fingerprints: list[str]
    other_model_vectors: int
    nan_vectors: int
    zero_vectors: int
    norm_min: float
    norm_mean: float
    norm_max: float
    non_normalised: int
    shared_vectors: int
    outliers: int
    neighbour_sample: int
    anisotropy: float | None = keep_none()
    anisotropy_baseline: float | None = keep_none()
    anisotropy_change: float | None = keep_none()
    centroid_similarity_median: float | None = keep_none()
    neighbour_similarity_median: float | None = keep_none()
    neighbour_overlap: float | None = keep_none()
    neighbour_overlap_chunks: float | None = keep_none()
    neighbour_sample_skipped: int | None = None  # baseline sample chunks gone from the collection (not compared)
    anisotropy_note: str | None = None


def vector_table(vectors: np.ndarray, chunk_ids: Sequence[str], texts: Sequence[str],
                 fingerprints: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None,
                 neighbour_similarity: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per vector: dimension, norm, NaN/zero flags, whether another chunk with other text shares it,
    the model fingerprint it was written with, its cosine to the corpus centroid, and its mean cosine to its
    nearest neighbours (when known).
    texts: the chunk texts or any key that is equal exactly when the texts are."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(chunk_ids), -1)
    has_nan = ~np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.nan_to_num(vectors), axis=1)
    # Exact duplicates by hashing rounded rows: linear time, no pairwise comparison.
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(np.round(np.nan_to_num(vectors), 5)):
        if not has_nan[i] and norms[i] >= 1e-8:  # NaN and zero vectors are findings of their own
            groups[row.tobytes()].append(i)
    shared_with = [""] * len(chunk_ids)
    for members in groups.values():
        if len(members) > 1 and len({texts[i] for i in members}) > 1:
            for i in members:
                shared_with[i] = next(chunk_ids[j] for j in members if j != i and texts[j] != texts[i])
    n = len(chunk_ids)
    return pd.DataFrame({
        "chunk_id": list(chunk_ids),
        "doc_id": list(doc_ids) if doc_ids is not None else [""] * n,
        "dimension": vectors.shape[1],
        "norm": norms.astype(float),
        "has_nan": has_nan,
        "is_zero": (norms < 1e-8) & ~has_nan,
        "shares_vector_with": shared_with,
        "model_fingerprint": list(fingerprints) if fingerprints is not None else [""] * n,
        "centroid_similarity": centroid_similarity(vectors).astype(float),
        "neighbour_similarity": (np.asarray(neighbour_similarity, dtype=float) if neighbour_similarity is not None
                                 else np.full(n, np.nan)),
    })


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (NaN read as 0; zero rows stay zero), so dot products are cosines."""
    v = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(v, axis=1)
    norms[norms == 0] = 1.0
    return v / norms[:, None]


def anisotropy(vectors: np.ndarray, n_pairs: int = 20000, seed: int = 0) -> float | None:
    """Mean cosine of random pairs of distinct vectors (0 for an isotropic space; sentence models sit well
    above). A fixed seed makes reruns on the same vectors agree exactly."""
    n = len(vectors)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=n_pairs)
    b = (a + rng.integers(1, n, size=n_pairs)) % n  # never pairs a vector with itself
    unit = _unit_rows(vectors)
    return float(np.einsum("ij,ij->i", unit[a], unit[b]).mean())


def centroid_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine of each vector to the corpus's mean direction. Chunks of one domain share that direction (that is
    what anisotropy measures), so this spread is tight and a chunk far below it stands out."""
    unit = _unit_rows(vectors)
    centre = unit.mean(axis=0)
    size = float(np.linalg.norm(centre))
    return unit @ (centre / size) if size > 0 else np.zeros(len(unit))


def outlier_scores(similarity: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """Robust z-score of how far below the typical similarity each chunk sits (median and MAD, so a few
    outliers cannot hide themselves by moving the mean)."""
    sims = np.asarray(similarity, dtype=float)
    known = sims[np.isfinite(sims)]
    if len(known) < MIN_CHUNKS_FOR_OUTLIERS:
        return np.zeros(len(sims)), float("nan"), float("nan")
    median = float(np.median(known))
    mad = float(np.median(np.abs(known - median))) * 1.4826
    if mad <= 1e-9:
        return np.zeros(len(sims)), median, mad
    return np.nan_to_num((median - sims) / mad, nan=0.0), median, mad


def neighbour_overlap(baseline: Sequence[dict[str, Any]], current: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """baseline: the baseline run's sample, [{chunk_id, doc_id, docs: [...], chunks: [...]}] where docs are the
    documents of its top-k neighbours and chunks their text keys; current: the same, by chunk id, for this run.
    Returns per sample chunk the share of baseline neighbour documents (and chunk texts) still neighbours."""
    rows = []
    for s in baseline:
        now = current.get(s["chunk_id"])
        if now is None:
            continue
        base_docs, base_chunks = set(s["docs"]), set(s["chunks"])
        rows.append({
            "chunk_id": s["chunk_id"], "doc_id": s["doc_id"],
            "overlap_docs": len(base_docs & set(now["docs"])) / len(base_docs) if base_docs else 1.0,
            "overlap_chunks": len(base_chunks & set(now["chunks"])) / len(base_chunks) if base_chunks else 1.0,
            "lost_docs": sorted(base_docs - set(now["docs"])), "new_docs": sorted(set(now["docs"]) - base_docs),
        })
    return pd.DataFrame(rows, columns=["chunk_id", "doc_id", "overlap_docs", "overlap_chunks", "lost_docs",
                                       "new_docs"])


def embedding_quality(table: pd.DataFrame, expected_dimension: int, expected_fingerprint: str | None = None, *,
                      anisotropy_now: float | None = None, anisotropy_baseline: float | None = None,
                      other_model_anisotropy: float | None = None, overlaps: pd.DataFrame | None = None,
                      outlier_z: float = 4.0, min_neighbour_overlap: float = 0.6, max_anisotropy_change: float = 0.05,
                      max_fraction: Mapping[str, float] | None = None, sample_skipped: int | None = None) -> CheckResult:
    """table: from vector_table(). The collection's vectors must all come from one normalising model.
    other_model_anisotropy: the baseline's anisotropy when the baseline was embedded by another model (shown,
    never compared). sample_skipped: baseline sample chunks that could not be compared (reported as a metric)."""
    if table.empty:
        return CheckResult("embedding-quality", "fail", {"vectors": 0}, findings=("the index holds no vectors (fail)",))
    limits = {**default_max_fractions(), **(max_fraction or {})}
    t = table.reset_index(drop=True).copy()
    usable = ~(t["has_nan"] | t["is_zero"])
    z, sim_median, sim_mad = outlier_scores(t["centroid_similarity"].where(usable))
    t["outlier_z"] = z
    t["is_outlier"] = usable & (z > outlier_z) & ((sim_median - t["centroid_similarity"]) >= OUTLIER_MIN_GAP)
    t["fingerprint_ok"] = (t["model_fingerprint"].isin(["", expected_fingerprint]) if expected_fingerprint
                           else True)
    outcomes = validate_frame(t, "embedding-quality", _expectations(expected_dimension, outlier_z,
                                                                    limits["embedding-outlier"]))
    change = None
    if anisotropy_now is not None and anisotropy_baseline is not None:
        change = anisotropy_now - anisotropy_baseline
        outcomes += _anisotropy_outcomes(abs(change), max_anisotropy_change)
    mean_overlap = None
    if overlaps is not None and not overlaps.empty:
        mean_overlap = float(overlaps["overlap_docs"].mean())
        outcomes += _overlap_outcomes(overlaps, min_neighbour_overlap)
    items = list(_findings(t, expected_dimension, outlier_z, sim_median))
    items += _shifts(overlaps)
    metrics = dataclasses.replace(
        _metrics(t, expected_dimension, anisotropy_now, anisotropy_baseline, other_model_anisotropy, change,
                 sim_median, mean_overlap, overlaps), neighbour_sample_skipped=sample_skipped)
    status = worst(*(o.severity for o in outcomes if not o.success))
    findings = tuple(f"{o.description}: not met ({o.severity})" if o.column in ("anisotropy_change", "overlap_docs")
                     else f"{o.description}: {o.unexpected_count} vector(s) do not, e.g. "
                          f"{_examples(t, o.unexpected_index)} ({o.severity})"
                     for o in outcomes if not o.success)
    return CheckResult("embedding-quality", status, metrics, tuple(items), findings)


def _metrics(t: pd.DataFrame, expected_dimension: int, anisotropy_now: float | None,
             anisotropy_baseline: float | None, other_model_anisotropy: float | None, change: float | None,
             sim_median: float, mean_overlap: float | None, overlaps: pd.DataFrame | None) -> EmbeddingMetrics:
    norms = t["norm"]
    return EmbeddingMetrics(
        vectors=int(len(t)),
        dimension=int(t["dimension"].iloc[0]),
        expected_dimension=int(expected_dimension),
        model_fingerprints=sorted(set(t["model_fingerprint"]) - {""}),
        other_model_vectors=int((~t["fingerprint_ok"].astype(bool)).sum()),
        nan_vectors=int(t["has_nan"].sum()),
        zero_vectors=int(t["is_zero"].sum()),
        norm_min=round(float(norms.min()), 5),
        norm_mean=round(float(norms.mean()), 5),
        norm_max=round(float(norms.max()), 5),
        non_normalised=int(((norms - 1).abs() > NORM_TOLERANCE).sum()),
        shared_vectors=int((t["shares_vector_with"] != "").sum()),
        anisotropy=None if anisotropy_now is None else round(anisotropy_now, 4),
        anisotropy_baseline=(round(anisotropy_baseline, 4) if anisotropy_baseline is not None else
                             round(other_model_anisotropy, 4) if other_model_anisotropy is not None else None),
        anisotropy_change=None if change is None else round(change, 4),
        centroid_similarity_median=None if np.isnan(sim_median) else round(sim_median, 4),
        neighbour_similarity_median=(None if t["neighbour_similarity"].isna().all()
                                     else round(float(t["neighbour_similarity"].median()), 4)),
        outliers=int(t["is_outlier"].sum()),
        neighbour_overlap=None if mean_overlap is None else round(mean_overlap, 4),
        neighbour_overlap_chunks=(None if overlaps is None or overlaps.empty
                                  else round(float(overlaps["overlap_chunks"].mean()), 4)),
        neighbour_sample=0 if overlaps is None else int(len(overlaps)),
        anisotropy_note=("the baseline was embedded with another model"
                         if anisotropy_baseline is None and other_model_anisotropy is not None else None),
    )


def _expectations(expected_dimension: int, outlier_z: float, max_outliers: float) -> list[tuple[Any, str, str]]:
    import great_expectations as gx

    E = gx.expectations
    return [
        (E.ExpectColumnValuesToBeBetween(column="dimension", min_value=expected_dimension,
                                         max_value=expected_dimension), "fail",
         f"every vector has the model's dimension {expected_dimension}"),
        (E.ExpectColumnValuesToBeInSet(column="fingerprint_ok", value_set=[True]), "fail",
         "every vector was written by this model (fingerprint)"),
        (E.ExpectColumnValuesToBeInSet(column="has_nan", value_set=[False]), "fail", "no NaN or infinite values"),
        (E.ExpectColumnValuesToBeInSet(column="is_zero", value_set=[False]), "fail", "no zero vectors"),
        (E.ExpectColumnValuesToBeBetween(column="norm", min_value=1 - NORM_TOLERANCE, max_value=1 + NORM_TOLERANCE),
         "warn", "vectors are L2-normalised"),
        (E.ExpectColumnValuesToBeInSet(column="shares_vector_with", value_set=[""]), "warn",
         "no two chunks with different text share a vector"),
        (E.ExpectColumnValuesToBeInSet(column="is_outlier", value_set=[False], mostly=1.0 - max_outliers), "warn",
         f"at most {max_outliers:.0%} of chunks are outliers (robust z above {outlier_z:g})"),
    ]


def _examples(t: pd.DataFrame, rows: Sequence[int], shown: int = 3) -> str:
    """The first vectors an unmet expectation names, by chunk id."""
    return ", ".join(str(t.at[i, "chunk_id"]) for i in list(rows)[:shown] if i in t.index) or "(rows not listed)"


def _anisotropy_outcomes(change: float, max_change: float) -> list:
    import great_expectations as gx

    return validate_frame(pd.DataFrame({"anisotropy_change": [change]}), "anisotropy", [
        (gx.expectations.ExpectColumnValuesToBeBetween(column="anisotropy_change", max_value=max_change), "warn",
         f"anisotropy moved by at most {max_change:g} since the baseline")])


def _overlap_outcomes(overlaps: pd.DataFrame, min_overlap: float) -> list:
    import great_expectations as gx

    return validate_frame(overlaps[["overlap_docs"]].reset_index(drop=True), "neighbour-stability", [
        (gx.expectations.ExpectColumnMeanToBeBetween(column="overlap_docs", min_value=min_overlap), "warn",
         f"sample chunks keep at least {min_overlap:.0%} of their baseline neighbour documents")])


def _shifts(overlaps: pd.DataFrame | None) -> list[Finding]:
    if overlaps is None:
        return []
    return [Finding(r.doc_id, r.chunk_id, FindingKind.NEIGHBOUR_SHIFT,
                    f"{r.overlap_docs:.0%} of its baseline neighbour documents remain; lost "
                    f"{', '.join(r.lost_docs[:3])}; now near {', '.join(r.new_docs[:3])}", 0.0)
            for r in overlaps.itertuples(index=False) if r.overlap_docs < 0.5]


def _findings(t: pd.DataFrame, expected_dimension: int, outlier_z: float, sim_median: float) -> Iterator[Finding]:
    K = FindingKind
    for r in t.itertuples(index=False):
        found: list[tuple[FindingKind, str]] = []
        if r.dimension != expected_dimension:
            found.append((K.DIMENSION_MISMATCH, f"dimension {r.dimension}, the model's is {expected_dimension}"))
        if not r.fingerprint_ok:
            found.append((K.MODEL_MISMATCH, f"written by model fingerprint {r.model_fingerprint}, not this model's"))
        if r.has_nan:
            found.append((K.NAN_VECTOR, "contains NaN or infinite values"))
        elif r.is_zero:
            found.append((K.ZERO_VECTOR, "zero vector: matches nothing"))
        elif abs(r.norm - 1) > NORM_TOLERANCE:
            found.append((K.NON_NORMALISED, f"norm {r.norm:.4f}, not 1: cosine and inner-product rankings disagree"))
        if r.shares_vector_with:
            found.append((K.SHARED_VECTOR, f"same vector as {r.shares_vector_with}, whose text differs"))
        if r.is_outlier:
            found.append((K.EMBEDDING_OUTLIER, f"cosine to the corpus centroid {r.centroid_similarity:.3f} against a "
                          f"median of {sim_median:.3f} (robust z {r.outlier_z:.1f} > {outlier_z:g}); its nearest "
                          f"chunks are at {r.neighbour_similarity:.3f} on average"))
        for kind, detail in found:
            yield Finding(r.doc_id, r.chunk_id, kind, detail, penalty(kind))
