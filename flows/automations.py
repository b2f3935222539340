"""The Prefect automations shipped with rag-health: the events the flows emit (a failed check or stage, an
approval request) become notifications through one notification block the user names (RAG_HEALTH_NOTIFY_BLOCK).
Applied idempotently by name against the server in PREFECT_API_URL: `rag-health automations apply|list`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from uuid import UUID

from prefect.automations import Automation, AutomationCore, EventTrigger, SendNotification

from rag_health.errors import ConfigError
from rag_health.settings import Settings, load_settings

TAG = "rag-health"
RESOURCE = "rag-health.collection.*"  # every rag-health event's primary resource: rag-health.collection.<name>

# Rendered by the server with the triggering event and, when the event names a related flow run, that flow run
# (`flow_run`, None otherwise). `ui_url` needs PREFECT_UI_URL on the server for an absolute link.
_COLLECTION = '{{ event.resource.id | replace("rag-health.collection.", "") }}'
_FLOW_RUN = "{% if flow_run %}\nFlow run: {{ flow_run.name }} {{ flow_run | ui_url }}{% endif %}"
FAILED_BODY = (
    "{{ event.event }} on collection " + _COLLECTION + " at {{ event.occurred }}\n"
    # A stage.failed event has no verdict and no stages: say only what it has (no empty "Verdict:" line).
    "{% if event.payload.verdict %}Verdict: {{ event.payload.verdict }}\n{% endif %}"
    "{% if event.payload.stages %}Stages: {% for stage, status in event.payload.stages.items() %}{{ stage }}="
    "{{ status }} {% endfor %}\n{% endif %}"
    "{% if event.payload.summary %}{{ event.payload.summary }}\n{% endif %}"
    "{% for f in (event.payload.failing or [])[:10] %}- {{ f.stage }}: {{ f.finding }}\n{% endfor %}"
    "{% if event.payload.error %}- {{ event.payload.stage }}: {{ event.payload.error }}\n{% endif %}" + _FLOW_RUN
)
APPROVAL_BODY = (
    "Approval pending on collection " + _COLLECTION + ": {{ event.payload.summary }}" + _FLOW_RUN
)
WARNED_BODY = "Warning on collection " + _COLLECTION + ": {{ event.payload.summary or event.payload.stages }}" + _FLOW_RUN


@dataclass(frozen=True)
class Spec:
    """One shipped automation: the events that trigger it and the notification it sends."""

    name: str
    description: str
    events: frozenset[str]
    subject: str
    body: str
    enabled: bool = True  # only when first created: apply keeps whatever a user switched since


SPECS = (
    Spec("rag-health-failed", "A rag-health check or stage failed: the run failed and needs a look.",
         frozenset({"rag-health.check.failed", "rag-health.stage.failed"}),
         "rag-health FAILED: " + _COLLECTION, FAILED_BODY),
    Spec("rag-health-approval-pending", "A rag-health run waits for a person to approve it.",
         frozenset({"rag-health.approval.requested"}),
         "rag-health approval pending: " + _COLLECTION, APPROVAL_BODY),
    # Created switched off: a warn completes the run, and a notification per warn is noise for most teams.
    Spec("rag-health-warned", "A rag-health check warned (lower priority; created disabled, enable it in the UI).",
         frozenset({"rag-health.check.warned"}),
         "rag-health warning: " + _COLLECTION, WARNED_BODY, enabled=False),
)


def automation(spec: Spec, block_document_id: UUID) -> AutomationCore:
    """The Prefect automation for a spec: every matching event fires once (per collection), no batching."""
    return AutomationCore(
        name=spec.name, description=spec.description, enabled=spec.enabled, tags=[TAG],
        trigger=EventTrigger(expect=set(spec.events), match={"prefect.resource.id": RESOURCE},
                             for_each={"prefect.resource.id"}, posture="Reactive", threshold=1),
        actions=[SendNotification(block_document_id=block_document_id, subject=spec.subject, body=spec.body)],
    )


def notify_block_id(reference: str | None) -> UUID:
    """The id of the notification block named "BLOCK-TYPE-SLUG/BLOCK-NAME" on the server."""
    if not reference:
        raise ConfigError("no notification block: set RAG_HEALTH_NOTIFY_BLOCK to BLOCK-TYPE-SLUG/BLOCK-NAME of a "
                          "Prefect notification block (e.g. slack-webhook/ops-alerts); without one an automation "
                          "would alert nobody")
    slug, sep, name = reference.partition("/")
    if not sep or not slug or not name:
        raise ConfigError(f"RAG_HEALTH_NOTIFY_BLOCK {reference!r} is not BLOCK-TYPE-SLUG/BLOCK-NAME "
                          "(e.g. slack-webhook/ops-alerts)")
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=slug, include_secrets=False)
        except ObjectNotFound:
            raise ConfigError(f"RAG_HEALTH_NOTIFY_BLOCK: no block {name!r} of type {slug!r} on the Prefect server; "
                              f"create it first (UI: Blocks, or `prefect block create {slug}`)") from None
    capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise ConfigError(f"RAG_HEALTH_NOTIFY_BLOCK: {reference!r} is not a notification block "
                          f"(its capabilities: {', '.join(capabilities) or 'none'})")
    return document.id


@dataclass(frozen=True)
class Applied:
    name: str
    id: UUID
    created: bool  # False: an existing automation of that name was updated


def apply(settings: Settings | None = None) -> list[Applied]:
    """Create the shipped automations, or update those that exist by name (their enabled flag is kept). A name
    held by several automations (made by hand) updates the first and leaves the others alone."""
    settings = settings or load_settings()
    block_id = notify_block_id(settings.notify_block)
    from prefect.client.orchestration import get_client

    applied = []
    with get_client(sync_client=True) as client:
        for spec in SPECS:
            wanted = automation(spec, block_id)
            existing = client.read_automations_by_name(spec.name)
            if existing:
                client.update_automation(existing[0].id, wanted.model_copy(update={"enabled": existing[0].enabled}))
                applied.append(Applied(spec.name, existing[0].id, created=False))
            else:
                applied.append(Applied(spec.name, client.create_automation(wanted), created=True))
    return applied


def list_automations() -> list[Automation]:
    """The automations on the server tagged rag-health, by name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.read_automations()
    return sorted((Automation(**a.model_dump()) for a in found if TAG in a.tags), key=lambda a: a.name)


