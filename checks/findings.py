"""Every quality finding kind in one table (its score penalty, the threshold it counts against, what it means),
and the one Finding type: one chunk, one problem. Adding a kind is a row here plus its detector in the check that
finds it (checks.chunk_quality or checks.embedding_quality)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class FindingKind(str, Enum):
    # Chunk kinds (checks.chunk_quality), in the order a chunk's findings are listed.
    EMPTY_CHUNK = "empty-chunk"
    TOKEN_OVERFLOW = "token-overflow"
    TINY_CHUNK = "tiny-chunk"
    STARTS_MID_SENTENCE = "starts-mid-sentence"
    ENDS_MID_SENTENCE = "ends-mid-sentence"
    DUPLICATE_CHUNK = "duplicate-chunk"
    NEAR_DUPLICATE = "near-duplicate"
    BOILERPLATE = "boilerplate"
    CODE_BLOCK_SPLIT = "code-block-split"
    TABLE_SPLIT = "table-split"
    STEP_SPLIT = "step-split"
    LOST_HEADING = "lost-heading"
    MISSING_METADATA = "missing-metadata"
    PII = "pii"
    SECRET = "secret"
    UNKNOWN_TOKENS = "unknown-tokens"
    # Embedding kinds (checks.embedding_quality).
    DIMENSION_MISMATCH = "dimension-mismatch"
    MODEL_MISMATCH = "model-mismatch"
    NAN_VECTOR = "nan-vector"
    ZERO_VECTOR = "zero-vector"
    NON_NORMALISED = "non-normalised"
    SHARED_VECTOR = "shared-vector"
    EMBEDDING_OUTLIER = "embedding-outlier"
    NEIGHBOUR_SHIFT = "neighbour-shift"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class KindSpec:
    """penalty: what one such finding costs its chunk's score (see checks.quality_score). threshold: the key of
    `max_finding_fraction` (settings) it counts against, None when any one fails the check or it is never gated.
    max_fraction: that threshold's default share of chunks above which the check warns."""

    penalty: float
    meaning: str
    threshold: str | None = None
    max_fraction: float | None = None


K = FindingKind
KINDS: dict[FindingKind, KindSpec] = {
    K.EMPTY_CHUNK: KindSpec(1.0, "no text at all"),
    K.TOKEN_OVERFLOW: KindSpec(0.3, "longer than the model's window: the tokens past it are never embedded "
                                    "(plus up to 0.7 more in proportion to the share lost)", "token-overflow", 0.0),
    K.TINY_CHUNK: KindSpec(0.4, "fewer words than min_chunk_words: too little context to be retrieved for anything",
                           "tiny-chunk", 0.05),
    K.STARTS_MID_SENTENCE: KindSpec(0.1, "opens inside a sentence (its start is in another chunk)",
                                    "starts-mid-sentence", 0.5),
    K.ENDS_MID_SENTENCE: KindSpec(0.1, "stops inside a sentence", "ends-mid-sentence", 0.5),
    K.DUPLICATE_CHUNK: KindSpec(0.5, "same text (case and spacing aside) as another chunk", "duplicate-chunk", 0.02),
    K.NEAR_DUPLICATE: KindSpec(0.3, "vector within near_duplicate_threshold cosine of a chunk of another document",
                               "near-duplicate", 0.05),
    K.BOILERPLATE: KindSpec(0.5, "lines repeated across many documents (headers, footers, disclaimers) make up the "
                                 "chunk (times the boilerplate share)", "boilerplate", 0.05),
    K.CODE_BLOCK_SPLIT: KindSpec(0.3, "a fenced code block is cut across chunks", "structure-split", 0.1),
    K.TABLE_SPLIT: KindSpec(0.3, "a table is cut across chunks", "structure-split", 0.1),
    K.STEP_SPLIT: KindSpec(0.3, "a numbered step is cut across chunks", "structure-split", 0.1),
    K.LOST_HEADING: KindSpec(0.1, "continues a section whose heading is neither in its text nor in its embedding",
                             "lost-heading", 0.5),
    K.MISSING_METADATA: KindSpec(0.3, "a required metadata field is absent, so metadata-filtered queries never "
                                      "return it", "missing-metadata", 0.0),
    K.PII: KindSpec(0.5, "personal data in the text (a card number, IBAN, national identifier, e-mail address or "
                         "phone number; see checks.pii): the detail shows redacted excerpts only", "pii", 0.0),
    K.SECRET: KindSpec(0.5, "a credential in the text (a cloud access key, an API or GitHub token, a JWT, a private "
                            "key; see checks.pii.find_secrets): the detail names its type, never its value", "secret",
                       0.0),
    K.UNKNOWN_TOKENS: KindSpec(0.5, "most of the text is runs of over 100 letters and digits with no space or "
                                    "punctuation (one huge word, a hex dump), which the model's tokenizer reads as "
                                    "[UNK]: nothing of it is embedded",
                               "unknown-tokens", 0.0),
    K.DIMENSION_MISMATCH: KindSpec(1.0, "a vector of another dimension than the model's"),
    K.MODEL_MISMATCH: KindSpec(1.0, "written by another model (fingerprint)"),
    K.NAN_VECTOR: KindSpec(1.0, "NaN or infinite values"),
    K.ZERO_VECTOR: KindSpec(1.0, "a zero vector: matches nothing"),
    K.NON_NORMALISED: KindSpec(0.2, "not unit length: cosine and inner-product rankings disagree"),
    K.SHARED_VECTOR: KindSpec(0.5, "the same vector as a chunk whose text differs"),
    K.EMBEDDING_OUTLIER: KindSpec(0.2, "far from the corpus's common direction: garbage text, an encoding problem, a "
                                       "stray document or a vector from elsewhere", "embedding-outlier", 0.01),
    K.NEIGHBOUR_SHIFT: KindSpec(0.0, "a sample chunk whose nearest documents changed since the baseline (no score "
                                     "cost)"),
}
del K

SPLIT_KINDS = {"code": FindingKind.CODE_BLOCK_SPLIT, "table": FindingKind.TABLE_SPLIT,
               "step": FindingKind.STEP_SPLIT}


def penalty(kind: FindingKind) -> float:
    return KINDS[kind].penalty


def default_max_fractions() -> dict[str, float]:
    """Threshold key -> default share of chunks above which the check warns."""
    return {s.threshold: s.max_fraction for s in KINDS.values()
            if s.threshold is not None and s.max_fraction is not None}


def threshold_keys() -> frozenset[str]:
    return frozenset(default_max_fractions())


@dataclass(frozen=True)
class Finding:
    """One problem of one chunk. chunk_index is known for chunk findings, not for embedding ones."""

    doc_id: str
    chunk_id: str
    kind: FindingKind
    detail: str
    penalty: float
    chunk_index: int | None = None

    def row(self) -> dict[str, Any]:
        """The JSON contract's finding row: {doc_id, chunk_id, kind, detail, penalty}."""
        return {"doc_id": self.doc_id, "chunk_id": self.chunk_id, "kind": self.kind.value, "detail": self.detail,
                "penalty": self.penalty}

    def item(self) -> dict[str, Any]:
        """The row with chunk_index where known: a check's offending item."""
        row = self.row()
        if self.chunk_index is not None:
            row["chunk_index"] = self.chunk_index
        return row
