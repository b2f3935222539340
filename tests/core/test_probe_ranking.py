"""Document ranks from chunk hits, checked against hand-built rankings (independent of the metric code)."""

import json

import numpy as np

from rag_health.embedding import ModelInfo
from rag_health.probes import Probe, documents_by_best_chunk, run_probes
from rag_health.store import ChunkIndex


def test_documents_ranked_by_their_best_chunk():
    metas = [{"doc_id": d} for d in ["a", "a", "b", "a", "c", "b", "d"]]
    assert documents_by_best_chunk(metas) == ["a", "b", "c", "d"]


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
