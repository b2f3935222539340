"""The mass-change gate and sharded ingest, on a real embedded Chroma and the real offline model."""

import os
import shutil
import time

import pytest

from rag_health.ingest import Approval, MassChange, parse_shard, plan_changes, shard_of
from rag_health.ingest import ingest as core_ingest
from rag_health.registry import stages
from rag_health.views import md
from tests.conftest import write_doc
from tests.support.stages import stage

N_DOCS = 20


def ingest(rt, **kw):
    return stage(rt, "ingest", **kw)


def ingest_result(rt, **kw):
    """The typed result, for its artifact and sentences."""
    return stages()["ingest"].run(rt.new_run(), **kw)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "gate-docs"
    for i in range(N_DOCS):
        write_doc(root, f"runbooks/rb-{i:02d}.md", f"# Runbook {i}\nStep {i}: restart the worker pool number {i} "
                                                   "and check the queue depth afterwards.")
    return root


@pytest.fixture
def indexed(corpus, make_runtime):
    rt = make_runtime(corpus)
    first = ingest(rt)
    assert first["added"] == N_DOCS and first["held"] is None
    return rt


def doc_ids(n):
    return [f"runbooks/rb-{i:02d}.md" for i in range(n)]


def delete(corpus, ids):
    for d in ids:
        (corpus / d).unlink()


def snapshot(rt):
    """What the store holds: every chunk id with its content hash, and the notes."""
    return {cid: m["content_hash"] for cid, m in rt.index.iter_metadata()}, rt.index.notes()


def test_empty_folder_is_held_with_one_sentence(indexed, corpus):
    """Regression: an emptied folder used to give one identical error line per document and a green run."""
    before = snapshot(indexed)
    for child in corpus.iterdir():
        shutil.rmtree(child)
    result = ingest_result(indexed)
    assert result.status == "warn" and result.errors == () and result.removed == ()
    assert result.held is not None and sorted(result.held.removed) == doc_ids(N_DOCS)
    assert result.sentences() == [
        f"ingest held back: {N_DOCS} of {N_DOCS} indexed documents would be removed or replaced (100%, over "
        "max_delete_fraction 50%); nothing was written; approve the run in Prefect or rerun with --allow-mass-delete "
        "(warn)"]
    assert snapshot(indexed) == before
    data = ingest(indexed)
    assert data["held"]["indexed"] == N_DOCS and data["held"]["fraction"] == 1.0 and data["held"]["threshold"] == 0.5
    assert data["held"]["replaced_ids"] == [] and data["removed_ids"] == [] and data["status"] == "warn"


def test_empty_folder_is_held_even_at_threshold_one(corpus, make_runtime):
    rt = make_runtime(corpus, max_delete_fraction=1.0)
    ingest(rt)
    delete(corpus, doc_ids(N_DOCS))
    result = ingest_result(rt)
    assert result.held is not None and "the source lists no documents" in result.sentences()[0]
    assert rt.index.count() > 0


def test_deletion_under_the_threshold_proceeds_and_lists_removed_ids(indexed, corpus):
    gone = doc_ids(9)  # 45% of 20, under the default 50%
    delete(corpus, gone)
    result = ingest_result(indexed)
    assert result.held is None and result.status == "pass"
    assert sorted(result.removed) == gone
    assert set(indexed.index.ledger()) == set(doc_ids(N_DOCS)) - set(gone)
    [artifact] = stages()["ingest"].artifacts(result)
    assert artifact.description and "None" not in artifact.markdown
    assert "**Removed** (9)" in artifact.markdown
    assert all(f"- {md(d)}" in artifact.markdown for d in gone)


def test_deletion_over_the_threshold_is_held_additions_too(indexed, corpus):
    """60% gone: nothing removed, and the new document waits too (the index stays the last approved state)."""
    before = snapshot(indexed)
    delete(corpus, doc_ids(12))
    write_doc(corpus, "runbooks/new.md", "# New\nA brand new runbook about webhook retries.")
    result = ingest(indexed)
    assert result["status"] == "warn" and result["held"]["removed_ids"] == doc_ids(12)
    assert result["added_ids"] == [] and result["chunks_embedded"] == 0 and result["errors"] == []
    assert snapshot(indexed) == before


def test_approved_ids_covering_the_plan_proceed(indexed, corpus):
    delete(corpus, doc_ids(12))
    before = snapshot(indexed)
    rt = indexed.new_run()  # a new listing: the runtime lists once per run
    change = plan_changes(rt.source(), rt.index, rt.chunker)
    assert snapshot(indexed) == before  # planning writes nothing
    assert change.holds(None) and sorted(change.doc_ids) == doc_ids(12)
    result = ingest(indexed, approved=Approval.of(change.doc_ids))
    assert result["held"] is None and result["removed_ids"] == doc_ids(12)
    assert sorted(indexed.index.ledger()) == doc_ids(N_DOCS)[12:]


def test_approval_does_not_cover_a_later_deletion(indexed, corpus):
    """The source changed after the human approved: the run holds again instead of removing more."""
    delete(corpus, doc_ids(12))
    rt = indexed.new_run()
    approval = Approval.of(plan_changes(rt.source(), rt.index, rt.chunker).doc_ids)
    assert sorted(approval.doc_ids) == doc_ids(12)
    delete(corpus, ["runbooks/rb-12.md"])
    result = ingest(indexed, approved=approval)
    assert result["held"]["removed_ids"] == doc_ids(13) and result["removed_ids"] == []
    assert len(indexed.index.ledger()) == N_DOCS


