"""The ingest flow's decisions around the stage: the human approval gate for a mass change, and the fan-out over
document shards run as separate flow runs on the pool's workers.

Approval: when a re-ingest would remove or replace more than max_delete_fraction of the indexed documents, the
stage writes nothing and returns the change it held back. With on_mass_change="ask" (the deployments' default)
the flow emits rag-health.approval.requested, shows the documents in an artifact and pauses for a person's
decision (Prefect pause with run input); approve runs it again with exactly those documents approved (a further
change since then is held again), reject keeps the index and ends the run with a warn (a timeout too, though
Prefect ends an expired pause Failed). "hold" (the CLI's and the suite's default) holds without asking;
"proceed" (--allow-mass-delete) approves any change.

Shards: shards=N plans the whole change once (the gate included), then starts N runs of this deployment, each
ingesting the documents of one shard (rag_health.ingest.shard_of) into the shared Chroma server, under this run's
collection lock, and writing its result to the bucket; their results add up to what one worker would report.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import get_run_logger
from prefect.input import RunInput
from pydantic import Field

from flows import publish
from flows.resources import keep, registered, runtime_for, settings_from
from flows.stage_run import collection_of, ended_in_error, quiet_expected_errors, run
from rag_health.errors import ConfigError
from rag_health.ingest import Approval, IngestResult, MassChange, OnMassChange, plan_changes
from rag_health.results import to_json
from rag_health.run_ids import new_run_id
from rag_health.settings import Settings
from rag_health.suite import event_payload
from rag_health.views import LISTED_IDS, Markdown, id_list, md

Mode = Literal["ask", "hold", "proceed"]
class Decision(RunInput):
    """What the person deciding enters in the Prefect UI to resume the paused run."""

    approve: bool = Field(False, description="Tick to remove and replace the listed documents; leave unticked to "
                                             "keep the index as it is")
    reason: str = Field("", description="Why (kept in the run's log, artifact and event)")


def approval_markdown(change: MassChange, collection: str) -> str:
    return "\n\n".join(p for p in [
        f"## Approve this re-ingest of collection {md(collection)}?", md(change.sentence()),
        id_list("Would remove (gone from the source)", change.removed),
        id_list("Would replace (content changed)", change.replaced),
        "Approve: tick *approve* and resume. Reject: resume unticked (or cancel the run); the index stays as it is "
        "and the run ends with a warn."] if p)


def ask(settings: Settings, change: MassChange, run_id: str | None, attempt: int) -> tuple[bool, str]:
    """Pause for a person's decision on this change: (approved, reason). No decision in time is a reject (nothing
    written), though Prefect's pause expiry then ends the flow run Failed whatever the flow returns."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from checks.pii import redact

    text = approval_markdown(change, settings.collection)
    publish.publish([Markdown("ingest-approval", text, "Documents a re-ingest would remove or replace: waiting for "
                                                       "a person to approve")])
    publish.emit(publish.APPROVAL_REQUESTED, settings.collection, {
        "run_id": run_id, "summary": change.sentence(), "removed": len(change.removed),
        "replaced": len(change.replaced), "indexed": change.indexed, "fraction": change.fraction,
        "threshold": change.threshold, "removed_ids": [redact(d) for d in change.removed[:LISTED_IDS]],
        "replaced_ids": [redact(d) for d in change.replaced[:LISTED_IDS]]})
    logger = get_run_logger()
    logger.warning("waiting for approval: %s", change.sentence())
    try:
        decision = pause_flow_run(wait_for_input=Decision.with_initial_data(description=text, approve=False),
                                  timeout=int(settings.approval_timeout_seconds),
                                  poll_interval=int(settings.approval_poll_seconds), key=f"approval-{attempt}")
    except FlowPauseTimeout:
        return False, f"no decision within {settings.approval_timeout_seconds:.0f} s"
    reason = redact(" ".join((decision.reason or "").split()))[:300]  # free text a person typed
    logger.warning("%s by the person who resumed the run%s", "approved" if decision.approve else "rejected",
                   f": {reason}" if reason else "")
    return bool(decision.approve), reason


