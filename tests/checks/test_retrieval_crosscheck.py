"""checks.retrieval cross-checked against ir-measures (trec_eval through pytrec-eval-terrier, and ir-measures'
own MS MARCO implementation of RR@10), on a real probe run over the sample corpus and on hand-built rankings.

What is compared, metric by metric (per probe, then averaged over the probes that have a relevant document):

    ours (checks.retrieval)                          ir-measures (provider)
    hit@k      rank of best relevant doc <= k        Success@k  (pytrec_eval success_k)        k = 1, 3, 5, 10
    recall@k   recall_at_k                           R@k        (pytrec_eval recall_k)         k = 5, 10
    precision@k precision_at_k (over k, always)      P@k        (pytrec_eval P_k)              k = 1, 5, 10
    mrr        reciprocal_rank(best rank), 0 past 10 RR@10      (msmarco) and RR (pytrec_eval recip_rank on the
                                                                top-10 run, so the cutoff is the run's depth)
    ndcg@10    ndcg_at_k, linear gains               nDCG@10    (pytrec_eval ndcg_cut_10: gain = the qrel grade)

The qrels carry each probe's relevant documents with their grade (1 when the probe has none); the run carries the
documents retrieved for the probe in rank order with strictly descending scores derived from the rank, because
trec_eval re-sorts a run by score and breaks ties by document id (see the tie test below). A relevant document
that is not in the run counts as not retrieved on both sides.

Where the definitions part (and so what is kept out of the comparison):
- a grade of 0 (or below): trec_eval's relevance level is 1, so such a document is not relevant for Success, R, P
  and RR, while checks.retrieval counts every listed document as relevant for hit, recall, precision and MRR
  (nDCG agrees: a zero gain either way). The sample probe sets have no such grade; the real-run test asserts it.
- fractional grades: trec_eval qrels are integers. The sample grades are integers; asserted too.
- set_metrics rounds to 4 decimals: the averages are compared within 5e-5, the unrounded per-probe values from the
  module's own functions within 1e-6.
- chunk-level metrics (chunk_hit@k, chunk_mrr) and the must_not_retrieve guards have no ir-measures counterpart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import pytest

ir_measures = pytest.importorskip("ir_measures")

from ir_measures import RR, P, R, Success, nDCG  # noqa: E402

from checks.retrieval import (  # noqa: E402
    HIT_KS,
    PRECISION_KS,
    RECALL_KS,
    ProbeRanks,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    set_metrics,
)

TOP_K = 10
TOL = 1e-6  # unrounded per-probe values
ROUNDED_TOL = 5e-5 + 1e-9  # set_metrics rounds to 4 decimals

# our metric name -> the ir-measures measures that must agree with it
MEASURES: dict[str, tuple] = {
    **{f"hit@{k}": (Success @ k,) for k in HIT_KS},
    **{f"recall@{k}": (R @ k,) for k in RECALL_KS},
    **{f"precision@{k}": (P @ k,) for k in PRECISION_KS},
    "mrr": (RR @ 10, RR),
    "ndcg@10": (nDCG @ 10,),
}


def ours_per_probe(p: ProbeRanks) -> dict[str, float]:
    """The module's own per-probe functions, unrounded (set_metrics averages exactly these)."""
    out = {f"hit@{k}": float(p.rank is not None and p.rank <= k) for k in HIT_KS}
    out.update({f"recall@{k}": recall_at_k(p.relevant_ranks, k) for k in RECALL_KS})
    out.update({f"precision@{k}": precision_at_k(p.relevant_ranks, k) for k in PRECISION_KS})
    out["mrr"] = reciprocal_rank(p.rank)
    out["ndcg@10"] = ndcg_at_k(p.relevant_ranks, 10, p.grades)
    return out


def qrels_for(qid: str, relevant: Sequence[str], grades: Sequence[float]) -> list:
    assert len(set(relevant)) == len(relevant), f"{qid}: a relevant document is listed twice"
    gains = list(grades) if grades else [1] * len(relevant)
    assert all(float(g).is_integer() and g > 0 for g in gains), f"{qid}: trec_eval needs integer grades >= 1"
    return [ir_measures.Qrel(qid, doc, int(g)) for doc, g in zip(relevant, gains)]


def run_for(qid: str, retrieved: Sequence[str]) -> list:
    """Documents in rank order; scores strictly descending so trec_eval keeps our order."""
    return [ir_measures.ScoredDoc(qid, doc, float(len(retrieved) - i)) for i, doc in enumerate(retrieved)]


