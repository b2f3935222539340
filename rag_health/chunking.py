"""Sentence-aware chunking sized in the embedding model's own tokens, so chunks fit its window."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llama_index.core.node_parser import SentenceSplitter

from rag_health.documents import ParsedDocument
from rag_health.embedding import Embedder

_SENTENCE_END = re.compile(r"""[.!?:;…](?:["')\]]*)\s*$""")
_STRUCTURAL_END = re.compile(r"(```|\|)\s*$")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int
    text: str  # the chunk as stored and shown to the assistant
    embed_text: str  # what the model embeds: the document title, then the chunk


def embed_text_for(title: str, text: str) -> str:
    return f"{title}\n\n{text}" if title else text


class Chunker:
    def __init__(self, embedder: Embedder, chunk_size: int, chunk_overlap: int):
        if chunk_overlap >= chunk_size:
            from rag_health.settings import ConfigError

            raise ConfigError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._splitter = SentenceSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=embedder.tokenize,
            paragraph_separator="\n\n",
        )

    @property
    def config(self) -> str:
        return f"sentence:{self.chunk_size}:{self.chunk_overlap}"

    def split(self, doc: ParsedDocument) -> list[Chunk]:
        title = doc.title
        pieces = self._splitter.split_text_metadata_aware(doc.text, metadata_str=title)
        return [
            Chunk(doc_id=doc.doc_id, index=i, text=piece, embed_text=embed_text_for(title, piece))
            for i, piece in enumerate(p for p in pieces if p.strip())
        ]


def ends_mid_sentence(text: str) -> bool:
    """True when a chunk stops inside a sentence (no closing punctuation, code fence or table row at its end)."""
    stripped = text.rstrip()
    if not stripped:
        return False
    last_line = stripped.splitlines()[-1].strip()
    if last_line.startswith(("#", "-", "*", "|", "```")) or re.match(r"^\d+[.)]\s", last_line):
        # Headings, list items and table rows end at the line break.
        return False
    return not (_SENTENCE_END.search(stripped) or _STRUCTURAL_END.search(stripped))
