"""Turning what a stage shows (rag_health.views) into Prefect artifacts, and verdicts into Prefect events.

Events (resource `rag-health.collection.<name>`, related: this flow run, its deployment and flow):
- rag-health.check.failed     a run's verdict is fail (the suite once per run; a stage flow run on its own)
- rag-health.check.warned     a run's verdict is warn
- rag-health.stage.failed     a stage could not run to its end (an error, not a verdict)
- rag-health.approval.requested  a re-ingest waits for a person to approve removing or replacing documents
The payload carries the verdict, stage statuses and at most 20 failing and 20 warning findings, one line each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from rag_health.views import Artifact, Link, Markdown, Table, md

CHECK_FAILED, CHECK_WARNED = "rag-health.check.failed", "rag-health.check.warned"
STAGE_FAILED, APPROVAL_REQUESTED = "rag-health.stage.failed", "rag-health.approval.requested"


def _cell(value: Any) -> Any:
    if value is None:
        return "n/a"  # a table cell never reads "None"
    return md(value) if isinstance(value, str) else value  # document-derived text shows as text, never markup


def prefect_progress(label: str, every: float = 5.0):
    """A progress artifact on the current flow run (0-100 %, its description the line a terminal shows), updated
    at most every `every` seconds: rag_health.progress's reporter for Prefect."""
    from rag_health.progress import Throttled

    state: dict[str, Any] = {}

    def show(done: int, total: int, chunks: int, text: str) -> None:
        percent = 100.0 * done / total if total else 100.0
        description = f"{label}: {text}"
        try:
            if "id" not in state:
                state["id"] = create_progress_artifact(progress=percent, key=f"{label}-progress",
                                                       description=description)
            else:
                update_progress_artifact(state["id"], progress=percent, description=description)
        except Exception:  # noqa: BLE001 - progress is a courtesy: it never fails the stage
            state.setdefault("id", None)

    return Throttled(show, every)


def publish(artifacts: Iterable[Artifact]) -> None:
    for a in artifacts:
        if isinstance(a, Table):
            rows = [{k: _cell(v) for k, v in r.items()} for r in a.rows]
            create_table_artifact(key=a.key, table=rows, description=a.description)
        elif isinstance(a, Markdown):
            create_markdown_artifact(key=a.key, markdown=a.markdown, description=a.description)
        elif isinstance(a, Link):
            create_link_artifact(key=a.key, link=a.link, link_text=a.text, description=a.description)


def resource(collection: str) -> dict[str, str]:
    return {"prefect.resource.id": f"rag-health.collection.{collection}", "prefect.resource.name": collection,
            "rag-health.collection": collection}


def related() -> list[dict[str, str]]:
    """This flow run, its deployment and its flow (when there are), so an automation can link back to the run."""
    from prefect.runtime import deployment, flow_run

    out = []
    if flow_run.id:
        out.append({"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.role": "flow-run",
                    "prefect.resource.name": str(flow_run.name or "")})
    if deployment.id:
        out.append({"prefect.resource.id": f"prefect.deployment.{deployment.id}",
                    "prefect.resource.role": "deployment", "prefect.resource.name": str(deployment.name or "")})
    return out


def emit(event: str, collection: str, payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    emit_event(event=event, resource=resource(collection), related=related(), payload=payload)


def emit_verdict(collection: str, payload: dict[str, Any]) -> None:
    """check.failed or check.warned for a run's verdict; nothing for a pass."""
    if payload["verdict"] in ("fail", "warn"):
        emit(CHECK_FAILED if payload["verdict"] == "fail" else CHECK_WARNED, collection, payload)
