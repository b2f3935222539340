"""Chunk quality: what chunking did to the text the assistant will be shown, one finding per chunk and problem.

Finding kinds (each with the score penalty it costs its chunk, see checks.quality_score):
  token-overflow       the chunk is longer than the model's window; the tokens past it are never embedded
  empty-chunk          no text at all
  tiny-chunk           fewer words than min_chunk_words: too little context to be retrieved for anything
  starts-mid-sentence  opens inside a sentence (the sentence's start is in another chunk)
  ends-mid-sentence    stops inside a sentence
  duplicate-chunk      same text (case and spacing aside) as an earlier chunk
  near-duplicate       vector within near_duplicate_threshold cosine of a chunk of another document
  boilerplate          lines repeated across many documents (headers, footers, disclaimers) make up the chunk
  code-block-split / table-split / step-split
                       a fenced code block, a table or a numbered step is cut across chunks
  lost-heading         continues a section whose heading is neither in its text nor in its embedding
  missing-metadata     a required metadata field is absent, so metadata-filtered queries never return it
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from checks.expectations import validate_frame
from checks.result import CheckResult, worst

CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_index", "n_chars", "n_tokens", "ends_mid_sentence")
# Share of chunks with a finding of each kind above which the stage warns (overflow has its own fail line).
DEFAULT_MAX_FRACTION: dict[str, float] = {
    "token-overflow": 0.0,
    "tiny-chunk": 0.05,
    "starts-mid-sentence": 0.5,
    "ends-mid-sentence": 0.5,
    "duplicate-chunk": 0.02,
    "near-duplicate": 0.05,
    "boilerplate": 0.05,
    "structure-split": 0.1,
    "lost-heading": 0.5,
    "missing-metadata": 0.0,
}
PENALTY: dict[str, float] = {
    "empty-chunk": 1.0,
    "token-overflow": 0.3,  # plus up to 0.7 more in proportion to the share of the chunk that is lost
    "tiny-chunk": 0.4,
    "starts-mid-sentence": 0.1,
    "ends-mid-sentence": 0.1,
    "duplicate-chunk": 0.5,
    "near-duplicate": 0.3,
    "boilerplate": 0.5,  # times the share of the chunk that is boilerplate
    "code-block-split": 0.3,
    "table-split": 0.3,
    "step-split": 0.3,
    "lost-heading": 0.1,
    "missing-metadata": 0.3,
}
SAME_VECTOR = 1 - 1e-6
BOILERPLATE_MIN_SHARE = 0.2  # a chunk is reported when at least this share of its text is boilerplate
_SPLIT_KINDS = {"code": "code-block-split", "table": "table-split", "step": "step-split"}
_WORD = re.compile(r"\w+")
_SKIP_LINE = re.compile(r"^\s*(#|\|?\s*:?-{3,}|```|~~~)")


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def text_key(text: str) -> str:
    """Identity of a chunk's text for exact-duplicate detection: case and whitespace do not count."""
    norm = normalise(text)
    return hashlib.blake2b(norm.encode(), digest_size=12).hexdigest() if norm else ""


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


class BoilerplateCounter:
    """Counts, in one streaming pass, in how many documents each line appears; a line repeated across enough
    documents is boilerplate. Keeps only 8-byte line hashes per chunk, never the texts."""

    MIN_WORDS = 4  # shorter lines ("Owner: x", "Steps") are structure, not boilerplate

    def __init__(self) -> None:
        self._docs_per_line: dict[int, set[str]] = defaultdict(set)
        self._example: dict[int, str] = {}
        self._chunks: dict[str, tuple[list[tuple[int, int]], int]] = {}

    def add(self, chunk_id: str, doc_id: str, text: str) -> None:
        lines = []
        for line in text.splitlines():
            if _SKIP_LINE.match(line) or len(_WORD.findall(line)) < self.MIN_WORDS:
                continue
            norm = re.sub(r"\d+", "0", normalise(line.strip("|*_>- \t")))
            h = int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=8).digest(), "big")
            self._docs_per_line[h].add(doc_id)
            self._example.setdefault(h, line.strip()[:100])
            lines.append((h, len(line.strip())))
        self._chunks[chunk_id] = (lines, max(1, len(text.strip())))

    def shares(self, n_documents: int, min_documents: int, min_fraction: float) -> dict[str, tuple[float, str, int]]:
        """chunk id -> (share of its characters that are boilerplate, an example line, in how many documents)."""
        threshold = max(min_documents, int(np.ceil(min_fraction * n_documents)))
        common = {h: len(d) for h, d in self._docs_per_line.items() if len(d) >= threshold}
        out: dict[str, tuple[float, str, int]] = {}
        if not common:
            return out
        for chunk_id, (lines, size) in self._chunks.items():
            hits = [(h, n) for h, n in lines if h in common]
            if hits:
                top = max(hits, key=lambda hn: common[hn[0]])[0]
                out[chunk_id] = (min(1.0, sum(n for _, n in hits) / size), self._example[top], common[top])
        return out


