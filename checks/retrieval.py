"""Retrieval metrics, computed in one place from the ranks of each probe's relevant documents (and sections).

Document level: a document counts once, at the rank of its best chunk. Ranks are 1-based; None means not
retrieved within the depth searched. hit@k (a relevant document in the top k), recall@k (share of the relevant
documents in the top k), precision@k (relevant documents in the top k, over k), MRR@10 (1/rank of the first
relevant document, 0 past 10) and nDCG@10 with graded relevance when grades are given (linear gain, as
pytrec_eval and the BEIR/MTEB figures use; binary otherwise).

Chunk level, for probes that name a section: the rank of the first chunk from that section of a relevant
document, giving chunk_hit@k and chunk_mrr. Probes with must_not_retrieve (deleted or superseded documents)
count violations@k (such a document above every relevant one in the top k: a fail) and lingering@k (in the top
k at all: a warn). Probes with no relevant document only guard; they are left out of the ranking metrics.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checks.result import CheckResult, worst

HIT_KS = (1, 3, 5, 10)
RECALL_KS = (5, 10)
PRECISION_KS = (1, 5, 10)
METRIC_NAMES = ("hit@1", "hit@3", "hit@5", "hit@10", "recall@5", "recall@10", "precision@1", "precision@5",
                "precision@10", "mrr", "ndcg@10", "chunk_hit@1", "chunk_hit@5", "chunk_mrr")


@dataclass(frozen=True)
class ProbeRanks:
    probe_id: str
    set_name: str
    relevant_ranks: tuple[int | None, ...]  # one per relevant document, None when not retrieved
    grades: tuple[float, ...] = ()  # graded relevance per relevant document (empty: all 1)
    section_rank: int | None = None  # rank of the first chunk of the named section (chunk level)
    has_section: bool = False
    forbidden_ranks: tuple[int | None, ...] = ()  # ranks of must_not_retrieve documents

    @property
    def rank(self) -> int | None:
        found = [r for r in self.relevant_ranks if r is not None]
        return min(found) if found else None


def ndcg_at_k(relevant_ranks: Sequence[int | None], k: int = 10, grades: Sequence[float] = ()) -> float:
    """nDCG@k with linear gains: DCG = sum(grade / log2(rank + 1)); the ideal puts the best grades first."""
    if not relevant_ranks:
        return 0.0
    gains = list(grades) if grades else [1.0] * len(relevant_ranks)
    dcg = sum(g / math.log2(r + 1) for r, g in zip(relevant_ranks, gains) if r is not None and r <= k)
    ideal_gains = sorted((g for g in gains if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / ideal if ideal else 0.0


def recall_at_k(relevant_ranks: Sequence[int | None], k: int) -> float:
    if not relevant_ranks:
        return 0.0
    return sum(1 for r in relevant_ranks if r is not None and r <= k) / len(relevant_ranks)


def precision_at_k(relevant_ranks: Sequence[int | None], k: int) -> float:
    return sum(1 for r in relevant_ranks if r is not None and r <= k) / k


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def set_metrics(probes: Iterable[ProbeRanks], *, recall_ks: Sequence[int] = RECALL_KS,
                top_k: int = 10) -> dict[str, float | int]:
    every = list(probes)
    probes = [p for p in every if p.relevant_ranks]  # guard-only probes (must_not_retrieve alone) rank nothing
    n = len(probes)
    out: dict[str, float | int] = {"n": n}
    guarded = [p for p in every if p.forbidden_ranks]
    if guarded:
        out["guarded_n"] = len(guarded)
        out[f"violations@{top_k}"] = sum(1 for p in guarded if _violation(p, top_k) == "fail")
        out[f"lingering@{top_k}"] = sum(1 for p in guarded if _violation(p, top_k) is not None)
    if n == 0:
        return out
    for k in HIT_KS:
        out[f"hit@{k}"] = round(sum(1 for p in probes if p.rank is not None and p.rank <= k) / n, 4)
    for k in recall_ks:
        out[f"recall@{k}"] = round(sum(recall_at_k(p.relevant_ranks, k) for p in probes) / n, 4)
    for k in PRECISION_KS:
        out[f"precision@{k}"] = round(sum(precision_at_k(p.relevant_ranks, k) for p in probes) / n, 4)
    out["mrr"] = round(sum(reciprocal_rank(p.rank) for p in probes) / n, 4)
    out["ndcg@10"] = round(sum(ndcg_at_k(p.relevant_ranks, 10, p.grades) for p in probes) / n, 4)
    sectioned = [p for p in probes if p.has_section]
    if sectioned:
        m = len(sectioned)
        out["chunk_n"] = m
        for k in (1, 5):
            out[f"chunk_hit@{k}"] = round(sum(1 for p in sectioned if p.section_rank is not None
                                              and p.section_rank <= k) / m, 4)
        out["chunk_mrr"] = round(sum(reciprocal_rank(p.section_rank) for p in sectioned) / m, 4)
    return out


def _violation(p: ProbeRanks, top_k: int) -> str | None:
    """A must_not_retrieve document in the top k: "fail" when it ranks above every relevant document (the
    assistant is shown it first), "warn" when a relevant document still ranks above it; None when absent."""
    forbidden = [r for r in p.forbidden_ranks if r is not None and r <= top_k]
    if not forbidden:
        return None
    return "warn" if p.rank is not None and p.rank < min(forbidden) else "fail"


def parse_threshold(text: str) -> tuple[str | None, str, float]:
    """"hit@5=0.9" or "golden:hit@5=0.9" -> (set name or None for every set, metric, minimum)."""
    from_set, _, rest = text.rpartition(":") if ":" in text.split("=", 1)[0] else ("", "", text)
    metric, sep, value = rest.partition("=")
    metric = metric.strip()
    if not sep or metric not in METRIC_NAMES and not re.fullmatch(r"recall@\d+", metric):
        raise ValueError(f"bad threshold {text!r}: use [SET:]METRIC=MIN with METRIC one of "
                         f"{', '.join(METRIC_NAMES)}")
    try:
        minimum = float(value)
    except ValueError:
        raise ValueError(f"bad threshold {text!r}: {value!r} is not a number") from None
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"bad threshold {text!r}: the minimum must be between 0 and 1")
    return (from_set.strip() or None), metric, minimum


def retrieval_check(probes: Sequence[ProbeRanks], *, hit_at_5_warn: float, hit_at_5_fail: float,
                    fail_under: Sequence[str] = (), top_k: int = 10,
                    recall_ks: Sequence[int] = RECALL_KS, ungated: Sequence[str] = ()) -> CheckResult:
    """Metrics per probe set and overall. Verdict: hit@5 of each set against the warn/fail defaults, every
    `fail_under` threshold ("[SET:]METRIC=MIN") as a fail, and must_not_retrieve documents in the top k. Sets
    named in `ungated` skip the hit@5 defaults (generated or guard-only sets); explicit thresholds still apply."""
    by_set: dict[str, list[ProbeRanks]] = {}
    for p in probes:
        by_set.setdefault(p.set_name, []).append(p)
    sets = {name: set_metrics(items, recall_ks=recall_ks, top_k=top_k) for name, items in by_set.items()}
    status = "pass"
    findings = []
    thresholds = [parse_threshold(t) for t in fail_under]
    applied: set[int] = set()
    for name, m in sets.items():
        hit5 = float(m.get("hit@5", 1.0)) if name not in ungated else 1.0
        level = "fail" if hit5 < hit_at_5_fail else "warn" if hit5 < hit_at_5_warn else "pass"
        status = worst(status, level)
        if level != "pass":
            bound = hit_at_5_fail if level == "fail" else hit_at_5_warn
            findings.append(f"probe set {name}: hit@5 {hit5:.3f} below {bound:.2f} ({level})")
        for position, (only, metric, minimum) in enumerate(thresholds):
            if only not in (None, name) or metric not in m:
                continue
            applied.add(position)
            value = float(m[metric])
            if not math.isfinite(value):  # a NaN compares false with everything: it would pass any threshold
                status = "fail"
                findings.append(f"probe set {name}: {metric} is not a number, so it cannot meet the required "
                                f"{minimum:g} (fail)")
            elif value < minimum:
                status = "fail"
                findings.append(f"probe set {name}: {metric} {value:.3f} below the required {minimum:g} (fail)")
        if m.get(f"violations@{top_k}"):
            status = "fail"
            findings.append(f"probe set {name}: {m[f'violations@{top_k}']} probe(s) rank a deleted or superseded "
                            f"document above every current one in the top {top_k} (fail)")
        elif m.get(f"lingering@{top_k}"):
            status = worst(status, "warn")
            findings.append(f"probe set {name}: {m[f'lingering@{top_k}']} probe(s) still retrieve a deleted or "
                            f"superseded document in the top {top_k}, below the current one (warn)")
    for position, (only, metric, _) in enumerate(thresholds):
        if position not in applied:  # a typo or a metric this run does not compute must not pass silently
            where = f"probe set {only!r}" if only else "any probe set"
            findings.append(f"threshold {metric} for {where} matched no computed metric (warn)")
            status = worst(status, "warn")
    missed = tuple({"probe_id": p.probe_id, "set": p.set_name} for p in probes if p.rank is None or p.rank > 5)
    metrics = {"sets": sets, "overall": set_metrics(probes, recall_ks=recall_ks, top_k=top_k)}
    return CheckResult("retrieval", status if probes else "pass", metrics, missed, tuple(findings))


def regressions(baseline: Mapping[str, Mapping[str, Any]], current: Sequence[Mapping[str, Any]], *,
                max_rank_drop: int = 3, top_k: int = 10) -> list[dict[str, Any]]:
    """Probes that were hit (rank <= top_k) in the baseline and now are missed, or dropped more than
    max_rank_drop ranks. baseline: "set/probe_id" -> {rank, retrieved}; current: rows with probe_id, set, rank,
    retrieved and relevant. displaced_by: the first document now ranked above the right one that was not above it before."""
    out = []
    for row in current:
        before = baseline.get(f"{row['set']}/{row['probe_id']}")
        if before is None or before.get("rank") is None or before["rank"] > top_k:
            continue
        was, now = int(before["rank"]), row.get("rank")
        missed = now is None or now > top_k
        if not missed and now - was <= max_rank_drop:
            continue
        relevant = set(row.get("relevant", ()))
        above_now = [d for d in row.get("retrieved", [])[:(now - 1) if now else None] if d not in relevant]
        above_before = set(before.get("retrieved", [])[:was - 1])
        displaced = next((d for d in above_now if d not in above_before), above_now[0] if above_now else None)
        out.append({"probe_id": row["probe_id"], "set": row["set"], "was_rank": was, "now_rank": now,
                    "displaced_by": displaced})
    return out


def probe_check(probes: Sequence[ProbeRanks], *, hit_at_5_warn: float, hit_at_5_fail: float,
                fail_under: Sequence[str] = (), top_k: int = 10, recall_ks: Sequence[int] = RECALL_KS,
                ungated: Sequence[str] = (), regressed: Sequence[Mapping[str, Any]] = (), max_regressions: int = 0,
                baseline_run: str | None = None, excluded: Sequence[Mapping[str, Any]] = (),
                file_errors: Sequence[Mapping[str, Any]] = ()) -> CheckResult:
    """The probe stage's verdict: retrieval_check's, then regressions against the baseline run (more than
    max_regressions fails, fewer warns), filter probes whose relevant document the filter shuts out (warn) and
    probe-file lines that could not be read (warn). Each set's metrics list its regressions."""
    base = retrieval_check(probes, hit_at_5_warn=hit_at_5_warn, hit_at_5_fail=hit_at_5_fail, fail_under=fail_under,
                           top_k=top_k, recall_ks=recall_ks, ungated=ungated)
    status, findings = base.status, list(base.findings)
    sets = {name: {**m, "regressions": [{k: r[k] for k in ("probe_id", "was_rank", "now_rank", "displaced_by")}
                                        for r in regressed if r["set"] == name]}
            for name, m in base.metrics["sets"].items()}
    if regressed:
        level = "fail" if len(regressed) > max_regressions else "warn"
        status = worst(status, level)
        findings += [f"probe {r['set']}/{r['probe_id']} regressed since baseline {baseline_run}: rank "
                     f"{r['was_rank']} -> {r['now_rank'] or 'missed'}, displaced by {r['displaced_by']} ({level})"
                     for r in regressed[:20]]
    findings += [f"filter probe {e['set']}/{e['probe_id']}: {e['doc_id']} {e['reason']}, so the filter excludes it "
                 "(warn)" for e in excluded]
    findings += _file_error_findings(file_errors)
    status = worst(status, "warn" if excluded or file_errors else "pass")
    return CheckResult("retrieval", status, {"sets": sets, "overall": base.metrics["overall"]}, base.items,
                       tuple(findings))


def _file_error_findings(errors: Sequence[Mapping[str, Any]], shown: int = 5) -> list[str]:
    """One sentence per probe file with rejected lines: how many, the first line numbers and the first reason."""
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for e in errors:
        by_file.setdefault(str(e["file"]), []).append(e)
    out = []
    for file, rows in by_file.items():
        lines = ", ".join(str(r["line"]) for r in rows[:shown]) + (", ..." if len(rows) > shown else "")
        out.append(f"probe file {file}: {len(rows)} line(s) rejected (line {lines}); line {rows[0]['line']}: "
                   f"{rows[0]['reason']} (warn)")
    return out
