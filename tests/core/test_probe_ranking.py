"""Document ranks from chunk hits, checked against hand-built rankings (independent of the metric code)."""

import json

import numpy as np

from rag_health.embedding import ModelInfo
from rag_health.probes import Probe, doc_of_chunk, run_probes
from rag_health.store import ChunkIndex


def test_a_chunk_id_names_its_document():
    assert doc_of_chunk("runbooks/kafka-lag.md#0a1b2c3d4e5f6a7b8c:0003") == "runbooks/kafka-lag.md"
    assert doc_of_chunk("notes/issue #12.md#0a1b2c3d4e5f6a7b8c:0000") == "notes/issue #12.md"


def test_probe_ranks_equal_those_read_from_metadata(small_corpus, make_runtime):
    """Ranks from chunk ids (no metadata read) and section ranks from the hits' headings equal a ranking built
    from every hit's stored metadata (documents by their best chunk)."""
    from rag_health.probes import _rank
    from tests.support.stages import stage

    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    index = rt.index
    vectors = rt.embedder.embed(["kafka consumer lag", "chargeback evidence", "card declines processor"])
    fast = _rank(index, vectors, 6, sections=[True, False, True])
    full = index.query(vectors, n_results=6)
    for j, ranking in enumerate(fast):
        by_meta = list(dict.fromkeys(str(m["doc_id"]) for m in full["metadatas"][j]))
        assert ranking.docs == by_meta
        if j != 1:
            first = full["metadatas"][j][0]
            names = str(first.get("headings") or first.get("section", "")).replace(" > ", " | ")
            assert ranking.section_hits[f"{first['doc_id']}\x00{names}"] == 1
    assert fast[1].section_hits == {}


class AxisEmbedder:
    """A tiny fake: texts name a unit axis ("axis:3"), so ranks are known in advance."""

    info = ModelInfo("axis", 16, 256, "axis-fp")

    def embed(self, texts):
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, t in enumerate(texts):
            weights = json.loads(t)
            for axis, w in weights.items():
                out[i, int(axis)] = w
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_deep_search_when_top_chunks_cover_few_documents(tmp_path):
    """Twelve chunks of one long document outrank everything: the relevant document is still found at rank 2."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    emb = AxisEmbedder()
    index = ChunkIndex(client, "axis-test", emb.info)
    texts = [json.dumps({"0": 1.0, "1": 0.01 * i}) for i in range(12)] + [json.dumps({"0": 0.8, "2": 0.6})]
    metas = [{"doc_id": "long.md"} for _ in range(12)] + [{"doc_id": "target.md"}]
    index.add([f"c{i}" for i in range(13)], emb.embed(texts), texts, metas)
    probe = Probe("p", json.dumps({"0": 1.0}), ("target.md",), "s")
    outcome = run_probes(index, emb, [probe], {"long.md", "target.md"}, top_k=10, chunk_depth=4)[0]
    assert outcome.retrieved == ("long.md", "target.md")
    assert outcome.rank == 2
