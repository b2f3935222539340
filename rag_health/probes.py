"""Retrieval probes: load probe sets, run them against the index in batches, rank documents by their best chunk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.retrieval import ProbeRanks
from rag_health.embedding import Embedder
from rag_health.settings import ConfigError
from rag_health.store import ChunkIndex

QUERY_BATCH = 256


@dataclass(frozen=True)
class Probe:
    probe_id: str
    query: str
    relevant: tuple[str, ...]
    set_name: str


@dataclass
class ProbeSet:
    name: str
    path: str
    probes: list[Probe] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def load_probe_set(path: str | Path, name: str | None = None) -> ProbeSet:
    """JSONL, one probe a line: {"id", "query", "relevant": [doc ids]}. Bad lines are reported, the rest load."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"probe file {path} not found")
    probe_set = ProbeSet(name=name or path.stem, path=str(path))
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            probe_id, query, relevant = str(raw["id"]), str(raw["query"]).strip(), raw["relevant"]
            if not query:
                raise ValueError("empty query")
            if isinstance(relevant, str):
                relevant = [relevant]
            if not isinstance(relevant, list) or not relevant:
                raise ValueError("'relevant' must be a non-empty list of doc ids")
            if probe_id in seen:
                raise ValueError(f"duplicate probe id {probe_id!r}")
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            probe_set.errors.append({"file": str(path), "line": number, "reason": reason})
            continue
        seen.add(probe_id)
        probe_set.probes.append(Probe(probe_id, query, tuple(str(r) for r in relevant), probe_set.name))
    return probe_set


def probe_set_from_rows(name: str, rows: list[dict[str, Any]]) -> ProbeSet:
    """A generated probe set (from alert rules or the corpus itself), in the same shape as a JSONL file."""
    return ProbeSet(name=name, path=f"(generated: {name})", probes=[
        Probe(str(r["id"]), str(r["query"]), tuple(r["relevant"]), name) for r in rows])


def unique_set_names(paths: list[Path]) -> list[str]:
    """Set names from file stems, made unique when two files share a stem."""
    names: list[str] = []
    for p in paths:
        base = Path(p).stem
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


@dataclass(frozen=True)
class ProbeOutcome:
    probe: Probe
    retrieved: tuple[str, ...]  # doc ids, best first (top k)
    ranks: tuple[int | None, ...]  # rank of each relevant doc within the depth searched
    relevant_missing: bool

    @property
    def rank(self) -> int | None:
        found = [r for r in self.ranks if r is not None]
        return min(found) if found else None

    def as_ranks(self) -> ProbeRanks:
        return ProbeRanks(self.probe.probe_id, self.probe.set_name, self.ranks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "probe_id": self.probe.probe_id, "set": self.probe.set_name, "query": self.probe.query,
            "relevant": list(self.probe.relevant), "rank": self.rank, "retrieved": list(self.retrieved),
            "relevant_missing": self.relevant_missing,
        }


def run_probes(index: ChunkIndex, embedder: Embedder, probes: list[Probe], indexed_docs: set[str], *,
               top_k: int = 10, chunk_depth: int = 60) -> list[ProbeOutcome]:
    """Embed all queries in batches, query Chroma in batches, collapse chunks to documents.

    When the chunks searched hold fewer than top_k distinct documents (long documents on one topic), those
    probes are searched again deeper, so a document really ranked 8th is not reported as a miss."""
    outcomes: list[ProbeOutcome] = []
    total = index.count()
    if not probes or total == 0:
        return [ProbeOutcome(p, (), tuple(None for _ in p.relevant), not (set(p.relevant) & indexed_docs))
                for p in probes]
    for start in range(0, len(probes), QUERY_BATCH):
        batch = probes[start:start + QUERY_BATCH]
        vectors = embedder.embed([p.query for p in batch])
        rankings = _rank(index, vectors, chunk_depth)
        depth = chunk_depth
        while depth < total:
            short = [i for i, r in enumerate(rankings) if len(r) < top_k]
            if not short:
                break
            depth = min(total, depth * 4)
            for i, ranking in zip(short, _rank(index, vectors[short], depth)):
                rankings[i] = ranking
        for probe, ranking in zip(batch, rankings):
            position = {doc_id: i + 1 for i, doc_id in enumerate(ranking)}
            outcomes.append(ProbeOutcome(
                probe=probe,
                retrieved=tuple(ranking[:top_k]),
                ranks=tuple(position.get(doc_id) for doc_id in probe.relevant),
                relevant_missing=not (set(probe.relevant) & indexed_docs),
            ))
    return outcomes


def _rank(index: ChunkIndex, vectors, depth: int) -> list[list[str]]:
    result = index.query(vectors, n_results=depth)
    return [documents_by_best_chunk(metas) for metas in result["metadatas"]]


def documents_by_best_chunk(metadatas: list[dict[str, Any]]) -> list[str]:
    """Chunks best first → documents best first, each at the rank of its best chunk."""
    ranking: list[str] = []
    seen: set[str] = set()
    for meta in metadatas:
        doc_id = str(meta.get("doc_id"))
        if doc_id not in seen:
            seen.add(doc_id)
            ranking.append(doc_id)
    return ranking
