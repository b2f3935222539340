"""The Evidently drift report: first run, document groups, embedding and retrieval drift, self-contained HTML.
Synthetic snapshots, small enough to be quick; time is measured in benchmarks/drift_report.py, not here."""

import base64
import gzip
import re

import numpy as np
import pandas as pd
import pytest

from rag_health.drift import STAT_COLUMNS, compact_html, drift_report, group_of, retrieval_frames

DIM = 16


def report_data(html_text: str) -> str:
    """The report's data (widget titles, figures) as the page's loader unpacks it in the browser."""
    packed = re.search(r'unpack\("([A-Za-z0-9+/=]+)"\)', html_text).group(1)
    return gzip.decompress(base64.b64decode(packed)).decode()


def frame(rows: int, seed: int, groups=("folder: runbooks", "product: cards"), shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, DIM)) + shift
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stats = pd.DataFrame({
        "chunk_id": [f"d{seed}-{i}" for i in range(rows)], "doc_id": [f"d{i // 5}" for i in range(rows)],
        "group": [groups[i % len(groups)] for i in range(rows)],
        "n_chars": rng.normal(900 + 400 * shift, 100, rows), "n_tokens": rng.normal(200 + 80 * shift, 20, rows),
        "ends_mid_sentence": (rng.random(rows) < 0.2).astype(float), "chunk_index": rng.integers(0, 9, rows) * 1.0,
    })
    return pd.concat([stats, pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(DIM)])], axis=1)


def ranks(similarities, ranks_):
    return {f"golden/p{i}": {"rank": r, "similarity": s, "retrieved": []}
            for i, (s, r) in enumerate(zip(similarities, ranks_))}


BASELINE_RANKS = ranks([0.7, 0.6, 0.65, 0.8, 0.75, 0.7, 0.62, 0.68], [1, 2, 1, 1, 3, 1, 2, 1])
CURRENT_RANKS = ranks([0.5, 0.45, None, 0.55, 0.5, 0.52, 0.4, 0.5], [4, 7, None, 2, 15, 3, 8, 2])


@pytest.fixture(scope="module")
def compared():
    reference, current = frame(60, 1), frame(60, 2, shift=0.5)
    return drift_report(reference, current, "run-2 vs run-1", retrieval=(BASELINE_RANKS, CURRENT_RANKS), top_k=10)


@pytest.fixture(scope="module")
def first():
    current = frame(60, 1)
    return drift_report(current, current, "run-1 is the baseline", run_id="run-1")


def test_first_run_says_baseline_established_and_reports_no_drift_figures(first):
    html_text, figures = first
    assert "Baseline established: run run-1 is the baseline; later runs are compared with it" in html_text
    assert figures["baseline_established"] is True
    assert figures["embedding_drift_score"] is None and figures["drifted_columns"] == 0
    assert figures["columns"] == {} and figures["retrieval_similarity_drift_score"] is None
    assert "No drift found" not in html_text and "Drift found" not in html_text


def test_first_run_flag_wins_over_a_distinct_reference():
    _, figures = drift_report(frame(45, 3), frame(45, 4), "promoted", first_run=True)
    assert figures["baseline_established"] is True and figures["mean_vector_cosine_distance"] is None


def test_comparison_keeps_the_contract_figures(compared):
    _, figures = compared
    assert figures["baseline_established"] is False
    assert set(figures["columns"]) == set(STAT_COLUMNS)
    for key in ("drifted_columns", "embedding_drift_score", "mean_vector_cosine_distance"):
        assert figures[key] is not None
    assert figures["embedding_sample_rows"] == 60


def test_groups_present_on_both_sides_get_their_own_drift(compared):
    html_text, figures = compared
    assert set(figures["groups"]) == {"folder: runbooks", "product: cards"}
    cards = figures["groups"]["product: cards"]
    assert cards["reference_rows"] == 30 and cards["current_rows"] == 30
    assert set(cards["columns"]) == set(STAT_COLUMNS) and cards["drifted_columns"] >= 1
    assert "Chunk statistics for document group product: cards" in report_data(html_text)


