"""The quality stage's data work: one streaming pass over the collection builds the chunk and vector tables, the
vector index supplies each chunk's nearest neighbours (near-duplicates and outliers without a pairwise loop), and
a fixed sample of chunks is compared with the baseline run's neighbours. The checks themselves live in checks/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from checks.chunk_quality import (
    CHUNK_COLUMNS,
    BoilerplateCounter,
    chunk_quality,
    long_word_share,
    near_duplicates,
    text_key,
    word_count,
)
from checks.embedding_quality import anisotropy, embedding_quality, neighbour_overlap, vector_table
from checks.pii import PiiMatch, find_pii, find_secrets, find_sensitive, redact, summary
from checks.quality_score import quality_scores
from checks.result import worst
from rag_health.chunking import embed_text_for, ends_mid_sentence, starts_mid_sentence
from rag_health.drift import sample_key
from rag_health.embedding import Embedder
from rag_health.results import CheckSummary, QualityResult
from rag_health.store import ChunkIndex, ChunkRecord

# The worst_chunks rows: the chunk table's identifying columns (checks.chunk_quality.CHUNK_COLUMNS) and what shows
# why a chunk scored low.
WORST_CHUNK_COLUMNS = (*CHUNK_COLUMNS[:3], "score", "n_tokens", "n_words", "section", "split_blocks",
                       "starts_mid_sentence", "ends_mid_sentence")

NEIGHBOURS = 10  # nearest chunks fetched per chunk (besides itself)
OUTLIER_NEIGHBOURS = 5  # a chunk's "neighbour similarity" is its mean cosine to this many nearest chunks
SAMPLE_DEPTH = 40  # extra neighbours fetched for sample chunks, since their own document's chunks are skipped


@dataclass
class ChunkScan:
    table: pd.DataFrame
    vectors: np.ndarray
    boilerplate: BoilerplateCounter = field(default_factory=BoilerplateCounter)


def scan_collection(index: ChunkIndex, required_metadata: list[str]) -> ChunkScan:
    """One pass over the collection, page by page: per-chunk figures (token counts come from ingest, never
    recounted) and the vectors as one float32 array. Texts are hashed and dropped, never kept; personal data is
    recorded only as redacted excerpts (the `pii` column), and the boilerplate counter sees redacted lines."""
    rows: list[dict[str, Any]] = []
    pages: list[np.ndarray] = []
    counter = BoilerplateCounter()
    for records, vectors in index.iter_chunks(with_embeddings=True):
        for r in records:
            found, secrets = find_pii(r.text), find_secrets(r.text)
            named = _named_pii(r.doc_id)
            rows.append(_chunk_row(r, required_metadata, found, secrets, named))
            sensitive = [m for m in found if all(m.end <= s.start or m.start >= s.end for s in secrets)] + secrets
            counter.add(r.chunk_id, r.doc_id, redact(r.text, sensitive) if sensitive else r.text)
        pages.append(np.asarray(vectors, dtype=np.float32))
    table = pd.DataFrame(rows)
    dim = index.model.dimension
    vectors = np.vstack(pages) if pages else np.zeros((0, dim), dtype=np.float32)
    return ChunkScan(table, vectors, counter)


@lru_cache(maxsize=4096)
def _named_pii(doc_id: str) -> str:
    """Personal data in a document's file name, which every report and chunk id repeats: "in the file name:
    card-number: **** **** **** 1111"; "" when there is none."""
    found = find_pii(doc_id)
    return f"in the file name: {summary(found)}" if found else ""


def _chunk_row(r: ChunkRecord, required_metadata: list[str], found: list[PiiMatch],
               secrets: Sequence[PiiMatch] = (), named: str = "") -> dict[str, Any]:
    """A chunk's row of the chunk table: figures, flags and hashes, and no text beyond its (redacted) section."""
    m, text = r.metadata, r.text
    missing = [f for f in required_metadata
               if m.get(f"fm_{f}") in (None, "") and m.get(f"mf_{f}") in (None, "") and m.get(f) in (None, "")]
    return {
        "chunk_id": r.chunk_id, "doc_id": r.doc_id, "chunk_index": int(m.get("chunk_index", 0)),
        "n_chars": len(text.strip()), "n_tokens": int(m.get("n_tokens", 0)), "n_words": word_count(text),
        "ends_mid_sentence": bool(m["ends_mid_sentence"]) if "ends_mid_sentence" in m else ends_mid_sentence(text),
        "starts_mid_sentence": bool(m["starts_mid_sentence"]) if "starts_mid_sentence" in m
        else starts_mid_sentence(text),
        "text_key": text_key(text), "section": redact(str(m.get("section", ""))),
        "heading_lost": bool(m.get("heading_lost", False)), "split_blocks": str(m.get("split_blocks", "")),
        "structure_known": bool(m.get("structure_known", False)), "missing_metadata": ", ".join(missing),
        "model_fingerprint": str(m.get("model_fingerprint", "")), "chunker": str(m.get("chunker", "")),
        "pii": "; ".join(p for p in (summary(found), named) if p), "secret": summary(list(secrets)),
        "long_word_share": round(long_word_share(text), 4),
    }


