"""Per-process cache of the runtime a flow needs: the embedding model loads once, the Chroma client opens once."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rag_health.embedding import Embedder, load_embedder
from rag_health.runtime import Runtime, build_runtime
from rag_health.settings import Settings, disable_telemetry, load_settings
from rag_health.store import open_client

_injected_embedder: Embedder | None = None


def use_embedder(embedder: Embedder | None) -> None:
    """Let tests (and long-lived workers) hand in an already loaded model."""
    global _injected_embedder
    _injected_embedder = embedder


@lru_cache(maxsize=4)
def _embedder(name: str, device: str, batch_size: int) -> Embedder:
    return load_embedder(name, device, batch_size)


@lru_cache(maxsize=8)
def _client(mode: str, state_dir: str, host: str, port: int) -> Any:
    return open_client(Settings(chroma_mode=mode, state_dir=state_dir, chroma_host=host, chroma_port=port))


def settings_from(params: dict[str, Any], overrides: dict[str, Any] | None = None) -> Settings:
    disable_telemetry()
    return load_settings(**{**(overrides or {}), **{k: v for k, v in params.items() if v is not None}})


def runtime_for(settings: Settings) -> Runtime:
    embedder = _injected_embedder or _embedder(settings.embed_model, settings.embed_device, settings.embed_batch_size)
    client = _client(settings.chroma_mode, str(settings.state_dir), settings.chroma_host, settings.chroma_port)
    return build_runtime(settings, embedder=embedder, chroma_client=client)


def run_name(prefix: str):
    """A flow_run_name callable: '<prefix> <docs>' with the default docs spelled out rather than 'None'."""

    def name() -> str:
        from prefect.runtime import flow_run

        docs = (flow_run.parameters or {}).get("docs") or "default docs"
        return f"{prefix} {docs}"

    return name
