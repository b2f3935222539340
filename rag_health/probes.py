"""Retrieval probes: load probe sets, run them against the index in batches, rank documents by their best chunk.

A probe: {"id"?, "query", "relevant": [doc ids] or {doc id: grade}, "filters"?: {field: value},
"must_not_retrieve"?: [doc ids], "section"?: "heading"}. Probes sharing the same filters are queried together,
with the filter as a Chroma `where` on the chunk metadata (front-matter `fm_<field>` or manifest `mf_<field>`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from checks import heading_paths
from checks.retrieval import ProbeRanks
from rag_health.embedding import Embedder
from rag_health.errors import ConfigError
from rag_health.store import ChunkIndex

QUERY_BATCH = 256
SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Probe:
    probe_id: str
    query: str
    relevant: tuple[str, ...]
    set_name: str
    grades: tuple[float, ...] = ()  # graded relevance, one per relevant document (empty: binary)
    filters: tuple[tuple[str, Any], ...] = ()  # metadata field -> required value
    must_not_retrieve: tuple[str, ...] = ()
    section: str = ""  # the relevant document's section that should answer (chunk-level metrics)
    kind: str = ""  # how a generated probe was made

    @property
    def key(self) -> str:
        return f"{self.set_name}/{self.probe_id}"


@dataclass
class ProbeSet:
    name: str
    path: str
    probes: list[Probe] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def parse_probe(raw: Any, set_name: str) -> Probe:
    """One probe from its JSON form; ValueError names what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    for key in ("query", "relevant"):
        if key not in raw:
            raise ValueError(f"missing field '{key}'")
    query, relevant = str(raw["query"]).strip(), raw["relevant"]
    if not query:
        raise ValueError("empty query")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query of {len(query):,} characters, over {MAX_QUERY_CHARS:,} (a probe is a question)")
    # Probe files people write often have no ids: one derived from the query is stable while the query is.
    probe_id = str(raw["id"]) if raw.get("id") not in (None, "") else derived_id(query)
    grades: tuple[float, ...] = ()
    if isinstance(relevant, str):
        relevant = [relevant]
    if isinstance(relevant, dict):
        try:
            grades = tuple(float(g) for g in relevant.values())
        except (TypeError, ValueError):
            raise ValueError("'relevant' grades must be numbers") from None
        relevant = list(relevant)
    elif isinstance(raw.get("grades"), dict):
        grades = tuple(float(raw["grades"].get(d, 1)) for d in relevant)
    for doc, grade in zip(relevant, grades):
        if not math.isfinite(grade) or grade < 0:  # NaN made nDCG NaN, and a NaN passes every threshold
            raise ValueError(f"grade of {str(doc)!r} must be a finite number >= 0, got {grade!r}")
    must_not = raw.get("must_not_retrieve") or []
    if isinstance(must_not, str):
        must_not = [must_not]
    if not isinstance(relevant, list) or not (relevant or must_not):
        raise ValueError("'relevant' must be a non-empty list of doc ids (or {doc id: grade})")
    if not isinstance(must_not, list):
        raise ValueError("'must_not_retrieve' must be a list of doc ids")
    filters = raw.get("filters") or {}
    if not isinstance(filters, dict) or not all(isinstance(v, SCALAR) for v in filters.values()):
        raise ValueError("'filters' must map metadata fields to single values")
    return Probe(probe_id, query, tuple(str(r) for r in relevant), set_name, grades,
                 tuple(sorted((str(k), v) for k, v in filters.items())), tuple(str(d) for d in must_not),
                 str(raw.get("section") or ""), str(raw.get("kind") or ""))


def derived_id(query: str) -> str:
    return "q-" + hashlib.blake2b(" ".join(query.lower().split()).encode(), digest_size=5).hexdigest()