def describe(a: Automation) -> str:
    events = ", ".join(sorted(getattr(a.trigger, "expect", ()) or ()))
    blocks = ", ".join(str(x.block_document_id) for x in a.actions if isinstance(x, SendNotification))
    return f"{a.name}  {'enabled' if a.enabled else 'disabled'}  on {events}  -> block {blocks or '-'}  ({a.id})"


USAGE = """usage: rag-health automations apply|list

  apply  create or update the shipped automations (by name) on the server in PREFECT_API_URL; they notify
         through the block in RAG_HEALTH_NOTIFY_BLOCK (BLOCK-TYPE-SLUG/BLOCK-NAME)
  list   the rag-health automations on the server

example: RAG_HEALTH_NOTIFY_BLOCK=slack-webhook/ops-alerts rag-health automations apply"""


def main(argv: list[str]) -> int:
    """`rag-health automations apply|list`: library errors become one line on stderr and an exit code."""
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 1 or argv[0] not in ("apply", "list"):
        print(USAGE, file=sys.stderr)
        return 2
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    try:
        if argv[0] == "apply":
            for a in apply():
                print(f"{'created' if a.created else 'updated'} {a.name} ({a.id})")
        else:
            for a in list_automations():
                print(describe(a))
    except ConfigError as exc:
        print(f"rag-health: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the server unreachable, refused, ...: one clean line
        print(f"rag-health: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
