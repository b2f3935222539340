"""Retrieval metrics at document level, computed in one place from the ranks of each probe's relevant documents.

A document counts once, at the rank of its best chunk. Ranks are 1-based; None means not retrieved within the
depth searched. Cut-offs: hit@k (a relevant document in the top k), recall@k (share of the relevant documents in
the top k), MRR@10 (1/rank of the first relevant document, 0 past 10) and binary nDCG@10.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from checks.result import CheckResult, worst

HIT_KS = (1, 3, 5, 10)
RECALL_KS = (5, 10)


@dataclass(frozen=True)
class ProbeRanks:
    probe_id: str
    set_name: str
    relevant_ranks: tuple[int | None, ...]  # one per relevant document, None when not retrieved

    @property
    def rank(self) -> int | None:
        found = [r for r in self.relevant_ranks if r is not None]
        return min(found) if found else None


def ndcg_at_k(relevant_ranks: Sequence[int | None], k: int = 10) -> float:
    if not relevant_ranks:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r in relevant_ranks if r is not None and r <= k)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant_ranks), k) + 1))
    return dcg / ideal


def recall_at_k(relevant_ranks: Sequence[int | None], k: int) -> float:
    if not relevant_ranks:
        return 0.0
    return sum(1 for r in relevant_ranks if r is not None and r <= k) / len(relevant_ranks)


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def set_metrics(probes: Iterable[ProbeRanks]) -> dict[str, float | int]:
    probes = list(probes)
    n = len(probes)
    if n == 0:
        return {"n": 0}
    out: dict[str, float | int] = {"n": n}
    for k in HIT_KS:
        out[f"hit@{k}"] = round(sum(1 for p in probes if p.rank is not None and p.rank <= k) / n, 4)
    for k in RECALL_KS:
        out[f"recall@{k}"] = round(sum(recall_at_k(p.relevant_ranks, k) for p in probes) / n, 4)
    out["mrr"] = round(sum(reciprocal_rank(p.rank) for p in probes) / n, 4)
    out["ndcg@10"] = round(sum(ndcg_at_k(p.relevant_ranks) for p in probes) / n, 4)
    return out


def retrieval_check(probes: Sequence[ProbeRanks], *, hit_at_5_warn: float, hit_at_5_fail: float) -> CheckResult:
    """Metrics per probe set and overall; the verdict comes from hit@5 of each set against the thresholds."""
    by_set: dict[str, list[ProbeRanks]] = {}
    for p in probes:
        by_set.setdefault(p.set_name, []).append(p)
    sets = {name: set_metrics(items) for name, items in by_set.items()}
    status = "pass"
    findings = []
    for name, m in sets.items():
        hit5 = float(m.get("hit@5", 0.0))
        level = "fail" if hit5 < hit_at_5_fail else "warn" if hit5 < hit_at_5_warn else "pass"
        status = worst(status, level)
        if level != "pass":
            bound = hit_at_5_fail if level == "fail" else hit_at_5_warn
            findings.append(f"probe set {name}: hit@5 {hit5:.3f} below {bound:.2f} ({level})")
    missed = tuple({"probe_id": p.probe_id, "set": p.set_name} for p in probes if p.rank is None or p.rank > 5)
    metrics = {"sets": sets, "overall": set_metrics(probes)}
    return CheckResult("retrieval", status if probes else "pass", metrics, missed, tuple(findings))
