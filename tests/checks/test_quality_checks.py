"""Chunk and embedding checks on tiny hand-built tables."""

import numpy as np
import pandas as pd

from checks.chunk_quality import chunk_quality
from checks.embedding_quality import embedding_quality, vector_table
from checks.findings import Finding, FindingKind
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
    assert result.items[0].kind == "token-overflow" and result.items[0].chunk_id == "a"
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


# --- the finding kinds added for the quality stage ------------------------------------------------------------

from checks.chunk_quality import BoilerplateCounter, near_duplicates, text_key  # noqa: E402
from checks.embedding_quality import anisotropy, centroid_similarity, neighbour_overlap, outlier_scores  # noqa: E402
from checks.quality_score import quality_scores  # noqa: E402
from rag_health.chunking import parse_spec, starts_mid_sentence  # noqa: E402
from rag_health.structure import analyse_chunks, parse_structure  # noqa: E402


def kinds(result):
    return sorted({i.kind for i in result.items})


def test_each_chunk_column_yields_its_finding():
    table = chunks(n_words=[3, 40, 40, 40], starts_mid_sentence=[False, True, False, False],
                   text_key=["k1", "k2", "k2", "k4"], split_blocks=["", "", "table at line 3 (chunks 0, 1)", ""],
                   heading_lost=[False, False, False, True], section=["", "", "", "Doc > Steps"],
                   missing_metadata=["", "", "", "product"], boilerplate_share=[0.0, 0.0, 0.0, 0.6],
                   boilerplate_example=["", "", "", "Confidential"], boilerplate_documents=[0, 0, 0, 9],
                   near_duplicate_of=["c", "", "", ""], near_duplicate_cosine=[0.97, np.nan, np.nan, np.nan],
                   structure_known=[True] * 4)
    result = chunk_quality(table, max_tokens=256, min_chunk_words=12)
    by_chunk = {}
    for i in result.items:
        by_chunk.setdefault(i.chunk_id, set()).add(i.kind)
    assert by_chunk == {"a": {"tiny-chunk", "near-duplicate"}, "b": {"starts-mid-sentence", "duplicate-chunk"},
                        "c": {"duplicate-chunk", "table-split"},
                        "d": {"lost-heading", "missing-metadata", "boilerplate"}}
    detail = {(i.chunk_id, i.kind): i.detail for i in result.items}
    assert detail[("b", "duplicate-chunk")] == "same text as c" and "product" in detail[("d", "missing-metadata")]
    assert "'Steps'" in detail[("d", "lost-heading")] and "0.970" in detail[("a", "near-duplicate")]
    assert result.status == "warn"
    assert chunk_quality(chunks(), max_tokens=256).items == ()


def test_text_key_ignores_case_and_spacing():
    assert text_key("Restart the  pod.\n") == text_key("restart the pod.") != text_key("restart a pod.")
    assert text_key("   ") == ""


def test_near_duplicates_need_another_document_and_the_threshold():
    ids, docs, keys = ["a0", "b0", "a1"], ["a", "b", "a"], ["1", "2", "3"]
    near = near_duplicates(ids, docs, keys, [["b0", "a1"], ["a0"], ["a0"]], [[0.96, 0.99], [0.96], [0.99]], 0.95)
    assert near == {"a0": ("b0", 0.96), "b0": ("a0", 0.96)}  # a1 is only near its own document
    assert near_duplicates(ids, docs, keys, [["b0"], ["a0"], []], [[0.94], [0.94], []], 0.95) == {}


def test_boilerplate_is_a_line_repeated_across_documents():
    counter = BoilerplateCounter()
    footer = "Confidential: for Example Bank staff only, do not forward."
    for i, topic in enumerate(["Cards", "Loans", "Payments", "Treasury"]):
        counter.add(f"c{i}", f"doc{i}", f"{topic} has its own text here.\n{footer}")
    counter.add("c9", "doc9", "Nothing in common with the others at all.")
    shares = counter.shares(n_documents=5, min_documents=3, min_fraction=0.5)
    assert set(shares) == {"c0", "c1", "c2", "c3"}
    share, example, n_docs = shares["c0"]
    assert 0.5 < share < 0.8 and example == footer and n_docs == 4
    assert counter.shares(n_documents=5, min_documents=5, min_fraction=0.0) == {}


def test_anisotropy_is_the_mean_cosine_of_random_pairs():
    assert anisotropy(unit([[1, 0], [1, 0], [1, 0]])) == 1.0
    basis = np.eye(8, dtype=np.float32)
    assert anisotropy(basis) == 0.0
    assert anisotropy(basis[:1]) is None


def test_outliers_by_robust_z_of_centroid_similarity():
    rng = np.random.default_rng(0)
    direction = np.ones(16) / 4
    cluster = direction + 0.05 * rng.normal(size=(30, 16))
    odd = -direction
    sims = centroid_similarity(np.vstack([cluster, odd]))
    z, median, _ = outlier_scores(sims)
    assert z[-1] > 10 and (z[:-1] < 4).all() and median > 0.9
    table = vector_table(unit(np.vstack([cluster, odd])), [f"c{i}" for i in range(31)], [str(i) for i in range(31)])
    result = embedding_quality(table, expected_dimension=16)
    assert [i.chunk_id for i in result.items if i.kind == "embedding-outlier"] == ["c30"]


