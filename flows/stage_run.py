"""How one stage runs under Prefect: its settings resolved, its core function in one task (retried only for a
transient error when it talks to a remote service), under the collection lock when it writes, its artifacts
published, its verdict emitted; an expected error ends the flow run Failed with one line and no traceback. The
flow functions of flows/stages.py and the ingest flow's body (flows/ingest.py) call run()."""


from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from prefect import get_run_logger, task
from prefect.states import Failed
from prefect.tasks import exponential_backoff

from flows import publish
from flows.concurrency import guard
from flows.resources import keep, registered, runtime_for, settings_from
from rag_health.errors import expected, transient
from rag_health.registry import stages, talks_to_remote
from rag_health.run_ids import new_run_id
from rag_health.suite import MESSAGE_CHARS, clip, event_payload, failure_message


@task(name="run-stage")
def run_stage(name: str, settings: dict[str, Any], inputs: dict[str, Any], run_key: str | None):
    stage = stages()[name]
    rt = runtime_for(settings_from(settings), run_key)
    rt.progress = publish.prefect_progress(name) if stage.reports_progress else None
    result = stage.run(rt, **inputs)
    publish.publish(stage.artifacts(result))
    return result


def _retry_transient(task, task_run, state) -> bool:
    """Retry a stage's task only for a network or remote-service failure (rag_health.errors.transient)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as raised:  # noqa: BLE001 - the state's own exception
        exc = raised
    return isinstance(exc, BaseException) and transient(exc)


class _OneLineErrors(logging.Filter):
    """On Prefect's task and flow run loggers: the engine logs a task that raised at ERROR with its traceback before
    the flow can say anything. For an expected error the flow's own one line says everything, so the engine's
    record is dropped; every other record of these loggers has PII redacted from its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if any(isinstance(a, BaseException) and expected(a) for a in _record_exceptions(record)):
            return False
        from checks.pii import redact

        text = record.getMessage()
        cleaned = redact(text)
        if cleaned != text:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # An unexpected error's traceback is logged as it is, but its text redacted too (a KeyError naming
            # refund-4111111111111111.md); formatters use exc_text when it is set.
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


def _record_exceptions(record: logging.LogRecord) -> list[Any]:
    """The exceptions a log record carries: its exc_info, and an exception or a state's exception in its args."""
    found: list[Any] = [record.exc_info[1]] if record.exc_info else []
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        found.append(arg)
        data = getattr(arg, "data", None)  # a Failed state returned by the engine carries its exception here
        found.append(getattr(data, "result", data))
    return found


_FILTER = _OneLineErrors()


def quiet_expected_errors() -> None:
    """Install the filter on the loggers the engine writes task and flow runs to (once; idempotent)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def collection_of(params: dict[str, Any], overrides: dict[str, Any] | None) -> str:
    """The collection a run meant, for the event of a run whose settings could not be built."""
    import os

    return str(params.get("collection") or (overrides or {}).get("collection")
               or os.environ.get("RAG_HEALTH_COLLECTION") or "rag-health")


def error_message(name: str, exc: BaseException) -> str:
    from checks.pii import redact

    return clip(f"rag-health {name}: error: {redact(str(exc)) or type(exc).__name__}", MESSAGE_CHARS)


def ended_in_error(name: str, collection: str, run_key: str | None, exc: BaseException, *, emit: bool = True):
    """A stage that raised: rag-health.stage.failed (unless someone else reports it), the error kept for an
    in-process caller, and a Failed state with its one-line message for an expected error; others re-raise."""
    message = error_message(name, exc)
    if emit:
        publish.emit(publish.STAGE_FAILED, collection,
                     {"stage": name, "run_id": run_key, "error": message, "error_type": type(exc).__name__})
    keep(exc)
    if not expected(exc):
        raise exc
    get_run_logger().error(message)
    return Failed(message=message)


def _writing(stage, settings, run_key: str | None, nested: bool, under: str | None = None):
    """The collection lock around a stage that writes the collection or the run archive (nothing otherwise)."""
    if not stage.writes:
        return nullcontext()
    if under:
        from flows.concurrency import check_held

        check_held(runtime_for(settings, run_key), under)
        return nullcontext()
    from prefect.runtime import flow_run

    owner = run_key or f"{stage.name}-{flow_run.id or new_run_id()}"
    return guard(runtime_for(settings, run_key), owner, nested=nested)


def run(name: str, params: dict[str, Any], overrides: dict[str, Any] | None, run_key: str | None = None, *,
        speak: bool = True, under: str | None = None, **inputs: Any):
    """Run one stage as a task of the current flow (run_key: the run whose runtime it shares, if any). A failing
    verdict ends the flow run Failed with a short message naming the failing checks (the result travels to an
    in-process caller through flows.resources.keep, and stays in the artifacts and the run archive); on its own,
    the flow emits rag-health.check.failed / check.warned; an error emits rag-health.stage.failed.
    speak=False: the caller emits the verdict (it decides more first). under: a run id that must already hold the
    collection (an ingest shard works under its coordinator's lock, from another process)."""
    quiet_expected_errors()
    stage = stages()[name]
    run_key = run_key or None
    try:
        settings = settings_from(params, overrides)
    except Exception as exc:  # a bad setting or parameter: one line, no traceback
        return ended_in_error(name, collection_of(params, overrides), run_key, exc)
    # Flow parameters say "not given" with an empty value; the stages take None, and lists.
    inputs = {k: None if v in ("", ()) else list(v) if isinstance(v, tuple) else v for k, v in inputs.items()}
    retries = stage.retries if talks_to_remote(stage, settings) else 0
    task_ = run_stage.with_options(
        name=stage.task_name, retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=2) if retries else 0,
        retry_jitter_factor=0.5 if retries else None, retry_condition_fn=_retry_transient if retries else None)
    nested = registered(settings, run_key)  # a suite's stage: the suite holds the collection and speaks for the run
    try:
        with _writing(stage, settings, run_key, nested, under):
            result = task_(name, settings.model_dump(mode="json"), inputs, run_key)
    except Exception as exc:  # a shard's error is reported once, by its coordinator
        return ended_in_error(name, settings.collection, run_key, exc, emit=not under)
    keep(result)
    get_run_logger().info("%s: %s", name, result.status)
    for notice in getattr(result, "notices", lambda: [])():  # e.g. the whole index re-embedded by a new chunking
        get_run_logger().warning("%s: %s", name, notice)
    if speak and not nested:
        publish.emit_verdict(settings.collection, {**event_payload(run_key, {name: result}), "stage": name})
    if result.status == "fail":
        return Failed(message=failure_message({name: result}, f"rag-health {name}"))
    return result


