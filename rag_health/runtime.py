"""The composition root: builds the stores and clients a run needs from settings, once, and hands them down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_health.artifacts import ArtifactStore, LocalArtifactStore, S3ArtifactStore, s3_client
from rag_health.chunking import Chunker
from rag_health.embedding import Embedder, load_embedder
from rag_health.settings import Settings
from rag_health.sources import DocumentSource, open_source
from rag_health.store import ChunkIndex, open_client


@dataclass
class Runtime:
    settings: Settings
    embedder: Embedder
    index: ChunkIndex
    chunker: Chunker
    local_store: LocalArtifactStore  # reports are always also written here
    shared_store: ArtifactStore  # snapshots, baseline pointer, run results: S3 when configured
    s3_store: S3ArtifactStore | None
    s3: Any = None  # the boto3 client, when the docs or the artifacts live in S3

    def source(self) -> DocumentSource:
        return open_source(self.settings.docs, self.s3)


def build_runtime(settings: Settings, *, embedder: Embedder | None = None, chroma_client: Any = None,
                  s3: Any = None) -> Runtime:
    embedder = embedder or load_embedder(settings.embed_model, settings.embed_device, settings.embed_batch_size)
    client = chroma_client or open_client(settings)
    index = ChunkIndex(client, settings.collection, embedder.info)
    local = LocalArtifactStore(Path(settings.state_dir))
    s3_store = None
    if s3 is None and (settings.s3_bucket or settings.docs.startswith("s3://")):
        s3 = s3_client()
    if settings.s3_bucket:
        s3_store = S3ArtifactStore(s3, settings.s3_bucket, settings.s3_prefix)
    return Runtime(
        settings=settings, embedder=embedder, index=index,
        chunker=Chunker(embedder, settings.chunk_size, settings.chunk_overlap, settings.chunk_strategy),
        local_store=local, shared_store=s3_store or local, s3_store=s3_store, s3=s3,
    )
