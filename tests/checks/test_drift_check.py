"""The drift verdict: decided in checks/ from Evidently's figures, with its threshold from settings."""

import pytest

from checks.drift import drift_check


@pytest.mark.parametrize("share,limit,status", [(0.25, 0.5, "pass"), (0.75, 0.5, "warn"), (0.25, 0.2, "warn")])
def test_drifted_share_against_the_setting(share, limit, status):
    figures = {"drifted_share": share, "drifted_columns": int(share * 4), "embedding_drift": False,
               "embedding_drift_score": 0.5}
    result = drift_check(figures, baseline_run="run-1", max_drifted_share=limit)
    assert result.status == status
    assert bool(result.findings) == (status == "warn")


def test_embedding_drift_warns_and_names_the_baseline():
    result = drift_check({"embedding_drift": True, "embedding_drift_score": 0.9, "drifted_columns": 0},
                         baseline_run="run-7", max_drifted_share=0.5)
    assert result.status == "warn"
    assert result.findings == ("drift against baseline run-7: embedding drift score 0.9, 0 chunk statistics drifted (warn)",)


def test_a_run_compared_with_itself_never_drifts():
    result = drift_check({"embedding_drift": True, "drifted_share": 1.0}, baseline_run=None, max_drifted_share=0.5)
    assert result.status == "pass" and result.findings == ()


def test_retrieval_drift_warns_on_its_own():
    figures = {"embedding_drift": False, "drifted_share": 0.0, "retrieval_rank_drift": True, "probes_rank_worse": 7,
               "probes_compared": 20, "retrieval_mean_similarity_change": -0.08}
    result = drift_check(figures, baseline_run="run-1", max_drifted_share=0.5)
    assert result.status == "warn" and result.findings[0].startswith("retrieval drift against baseline run-1: 7 of 20")
