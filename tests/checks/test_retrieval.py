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


from checks.retrieval import parse_threshold, precision_at_k, regressions  # noqa: E402


def test_precision_at_k():
    """Relevant documents at ranks 1, 3 and 12: P@1 = 1, P@5 = 2/5, P@10 = 2/10."""
    assert precision_at_k([1, 3, 12], 1) == 1.0
    assert precision_at_k([1, 3, 12], 5) == pytest.approx(0.4)
    assert precision_at_k([1, 3, 12], 10) == pytest.approx(0.2)
    m = set_metrics([ProbeRanks("a", "s", (1, 3, 12)), ProbeRanks("b", "s", (None,))])
    assert m["precision@5"] == pytest.approx((0.4 + 0) / 2)


def test_graded_ndcg_uses_linear_gains():
    """Grades 2 (at rank 2) and 1 (at rank 1): DCG = 1 + 2/log2(3); ideal puts grade 2 first: 2 + 1/log2(3)."""
    got = ndcg_at_k([2, 1], 10, grades=[2.0, 1.0])
    assert got == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k([1], 10, grades=[0.0]) == 0.0  # nothing relevant to find: no credit, no division by zero


def test_chunk_level_metrics_for_probes_naming_a_section():
    probes = [ProbeRanks("a", "s", (1,), section_rank=3, has_section=True),
              ProbeRanks("b", "s", (1,), section_rank=None, has_section=True),
              ProbeRanks("c", "s", (2,))]
    m = set_metrics(probes)
    assert m["chunk_n"] == 2 and m["chunk_hit@1"] == 0.0 and m["chunk_hit@5"] == 0.5
    assert m["chunk_mrr"] == pytest.approx((1 / 3 + 0) / 2, abs=1e-4)


def test_removed_documents_in_the_top_k():
    """Above every current document: a violation (fail). Below a current one: lingering (warn). Guard-only
    probes (no relevant document) are left out of the ranking metrics."""
    above = ProbeRanks("s1", "life", (3,), forbidden_ranks=(1,))
    below = ProbeRanks("s2", "life", (1,), forbidden_ranks=(4,))
    gone = ProbeRanks("d1", "life", (), forbidden_ranks=(None,))
    m = set_metrics([above, below, gone])
    assert m["n"] == 2 and m["guarded_n"] == 3 and m["violations@10"] == 1 and m["lingering@10"] == 2
    assert retrieval_check([above], hit_at_5_warn=0.8, hit_at_5_fail=0.5).status == "fail"
    assert retrieval_check([below, gone], hit_at_5_warn=0.8, hit_at_5_fail=0.5).status == "warn"
    assert retrieval_check([gone], hit_at_5_warn=0.8, hit_at_5_fail=0.5).status == "pass"


def test_fail_under_thresholds():
    probes = [ProbeRanks(f"p{i}", "golden", (1,) if i < 8 else (None,)) for i in range(10)]  # hit@5 = 0.8
    base = {"hit_at_5_warn": 0.5, "hit_at_5_fail": 0.1}
    assert retrieval_check(probes, **base, fail_under=["hit@5=0.8"]).status == "pass"
    result = retrieval_check(probes, **base, fail_under=["hit@5=0.9"])
    assert result.status == "fail" and "hit@5 0.800 below the required 0.9" in result.findings[0]
    assert retrieval_check(probes, **base, fail_under=["other:hit@5=0.9"]).status == "warn"  # no such set
    assert parse_threshold("golden:ndcg@10=0.6") == ("golden", "ndcg@10", 0.6)
    assert parse_threshold("recall@100=0.9") == (None, "recall@100", 0.9)
    assert retrieval_check(probes, **base, fail_under=["recall@50=0.5"]).status == "warn"  # not computed here
    for bad in ("hit@5", "hit@5=high", "speed=0.5", "hit@5=1.5", "precision@3=0.5"):
        with pytest.raises(ValueError, match="bad threshold"):
            parse_threshold(bad)


def test_ungated_sets_skip_the_default_hit_rate_gate():
    weak = [ProbeRanks(f"g{i}", "generated", (None,)) for i in range(5)]
    assert retrieval_check(weak, hit_at_5_warn=0.8, hit_at_5_fail=0.5, ungated=["generated"]).status == "pass"
    assert retrieval_check(weak, hit_at_5_warn=0.8, hit_at_5_fail=0.5, ungated=["generated"],
                           fail_under=["generated:hit@5=0.5"]).status == "fail"


def test_regressions_name_the_displacing_document():
    baseline = {"g/p1": {"rank": 1, "retrieved": ["right.md", "a.md", "b.md"]},
                "g/p2": {"rank": 2, "retrieved": ["a.md", "right.md"]},
                "g/p3": {"rank": 2, "retrieved": ["a.md", "right.md"]},
                "g/p4": {"rank": None, "retrieved": ["a.md"]}}
    current = [
        {"key": "g/p1", "probe_id": "p1", "set": "g", "rank": None, "retrieved": ["new.md", "a.md"],
         "relevant": ["right.md"]},  # was 1, now missed: new.md took its place
        {"key": "g/p2", "probe_id": "p2", "set": "g", "rank": 4, "retrieved": ["a.md", "b.md", "c.md", "right.md"],
         "relevant": ["right.md"]},  # dropped 2 ranks: within the allowed 3
        {"key": "g/p3", "probe_id": "p3", "set": "g", "rank": 7,
         "retrieved": ["a.md", "x.md", "y.md", "z.md", "v.md", "w.md", "right.md"], "relevant": ["right.md"]},
        {"key": "g/p4", "probe_id": "p4", "set": "g", "rank": None, "retrieved": ["a.md"], "relevant": ["r.md"]},
    ]
    got = regressions(baseline, current, max_rank_drop=3, top_k=10)
    assert got == [
        {"probe_id": "p1", "set": "g", "was_rank": 1, "now_rank": None, "displaced_by": "new.md"},
        {"probe_id": "p3", "set": "g", "was_rank": 2, "now_rank": 7, "displaced_by": "x.md"},
    ]