def nearest_neighbours(index: ChunkIndex, chunk_ids: list[str], vectors: np.ndarray,
                       k: int = NEIGHBOURS) -> tuple[list[list[str]], list[list[float]]]:
    """The k nearest other chunks of every chunk, from the collection's own HNSW index in batched queries."""
    ids: list[list[str]] = [[] for _ in chunk_ids]
    sims: list[list[float]] = [[] for _ in chunk_ids]
    usable = np.where(np.isfinite(vectors).all(axis=1) & (np.abs(vectors).sum(axis=1) > 0))[0]
    for start in range(0, len(usable), 500):
        rows = usable[start:start + 500]
        found, distances = index.nearest(vectors[rows], k + 1)
        for row, got, dist in zip(rows, found, distances):
            pairs = [(g, 1.0 - float(d)) for g, d in zip(got, dist) if g != chunk_ids[row]][:k]
            ids[row] = [g for g, _ in pairs]
            sims[row] = [s for _, s in pairs]
    return ids, sims


def sample_neighbours(index: ChunkIndex, embedder: Embedder, sample: list[dict[str, Any]],
                      vectors_by_id: dict[str, np.ndarray], k: int) -> dict[str, dict[str, list[str]]]:
    """Top-k neighbour chunks from other documents for each sample chunk: their documents and text keys. A
    sample chunk with a usable stored vector (vectors_by_id) uses it; any other is embedded again from its text
    and metadata as the collection holds them now. A chunk gone from the collection, or whose text no longer
    matches the sample's text key, is left out (the caller counts it as skipped)."""
    vectors = {c: v for c, v in vectors_by_id.items()}
    vectors.update(_re_embed(index, embedder, [s for s in sample if s["chunk_id"] not in vectors_by_id]))
    usable = [s for s in sample if s["chunk_id"] in vectors]
    if not usable:
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    query = np.vstack([vectors[s["chunk_id"]] for s in usable]).astype(np.float32)
    result = index.query(query, n_results=k + SAMPLE_DEPTH, include=["metadatas", "documents"])
    for s, metas, docs in zip(usable, result["metadatas"], result["documents"]):
        others = [(str(m.get("doc_id")), text_key(d or "")) for m, d in zip(metas, docs)
                  if str(m.get("doc_id")) != s["doc_id"]][:k]
        out[s["chunk_id"]] = {"docs": [d for d, _ in others], "chunks": [c for _, c in others]}
    return out


