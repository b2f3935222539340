"""Chunk and embedding checks on tiny hand-built tables."""

import numpy as np
import pandas as pd

from checks.chunk_quality import chunk_quality
from checks.embedding_quality import embedding_quality, vector_table
from rag_health.chunking import ends_mid_sentence


def chunks(**overrides):
    base = {"chunk_id": ["a", "b", "c", "d"], "doc_id": ["x", "x", "y", "y"], "chunk_index": [0, 1, 0, 1],
            "n_chars": [100, 120, 90, 80], "n_tokens": [40, 50, 30, 20], "ends_mid_sentence": [False] * 4}
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_chunks_pass():
    result = chunk_quality(chunks(), max_tokens=256)
    assert result.status == "pass"
    assert result.metrics["tokens_lost"] == 0 and result.items == ()


def test_overflow_is_measured_in_lost_tokens():
    """One chunk of four over the window (25%): a warn under a 30% fail fraction, a fail under 5%."""
    result = chunk_quality(chunks(n_tokens=[300, 50, 30, 20]), max_tokens=256, max_overflow_fraction=0.3)
    assert result.status == "warn"
    assert result.metrics["tokens_lost"] == 44
    assert result.items[0]["kind"] == "token-overflow" and result.items[0]["chunk_id"] == "a"
    assert chunk_quality(chunks(n_tokens=[300, 50, 30, 20]), max_tokens=256, max_overflow_fraction=0.05).status == "fail"


def test_empty_and_duplicate_ids_fail():
    assert chunk_quality(chunks(n_chars=[0, 120, 90, 80]), max_tokens=256).status == "fail"
    result = chunk_quality(chunks(chunk_id=["a", "a", "c", "d"]), max_tokens=256)
    assert result.status == "fail" and result.metrics["duplicate_ids"] == 1


def test_mid_sentence_share_over_threshold_warns():
    result = chunk_quality(chunks(ends_mid_sentence=[True, True, True, False]), max_tokens=256,
                           max_mid_sentence_fraction=0.5)
    assert result.status == "warn" and result.metrics["mid_sentence_fraction"] == 0.75


def test_ends_mid_sentence():
    assert ends_mid_sentence("The consumer restarts and the lag")
    assert not ends_mid_sentence("The consumer restarts.")
    assert not ends_mid_sentence("Steps:\n1. restart the pod")
    assert not ends_mid_sentence("| a | b |")


def unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_clean_vectors_pass():
    table = vector_table(unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), ["a", "b", "c"], ["t1", "t2", "t3"])
    result = embedding_quality(table, expected_dimension=3)
    assert result.status == "pass" and result.metrics["norm_min"] == 1.0


def test_nan_zero_and_wrong_dimension_fail():
    v = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    v[0, 0] = np.nan
    v[1] = 0
    result = embedding_quality(vector_table(v, ["a", "b", "c"], ["1", "2", "3"]), expected_dimension=3)
    assert result.status == "fail"
    assert result.metrics["nan_vectors"] == 1 and result.metrics["zero_vectors"] == 1
    wrong = embedding_quality(vector_table(unit([[1, 0], [0, 1]]), ["a", "b"], ["1", "2"]), expected_dimension=3)
    assert wrong.status == "fail"


def test_unnormalised_and_shared_vectors_warn():
    v = unit([[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    v[2] *= 2
    result = embedding_quality(vector_table(v, ["a", "b", "c"], ["one", "two", "three"]), expected_dimension=3)
    assert result.status == "warn"
    assert result.metrics["shared_vectors"] == 2 and result.metrics["non_normalised"] == 1
    # The same text twice sharing a vector is a duplicate chunk, not a model fault.
    same = embedding_quality(vector_table(unit([[1, 0, 0], [1, 0, 0]]), ["a", "b"], ["t", "t"]), 3)
    assert same.metrics["shared_vectors"] == 0