def near_duplicates(chunk_ids: Sequence[str], doc_ids: Sequence[str], text_keys: Sequence[str],
                    neighbour_ids: Sequence[Sequence[str]], neighbour_sims: Sequence[Sequence[float]],
                    threshold: float) -> dict[str, tuple[str, float]]:
    """chunk id -> (its nearest chunk of another document at or above `threshold` cosine, that cosine).
    Neighbours come from the vector index (k nearest per chunk), so this is linear in the number of chunks.
    Both chunks of a pair are reported (each document's owner has to act); exact copies are duplicate-chunk."""
    position = {cid: i for i, cid in enumerate(chunk_ids)}
    out: dict[str, tuple[str, float]] = {}
    for i, cid in enumerate(chunk_ids):
        for other, sim in zip(neighbour_ids[i], neighbour_sims[i]):
            j = position.get(other)
            if j is None or not sim >= threshold or doc_ids[j] == doc_ids[i]:  # NaN never qualifies
                continue
            if text_keys[j] == text_keys[i] and text_keys[i] or sim >= SAME_VECTOR:
                continue  # an exact copy (duplicate-chunk) or one vector for two texts (shared-vector)
            out[cid] = (other, float(sim))
            break
    return out


def chunk_quality(table: pd.DataFrame, max_tokens: int, *, max_overflow_fraction: float = 0.05,
                  max_mid_sentence_fraction: float = 0.5, min_chunk_words: int = 12,
                  max_fraction: Mapping[str, float] | None = None) -> CheckResult:
    """table: one row per chunk. Required: CHUNK_COLUMNS. Optional (a finding kind is checked when its columns
    are present): n_words, starts_mid_sentence, text_key, near_duplicate_of/near_duplicate_cosine,
    boilerplate_share/boilerplate_example/boilerplate_documents, split_blocks, heading_lost, section,
    missing_metadata. Token counts include the model's special tokens and the title it embeds."""
    missing = [c for c in CHUNK_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"chunk table lacks columns {missing}")
    if table.empty:
        return CheckResult("chunk-quality", "fail", {"chunks": 0}, findings=("the index holds no chunks",))
    limits = {**DEFAULT_MAX_FRACTION, "ends-mid-sentence": max_mid_sentence_fraction,
              "starts-mid-sentence": max_mid_sentence_fraction, **(max_fraction or {})}
    t = _with_flags(table.reset_index(drop=True), max_tokens, min_chunk_words)

    import great_expectations as gx

    E = gx.expectations

    def share(column: str, kind: str, description: str, value_set=(False,)):
        return (E.ExpectColumnValuesToBeInSet(column=column, value_set=list(value_set),
                                              mostly=max(0.0, 1.0 - limits[kind])),
                "warn", f"{description} (at most {limits[kind]:.0%} of chunks)")

    expectations = [
        (E.ExpectColumnValuesToNotBeNull(column="chunk_id"), "fail", "every chunk has an id"),
        (E.ExpectColumnValuesToBeUnique(column="chunk_id"), "fail", "chunk ids are unique"),
        (E.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1), "fail", "no empty chunk"),
        (E.ExpectColumnValuesToBeBetween(column="tokens_lost", max_value=0), "warn",
         f"every chunk fits the model's {max_tokens}-token window"),
        (E.ExpectColumnValuesToBeBetween(column="tokens_lost", max_value=0,
                                         mostly=max(0.0, 1.0 - max_overflow_fraction)), "fail",
         f"at most {max_overflow_fraction:.0%} of chunks overflow the window"),
        share("is_tiny", "tiny-chunk", f"chunks have at least {min_chunk_words} words"),
        share("starts_mid_sentence", "starts-mid-sentence", "chunks start at a sentence boundary"),
        share("ends_mid_sentence", "ends-mid-sentence", "chunks end at a sentence boundary"),
        share("is_duplicate", "duplicate-chunk", "no chunk repeats another's text"),
        share("is_near_duplicate", "near-duplicate", "no chunk nearly duplicates one of another document"),
        share("is_boilerplate", "boilerplate", f"chunks are not {BOILERPLATE_MIN_SHARE:.0%}+ boilerplate"),
        share("splits_block", "structure-split", "code blocks, tables and numbered steps are not cut"),
        share("heading_lost", "lost-heading", "chunks keep their section heading"),
        share("lacks_metadata", "missing-metadata", "chunks carry the required metadata fields"),
    ]
    outcomes = validate_frame(t, "chunk-quality", expectations)
    items = list(_findings(t, max_tokens, min_chunk_words))
    tokens = t["n_tokens"].astype(int)
    n = len(t)
    counts = pd.Series([i["kind"] for i in items]).value_counts().to_dict() if items else {}
    metrics = {
        "chunks": int(n),
        "documents": int(t["doc_id"].nunique()),
        "tokens_mean": round(float(tokens.mean()), 1),
        "tokens_p95": int(tokens.quantile(0.95)),
        "tokens_max": int(tokens.max()),
        "max_tokens": int(max_tokens),
        "overflow_chunks": int((t["tokens_lost"] > 0).sum()),
        "overflow_fraction": round(float((t["tokens_lost"] > 0).mean()), 4),
        "tokens_lost": int(t["tokens_lost"].sum()),
        "empty_chunks": int((t["n_chars"].astype(int) < 1).sum()),
        "duplicate_ids": int(t.loc[t["chunk_id"].duplicated(keep=False), "chunk_id"].nunique()),
        "tiny_chunks": int(t["is_tiny"].sum()),
        "mid_sentence_fraction": round(float(t["ends_mid_sentence"].mean()), 4),
        "starts_mid_sentence_fraction": round(float(t["starts_mid_sentence"].mean()), 4),
        "duplicate_chunks": int(t["is_duplicate"].sum()),
        "near_duplicate_chunks": int(t["is_near_duplicate"].sum()),
        "boilerplate_chunks": int(t["is_boilerplate"].sum()),
        "structure_split_chunks": int(t["splits_block"].sum()),
        "lost_heading_chunks": int(t["heading_lost"].sum()),
        "missing_metadata_chunks": int(t["lacks_metadata"].sum()),
        "structure_unknown_chunks": int((~t["structure_known"]).sum()),
        "findings_by_kind": {k: int(v) for k, v in sorted(counts.items())},
    }
    status = worst(*(o.severity for o in outcomes if not o.success))
    findings = tuple(f"{o.description}: {o.unexpected_count} of {n} chunk(s) do not ({o.severity})"
                     for o in outcomes if not o.success)
    return CheckResult("chunk-quality", status, metrics, tuple(items), findings)