def theirs_per_probe(qrels: list, run: list, qids: Sequence[str]) -> dict[str, dict[str, float]]:
    """qid -> our metric name -> value, from ir-measures; every measure mapped to a metric must agree with the
    others for that metric (RR@10 from msmarco and RR from trec_eval on the top-10 run). A qid ir-measures does not
    report (nothing retrieved) scores 0."""
    measures = sorted({m for ms in MEASURES.values() for m in ms}, key=str)
    by_qid: dict[str, dict] = defaultdict(dict)
    for metric in ir_measures.iter_calc(measures, qrels, run):
        by_qid[metric.query_id][metric.measure] = metric.value
    out: dict[str, dict[str, float]] = {}
    for qid in qids:
        values: dict[str, float] = {}
        for name, ms in MEASURES.items():
            got = [float(by_qid[qid].get(m, 0.0)) for m in ms]
            assert max(got) - min(got) <= TOL, f"{qid} {name}: ir-measures providers disagree: {dict(zip(ms, got))}"
            values[name] = got[0]
        out[qid] = values
    return out


def assert_agree(probes: Sequence[ProbeRanks], retrieved: dict[str, Sequence[str]], relevant: dict[str, Sequence[str]],
                 key=lambda p: f"{p.set_name}/{p.probe_id}") -> dict[str, float]:
    """Per probe at 1e-6, then set_metrics (rounded) at 5e-5, overall and per set. Returns the overall means."""
    ranked = [p for p in probes if p.relevant_ranks]  # set_metrics leaves guard-only probes out; so do we
    qrels, run = [], []
    for p in ranked:
        qrels += qrels_for(key(p), relevant[key(p)], p.grades)
        run += run_for(key(p), retrieved[key(p)])
    theirs = theirs_per_probe(qrels, run, [key(p) for p in ranked])
    mismatches = []
    for p in ranked:
        ours = ours_per_probe(p)
        for name in MEASURES:
            if abs(ours[name] - theirs[key(p)][name]) > TOL:
                mismatches.append(f"{key(p)} {name}: ours {ours[name]:.6f}, ir-measures {theirs[key(p)][name]:.6f}")
    assert not mismatches, "\n".join(mismatches)

    groups: dict[str | None, list[ProbeRanks]] = {None: list(probes)}
    for p in probes:
        groups.setdefault(p.set_name, []).append(p)
    overall: dict[str, float] = {}
    for set_name, members in groups.items():
        metrics = set_metrics(members)
        counted = [p for p in members if p.relevant_ranks]
        assert metrics["n"] == len(counted)
        for name in MEASURES:
            mean = sum(theirs[key(p)][name] for p in counted) / len(counted)
            assert metrics[name] == pytest.approx(mean, abs=ROUNDED_TOL), f"{set_name or 'overall'} {name}"
            if set_name is None:
                overall[name] = mean
    return overall


# --- a real run ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_of_a_real_probe_run_agree_with_ir_measures(sample_docs_copy, make_runtime):
    """The sample corpus ingested into embedded Chroma with the real model, the 68 golden and 7 filter probes (one
    graded) run as the probes stage runs them; every metric of set_metrics equals ir-measures', per probe and per
    set. The run is each probe's top-10 documents; their ranks must be the ranks run_probes reported."""
    from rag_health.ingest import ingest
    from rag_health.manifest import load_manifest
    from rag_health.probes import load_probe_set, run_probes
    from rag_health.settings import SAMPLE_FILTER_PROBES, SAMPLE_MANIFEST, SAMPLE_PROBES

    rt = make_runtime(sample_docs_copy, manifest=str(SAMPLE_MANIFEST), generate_probes=False)
    manifest = load_manifest(SAMPLE_MANIFEST, rt.settings.review_every_days)
    result = ingest(rt.source(), rt.index, rt.embedder, rt.chunker, metadata_defaults=manifest.defaults_for)
    assert not result.errors and rt.index.count() > 0
    sets = [load_probe_set(SAMPLE_PROBES), load_probe_set(SAMPLE_FILTER_PROBES)]
    assert all(not s.errors for s in sets)
    probes = [p for s in sets for p in s.probes]
    assert len(probes) == 75 and any(p.grades for p in probes) and any(p.filters for p in probes)

    outcomes = run_probes(rt.index, rt.embedder, probes, set(rt.index.ledger()), top_k=TOP_K,
                          chunk_depth=max(rt.settings.probe_chunk_depth, TOP_K * 3))
    retrieved, relevant = {}, {}
    for o in outcomes:
        assert len(o.retrieved) <= TOP_K and len(set(o.retrieved)) == len(o.retrieved)
        for doc, rank in zip(o.probe.relevant, o.ranks):  # the ranks are positions in the run we hand over
            if rank is not None and rank <= TOP_K:
                assert o.retrieved[rank - 1] == doc, o.probe.key
            else:
                assert doc not in o.retrieved, o.probe.key
        retrieved[o.probe.key], relevant[o.probe.key] = o.retrieved, o.probe.relevant
    overall = assert_agree([o.as_ranks() for o in outcomes], retrieved, relevant)
    # not a degenerate run: the real model ranks most relevant documents, and not all at rank 1
    assert 0.5 < overall["hit@5"] and overall["mrr"] < 1.0 and overall["ndcg@10"] > 0.3


