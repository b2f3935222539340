"""Chunk quality, first cut: every chunk non-empty, within the model's token window, uniquely identified."""

from __future__ import annotations

import pandas as pd

from checks.expectations import validate_frame
from checks.result import CheckResult, worst

CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_index", "n_chars", "n_tokens", "ends_mid_sentence")


def chunk_quality(table: pd.DataFrame, max_tokens: int, *, max_overflow_fraction: float = 0.05,
                  max_mid_sentence_fraction: float = 0.5) -> CheckResult:
    """table: one row per chunk with CHUNK_COLUMNS. Token counts include the model's special tokens."""
    missing = [c for c in CHUNK_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"chunk table lacks columns {missing}")
    if table.empty:
        return CheckResult("chunk-quality", "fail", {"chunks": 0}, findings=("the index holds no chunks",))
    import great_expectations as gx

    E = gx.expectations
    overflow_mostly = max(0.0, 1.0 - max_overflow_fraction)
    expectations = [
        (E.ExpectColumnValuesToNotBeNull(column="chunk_id"), "fail", "every chunk has an id"),
        (E.ExpectColumnValuesToBeUnique(column="chunk_id"), "fail", "chunk ids are unique"),
        (E.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1), "fail", "no empty chunk"),
        (E.ExpectColumnValuesToBeBetween(column="n_tokens", max_value=max_tokens), "warn",
         f"every chunk fits the model's {max_tokens}-token window"),
        (E.ExpectColumnValuesToBeBetween(column="n_tokens", max_value=max_tokens, mostly=overflow_mostly), "fail",
         f"at most {max_overflow_fraction:.0%} of chunks overflow the window"),
        (E.ExpectColumnValuesToBeInSet(column="ends_mid_sentence", value_set=[False],
                                       mostly=max(0.0, 1.0 - max_mid_sentence_fraction)), "warn",
         f"at most {max_mid_sentence_fraction:.0%} of chunks end mid-sentence"),
    ]
    outcomes = validate_frame(table.reset_index(drop=True), "chunk-quality", expectations)

    tokens = table["n_tokens"].astype(int)
    lost = (tokens - max_tokens).clip(lower=0)
    overflow = table[tokens > max_tokens]
    empty = table[table["n_chars"].astype(int) < 1]
    dup_ids = table[table["chunk_id"].duplicated(keep=False)]
    items = (
        [_item(r, "token-overflow", f"{int(r.n_tokens)} tokens, {int(r.n_tokens) - max_tokens} past the "
               f"{max_tokens}-token window are never embedded", int(r.n_tokens) - max_tokens)
           for r in overflow.itertuples()]
        + [_item(r, "empty-chunk", "chunk has no text") for r in empty.itertuples()]
        + [_item(r, "duplicate-chunk-id", "chunk id used more than once") for r in dup_ids.itertuples()]
    )
    items.sort(key=lambda i: -i.get("tokens_lost", 0))
    status = worst(*(o.severity for o in outcomes if not o.success))
    metrics = {
        "chunks": int(len(table)),
        "documents": int(table["doc_id"].nunique()),
        "tokens_mean": round(float(tokens.mean()), 1),
        "tokens_p95": int(tokens.quantile(0.95)),
        "tokens_max": int(tokens.max()),
        "max_tokens": int(max_tokens),
        "overflow_chunks": int(len(overflow)),
        "overflow_fraction": round(len(overflow) / len(table), 4),
        "tokens_lost": int(lost.sum()),
        "empty_chunks": int(len(empty)),
        "duplicate_ids": int(dup_ids["chunk_id"].nunique()),
        "mid_sentence_fraction": round(float(table["ends_mid_sentence"].astype(bool).mean()), 4),
    }
    findings = tuple(f"{o.description}: {o.unexpected_count} chunk(s) do not ({o.severity})"
                     for o in outcomes if not o.success)
    return CheckResult("chunk-quality", status, metrics, tuple(items), findings)


def _item(row, kind: str, detail: str, tokens_lost: int = 0) -> dict:
    return {"doc_id": row.doc_id, "chunk_id": row.chunk_id, "chunk_index": int(row.chunk_index), "kind": kind,
            "detail": detail, "n_tokens": int(row.n_tokens), "tokens_lost": tokens_lost}