def load_probe_set(path: str | Path, name: str | None = None) -> ProbeSet:
    """JSONL, one probe a line. Bad lines are reported with file and line, the rest load; a file from which no
    line loads is a configuration error (it would silently leave its set out of the verdict)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"probe file {path} not found")
    probe_set = ProbeSet(name=name or path.stem, path=str(path))
    seen: set[str] = set()
    for number, line, unreadable in _bounded_lines(path):
        if unreadable:
            probe_set.errors.append({"file": str(path), "line": number, "reason": unreadable})
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            probe = parse_probe(json.loads(line), probe_set.name)
            if probe.probe_id in seen:
                raise ValueError(f"duplicate probe id {probe.probe_id!r}")
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            probe_set.errors.append({"file": str(path), "line": number, "reason": str(exc)})
            continue
        seen.add(probe.probe_id)
        probe_set.probes.append(probe)
    if not probe_set.probes:
        errors = probe_set.errors
        detail = (f"{len(errors)} line(s) rejected, e.g. line {errors[0]['line']}: {errors[0]['reason']}" if errors
                  else "it holds no probe")
        raise ConfigError(f"probe file {path}: no probe could be read ({detail})")
    return probe_set


MAX_LINE_BYTES = 65_536  # a probe line; a 42 MB one once took the process past 4 GB
MAX_QUERY_CHARS = 2_000


def _bounded_lines(path: Path):
    """(line number, text, why it is unreadable) for each line of a probe file, never holding more than
    MAX_LINE_BYTES of one line: a longer line is skipped to its end and named."""
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield number, "", f"line over {MAX_LINE_BYTES:,} bytes, not read"
                continue
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n"), ""
            except UnicodeDecodeError as exc:
                yield number, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"


def probe_rows(probes) -> list[dict[str, Any]]:
    """Probes as the rows probe_set_from_rows reads back (how generated sets travel between stages)."""
    return [{"id": p.probe_id, "query": p.query, "relevant": list(p.relevant)} for p in probes]


def probe_set_from_rows(name: str, rows: list[dict[str, Any]]) -> ProbeSet:
    """A generated probe set (from alert rules or the corpus itself), in the same shape as a JSONL file."""
    return ProbeSet(name=name, path=f"(generated: {name})", probes=[parse_probe(r, name) for r in rows])


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


def where_for(filters: tuple[tuple[str, Any], ...]) -> dict[str, Any] | None:
    """A probe's filters as a Chroma where clause: each field from front-matter or from the manifest."""
    clauses = [{"$or": [{f"fm_{k}": v}, {f"mf_{k}": v}]} for k, v in filters]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass(frozen=True)
class ProbeOutcome:
    probe: Probe
    retrieved: tuple[str, ...]  # doc ids, best first (top k)
    ranks: tuple[int | None, ...]  # rank of each relevant doc within the depth searched
    relevant_missing: bool
    section_rank: int | None = None
    forbidden_ranks: tuple[int | None, ...] = ()
    filter_excluded: tuple[dict[str, Any], ...] = ()  # relevant docs the filter shuts out, and why
    # Cosine similarity between the query and the best chunk of its best-ranked relevant document (None when no
    # relevant document is within the depth searched); top_similarity: the best chunk retrieved at all.
    similarity: float | None = None
    top_similarity: float | None = None

    @property
    def rank(self) -> int | None:
        found = [r for r in self.ranks if r is not None]
        return min(found) if found else None

    def as_ranks(self) -> ProbeRanks:
        return ProbeRanks(self.probe.probe_id, self.probe.set_name, self.ranks, self.probe.grades,
                          self.section_rank, bool(self.probe.section), self.forbidden_ranks)

    def row(self) -> dict[str, Any]:
        """The probe's row in the contract's probes.per_probe."""
        out = {
            "probe_id": self.probe.probe_id, "set": self.probe.set_name, "query": self.probe.query,
            "relevant": list(self.probe.relevant), "rank": self.rank, "retrieved": list(self.retrieved),
            "relevant_missing": self.relevant_missing,
        }
        if self.probe.kind:
            out["kind"] = self.probe.kind
        if self.probe.section:
            out["section"], out["section_rank"] = self.probe.section, self.section_rank
        if self.probe.filters:
            out["filters"] = dict(self.probe.filters)
            out["filter_excluded"] = list(self.filter_excluded)
        if self.probe.must_not_retrieve:
            out["must_not_retrieve"] = list(self.probe.must_not_retrieve)
            out["forbidden_ranks"] = list(self.forbidden_ranks)
        return out