def decide(settings: Settings, change: MassChange, run_id: str | None, attempt: int) -> tuple[bool, dict[str, Any]]:
    """Ask a person about a held change; a rejection (or no decision) updates the approval artifact. Returns
    whether it was approved and what was decided, for the run's event."""
    ok, reason = ask(settings, change, run_id, attempt)
    if not ok:
        _rejected(settings, change, reason)
    return ok, {"approval": "approved" if ok else "rejected", "approval_reason": reason}


def _rejected(settings: Settings, change: MassChange, reason: str) -> None:
    publish.publish([Markdown("ingest-approval", approval_markdown(change, settings.collection) +
                              f"\n\n**Rejected**: {md(reason) or 'no reason given'}. Nothing was written.",
                              "The mass change a person rejected (or left undecided); the index was kept as it was")])


def gate(settings: Settings, run_id: str | None, mode: Mode, first: Any, again) -> tuple[Any, dict[str, Any]]:
    """The approval loop around a held change: `first` is the stage's result, `again(approval)` runs it again.
    Returns the final result and what was decided (for the event)."""
    result, decided = first, {}
    for attempt in range(3):  # a source that keeps changing while people decide is held after three asks
        held = getattr(result, "held", None)
        if held is None or OnMassChange.of(mode) is not OnMassChange.ASK:
            break
        ok, decided = decide(settings, held, run_id, attempt)
        if not ok:
            break
        result = again(Approval.of(held.doc_ids))
        if not isinstance(result, IngestResult):  # the rerun ended in an error (its own state and event)
            break
    return result, decided


def ingest(params: dict[str, Any], overrides: dict[str, Any] | None, run_key: str | None,
           only: list[str] | tuple[str, ...] | None, mode: Mode, approved: list[str] | tuple[str, ...] | None,
           shards: int, shard: str | None):
    """The ingest flow's body (flows.stages.ingest_flow)."""


    quiet_expected_errors()
    try:
        settings = settings_from(params, overrides)
    except Exception as exc:  # a bad setting or parameter: one line, no traceback
        return ended_in_error("ingest", collection_of(params, overrides), run_key or None, exc)
    run_key, only, approved, shard = run_key or None, list(only or ()) or None, list(approved or ()), shard or None
    approval = OnMassChange.of(mode).approval(approved)
    if shard and approval is None and run_key:  # the coordinator's approval, if a person gave one
        stored = runtime_for(settings, run_key).archive.approval(run_key)
        approval = Approval.from_json(stored) if stored else None
    if shards > 1 and not shard:
        try:
            result, decided = fan_out(settings, params, overrides, run_key or new_run_id(), only, mode, approval,
                                      shards)
        except Exception as exc:
            return ended_in_error("ingest", settings.collection, run_key, exc)
        from rag_health.registry import stages

        publish.publish(stages()["ingest"].artifacts(result))  # the whole ingest's, on the coordinating run
        for notice in result.notices():  # the shards' counts added up (each shard logged its own share)
            get_run_logger().warning("ingest: %s", notice)
    else:
        under = run_key if shard else None  # a shard works under its coordinator's collection lock

        def again(approval_: Approval | None):
            return run("ingest", params, overrides, run_key, speak=False, under=under, only=only,
                       approved=approval_, shard=shard)

        first = again(approval)
        if not isinstance(first, IngestResult):
            return first  # an error: the stage already ended the run and emitted rag-health.stage.failed
        result, decided = gate(settings, run_key, OnMassChange.HOLD if shard else mode, first, again)
        if not isinstance(result, IngestResult):
            return result
        if shard:
            runtime_for(settings, run_key).archive.save_shard_result(run_key, shard, to_json(result))
    keep(result)
    if not shard and not registered(settings, run_key):  # a suite speaks for its run
        publish.emit_verdict(settings.collection, {**event_payload(run_key, {"ingest": result}), "stage": "ingest",
                                                   **decided})
    return result