def _with_flags(t: pd.DataFrame, max_tokens: int, min_chunk_words: int) -> pd.DataFrame:
    def col(name: str, default: Any) -> pd.Series:
        return t[name] if name in t.columns else pd.Series([default] * len(t), index=t.index)

    t = t.copy()
    t["n_chars"] = t["n_chars"].astype(int)
    t["tokens_lost"] = (t["n_tokens"].astype(int) - max_tokens).clip(lower=0)
    t["n_words"] = col("n_words", min_chunk_words).astype(int)
    t["is_tiny"] = (t["n_chars"] > 0) & (t["n_words"] < min_chunk_words)
    t["ends_mid_sentence"] = t["ends_mid_sentence"].astype(bool)
    t["starts_mid_sentence"] = col("starts_mid_sentence", False).astype(bool)
    keys = col("text_key", "").fillna("").astype(str)
    # Every copy names another copy: which one is authoritative is for the documents' owners to say.
    members: dict[str, list[str]] = defaultdict(list)
    for k, cid in zip(keys, t["chunk_id"]):
        if k:
            members[k].append(cid)
    t["duplicate_of"] = [next((o for o in members.get(k, []) if o != cid), "") if k else ""
                         for k, cid in zip(keys, t["chunk_id"])]
    t["is_duplicate"] = t["duplicate_of"] != ""
    t["near_duplicate_of"] = col("near_duplicate_of", "").fillna("").astype(str)
    t["near_duplicate_cosine"] = col("near_duplicate_cosine", float("nan")).astype(float)
    t["boilerplate_example"] = col("boilerplate_example", "").fillna("").astype(str)
    t["boilerplate_documents"] = col("boilerplate_documents", 0).fillna(0).astype(int)
    t["section"] = col("section", "").fillna("").astype(str)
    t["is_near_duplicate"] = t["near_duplicate_of"] != ""
    t["boilerplate_share"] = col("boilerplate_share", 0.0).fillna(0.0).astype(float)
    t["is_boilerplate"] = t["boilerplate_share"] >= BOILERPLATE_MIN_SHARE
    t["split_blocks"] = col("split_blocks", "").fillna("").astype(str)
    t["splits_block"] = t["split_blocks"] != ""
    t["heading_lost"] = col("heading_lost", False).fillna(False).astype(bool)
    t["structure_known"] = col("structure_known", True).fillna(False).astype(bool)
    t["missing_metadata"] = col("missing_metadata", "").fillna("").astype(str)
    t["lacks_metadata"] = t["missing_metadata"] != ""
    return t