@dataclass
class _Ranking:
    docs: list[str]  # best first, each at its best chunk
    section_hits: dict[str, int] = field(default_factory=dict)  # "doc\x00section path" -> best chunk rank
    similarity: dict[str, float] = field(default_factory=dict)  # doc -> cosine similarity of its best chunk


def run_probes(index: ChunkIndex, embedder: Embedder, probes: list[Probe], indexed_docs: set[str], *,
               top_k: int = 10, chunk_depth: int = 60) -> list[ProbeOutcome]:
    """Embed all queries in batches, query Chroma in batches (one call per batch and filter), collapse chunks
    to documents.

    When the chunks searched hold fewer than top_k distinct documents (long documents on one topic), those
    probes are searched again deeper, so a document really ranked 8th is not reported as a miss."""
    total = index.count()
    if not probes or total == 0:
        return [ProbeOutcome(p, (), tuple(None for _ in p.relevant),
                             bool(p.relevant) and not (set(p.relevant) & indexed_docs),
                             forbidden_ranks=tuple(None for _ in p.must_not_retrieve)) for p in probes]
    by_filter: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(probes):  # True, 1 and 1.0 are equal in Python but not to Chroma: group by type too
        by_filter[tuple((k, type(v).__name__, v) for k, v in p.filters)].append(i)
    vectors = np.zeros((len(probes), embedder.info.dimension), dtype=np.float32)
    for start in range(0, len(probes), QUERY_BATCH):
        vectors[start:start + QUERY_BATCH] = embedder.embed([p.query for p in probes[start:start + QUERY_BATCH]])
    rankings: list[_Ranking | None] = [None] * len(probes)
    for members in by_filter.values():
        where = where_for(probes[members[0]].filters)
        for start in range(0, len(members), QUERY_BATCH):
            batch = members[start:start + QUERY_BATCH]
            found = _rank(index, vectors[batch], chunk_depth, where, [bool(probes[i].section) for i in batch])
            depth = chunk_depth
            while depth < total:
                short = [j for j, r in enumerate(found) if len(r.docs) < top_k]
                if not short:
                    break
                depth = min(total, depth * 4)
                for j, ranking in zip(short, _rank(index, vectors[[batch[j] for j in short]], depth, where,
                                                   [bool(probes[batch[j]].section) for j in short])):
                    found[j] = ranking
            for i, ranking in zip(batch, found):
                rankings[i] = ranking
    outcomes = []
    excluded = _filter_exclusions(index, probes, rankings)
    for i, (probe, ranking) in enumerate(zip(probes, rankings)):
        assert ranking is not None
        position = {doc_id: r + 1 for r, doc_id in enumerate(ranking.docs)}
        ranked_relevant = sorted((position[d], d) for d in probe.relevant if d in position)
        section_rank = None
        if probe.section:
            want = probe.section.lower()
            hits = [rank for key, rank in ranking.section_hits.items()
                    if key.split("\x00", 1)[0] in probe.relevant
                    and any(part.strip().lower() == want for part in key.split("\x00", 1)[1].split(" | "))]
            section_rank = min(hits) if hits else None
        outcomes.append(ProbeOutcome(
            probe=probe,
            retrieved=tuple(ranking.docs[:top_k]),
            ranks=tuple(position.get(doc_id) for doc_id in probe.relevant),
            relevant_missing=bool(probe.relevant) and not (set(probe.relevant) & indexed_docs),
            section_rank=section_rank,
            forbidden_ranks=tuple(position.get(d) for d in probe.must_not_retrieve),
            filter_excluded=tuple(excluded.get(i, ())),
            similarity=ranking.similarity.get(ranked_relevant[0][1]) if ranked_relevant else None,
            top_similarity=ranking.similarity.get(ranking.docs[0]) if ranking.docs else None,
        ))
    return outcomes


