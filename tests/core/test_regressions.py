"""Regression tests, one per earlier bug, each named in its docstring ("Regression: <bug>") with the commit that
fixed it. They run the real code: real embedded Chroma (PersistentClient in tmp_path) where the bug was in talking
to Chroma, and small hand-made inputs elsewhere. A tiny deterministic embedder stands in for the model where the
vectors do not matter (the bugs were in batching and filtering, not in embedding)."""

from __future__ import annotations

import numpy as np

from rag_health import store
from rag_health.comparison import RETRIEVAL_TIE, choose_winner
from rag_health.embedding import ModelInfo
from rag_health.probes import Probe, run_probes
from rag_health.store import ChunkIndex

SQLITE_MAX_VARIABLES = 32_766  # SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32


class AxisEmbedder:
    """Texts name the axis they point along ("3"), so every vector is known in advance."""

    info = ModelInfo("axis", 8, 256, "axis-fp")

    def embed(self, texts):
        out = np.zeros((len(texts), self.info.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, int(t) % self.info.dimension] = 1.0
        return out


class QuerySpy:
    """Stands in for the Chroma collection: records each query() call's vectors and n_results, then lets the real
    collection answer it. Everything else goes straight to the collection."""

    def __init__(self, collection):
        self._collection = collection
        self.calls: list[tuple[int, int]] = []

    def query(self, *, query_embeddings, n_results, **kwargs):
        self.calls.append((len(query_embeddings), n_results))
        return self._collection.query(query_embeddings=query_embeddings, n_results=n_results, **kwargs)

    def __getattr__(self, name):
        return getattr(self._collection, name)


def make_index(tmp_path, n_chunks: int, dimension: int = 8, seed: int = 0, name: str = "regression-test"):
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=chromadb.Settings(
        anonymized_telemetry=False))
    index = ChunkIndex(client, name, ModelInfo("random", dimension, 256, "random-fp"))
    vectors = np.random.default_rng(seed).normal(size=(n_chunks, dimension)).astype(np.float32)
    index.add([f"c{i:05d}" for i in range(n_chunks)], vectors, [f"chunk {i}" for i in range(n_chunks)],
              [{"doc_id": f"doc{i % 50}.md", "chunk_index": i} for i in range(n_chunks)])
    return index


# --- (1) Chroma queries under SQLite's variable limit --------------------------------------------------------------


def test_query_past_sqlite_variable_limit_is_split(tmp_path):
    """Regression: Chroma queries with more than ~32k hits in one call (query vectors x n_results) failed with
    "too many SQL variables", because Chroma reads every hit's metadata in one SQLite statement (fixed in 9cf04b5:
    ChunkIndex.query sends the vectors in groups of at most MAX_QUERY_HITS hits). 40 vectors x 1000 results =
    40,000 hits on real embedded Chroma: it answers, split into calls under the limit, with the same neighbours a
    query per vector gives."""
    index = make_index(tmp_path, 1200)
    queries = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    assert len(queries) * 1000 > SQLITE_MAX_VARIABLES
    spy = QuerySpy(index.collection)
    index.collection = spy

    result = index.query(queries, n_results=1000)

    assert len(spy.calls) > 1 and all(n * k <= store.MAX_QUERY_HITS for n, k in spy.calls)
    assert sum(n for n, _ in spy.calls) == 40
    assert len(result["ids"]) == len(result["metadatas"]) == len(result["distances"]) == 40
    assert all(len(ids) == 1000 for ids in result["ids"])
    for i in (0, 17, 39):  # in input order: the groups are merged back without reordering
        alone = spy._collection.query(query_embeddings=queries[i:i + 1], n_results=1000, include=["distances"])
        assert result["ids"][i] == alone["ids"][0]


def test_query_split_follows_the_limit_read_at_call_time(tmp_path, monkeypatch):
    """Regression: the SQLite variable-limit fix (9cf04b5), on a small collection with the limit lowered to 10 hits:
    7 vectors x 3 results go as 3 + 3 + 1 vectors, and the merged answer equals one unsplit Chroma query."""
    index = make_index(tmp_path, 30)
    monkeypatch.setattr(store, "MAX_QUERY_HITS", 10)
    queries = np.random.default_rng(2).normal(size=(7, 8)).astype(np.float32)
    spy = QuerySpy(index.collection)
    index.collection = spy

    result = index.query(queries, n_results=3)

    assert spy.calls == [(3, 3), (3, 3), (1, 3)]
    whole = spy._collection.query(query_embeddings=queries, n_results=3, include=["metadatas", "distances"])
    assert result["ids"] == whole["ids"]
    assert result["metadatas"] == whole["metadatas"]
    assert np.allclose(np.asarray(result["distances"]), np.asarray(whole["distances"]))


# --- (5) MAX_QUERY_HITS bounds every call --------------------------------------------------------------------------


def test_max_query_hits_bounds_every_chroma_call(tmp_path, monkeypatch):
    """Regression: MAX_QUERY_HITS must keep every Chroma call under SQLite's 32,766 variables (9cf04b5). The
    constant is below that limit; a call never carries more hits than it, except that a single vector is always
    sent (when n_results alone exceeds the limit: one vector a call, never zero); and n_results is clamped to the
    collection's size before the split is computed."""
    assert 0 < store.MAX_QUERY_HITS < SQLITE_MAX_VARIABLES
    index = make_index(tmp_path, 12)
    spy = QuerySpy(index.collection)
    index.collection = spy
    queries = np.random.default_rng(3).normal(size=(5, 8)).astype(np.float32)

    monkeypatch.setattr(store, "MAX_QUERY_HITS", 4)
    result = index.query(queries, n_results=8)  # 8 hits per vector > 4: one vector per call
    assert spy.calls == [(1, 8)] * 5 and len(result["ids"]) == 5

    spy.calls.clear()
    monkeypatch.setattr(store, "MAX_QUERY_HITS", 30)
    result = index.query(queries, n_results=500)  # clamped to the 12 chunks held: 2 vectors (24 hits) a call
    assert spy.calls == [(2, 12), (2, 12), (1, 12)]
    assert all(len(ids) == 12 for ids in result["ids"])

    spy.calls.clear()
    monkeypatch.undo()
    index.query(queries, n_results=12)  # the real constant: all five in one call
    assert spy.calls == [(5, 12)]