def _findings(t: pd.DataFrame, max_tokens: int, min_chunk_words: int):
    for r in t.itertuples(index=False):
        def item(kind: str, detail: str, penalty: float | None = None, r=r) -> dict[str, Any]:
            return {"doc_id": r.doc_id, "chunk_id": r.chunk_id, "kind": kind, "detail": detail,
                    "chunk_index": int(r.chunk_index), "penalty": round(PENALTY[kind] if penalty is None else penalty, 4)}

        if r.n_chars < 1:
            yield item("empty-chunk", "chunk has no text")
            continue
        if r.tokens_lost > 0:
            share = r.tokens_lost / max(1, int(r.n_tokens))
            yield item("token-overflow", f"{int(r.n_tokens)} tokens: the last {int(r.tokens_lost)} ({share:.0%}) are "
                       f"past the model's {max_tokens}-token window and never embedded",
                       PENALTY["token-overflow"] + 0.7 * share)
        if r.is_tiny:
            yield item("tiny-chunk", f"{int(r.n_words)} words (fewer than {min_chunk_words}): too little context")
        if r.starts_mid_sentence:
            yield item("starts-mid-sentence", "opens inside a sentence begun in the previous chunk")
        if r.ends_mid_sentence:
            yield item("ends-mid-sentence", "stops inside a sentence")
        if r.is_duplicate:
            yield item("duplicate-chunk", f"same text as {r.duplicate_of}")
        if r.is_near_duplicate:
            yield item("near-duplicate", f"cosine {r.near_duplicate_cosine:.3f} with {r.near_duplicate_of} of "
                       "another document")
        if r.boilerplate_share > 0:
            if r.is_boilerplate:
                yield item("boilerplate", f"{r.boilerplate_share:.0%} of the text repeats across documents, e.g. "
                           f"{r.boilerplate_example!r} (in {r.boilerplate_documents} documents)",
                           PENALTY["boilerplate"] * r.boilerplate_share)
        if r.splits_block:
            for label in str(r.split_blocks).split("; "):
                kind = _SPLIT_KINDS.get(label.split(" ", 1)[0], "step-split")
                yield item(kind, f"{label} is cut across chunks")
        if r.heading_lost:
            yield item("lost-heading", f"continues section {r.section.split(' > ')[-1]!r} but neither its text nor its "
                       "embedding carries that heading")
        if r.lacks_metadata:
            yield item("missing-metadata", f"lacks {r.missing_metadata}: metadata-filtered queries never return it")
