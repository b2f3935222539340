"""Embedding quality, first cut: right dimension, no NaN or zero vectors, unit norms, no shared vectors."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from checks.expectations import validate_frame
from checks.result import CheckResult, worst

NORM_TOLERANCE = 1e-3


def vector_table(vectors: np.ndarray, chunk_ids: Sequence[str], texts: Sequence[str]) -> pd.DataFrame:
    """One row per vector: dimension, norm, NaN flag, and whether another chunk with other text shares it."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(chunk_ids), -1)
    has_nan = ~np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.nan_to_num(vectors), axis=1)
    # Exact duplicates by hashing rounded rows: linear time, no pairwise comparison.
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(np.round(np.nan_to_num(vectors), 5)):
        groups[row.tobytes()].append(i)
    shared_with = [""] * len(chunk_ids)
    for members in groups.values():
        if len(members) > 1 and len({texts[i] for i in members}) > 1:
            for i in members:
                shared_with[i] = next(chunk_ids[j] for j in members if j != i)
    return pd.DataFrame({
        "chunk_id": list(chunk_ids),
        "dimension": vectors.shape[1],
        "norm": norms.astype(float),
        "has_nan": has_nan,
        "is_zero": (norms < 1e-8) & ~has_nan,
        "shares_vector_with": shared_with,
    })


def embedding_quality(table: pd.DataFrame, expected_dimension: int) -> CheckResult:
    """table: from vector_table(). The collection's vectors must all come from one normalising model."""
    if table.empty:
        return CheckResult("embedding-quality", "fail", {"vectors": 0}, findings=("the index holds no vectors",))
    import great_expectations as gx

    E = gx.expectations
    expectations = [
        (E.ExpectColumnValuesToBeBetween(column="dimension", min_value=expected_dimension,
                                         max_value=expected_dimension), "fail",
         f"every vector has the model's dimension {expected_dimension}"),
        (E.ExpectColumnValuesToBeInSet(column="has_nan", value_set=[False]), "fail", "no NaN or infinite values"),
        (E.ExpectColumnValuesToBeInSet(column="is_zero", value_set=[False]), "fail", "no zero vectors"),
        (E.ExpectColumnValuesToBeBetween(column="norm", min_value=1 - NORM_TOLERANCE, max_value=1 + NORM_TOLERANCE),
         "warn", "vectors are L2-normalised"),
        (E.ExpectColumnValuesToBeInSet(column="shares_vector_with", value_set=[""]), "warn",
         "no two chunks with different text share a vector"),
    ]
    outcomes = validate_frame(table.reset_index(drop=True), "embedding-quality", expectations)
    items = []
    for o in outcomes:
        if o.success:
            continue
        for i in o.unexpected_index[:200]:
            row = table.iloc[i]
            items.append({"chunk_id": row["chunk_id"], "kind": o.column, "detail": _detail(o.column, row)})
    norms = table["norm"]
    metrics = {
        "vectors": int(len(table)),
        "dimension": int(table["dimension"].iloc[0]),
        "expected_dimension": int(expected_dimension),
        "nan_vectors": int(table["has_nan"].sum()),
        "zero_vectors": int(table["is_zero"].sum()),
        "norm_min": round(float(norms.min()), 5),
        "norm_mean": round(float(norms.mean()), 5),
        "norm_max": round(float(norms.max()), 5),
        "non_normalised": int(((norms - 1).abs() > NORM_TOLERANCE).sum()),
        "shared_vectors": int((table["shares_vector_with"] != "").sum()),
    }
    status = worst(*(o.severity for o in outcomes if not o.success))
    findings = tuple(f"{o.description}: {o.unexpected_count} vector(s) do not ({o.severity})"
                     for o in outcomes if not o.success)
    return CheckResult("embedding-quality", status, metrics, tuple(items), findings)


def _detail(column: str | None, row: pd.Series) -> str:
    return {
        "dimension": f"dimension {row['dimension']}",
        "has_nan": "contains NaN or infinite values",
        "is_zero": "zero vector",
        "norm": f"norm {row['norm']:.4f}",
        "shares_vector_with": f"same vector as {row['shares_vector_with']} with different text",
    }.get(column or "", "")