def test_small_groups_and_old_snapshots_without_groups_are_left_out():
    reference = frame(45, 5, groups=("a",) * 40 + ("b",) * 5)
    current = frame(45, 6, groups=("a",) * 40 + ("b",) * 5)
    assert set(drift_report(reference, current, "t")[1]["groups"]) == {"a"}  # "b": 5 rows a side
    _, figures = drift_report(reference.drop(columns=["group"]), current, "t")
    assert figures["groups"] == {}


def test_retrieval_frames_count_a_miss_as_top_k_plus_one():
    ref, cur = retrieval_frames(BASELINE_RANKS, {**CURRENT_RANKS, "golden/extra": {"rank": 1}}, top_k=10)
    assert list(ref["probe"]) == list(cur["probe"]) == sorted(BASELINE_RANKS)
    assert cur.set_index("probe").loc["golden/p2", "rank"] == 11  # missed
    assert cur.set_index("probe").loc["golden/p4", "rank"] == 11  # rank 15: below top_k
    assert np.isnan(cur.set_index("probe").loc["golden/p2", "similarity"])


def test_retrieval_drift_figures_from_two_runs_ranks(compared):
    html_text, figures = compared
    assert figures["probes_compared"] == 8 and figures["probes_with_similarity"] == 7
    assert figures["probes_rank_worse"] == 8 and figures["probes_rank_better"] == 0
    assert figures["retrieval_similarity_drift_score"] is not None and figures["retrieval_rank_drift_score"] is not None
    assert figures["retrieval_columns"]["similarity"]["drifted"] is figures["retrieval_similarity_drift"]
    assert figures["retrieval_mean_similarity_change"] == pytest.approx(-1.43 / 7, abs=1e-5)  # p2 has no similarity now
    assert "Retrieval over 8 probes" in html_text and "Retrieval drift: each probe" in report_data(html_text)


def test_without_probe_ranks_retrieval_drift_says_why():
    _, figures = drift_report(frame(45, 7), frame(45, 8), "t", retrieval=(None, CURRENT_RANKS))
    assert figures["probes_compared"] == 0 and figures["retrieval_rank_drift_score"] is None
    assert "no per-probe ranks" in figures["retrieval_note"]


@pytest.mark.parametrize("which", ["compared", "first"])
def test_report_is_self_contained_html(which, request):
    html_text, _ = request.getfixturevalue(which)
    assert html_text.lstrip().startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import|url\(https?:", html_text)
    assert "DecompressionStream" in html_text and "window.drawDashboard(" in html_text
    assert len(html_text.encode()) < 2_500_000  # Evidently's bundle inline is 3.5 MB; compressed about 1.4 MB


def test_compact_html_leaves_an_unknown_layout_alone():
    assert compact_html("<html><body>no bundle</body></html>") == "<html><body>no bundle</body></html>"


def test_banner_names_the_drift_and_escapes_the_title():
    html_text, _ = drift_report(frame(45, 9), frame(45, 10, shift=1.0), "<b>run</b>")
    assert "&lt;b&gt;run&lt;/b&gt;" in html_text and "<b>run</b>" not in html_text
    assert "Drift found." in html_text


@pytest.mark.parametrize("meta, group", [
    ({"doc_id": "runbooks/a.md", "fm_product": "cards"}, "product: cards"),
    ({"doc_id": "runbooks/a.md", "mf_product": "loans"}, "product: loans"),
    ({"doc_id": "runbooks/sub/a.md"}, "folder: runbooks"),
    ({"doc_id": "a.md", "fm_product": ""}, "folder: (top level)"),
    ({"doc_id": "a.md", "fm_product": "</script><b>x"}, "product: _/script__b_x"),  # inline-script safe
])
def test_group_of_a_chunk(meta, group):
    assert group_of(meta) == group
