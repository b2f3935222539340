"""Chunk quality: what chunking did to the text the assistant will be shown, one finding per chunk and problem.

The finding kinds, their penalties and thresholds are in checks.findings; this module detects the chunk kinds.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from checks import heading_paths
from checks.expectations import validate_frame
from checks.findings import SPLIT_KINDS, Finding, FindingKind, default_max_fractions, penalty
from checks.pii import redact
from checks.result import CheckResult, Metrics, worst

CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_index", "n_chars", "n_tokens", "ends_mid_sentence")
SAME_VECTOR = 1 - 1e-6
BOILERPLATE_MIN_SHARE = 0.2  # a chunk is reported when at least this share of its text is boilerplate
LONG_WORD_CHARS = 100  # BERT WordPiece's max_input_chars_per_word: a longer word becomes one [UNK]
UNKNOWN_TOKENS_MIN_SHARE = 0.5  # a chunk is reported when at least this share of its characters are such words
# What WordPiece calls a word: its basic tokenizer first splits at spaces and punctuation (ASCII symbols and "_"
# included), so a URL or a PromQL expression is many short words; only a run of letters and digits is one.
_LONG_WORD = re.compile(r"[^\W_]{%d,}" % (LONG_WORD_CHARS + 1))
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


@dataclass(frozen=True)
class ChunkMetrics(Metrics):
    """The chunk table's figures; `findings_by_kind` counts this check's findings per kind."""

    chunks: int
    documents: int | None = None
    tokens_mean: float | None = None
    tokens_p95: int | None = None
    tokens_max: int | None = None
    max_tokens: int | None = None
    overflow_chunks: int | None = None
    overflow_fraction: float | None = None
    tokens_lost: int | None = None
    empty_chunks: int | None = None
    duplicate_ids: int | None = None
    tiny_chunks: int | None = None
    mid_sentence_fraction: float | None = None
    starts_mid_sentence_fraction: float | None = None
    duplicate_chunks: int | None = None
    near_duplicate_chunks: int | None = None
    boilerplate_chunks: int | None = None
    structure_split_chunks: int | None = None
    lost_heading_chunks: int | None = None
    missing_metadata_chunks: int | None = None
    pii_chunks: int | None = None
    secret_chunks: int | None = None
    unknown_token_chunks: int | None = None
    structure_unknown_chunks: int | None = None
    findings_by_kind: dict[str, int] | None = None


# Share checks: the flag column, the threshold key it counts against and what the expectation says. Several
# kinds may share a threshold (code-block, table and step splits are all "structure-split").
SHARES: tuple[tuple[str, str, str], ...] = (
    ("is_tiny", "tiny-chunk", "chunks have at least {min_words} words"),
    ("starts_mid_sentence", "starts-mid-sentence", "chunks start at a sentence boundary"),
    ("ends_mid_sentence", "ends-mid-sentence", "chunks end at a sentence boundary"),
    ("is_duplicate", "duplicate-chunk", "no chunk repeats another's text"),
    ("is_near_duplicate", "near-duplicate", "no chunk nearly duplicates one of another document"),
    ("is_boilerplate", "boilerplate", f"chunks are not {BOILERPLATE_MIN_SHARE:.0%}+ boilerplate"),
    ("splits_block", "structure-split", "code blocks, tables and numbered steps are not cut"),
    ("heading_lost", "lost-heading", "chunks keep their section heading"),
    ("lacks_metadata", "missing-metadata", "chunks carry the required metadata fields"),
    ("has_pii", "pii", "chunks hold no personal data (card numbers, IBANs, national ids, e-mails, phones)"),
    ("has_secret", "secret", "chunks hold no secrets (access keys, tokens, private keys)"),
    ("has_unknown_tokens", "unknown-tokens", "chunks are words the model can read (not [UNK])"),
)


def chunk_quality(table: pd.DataFrame, max_tokens: int, *, max_overflow_fraction: float = 0.05,
                  max_mid_sentence_fraction: float = 0.5, min_chunk_words: int = 12,
                  max_fraction: Mapping[str, float] | None = None) -> CheckResult:
    """table: one row per chunk. Required: CHUNK_COLUMNS. Optional (a finding kind is checked when its columns
    are present): n_words, starts_mid_sentence, text_key, near_duplicate_of/near_duplicate_cosine,
    boilerplate_share/boilerplate_example/boilerplate_documents, split_blocks, heading_lost, section,
    missing_metadata, pii (checks.pii.summary of the chunk's matches: redacted excerpts, never the values).
    Token counts include the model's special tokens and the title it embeds. The boilerplate example is quoted
    only after checks.pii.redact."""
    missing = [c for c in CHUNK_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"chunk table lacks columns {missing}")
    if table.empty:
        return CheckResult("chunk-quality", "fail", ChunkMetrics(chunks=0), findings=("the index holds no chunks (fail)",))
    limits = {**default_max_fractions(), "ends-mid-sentence": max_mid_sentence_fraction,
              "starts-mid-sentence": max_mid_sentence_fraction, **(max_fraction or {})}
    t = _with_flags(table.reset_index(drop=True), max_tokens, min_chunk_words)
    outcomes = validate_frame(t, "chunk-quality", _expectations(limits, max_tokens, max_overflow_fraction,
                                                                min_chunk_words))
    items = tuple(_findings(t, max_tokens, min_chunk_words))
    n = len(t)
    status = worst(*(o.severity for o in outcomes if not o.success))
    findings = tuple(f"{o.description}: {o.unexpected_count} of {n} chunk(s) do not, e.g. "
                     f"{_examples(t, o.unexpected_index)} ({o.severity})" for o in outcomes if not o.success)
    return CheckResult("chunk-quality", status, _metrics(t, items, max_tokens), items, findings)


def long_word_share(text: str) -> float:
    """The share of the text's characters in words the model's tokenizer reads as [UNK] (over LONG_WORD_CHARS)."""
    if len(text) <= LONG_WORD_CHARS:
        return 0.0
    return sum(m.end() - m.start() for m in _LONG_WORD.finditer(text)) / len(text)


def _examples(t: pd.DataFrame, rows: Sequence[int], shown: int = 3) -> str:
    """The first chunks an unmet expectation names: "runbooks/x.md chunk 3, policies/y.md chunk 0"."""
    return ", ".join(f"{t.at[i, 'doc_id']} chunk {t.at[i, 'chunk_index']}" for i in list(rows)[:shown]
                     if i in t.index) or "(rows not listed)"


def _expectations(limits: Mapping[str, float], max_tokens: int, max_overflow_fraction: float,
                  min_chunk_words: int) -> list[tuple[Any, str, str]]:
    import great_expectations as gx

    E = gx.expectations
    overflow_limit = limits.get("token-overflow", 0.0)
    return [
        (E.ExpectColumnValuesToNotBeNull(column="chunk_id"), "fail", "every chunk has an id"),
        (E.ExpectColumnValuesToBeUnique(column="chunk_id"), "fail", "chunk ids are unique"),
        (E.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1), "fail", "no empty chunk"),
        (E.ExpectColumnValuesToBeBetween(column="tokens_lost", max_value=0, mostly=max(0.0, 1.0 - overflow_limit)),
         "warn", f"every chunk fits the model's {max_tokens}-token window"),
        (E.ExpectColumnValuesToBeBetween(column="tokens_lost", max_value=0,
                                         mostly=max(0.0, 1.0 - max_overflow_fraction)), "fail",
         f"at most {max_overflow_fraction:.0%} of chunks overflow the window"),
        *((E.ExpectColumnValuesToBeInSet(column=column, value_set=[False], mostly=max(0.0, 1.0 - limits[key])),
           "warn", f"{description.format(min_words=min_chunk_words)} (at most {limits[key]:.0%} of chunks)")
          for column, key, description in SHARES),
    ]


def _metrics(t: pd.DataFrame, items: tuple[Finding, ...], max_tokens: int) -> ChunkMetrics:
    tokens = t["n_tokens"].astype(int)
    counts = pd.Series([i.kind.value for i in items]).value_counts().to_dict() if items else {}
    return ChunkMetrics(
        chunks=int(len(t)),
        documents=int(t["doc_id"].nunique()),
        tokens_mean=round(float(tokens.mean()), 1),
        tokens_p95=int(tokens.quantile(0.95)),
        tokens_max=int(tokens.max()),
        max_tokens=int(max_tokens),
        overflow_chunks=int((t["tokens_lost"] > 0).sum()),
        overflow_fraction=round(float((t["tokens_lost"] > 0).mean()), 4),
        tokens_lost=int(t["tokens_lost"].sum()),
        empty_chunks=int((t["n_chars"].astype(int) < 1).sum()),
        duplicate_ids=int(t.loc[t["chunk_id"].duplicated(keep=False), "chunk_id"].nunique()),
        tiny_chunks=int(t["is_tiny"].sum()),
        mid_sentence_fraction=round(float(t["ends_mid_sentence"].mean()), 4),
        starts_mid_sentence_fraction=round(float(t["starts_mid_sentence"].mean()), 4),
        duplicate_chunks=int(t["is_duplicate"].sum()),
        near_duplicate_chunks=int(t["is_near_duplicate"].sum()),
        boilerplate_chunks=int(t["is_boilerplate"].sum()),
        structure_split_chunks=int(t["splits_block"].sum()),
        lost_heading_chunks=int(t["heading_lost"].sum()),
        missing_metadata_chunks=int(t["lacks_metadata"].sum()),
        pii_chunks=int(t["has_pii"].sum()),
        secret_chunks=int(t["has_secret"].sum()),
        unknown_token_chunks=int(t["has_unknown_tokens"].sum()),
        structure_unknown_chunks=int((~t["structure_known"]).sum()),
        findings_by_kind={k: int(v) for k, v in sorted(counts.items())},
    )


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
    t["pii"] = col("pii", "").fillna("").astype(str)
    t["has_pii"] = t["pii"] != ""
    t["secret"] = col("secret", "").fillna("").astype(str)
    t["has_secret"] = t["secret"] != ""
    t["long_word_share"] = col("long_word_share", 0.0).fillna(0.0).astype(float)
    t["has_unknown_tokens"] = t["long_word_share"] >= UNKNOWN_TOKENS_MIN_SHARE
    return t


def _detect(r: Any, max_tokens: int, min_chunk_words: int) -> Iterator[tuple[FindingKind, str, float | None]]:
    """The chunk kinds found on one row of the flagged table: (kind, detail, penalty when not the table's)."""
    K = FindingKind
    if r.tokens_lost > 0:
        share = r.tokens_lost / max(1, int(r.n_tokens))
        yield (K.TOKEN_OVERFLOW, f"{int(r.n_tokens)} tokens: the last {int(r.tokens_lost)} ({share:.0%}) are past "
               f"the model's {max_tokens}-token window and never embedded", penalty(K.TOKEN_OVERFLOW) + 0.7 * share)
    if r.is_tiny:
        yield K.TINY_CHUNK, f"{int(r.n_words)} words (fewer than {min_chunk_words}): too little context", None
    if r.starts_mid_sentence:
        yield K.STARTS_MID_SENTENCE, "opens inside a sentence begun in the previous chunk", None
    if r.ends_mid_sentence:
        yield K.ENDS_MID_SENTENCE, "stops inside a sentence", None
    if r.is_duplicate:
        yield K.DUPLICATE_CHUNK, f"same text as {r.duplicate_of}", None
    if r.is_near_duplicate:
        yield (K.NEAR_DUPLICATE, f"cosine {r.near_duplicate_cosine:.3f} with {r.near_duplicate_of} of another "
               "document", None)
    if r.is_boilerplate:
        yield (K.BOILERPLATE, f"{r.boilerplate_share:.0%} of the text repeats across documents, e.g. "
               f"{redact(r.boilerplate_example)!r} (in {r.boilerplate_documents} documents)",
               penalty(K.BOILERPLATE) * r.boilerplate_share)
    if r.splits_block:
        for label in str(r.split_blocks).split("; "):
            yield SPLIT_KINDS.get(label.split(" ", 1)[0], K.STEP_SPLIT), f"{label} is cut across chunks", None
    if r.heading_lost:
        yield (K.LOST_HEADING, f"continues section {heading_paths.last(r.section)!r} but neither its text nor its "
               "embedding carries that heading", None)
    if r.lacks_metadata:
        yield K.MISSING_METADATA, f"lacks {r.missing_metadata}: metadata-filtered queries never return it", None
    if r.has_pii:
        yield K.PII, r.pii, None
    if r.has_secret:
        yield K.SECRET, r.secret, None
    if r.has_unknown_tokens:
        yield (K.UNKNOWN_TOKENS, f"{r.long_word_share:.0%} of its characters are in words over {LONG_WORD_CHARS} "
               "characters, which the model reads as [UNK]", None)


def _findings(t: pd.DataFrame, max_tokens: int, min_chunk_words: int) -> Iterator[Finding]:
    for r in t.itertuples(index=False):
        found = ([(FindingKind.EMPTY_CHUNK, "chunk has no text", None)] if r.n_chars < 1
                 else _detect(r, max_tokens, min_chunk_words))
        for kind, detail, cost in found:
            yield Finding(r.doc_id, r.chunk_id, kind, detail, round(penalty(kind) if cost is None else cost, 4),
                          int(r.chunk_index))