def fan_out(settings: Settings, params: dict[str, Any], overrides: dict[str, Any] | None, run_id: str,
            only: list[str] | None, mode: Mode, approval: Approval | None, shards: int):
    """Plan once, ask once, then one flow run of this deployment per shard; their results added up."""
    from prefect.deployments import run_deployment
    from prefect.runtime import deployment, flow_run

    from flows.concurrency import guard
    from rag_health.shards import held_result, merge

    if not deployment.id:
        raise ConfigError("shards: run the ingest from its deployment (e.g. rag-health-ingest/reingest), whose "
                          "workers run the shards")
    if settings.chroma_mode != "http" or not settings.s3_bucket:
        raise ConfigError("shards need a Chroma server (RAG_HEALTH_CHROMA_MODE=http) and a bucket "
                          "(RAG_HEALTH_S3_BUCKET): shard runs on other workers share nothing else")
    rt = runtime_for(settings, run_id)
    started = time.perf_counter()
    decided: dict[str, Any] = {}
    with guard(rt, run_id):
        s = settings
        change = plan_changes(rt.source(), rt.index, rt.chunker, only=only, remove_deleted=s.remove_deleted,
                              max_delete_fraction=s.max_delete_fraction)
        if change.holds(approval):
            held = held_result(rt.source().uri, change)
            if OnMassChange.of(mode) is not OnMassChange.ASK:
                return held, decided
            ok, decided = decide(settings, change, run_id, 0)
            if not ok:
                return held, decided
            approval = Approval.of(change.doc_ids)
        if approval is not None and not approval.everything:
            rt.archive.save_approval(run_id, approval.to_json())
        name = f"{flow_run.flow_name}/{deployment.name}"
        children = []
        for i in range(shards):
            parameters = {**{k: v for k, v in params.items() if v}, "only": list(only or ()),
                          "settings_overrides": overrides or {}, "run_id": run_id, "shard": f"{i}/{shards}",
                          "shards": 1, "on_mass_change": (OnMassChange.PROCEED if approval and approval.everything
                                                       else OnMassChange.HOLD).value,
                          "approved": []}  # a shard reads an id approval from the bucket (runs/<id>/approval.json)
            children.append(run_deployment(name, parameters=parameters, timeout=0, as_subflow=True,
                                           tags=["rag-health", "shard", f"run:{run_id}"]))
        try:
            states = _wait(children, settings.shard_timeout_seconds)
        finally:  # never let go of the collection while a shard may still write: cancel what is left, wait for it
            _cancel_unfinished(children)
        failed = [f"shard {i}/{shards}: {st.name if st else 'not started'} ({st.message if st else 'no state'})"
                  for i, st in enumerate(states) if st is None or not st.is_completed()]
        if failed:
            raise RuntimeError("ingest shards did not complete: " + "; ".join(failed))
        parts = [rt.archive.shard_result(run_id, f"{i}/{shards}") for i in range(shards)]
        missing = [i for i, p in enumerate(parts) if p is None]
        if missing:
            raise RuntimeError(f"ingest shards {missing} completed without a result in the bucket")
        rt.index_changed()
        return merge(parts, seconds=time.perf_counter() - started), decided


def _cancel_unfinished(children, grace_s: float = 120.0) -> None:
    """Cancel the shard runs still going (the coordinator timed out or failed) and wait, bounded, until they end."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        live = [c.id for c in children if not client.read_flow_run(c.id).state.is_final()]
        for run_id in live:
            client.set_flow_run_state(run_id, Cancelling(message="the coordinating ingest run gave up"), force=True)
        deadline = time.monotonic() + grace_s
        while live and time.monotonic() < deadline:
            live = [r for r in live if not client.read_flow_run(r).state.is_final()]
            time.sleep(2)
    if live:
        get_run_logger().error("shard runs %s did not stop within %.0f s of being cancelled", live, grace_s)


def _wait(children, timeout_s: float):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    states: list[Any] = [None] * len(children)
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for i, child in enumerate(children):
                if states[i] is None or not states[i].is_final():
                    states[i] = client.read_flow_run(child.id).state
            if all(st is not None and st.is_final() for st in states):
                break
            time.sleep(2)
    return states

