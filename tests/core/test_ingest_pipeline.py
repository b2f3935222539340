"""The ingest's write pipeline: a batch is embedded while the next is read and chunked, and stored by another
thread; the first error anywhere stops it, nothing after it is written, and a rerun converges."""

from __future__ import annotations

import threading

import pytest

from rag_health.ingest import _Pipeline
from tests.support.stages import stage


class _Watched:
    """The session's model, with a hook run inside every embed call."""

    def __init__(self, inner, during_embed):
        self.inner, self.info, self.during_embed = inner, inner.info, during_embed

    def embed(self, texts):
        self.during_embed()
        return self.inner.embed(texts)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def tokenize(self, text):
        return self.inner.tokenize(text)


def _runtime(docs, tmp_path, embedder, **overrides):
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    return build_runtime(load_settings(docs=str(docs), state_dir=str(tmp_path / "state"), write_batch_chunks=1,
                                       **overrides), embedder=embedder)


def test_the_next_document_is_chunked_before_a_batch_is_embedded(small_corpus, tmp_path, embedder, monkeypatch):
    """The first embed call (the first document's batch) waits until a second document has been chunked. Done one
    after the other (read, chunk, embed, store, then the next document) that cannot happen and the wait runs out;
    with the pipeline the reader goes on while the batch is embedded."""
    from rag_health.chunking import Chunker

    second_chunked = threading.Event()
    waited = []

    def during_embed():
        if not waited:
            waited.append(second_chunked.wait(timeout=30))

    rt = _runtime(small_corpus, tmp_path, _Watched(embedder, during_embed))
    split, splits = Chunker.split, []

    def watched_split(self, doc):
        splits.append(doc.doc_id)
        if len(splits) >= 2:
            second_chunked.set()
        return split(self, doc)

    monkeypatch.setattr(Chunker, "split", watched_split)
    result = stage(rt, "ingest")
    assert waited == [True]
    assert sorted(result["added_ids"]) == sorted(p.relative_to(small_corpus).as_posix()
                                                 for p in small_corpus.rglob("*") if p.is_file())


def test_a_store_failure_stops_the_run_keeps_what_was_stored_and_a_rerun_converges(small_corpus, tmp_path,
                                                                                     embedder, monkeypatch):
    from rag_health.store import ChunkIndex

    real_add = ChunkIndex.add
    calls = []

    def failing_add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full while writing the second batch")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(ChunkIndex, "add", failing_add)
    rt = _runtime(small_corpus, tmp_path, embedder)
    with pytest.raises(RuntimeError, match="disk full"):
        stage(rt, "ingest")
    assert len(calls) == 2  # nothing handed over after the failure was written
    assert not [t for t in threading.enumerate() if t.name.startswith("rag-health-ingest")]
    stored = rt.index.ledger()
    assert len(stored) == 1 and all(e.complete for e in stored.values())  # the first batch, whole
    monkeypatch.setattr(ChunkIndex, "add", real_add)
    again = stage(_runtime(small_corpus, tmp_path, embedder), "ingest")
    documents = [p for p in small_corpus.rglob("*") if p.is_file()]
    assert again["errors"] == [] and again["added"] == len(documents) - 1
    fresh = stage(_runtime(small_corpus, tmp_path / "fresh", embedder), "ingest")
    final = _runtime(small_corpus, tmp_path, embedder).index
    assert final.count() == fresh["chunks_embedded"] and len(final.ledger()) == len(documents)


def test_a_reader_failure_stops_the_workers_after_their_batch(small_corpus, tmp_path, embedder, monkeypatch):
    from rag_health.chunking import Chunker

    class Interrupted(BaseException):  # like KeyboardInterrupt: not one document's error, the run's end
        pass

    rt = _runtime(small_corpus, tmp_path, embedder)
    split, seen = Chunker.split, []

    def interrupted_split(self, doc):
        seen.append(doc.doc_id)
        if len(seen) == 3:
            raise Interrupted()
        return split(self, doc)

    monkeypatch.setattr(Chunker, "split", interrupted_split)
    with pytest.raises(Interrupted):
        stage(rt, "ingest")
    assert not [t for t in threading.enumerate() if t.name.startswith("rag-health-ingest")]
    assert len(rt.index.ledger()) <= 2  # at most the two documents handed over before the interruption


def test_pipeline_keeps_order_and_raises_the_first_error():
    out = []
    pipe = _Pipeline([lambda x: x * 10, out.append])
    for i in range(20):
        pipe.put(i)
    pipe.close()
    assert out == [i * 10 for i in range(20)]

    def boom(x):
        if x == 3:
            raise ValueError("batch 3")
        return x

    out.clear()
    pipe = _Pipeline([boom, out.append])
    with pytest.raises(ValueError, match="batch 3"):
        for i in range(50):
            pipe.put(i)
        pipe.close()
    pipe.close(abort=True)  # as ingest does when a hand-over raised
    assert not any(t.is_alive() for t in pipe._threads)
    assert out == [0, 1, 2][:len(out)] and len(out) >= 2  # in order; nothing from the failed batch on