# --- (2) filter probes grouped by value type ------------------------------------------------------------------------


def test_filter_values_true_1_and_string_1_are_separate_query_groups(tmp_path):
    """Regression: filter probes were grouped by their filters alone, and True == 1 (with one hash) in Python, so
    a probe filtering on flag=1 was queried with the where clause of a flag=True probe (or the reverse) and got the
    other document; Chroma tells them apart (fixed in 9cf04b5: grouped by value type too). On real Chroma, three
    probes with the same query and flag True, 1 and "1" each retrieve only the document with that exact value, in
    three separate queries. The exclusion report must tell them apart too: a document with flag=True is shut out by
    a flag=1 filter, and says so."""
    import chromadb

    emb = AxisEmbedder()
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=chromadb.Settings(
        anonymized_telemetry=False))
    index = ChunkIndex(client, "filter-types", emb.info)
    docs = {"bool.md": True, "int.md": 1, "str.md": "1"}
    index.add([f"{d}#0" for d in docs], emb.embed(["0", "1", "2"]), ["a", "b", "c"],
              [{"doc_id": d, "fm_flag": v} for d, v in docs.items()])
    probes = [Probe(f"p-{d}", "0", (d,), "filters", filters=(("flag", v),)) for d, v in docs.items()]
    probes.append(Probe("int-wants-bool-doc", "0", ("bool.md",), "filters", filters=(("flag", 1),)))
    spy = QuerySpy(index.collection)
    index.collection = spy

    outcomes = run_probes(index, emb, probes, set(docs), top_k=10, chunk_depth=10)

    assert {o.probe.probe_id: o.retrieved for o in outcomes} == {
        "p-bool.md": ("bool.md",), "p-int.md": ("int.md",), "p-str.md": ("str.md",), "int-wants-bool-doc": ("int.md",)}
    assert all(o.rank == 1 for o in outcomes[:3])
    assert len(spy.calls) == 3  # one group per (value, type): True, 1 (two probes), "1"
    assert [o.filter_excluded for o in outcomes[:3]] == [(), (), ()]
    (excluded,) = outcomes[3].filter_excluded
    assert excluded["doc_id"] == "bool.md" and excluded["has"] is True and excluded["wants"] == 1


# --- (3, 4) compare-chunking winner ----------------------------------------------------------------------------------


def config(name: str, quality: float, ndcg: float | None = None) -> dict:
    entry = {"chunking": name, "quality": {"score": quality}}
    if ndcg is not None:
        entry["retrieval"] = {"overall": {"ndcg@10": ndcg}}
    return entry


def test_winner_among_retrieval_ties_only():
    """Regression: compare-chunking's winner among ties on retrieval was taken by quality over ALL configurations,
    so with three or more, one clearly worse on retrieval but with the best quality score won (fixed in 9cf04b5:
    only the configurations within RETRIEVAL_TIE of the best nDCG@10 compete on quality)."""
    half = RETRIEVAL_TIE / 2
    results = [
        config("sentence:200:24", quality=0.50, ndcg=0.80),
        config("markdown:256", quality=0.60, ndcg=0.80 - half),  # tied with the best, better quality
        config("whole", quality=0.99, ndcg=0.80 - 10 * RETRIEVAL_TIE),  # best quality, far behind on retrieval
    ]
    winner, reason = choose_winner(results)
    assert winner == "markdown:256"
    assert f"nDCG@10 within {RETRIEVAL_TIE}" in reason
    assert "against 0.500 for sentence:200:24" in reason and "whole" not in reason

    # four configurations, three tied: the best quality of the three wins, the fourth is out of it
    results.append(config("sentence:128:16", quality=0.70, ndcg=0.80 - half / 2))
    winner, reason = choose_winner(results)
    assert winner == "sentence:128:16"
    assert "0.700 against 0.600 for markdown:256" in reason and "whole" not in reason


def test_winner_without_probes_is_decided_by_quality():
    """Regression: choose_winner with no probes (no retrieval figures, the 9cf04b5 tie rule must not shut anyone
    out): the quality score alone decides, among every configuration, and the reason says there was nothing to
    compare on retrieval."""
    results = [config("sentence:200:24", 0.55), config("markdown:256", 0.81), config("whole", 0.42)]
    winner, reason = choose_winner(results)
    assert winner == "markdown:256"
    assert reason.startswith("no probes to compare retrieval")
    assert "0.810 against 0.550 for sentence:200:24" in reason


def test_clear_retrieval_winner_beats_better_quality():
    """Regression: choose_winner with a clear retrieval winner (9cf04b5 kept this path): nDCG@10 ahead by more
    than RETRIEVAL_TIE wins whatever the quality scores, and the reason names the runner-up on retrieval."""
    results = [
        config("whole", quality=0.99, ndcg=0.40),
        config("sentence:200:24", quality=0.10, ndcg=0.90),
        config("markdown:256", quality=0.95, ndcg=0.90 - 2 * RETRIEVAL_TIE),
    ]
    winner, reason = choose_winner(results)
    assert winner == "sentence:200:24"
    assert reason.startswith("higher nDCG@10 on the probes: 0.900 against 0.880 for markdown:256")