def _re_embed(index: ChunkIndex, embedder: Embedder, sample: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Vectors for sample chunks embedded again, from the text, title and section the collection holds for them
    (the snapshot keeps no text). Chunks no longer there, or whose text changed, get none."""
    if not sample:
        return {}
    got = index.collection.get(ids=[s["chunk_id"] for s in sample], include=["documents", "metadatas"])
    stored = {c: (d or "", m or {}) for c, d, m in zip(got["ids"], got["documents"], got["metadatas"])}
    ids, texts = [], []
    for s in sample:
        if s["chunk_id"] not in stored:
            continue
        text, meta = stored[s["chunk_id"]]
        if s.get("text_key") is not None and text_key(text) != s["text_key"]:
            continue
        section = str(meta.get("section", "")) if str(meta.get("chunker", "")).startswith("markdown") else ""
        ids.append(s["chunk_id"])
        texts.append(embed_text_for(str(meta.get("title", "")), text, section))
    return dict(zip(ids, embedder.embed(texts))) if texts else {}


def choose_sample(table: pd.DataFrame, size: int) -> list[int]:
    """Row positions of a sample chosen by chunk-id hash: the same chunks on every run over the same index."""
    if table.empty:
        return []
    # A chunk whose id holds PII (a card number in its file name) is never sampled: the sample is stored with the
    # run, and stored ids are redacted, so it could never be looked up again.
    named = {d for d in table["doc_id"].unique() if find_sensitive(str(d))} if "doc_id" in table else set()
    keys = [sample_key(c) if d not in named else "\uffff"
            for c, d in zip(table["chunk_id"], table["doc_id"] if "doc_id" in table else table["chunk_id"])]
    order = np.argsort(keys, kind="stable")
    return [int(i) for i in order if keys[i] != "\uffff"][:size]


def evaluate(index: ChunkIndex, embedder: Embedder, settings, *, baseline: dict[str, Any] | None = None,
             required_metadata: list[str] | None = None) -> tuple[QualityResult, dict[str, Any], pd.DataFrame]:
    """Score the collection. Returns (the stage result, this run's quality snapshot for later baselines,
    the per-chunk table with scores)."""
    s = settings
    required = list(required_metadata if required_metadata is not None else s.effective_required_metadata())
    scan = scan_collection(index, required)
    t = scan.table
    if t.empty:
        return _empty_result(embedder, required), {}, t
    _annotate(index, scan, s)
    aniso = anisotropy(scan.vectors)
    chunk_result = chunk_quality(t, embedder.info.max_tokens, max_overflow_fraction=s.max_overflow_fraction,
                                 max_mid_sentence_fraction=s.max_mid_sentence_fraction,
                                 min_chunk_words=s.min_chunk_words, max_fraction=s.max_finding_fraction)
    vector_result = _embedding_check(index, embedder, scan, s, baseline, aniso)
    items = list(chunk_result.items) + list(vector_result.items)
    score, documents, chunk_scores = quality_scores(t[["chunk_id", "doc_id"]], items)
    chunk_ids = t["chunk_id"].tolist()
    t["score"] = [chunk_scores[c] for c in chunk_ids]
    items.sort(key=lambda i: (chunk_scores.get(i.chunk_id, 1.0), -i.penalty, i.doc_id, i.chunk_id, i.kind.value))
    by_kind = pd.Series([f.kind.value for f in items], dtype=str).value_counts().to_dict() if items else {}
    result = QualityResult(
        status=worst(chunk_result.status, vector_result.status),
        score=score,
        tokens_lost=int(chunk_result.metrics.get("tokens_lost", 0)),
        documents=tuple(documents),
        findings=tuple(items[:s.max_quality_findings]),
        findings_total=len(items),
        findings_omitted=max(0, len(items) - s.max_quality_findings),
        findings_by_kind=dict(sorted(by_kind.items())),
        chunks=CheckSummary.of(chunk_result),
        embeddings=CheckSummary.of(vector_result),
        required_metadata=tuple(required),
        worst_chunks=tuple(json.loads(t.sort_values(["score", "n_tokens"], ascending=[True, False]).head(20)[
            list(WORST_CHUNK_COLUMNS)].to_json(orient="records"))),
        all_findings=tuple(items),
    )
    return result, _snapshot(index, embedder, scan, score, aniso, s), t


def _empty_result(embedder: Embedder, required: list[str]) -> QualityResult:
    """An empty index: both checks say so (and fail) on their empty tables."""
    empty = chunk_quality(pd.DataFrame(columns=list(CHUNK_COLUMNS)), embedder.info.max_tokens)
    no_vectors = embedding_quality(pd.DataFrame(), embedder.info.dimension)
    return QualityResult(
        status=worst(empty.status, no_vectors.status), score=0.0, tokens_lost=0, documents=(), findings=(),
        findings_total=0, findings_omitted=0, findings_by_kind={}, chunks=CheckSummary.of(empty),
        embeddings=CheckSummary.of(no_vectors), required_metadata=tuple(required), worst_chunks=())


def _annotate(index: ChunkIndex, scan: ChunkScan, s) -> None:
    """Add the columns that need the whole collection: near-duplicates and neighbour similarity (from the vector
    index) and boilerplate shares."""
    t = scan.table
    chunk_ids = t["chunk_id"].tolist()
    neighbour_ids, neighbour_sims = nearest_neighbours(index, chunk_ids, scan.vectors)
    near = near_duplicates(chunk_ids, t["doc_id"].tolist(), t["text_key"].tolist(), neighbour_ids, neighbour_sims,
                           s.near_duplicate_threshold)
    t["near_duplicate_of"] = [near.get(c, ("", 0.0))[0] for c in chunk_ids]
    t["near_duplicate_cosine"] = [near.get(c, ("", np.nan))[1] for c in chunk_ids]
    shares = scan.boilerplate.shares(t["doc_id"].nunique(), s.boilerplate_min_documents, s.boilerplate_min_fraction)
    t["boilerplate_share"] = [shares.get(c, (0.0, "", 0))[0] for c in chunk_ids]
    t["boilerplate_example"] = [shares.get(c, (0.0, "", 0))[1] for c in chunk_ids]  # from redacted lines
    t["boilerplate_documents"] = [shares.get(c, (0.0, "", 0))[2] for c in chunk_ids]
    t["neighbour_similarity"] = [float(np.mean(x[:OUTLIER_NEIGHBOURS])) if x else np.nan for x in neighbour_sims]


def _embedding_check(index: ChunkIndex, embedder: Embedder, scan: ChunkScan, s, baseline: dict[str, Any] | None,
                     aniso: float | None):
    """The vector table's check, with anisotropy and neighbour stability against the baseline run's snapshot."""
    t = scan.table
    chunk_ids = t["chunk_id"].tolist()
    fingerprint = embedder.info.fingerprint
    same_model = (baseline or {}).get("model_fingerprint") == fingerprint
    overlaps, skipped = None, None
    if baseline and baseline.get("sample"):
        sample = baseline["sample"]
        current = sample_neighbours(index, embedder, sample, _stored_vectors(scan, sample, fingerprint, same_model),
                                    s.neighbour_k)
        # The baseline's neighbour documents were stored redacted (archive.dumps): compared in that form.
        current = {c: {**v, "docs": [redact(d) for d in v["docs"]]} for c, v in current.items()}
        overlaps = neighbour_overlap(sample, current)
        skipped = len(sample) - len(overlaps)
    vt = vector_table(scan.vectors, chunk_ids, t["text_key"].tolist(), t["model_fingerprint"].tolist(),
                      t["doc_id"].tolist(), t["neighbour_similarity"].tolist())
    baseline_anisotropy = (baseline or {}).get("anisotropy")
    return embedding_quality(
        vt, embedder.info.dimension, fingerprint, anisotropy_now=aniso,
        anisotropy_baseline=baseline_anisotropy if same_model else None,
        other_model_anisotropy=baseline_anisotropy if baseline and not same_model else None, overlaps=overlaps,
        outlier_z=s.outlier_z, min_neighbour_overlap=s.min_neighbour_overlap,
        max_anisotropy_change=s.max_anisotropy_change, max_fraction=s.max_finding_fraction, sample_skipped=skipped)


def _stored_vectors(scan: ChunkScan, sample: list[dict[str, Any]], fingerprint: str,
                    same_model: bool) -> dict[str, np.ndarray]:
    """The stored vectors of the baseline's sample chunks that can be compared as they are: the chunk is still
    in the collection with the same text and was written by this model (or, unmarked, the baseline was)."""
    t = scan.table
    row_of = {c: i for i, c in enumerate(t["chunk_id"])}
    out: dict[str, np.ndarray] = {}
    for x in sample:
        row = row_of.get(x["chunk_id"])
        if row is None or x.get("text_key") not in (None, t["text_key"].iat[row]):
            continue
        stored_by = t["model_fingerprint"].iat[row]
        if stored_by == fingerprint or stored_by == "" and same_model:
            out[x["chunk_id"]] = scan.vectors[row]
    return out


def _snapshot(index: ChunkIndex, embedder: Embedder, scan: ChunkScan, score: float, aniso: float | None,
              s) -> dict[str, Any]:
    """What later runs compare with: anisotropy, the model, and a fixed sample of chunks with their neighbours.
    Sample chunks are named by id, document and text hash; no text and no title is stored (a later run that
    must embed one again reads it from the collection)."""
    t = scan.table
    positions = choose_sample(t, s.neighbour_sample)
    sample = [{"chunk_id": r.chunk_id, "doc_id": r.doc_id, "text_key": r.text_key}
              for r in t.iloc[positions].itertuples(index=False)]
    vectors_by_id = {x["chunk_id"]: scan.vectors[p] for p, x in zip(positions, sample)}
    current = sample_neighbours(index, embedder, sample, vectors_by_id, s.neighbour_k)
    for x in sample:
        x.update(current.get(x["chunk_id"], {"docs": [], "chunks": []}))
    return {
        "anisotropy": aniso, "model_fingerprint": embedder.info.fingerprint,
        "model_name": embedder.info.name, "chunker": sorted(set(t["chunker"])), "score": score, "sample": sample,
    }
