"""Personal data through the quality stage on real embedded Chroma and the real model: a policy holding a card
number, an IBAN, two e-mail addresses and a phone number gets one `pii` finding naming its chunk, the kinds and
redacted excerpts, and nothing the stage writes (quality.json, the chunk and finding CSVs, the result) holds a
raw value or any chunk's text. The neighbour sample is kept by chunk id and text hash; a later run embeds a
sample chunk again from the collection's text when it must, and counts the ones that are gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.test_quality import clean_corpus, plant
from tests.support.stages import stage

DOC = "planted/refund-exception.md"
BODY = ("# Refund exception approval\n\nThe approved refund of EUR 120.00 goes back to card 4111 1111 1111 1111, "
        "or to IBAN GB82 WEST 1234 5698 7654 32 if the card is closed. Confirm with jane.doe@example.com and copy "
        "j.smith@example.org. The customer asked to be called on +44 20 7946 0958 after the transfer is booked.")
RAW = ["4111 1111 1111 1111", "4111111111111111", "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432",
       "jane.doe@example.com", "j.smith@example.org", "+44 20 7946 0958", "7946 0958"]
TEXT_PHRASE = "after the transfer is booked"  # the chunk's own words: no artifact repeats chunk text


@pytest.fixture(scope="module")
def runs(tmp_path_factory, embedder):
    """Two quality runs over the sample corpus plus the planted policy: the first is the baseline; before the
    second, one sample chunk is marked as written by another model (so it is embedded again from its stored
    text) and another chunk is deleted (so it cannot be compared)."""
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    base = tmp_path_factory.mktemp("pii")
    root = clean_corpus(base / "docs")
    for path in (root / "runbooks").glob("*.md"):  # a dozen documents are enough here
        if path.name != "kafka-consumer-lag.md":
            path.unlink()
    plant(root, DOC, BODY)
    state = base / "state"
    rt = build_runtime(load_settings(docs=str(root), state_dir=str(state)), embedder=embedder)
    stage(rt, "ingest")
    first = stage(rt, "quality", "pii-run-1")
    rt.archive.point_baseline("pii-run-1")
    ledger = rt.index.ledger()
    rt.index.update_metadata([ledger["policies/sanctions-screening.md"].chunk_ids[0]],
                             {"model_fingerprint": "0ther-model"})
    rt.index.collection.delete(ids=[ledger["runbooks/kafka-consumer-lag.md"].chunk_ids[0]])
    second = stage(rt, "quality", "pii-run-2")
    return first, second, state, rt


def test_pii_finding_names_the_chunk_the_kinds_and_redacted_excerpts(runs):
    first, _, _, _ = runs
    pii = [f for f in first["findings"] if f["kind"] == "pii"]
    assert [f["doc_id"] for f in pii] == [DOC], "the sample documents hold no personal data"
    assert pii[0]["chunk_id"].startswith(DOC + "#")
    assert pii[0]["detail"] == ("card-number: **** **** **** 1111; iban: GB** **** **** **** **54 32; "
                                "email: j***@example.com; email: j***@example.org; phone: +44 ******58")
    assert first["findings_by_kind"]["pii"] == 1 and first["chunks"]["metrics"]["pii_chunks"] == 1
    assert first["status"] == "warn" and any("personal data" in f for f in first["chunks"]["findings"])


def test_nothing_written_holds_raw_values_or_chunk_text(runs):
    first, second, state, _ = runs
    written = [p for p in state.rglob("*") if p.is_file() and "chroma" not in p.relative_to(state).parts]
    names = {p.name for p in written}
    assert {"quality.json", "chunks.csv", "quality-findings.csv"} <= names, names
    for path in written:
        data = path.read_bytes().decode("utf-8", "replace")
        leaked = [raw for raw in [*RAW, TEXT_PHRASE] if raw in data]
        assert not leaked, f"{path.relative_to(state)} holds {leaked}"
    for result in (first, second):
        dumped = json.dumps(result)
        assert not [raw for raw in [*RAW, TEXT_PHRASE] if raw in dumped]
    assert "card-number: **** **** **** 1111" in Path(first["findings_csv"]).read_text()


def test_neighbour_sample_keeps_ids_and_hashes_only(runs):
    _, _, state, rt = runs
    snapshot = rt.archive.quality_sample("pii-run-1")
    assert snapshot["sample"] and all(set(x) == {"chunk_id", "doc_id", "text_key", "docs", "chunks"}
                                      for x in snapshot["sample"])
    assert all(len(x["text_key"]) == 24 and x["docs"] for x in snapshot["sample"])


def test_later_run_re_embeds_from_the_collection_and_counts_what_is_gone(runs):
    first, second, _, rt = runs
    sample = rt.archive.quality_sample("pii-run-1")["sample"]
    m = second["embeddings"]["metrics"]
    assert second["baseline_run"] == "pii-run-1"
    assert m["neighbour_sample_skipped"] == 1 and m["neighbour_sample"] == len(sample) - 1
    # The re-embedded chunk (stored text, title) lands where its stored vector was: neighbours hold.
    assert m["neighbour_overlap"] >= 0.9
    assert not [f for f in second["findings"] if f["kind"] == "neighbour-shift"]
    assert first["embeddings"]["metrics"].get("neighbour_sample_skipped") is None


def test_re_embedding_rebuilds_what_ingest_embedded(runs):
    """The snapshot holds no text: a sample chunk is embedded again from the collection's text and title, and
    lands on its stored vector; a chunk whose text no longer matches the sample's hash is left out."""
    import numpy as np

    from rag_health.quality import _re_embed

    _, _, _, rt = runs
    entry = next(x for x in rt.archive.quality_sample("pii-run-1")["sample"]
                 if x["doc_id"] == "policies/sanctions-screening.md")
    again = _re_embed(rt.index, rt.embedder, [entry, {**entry, "chunk_id": "gone#0:0000"}])
    stored = rt.index.vectors_for([entry["chunk_id"]])[entry["chunk_id"]]
    assert list(again) == [entry["chunk_id"]] and float(np.dot(again[entry["chunk_id"]], stored)) > 0.999
    assert _re_embed(rt.index, rt.embedder, [{**entry, "text_key": "0" * 24}]) == {}
