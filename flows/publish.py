"""Turning what a stage shows (rag_health.views) into Prefect artifacts, and failures into Prefect events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from rag_health.views import Artifact, Link, Markdown, Table, md


def publish(artifacts: Iterable[Artifact]) -> None:
    for a in artifacts:
        if isinstance(a, Table):  # cells may hold document-derived text: shown as text, never as markup
            rows = [{k: md(v) if isinstance(v, str) else v for k, v in r.items()} for r in a.rows]
            create_table_artifact(key=a.key, table=rows, description=a.description or None)
        elif isinstance(a, Markdown):
            create_markdown_artifact(key=a.key, markdown=a.markdown, description=a.description or None)
        elif isinstance(a, Link):
            create_link_artifact(key=a.key, link=a.link, link_text=a.text, description=a.description or None)


def emit_failure(result: dict[str, Any], event: str = "rag-health.check.failed") -> None:
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={"prefect.resource.id": f"rag-health.collection.{result.get('collection', 'unknown')}"},
        payload={"verdict": result["verdict"], "stages": result["stages"], "findings": result.get("findings", [])[:20]},
    )
