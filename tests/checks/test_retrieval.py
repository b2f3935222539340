"""Retrieval metrics against hand-worked examples."""

import math

import pytest

from checks.retrieval import ProbeRanks, ndcg_at_k, recall_at_k, reciprocal_rank, retrieval_check, set_metrics


def test_ndcg_single_relevant_at_rank_3():
    """One relevant document at rank 3: DCG = 1/log2(4) = 0.5, ideal = 1."""
    assert ndcg_at_k([3]) == pytest.approx(0.5)


def test_ndcg_two_relevant_one_found():
    """Relevant at ranks 1 and missed: DCG = 1, IDCG = 1 + 1/log2(3)."""
    assert ndcg_at_k([1, None]) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_ignores_ranks_past_cutoff():
    assert ndcg_at_k([11]) == 0.0
    assert ndcg_at_k([]) == 0.0


def test_recall_and_reciprocal_rank():
    assert recall_at_k([2, 7, None], 5) == pytest.approx(1 / 3)
    assert recall_at_k([2, 7, None], 10) == pytest.approx(2 / 3)
    assert reciprocal_rank(4) == 0.25
    assert reciprocal_rank(None) == 0.0
    assert reciprocal_rank(11) == 0.0


def test_set_metrics_worked_example():
    """Three probes: first relevant at ranks 1, 4 and never. hit@3 = 1/3, hit@5 = 2/3, MRR = (1 + 1/4)/3."""
    probes = [ProbeRanks("a", "s", (1,)), ProbeRanks("b", "s", (4, None)), ProbeRanks("c", "s", (None,))]
    m = set_metrics(probes)
    assert m["n"] == 3
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit@3"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx((1 + 0.25) / 3, abs=1e-4)
    expected_ndcg = (1.0 + (1 / math.log2(5)) / (1 + 1 / math.log2(3)) + 0.0) / 3
    assert m["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-4)
    assert m["recall@5"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)


def test_rank_is_best_relevant_rank():
    assert ProbeRanks("p", "s", (None, 6, 2)).rank == 2
    assert ProbeRanks("p", "s", (None,)).rank is None


def test_retrieval_check_thresholds_per_set():
    """It fails a set whose hit@5 is under the fail threshold and passes one above the warn threshold."""
    good = [ProbeRanks(f"g{i}", "good", (1,)) for i in range(10)]
    bad = [ProbeRanks(f"b{i}", "bad", (None,)) for i in range(8)] + [ProbeRanks("b9", "bad", (2,))]
    result = retrieval_check(good + bad, hit_at_5_warn=0.8, hit_at_5_fail=0.5)
    assert result.status == "fail"
    assert result.metrics["sets"]["good"]["hit@5"] == 1.0
    assert any("bad" in f for f in result.findings)
    assert retrieval_check(good, hit_at_5_warn=0.8, hit_at_5_fail=0.5).status == "pass"
    warn = [ProbeRanks(f"w{i}", "w", (1,) if i < 7 else (None,)) for i in range(10)]
    assert retrieval_check(warn, hit_at_5_warn=0.8, hit_at_5_fail=0.5).status == "warn"
