"""The finding-kind table: one row per kind, thresholds that name real kinds, and the settings that use them."""

import dataclasses

import pandas as pd
import pytest

from checks.chunk_quality import SHARES, chunk_quality
from checks.findings import KINDS, Finding, FindingKind, default_max_fractions, threshold_keys


def test_every_kind_has_a_penalty_and_a_meaning():
    assert set(KINDS) == set(FindingKind)
    for kind, spec in KINDS.items():
        assert 0.0 <= spec.penalty <= 1.0 and spec.meaning, kind
        assert (spec.threshold is None) == (spec.max_fraction is None), kind


def test_every_threshold_key_is_checked_and_names_kinds():
    """Regression: the threshold key "structure-split" once matched no finding kind. Every key in the table is
    now the threshold of at least one kind, and every share check reads a key of the table."""
    keys = threshold_keys()
    assert "structure-split" in keys
    assert {KINDS[k].threshold for k in (FindingKind.CODE_BLOCK_SPLIT, FindingKind.TABLE_SPLIT,
                                         FindingKind.STEP_SPLIT)} == {"structure-split"}
    assert {key for _, key, _ in SHARES} <= keys


def test_every_threshold_key_gates_a_check():
    """The other direction (issue 20): a kind given a threshold but no share check passed every test and never
    gated. Every threshold key is read by a chunk share check or by the embedding check's outlier expectation."""
    import inspect

    from checks import chunk_quality as chunk_check
    from checks import embedding_quality

    gated = {key for _, key, _ in SHARES}
    expectations = inspect.getsource(chunk_check._expectations) + inspect.getsource(embedding_quality)
    read_by_name = {k for k in threshold_keys() if f'limits.get("{k}"' in expectations or f'limits["{k}"]' in expectations}
    assert threshold_keys() <= gated | read_by_name, threshold_keys() - gated - read_by_name


def chunks(n: int, **columns) -> pd.DataFrame:
    base = {"chunk_id": [f"c{i}" for i in range(n)], "doc_id": ["d"] * n, "chunk_index": list(range(n)),
            "n_chars": [200] * n, "n_tokens": [50] * n, "ends_mid_sentence": [False] * n, "n_words": [40] * n}
    return pd.DataFrame({**base, **columns})


@pytest.mark.parametrize("fraction,status", [(0.1, "warn"), (0.5, "pass")])
def test_structure_split_threshold_from_settings_applies(fraction, status):
    """One of four chunks cuts a table (25%): over the default 10% it warns; a 50% setting lets it pass."""
    table = chunks(4, split_blocks=["table at line 3", "", "", ""])
    result = chunk_quality(table, max_tokens=256, max_fraction={"structure-split": fraction})
    assert result.status == status
    assert [f.kind for f in result.items] == [FindingKind.TABLE_SPLIT]


def test_finding_rows_are_the_contract():
    f = Finding("d", "d#1:0000", FindingKind.TINY_CHUNK, "3 words", 0.4, 0)
    assert f.row() == {"doc_id": "d", "chunk_id": "d#1:0000", "kind": "tiny-chunk", "detail": "3 words",
                       "penalty": 0.4}
    assert f.item() == {**f.row(), "chunk_index": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.penalty = 0.0  # type: ignore[misc]
    assert default_max_fractions()["tiny-chunk"] == KINDS[FindingKind.TINY_CHUNK].max_fraction
