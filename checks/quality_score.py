"""One quality score per chunk, per document and for the corpus, from the findings of the quality checks.

A chunk starts at 1 and loses each of its findings' penalties (checks.findings.KINDS), floored at 0. A document scores the mean of its chunks; the corpus scores the
mean over all chunks, so a long document counts in proportion to what it puts in the index.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pandas as pd

from checks.findings import Finding


def quality_scores(chunks: pd.DataFrame, items: Iterable[Finding]) -> tuple[float, list[dict[str, Any]],
                                                                            dict[str, float]]:
    """chunks: chunk_id and doc_id of every chunk. Returns (corpus score, documents worst first, chunk scores)."""
    penalty: dict[str, float] = defaultdict(float)
    kinds: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        penalty[item.chunk_id] += float(item.penalty)
        kinds[item.doc_id][item.kind.value] += 1
    if chunks.empty:
        return 0.0, [], {}
    scores = {cid: max(0.0, 1.0 - penalty.get(cid, 0.0)) for cid in chunks["chunk_id"]}
    frame = pd.DataFrame({"doc_id": chunks["doc_id"].values, "chunk_id": chunks["chunk_id"].values,
                          "score": [scores[c] for c in chunks["chunk_id"]]})
    per_doc = frame.groupby("doc_id").agg(score=("score", "mean"), chunks=("score", "size"),
                                          worst=("score", "min"))
    worst_chunk = frame.loc[frame.groupby("doc_id")["score"].idxmin(), ["doc_id", "chunk_id"]].set_index("doc_id")
    documents = [
        {"doc_id": doc_id, "score": round(float(row.score), 4), "chunks": int(row.chunks),
         "worst_chunk": worst_chunk.loc[doc_id, "chunk_id"], "worst_chunk_score": round(float(row.worst), 4),
         "findings": dict(sorted(kinds.get(doc_id, {}).items()))}
        for doc_id, row in per_doc.sort_values(["score", "worst"]).iterrows()
    ]
    return round(float(frame["score"].mean()), 4), documents, scores