# --- hand-built rankings ------------------------------------------------------------------------------------------


def ranks_in(ranking: Sequence[str], relevant: Sequence[str]) -> tuple[int | None, ...]:
    """As run_probes does: the 1-based position within everything searched (deeper than the top 10)."""
    position = {doc: i + 1 for i, doc in enumerate(ranking)}
    return tuple(position.get(d) for d in relevant)


def test_hand_built_graded_rankings_agree_with_ir_measures():
    """Graded relevance with tied grades, relevant documents at the cutoff, past it and never retrieved, a short
    run, more relevant documents than the cutoff, and a guard-only probe (left out on both sides)."""
    noise = [f"n{i:02d}" for i in range(30)]
    cases = {
        # grades 3, 2, 2, 1 (b and c tie: either ideal order has the same DCG); a at 4, b at 1, c never, d at 13
        "graded": (["b", *noise[:2], "a", *noise[2:10], "d"], {"a": 3, "b": 2, "c": 2, "d": 1}),
        # binary: one at rank 10 (inside every @10 metric), one at 11 (outside all of them)
        "cutoff": ([*noise[:9], "x", "y"], {"x": 1, "y": 1}),
        "missed": (noise[:15], {"z": 1}),
        # four documents retrieved in all: P@10 is still over 10, as trec_eval's P_10
        "short": (["s", *noise[:3]], {"s": 1}),
        # twelve relevant documents, three retrieved: the ideal DCG is cut at 10, recall@10 = 3/12
        "many": ([noise[0], "r0", noise[1], noise[2], "r1", noise[3], "r2", *noise[4:10]],
                 {f"r{i}": 1 for i in range(12)}),
        # two grades, the better document ranked second
        "swapped": (["lo", "hi", *noise[:8]], {"hi": 2, "lo": 1}),
    }
    probes, retrieved, relevant = [], {}, {}
    for pid, (ranking, grades) in cases.items():
        docs = list(grades)
        graded = tuple(float(grades[d]) for d in docs) if len(set(grades.values())) > 1 else ()
        probes.append(ProbeRanks(pid, "hand", ranks_in(ranking, docs), graded))
        retrieved[f"hand/{pid}"], relevant[f"hand/{pid}"] = ranking[:TOP_K], docs
    probes.append(ProbeRanks("guard", "hand", (), forbidden_ranks=(2,)))  # no relevant document: ranks nothing
    assert_agree(probes, retrieved, relevant)

    # and both equal the hand-worked values where they are easy to state
    by_id = {p.probe_id: p for p in probes}
    dcg = 3 / math.log2(5) + 2 / math.log2(2)
    idcg = 3 + 2 / math.log2(3) + 2 / math.log2(4) + 1 / math.log2(5)
    assert ndcg_at_k(by_id["graded"].relevant_ranks, 10, by_id["graded"].grades) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(by_id["swapped"].relevant_ranks, 10, by_id["swapped"].grades) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert reciprocal_rank(by_id["cutoff"].rank) == pytest.approx(0.1)
    assert recall_at_k(by_id["many"].relevant_ranks, 10) == pytest.approx(3 / 12)
    assert precision_at_k(by_id["short"].relevant_ranks, 10) == pytest.approx(0.1)


def test_tied_scores_are_why_the_run_carries_rank_derived_scores():
    """Tie-breaking: trec_eval re-sorts a run by score and breaks ties by document id, descending. Our ranks come
    from Chroma's order, which has no ties; a run whose scores tie would be evaluated in another order. With
    tied scores "a" (rank 1 for us) goes behind "b"; with the rank-derived scores of run_for both agree."""
    qrels = [ir_measures.Qrel("q", "a", 2), ir_measures.Qrel("q", "c", 1)]
    ranking = ["a", "b", "c"]
    ours = ProbeRanks("q", "s", ranks_in(ranking, ["a", "c"]), (2.0, 1.0))

    tied = [ir_measures.ScoredDoc("q", d, 1.0) for d in ranking]
    trec_tied = {m.measure: m.value for m in ir_measures.pytrec_eval.iter_calc([RR, nDCG @ 10, P @ 1], qrels, tied)}
    assert trec_tied[RR] == pytest.approx(1.0)  # trec_eval's order: c, b, a (ties by id, descending)
    assert trec_tied[P @ 1] == pytest.approx(1.0)
    assert trec_tied[nDCG @ 10] == pytest.approx((1 + 2 / math.log2(4)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(ours.relevant_ranks, 10, ours.grades) != pytest.approx(trec_tied[nDCG @ 10])

    # equal grades tie too: two documents of grade 1 in either order of the ideal ranking give one IDCG
    assert ndcg_at_k([2, 1], 10, [1.0, 1.0]) == pytest.approx(ndcg_at_k([1, 2], 10, [1.0, 1.0])) == 1.0

    assert_agree([ours], {"s/q": ranking}, {"s/q": ["a", "c"]})