def test_nan_zero_and_foreign_model_vectors_fail_with_findings():
    v = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    v[0, 0] = np.nan
    v[1] = 0
    table = vector_table(v, ["a", "b", "c"], ["1", "2", "3"], fingerprints=["m1", "m1", "m2"])
    result = embedding_quality(table, expected_dimension=3, expected_fingerprint="m1")
    assert result.status == "fail"
    assert {(i.chunk_id, i.kind) for i in result.items} == {
        ("a", "nan-vector"), ("b", "zero-vector"), ("c", "model-mismatch")}


def test_neighbour_overlap_against_the_baseline_sample():
    baseline = [{"chunk_id": "s1", "doc_id": "d1", "docs": ["a", "b", "c", "d"], "chunks": ["k1", "k2"]},
                {"chunk_id": "gone", "doc_id": "d9", "docs": ["a"], "chunks": ["k1"]}]
    frame = neighbour_overlap(baseline, {"s1": {"docs": ["a", "b", "x", "y"], "chunks": ["k1", "k3"]}})
    row = frame.iloc[0]
    assert len(frame) == 1 and row.overlap_docs == 0.5 and row.overlap_chunks == 0.5
    assert row.lost_docs == ["c", "d"] and row.new_docs == ["x", "y"]
    table = vector_table(unit([[1, 0], [0, 1]]), ["s1", "s2"], ["1", "2"])
    result = embedding_quality(table, 2, overlaps=frame, min_neighbour_overlap=0.6,
                               anisotropy_now=0.40, anisotropy_baseline=0.30, max_anisotropy_change=0.05)
    assert result.status == "warn" and result.metrics["neighbour_overlap"] == 0.5
    assert result.metrics["anisotropy_change"] == 0.1 and len(result.findings) == 2


def test_quality_scores_hand_worked():
    """Chunk a1 loses 0.3 + 0.1, a2 nothing, b1 1.0 (floored): document a 0.8, b 0.0, corpus (0.6+1+0)/3."""
    table = pd.DataFrame({"chunk_id": ["a1", "a2", "b1"], "doc_id": ["a", "a", "b"]})
    K = FindingKind
    items = [Finding("a", "a1", K.TABLE_SPLIT, "", 0.3), Finding("a", "a1", K.LOST_HEADING, "", 0.1),
             Finding("b", "b1", K.EMPTY_CHUNK, "", 1.0), Finding("b", "b1", K.TINY_CHUNK, "", 0.4)]
    corpus, documents, scores = quality_scores(table, items)
    assert corpus == round((0.6 + 1.0 + 0.0) / 3, 4)
    assert [(d["doc_id"], d["score"]) for d in documents] == [("b", 0.0), ("a", 0.8)]
    assert documents[1]["findings"] == {"lost-heading": 1, "table-split": 1} and scores["a2"] == 1.0


def test_structure_split_needs_no_chunk_holding_the_whole_block():
    text = "# Doc\n\n## Steps\n\n1. First step text.\n2. Second step text.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    structure = parse_structure(text)
    assert [b.kind for b in structure.blocks] == ["step", "step", "table"]
    table_start = text.index("| a |")
    whole_then_overlap = [text[:table_start + 20], text[table_start:]]  # second chunk holds the whole table
    shapes = analyse_chunks(text, whole_then_overlap, whole_then_overlap)
    assert [s.split_blocks for s in shapes] == ["", ""]  # overlap is not a split: chunk 1 holds it all
    cut = [text[:table_start + 20], text[table_start + 10:]]
    assert analyse_chunks(text, cut, cut)[1].split_blocks == "table at line 8 (chunks 0, 1)"
    assert analyse_chunks(text, [text], [text])[0].split_blocks == ""


def test_lost_heading_unless_the_embedding_carries_it():
    text = "# Doc\n\n## Mitigation\n\n" + "Restart the consumer. " * 20 + "\n\nScale out the group."
    tail = "Scale out the group."
    plain = analyse_chunks(text, [text[:60], tail], [text[:60], tail])
    assert plain[1].heading_lost and plain[1].section == "Doc > Mitigation" and not plain[0].heading_lost
    carried = analyse_chunks(text, [tail], ["Doc\nMitigation\n\n" + tail])
    assert not carried[0].heading_lost


def test_starts_mid_sentence():
    assert starts_mid_sentence("and then restart the pod.")
    assert starts_mid_sentence(", which is why the lag grows.")
    assert not starts_mid_sentence("Restart the pod.")
    assert not starts_mid_sentence("- restart the pod")
    assert not starts_mid_sentence("## steps")


def test_chunking_specs():
    assert parse_spec("sentence:256:32") == ("sentence", 256, 32)
    assert parse_spec("markdown:256") == ("markdown", 256, 0)
    assert parse_spec("512") == ("sentence", 512, 64)
    import pytest

    from rag_health.errors import ConfigError

    for bad in ("words:100", "sentence:x", "sentence:100:100", "markdown"):
        with pytest.raises(ConfigError, match="bad chunking configuration"):
            parse_spec(bad)