def _rank(index: ChunkIndex, vectors, depth: int, where: dict | None = None,
          sections: Sequence[bool] = ()) -> list[_Ranking]:
    """Each query's documents best first (at their best chunk), their similarities, and for the queries flagged in
    `sections` the rank of each section hit. The query asks Chroma for ids and distances only (a chunk id starts
    with its document id, rag_health.ingest.chunk_id): reading every hit's metadata cost about 90% of the query.
    Metadata (headings) is read only for the hits of probes that name a section."""
    result = index.query(vectors, n_results=depth, where=where, include=["distances"])
    wanted = {cid for ids, flagged in zip(result["ids"], sections) if flagged for cid in ids}
    foreign = {cid for ids in result["ids"] for cid in ids if "#" not in cid}  # not written by ingest: ask
    meta_of = index.metadata_for(sorted(wanted | foreign)) if wanted or foreign else {}
    out = []
    for j, (ids, distances) in enumerate(zip(result["ids"], result["distances"])):
        docs = [str((meta_of.get(cid) or {}).get("doc_id")) if cid in foreign else doc_of_chunk(cid) for cid in ids]
        section_hits: dict[str, int] = {}
        similarity: dict[str, float] = {}
        for rank, (cid, doc_id, distance) in enumerate(zip(ids, docs, distances), start=1):
            if j < len(sections) and sections[j]:
                meta = meta_of.get(cid) or {}
                names = heading_paths.shown(str(meta.get("headings") or meta.get("section", "")))
                section_hits.setdefault(f"{doc_id}\x00{names}", rank)
            similarity.setdefault(doc_id, round(1.0 - float(distance), 6))  # cosine space
        out.append(_Ranking(list(dict.fromkeys(docs)), section_hits, similarity))
    return out


def doc_of_chunk(chunk_id: str) -> str:
    """The document a chunk id belongs to: ids are "<doc_id>#<version>:<index>" and a version holds no "#"."""
    return chunk_id.rsplit("#", 1)[0]


def _filter_exclusions(index: ChunkIndex, probes: list[Probe], rankings) -> dict[int, list[dict[str, Any]]]:
    """For filter probes, each relevant document the filter shuts out: the field it lacks or the value it has."""
    wanted = {d for p in probes if p.filters for d in p.relevant}
    if not wanted:
        return {}
    meta_of: dict[str, dict[str, Any]] = {}
    got = index.collection.get(where={"doc_id": {"$in": sorted(wanted)}}, include=["metadatas"])
    for meta in got["metadatas"]:
        meta_of.setdefault(str(meta.get("doc_id")), meta)
    out: dict[int, list[dict[str, Any]]] = {}
    for i, p in enumerate(probes):
        if not p.filters:
            continue
        for doc_id in p.relevant:
            meta = meta_of.get(doc_id)
            if meta is None:
                continue
            for key, value in p.filters:
                has = meta.get(f"fm_{key}", meta.get(f"mf_{key}"))
                if has != value or isinstance(has, bool) != isinstance(value, bool):
                    out.setdefault(i, []).append({
                        "doc_id": doc_id, "field": key, "wants": value, "has": _shown(has),
                        "reason": f"lacks '{key}'" if has in (None, "") else f"has {key}={_shown(has)!r}, not {value!r}"})
    return out


def _shown(value: Any) -> Any:
    """A metadata value quoted in a report: PII in it replaced."""
    from checks.pii import redact

    return redact(value) if isinstance(value, str) else value