def test_allow_all_proceeds(indexed, corpus):
    delete(corpus, doc_ids(N_DOCS))
    result = ingest(indexed, approved=Approval.allow_all())
    assert result["held"] is None and result["removed"] == N_DOCS and indexed.index.count() == 0


def test_replacements_count_towards_the_gate(indexed, corpus):
    before = snapshot(indexed)
    for d in doc_ids(12):
        (corpus / d).write_text("# Rewritten\nEverything in this runbook was replaced by a bulk edit.\n")
    result = ingest(indexed)
    assert result["held"]["replaced_ids"] == doc_ids(12) and result["held"]["removed_ids"] == []
    assert result["changed_ids"] == [] and snapshot(indexed) == before


def test_a_touch_is_not_a_replacement_and_is_read_once(indexed, corpus):
    """Same bytes, new mtime on 60% of the documents: no hold, nothing embedded, each read once (plan cache)."""
    later = time.time() + 10
    for d in doc_ids(12):
        os.utime(corpus / d, (later, later))
    result = ingest(indexed)
    assert result["held"] is None and result["status"] == "pass"
    assert result["read"] == 12 and result["chunks_embedded"] == 0 and result["unchanged"] == N_DOCS
    assert ingest(indexed)["read"] == 0


def test_planning_reads_are_not_repeated_beyond_the_cache(indexed, corpus, monkeypatch):
    """With no room to keep bytes, the writing pass reads again but still writes what the plan allowed."""
    import rag_health.ingest as module

    monkeypatch.setattr(module, "PLAN_CACHE_BYTES", 0)
    (corpus / "runbooks/rb-00.md").write_text("# Rewritten\nOne changed runbook.\n")
    result = ingest(indexed)
    assert result["changed_ids"] == ["runbooks/rb-00.md"] and result["read"] == 2


def test_shard_removes_only_its_own_documents(indexed, corpus):
    gone = doc_ids(6)
    delete(corpus, gone)
    mine = [d for d in gone if shard_of(d, 2) == 0]
    assert mine and len(mine) < len(gone)  # the fixture's ids fall in both shards
    result = ingest(indexed, shard=(0, 2))
    assert result["removed_ids"] == mine and result["shard"] == [0, 2]
    assert result["documents"] == sum(shard_of(d, 2) == 0 for d in doc_ids(N_DOCS)[6:])
    assert set(gone) - set(mine) <= set(indexed.index.ledger())


def _store(rt):
    got = rt.index.collection.get(include=["documents", "metadatas"])
    return {cid: (doc, meta["content_hash"], meta["doc_id"])
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])}


@pytest.mark.slow
def test_sharded_ingest_equals_unsharded(sample_docs_copy, make_runtime):
    whole = make_runtime(sample_docs_copy, collection="whole")
    ingest(whole)
    sharded = make_runtime(sample_docs_copy, collection="sharded")
    results = [ingest(sharded, shard=f"{i}/3") for i in range(3)]
    assert all(r["documents"] for r in results)  # every shard had work on the sample corpus
    assert sum(r["added"] for r in results) == len(whole.index.ledger())
    assert _store(sharded) == _store(whole) and _store(whole)


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("1/4", (1, 4)), (" 3/4 ", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "0/0", "x", "1", "-1/4", "1/x", "1/4/2", ""])
def test_parse_shard_refuses_bad_input(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shard_of_is_stable_and_in_range():
    assert shard_of("runbooks/kafka-lag.md", 4) == shard_of("runbooks/kafka-lag.md", 4)
    assert {shard_of(d, 3) for d in doc_ids(N_DOCS)} == {0, 1, 2}
    assert shard_of("anything", 1) == 0


def test_gate_arithmetic():
    change = MassChange.of(["a", "b"], ["c"], indexed=6, threshold=0.5, listed=4)
    assert change.fraction == 0.5 and not change.over_threshold and change.doc_ids == {"a", "b", "c"}
    over = MassChange.of(["a", "b"], ["c", "d"], indexed=6, threshold=0.5, listed=4)
    assert over.holds(None) and over.holds(Approval.of(["a", "b", "c"]))
    assert not over.holds(Approval.of("abcd")) and not over.holds(Approval.allow_all())
    assert Approval.from_json(Approval.of(["x"]).to_json()) == Approval.of(["x"])
    assert not MassChange.of([], [], indexed=0, threshold=0.0, listed=0).over_threshold


def test_shard_runs_core_ingest_with_a_tuple(corpus, make_runtime):
    rt = make_runtime(corpus)
    result = core_ingest(rt.source(), rt.index, rt.embedder, rt.chunker, shard=(1, 2))
    assert sorted(result.added) == sorted(d for d in doc_ids(N_DOCS) if shard_of(d, 2) == 1)
    with pytest.raises(ValueError, match="shard 2/2"):
        core_ingest(rt.source(), rt.index, rt.embedder, rt.chunker, shard=(2, 2))
