"""The rag-health command line: each command runs its stage (or the suite) and prints its result. With a Prefect
server configured (PREFECT_API_URL, in the environment or the Prefect profile) or with --prefect, it runs the
matching Prefect flow, so the run, its artifacts and events are in Prefect; without, it runs the same core in this
process (rag_health.local) and starts no temporary Prefect server. Commands and their options come from the stage
registry (rag_health.registry).

Exit codes: 0 healthy (pass or warn), 1 a check failed, 2 bad usage or configuration, 75 another run holds the
collection (try again later).
"""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
from collections.abc import Callable
from typing import Any

from rag_health.errors import Terminated, exit_code

EPILOG = """examples:
  rag-health run                                  # the sample corpus in datasets/, state in .rag-health/
  rag-health run --docs ./policies --manifest manifest.yaml --probes golden.jsonl --json
  rag-health ingest --only runbooks/kafka-consumer-lag.md   # ad-hoc re-ingest after a document update
  rag-health baseline promote                     # make the latest run the drift baseline
  rag-health runs list                            # past runs in the run archive, newest first
  rag-health runs show 20261129T170004Z-79e2fa --json
"""
RUN_EXAMPLE = "rag-health run --docs ./docs --manifest manifest.yaml --probes p.jsonl --json"


def _add_options(p: argparse.ArgumentParser, options) -> None:
    for o in options:
        kwargs: dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.switch:
            kwargs["action"] = "store_true"
        elif o.repeat:
            kwargs["action"] = "append"
        if o.metavar:
            kwargs["metavar"] = o.metavar
        p.add_argument(*o.flags, **kwargs)
    p.add_argument("--state", dest="state_dir", help="state directory (default: .rag-health)")
    p.add_argument("--collection", help="Chroma collection name (default: rag-health)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.add_argument("--prefect", action="store_true",
                   help="run as Prefect flow runs (artifacts, events) even without PREFECT_API_URL, on a temporary "
                        "Prefect server; with PREFECT_API_URL set they always are")


def build_parser() -> argparse.ArgumentParser:
    from rag_health.registry import stages, suite_options

    parser = argparse.ArgumentParser(prog="rag-health", description="Keep the data path of a RAG system healthy.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole suite: ingest, freshness, quality, probes, drift",
                         epilog=f"example: {RUN_EXAMPLE}")
    _add_options(run, suite_options())
    for stage in stages().values():
        _add_options(sub.add_parser(stage.name, help=stage.help, epilog=f"example: {stage.example}"), stage.options)
    base = sub.add_parser("baseline", help="manage the drift baseline", epilog="example: rag-health baseline promote")
    base_sub = base.add_subparsers(dest="baseline_command", required=True)
    promote = base_sub.add_parser("promote", help="make a run (default: the latest) the drift baseline")
    _add_options(promote, ())
    promote.add_argument("--run", dest="run_id", help="run id to promote (default: the latest run)")
    _add_options(base_sub.add_parser("list", help="the baseline pointer and the runs that could become it"), ())
    runs = sub.add_parser("runs", help="read past runs from the run archive (bucket or state directory)",
                          epilog="example: rag-health runs show RUN_ID --json")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="runs newest first: id, created, verdict, status per stage")
    _add_options(listing, ())
    listing.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    show = runs_sub.add_parser("show", help="a run's stored result.json (--json prints it as stored)")
    show.add_argument("run_id", metavar="RUN_ID")
    _add_options(show, ())
    autos = sub.add_parser("automations", help="apply or list the Prefect automations shipped with rag-health",
                           epilog="example: RAG_HEALTH_NOTIFY_BLOCK=slack-webhook/ops-alerts rag-health automations "
                                  "apply")
    autos.add_argument("action", choices=["apply", "list"])
    prep = sub.add_parser("prepare-model", help="export the embedding model to ONNX once (about 10 s), so no run "
                                                "waits for it; `make setup` does this",
                          epilog="example: rag-health prepare-model --backend onnx-int8")
    prep.add_argument("--backend", choices=["onnx", "onnx-int8"], action="append",
                      help="which export (default: RAG_HEALTH_EMBED_BACKEND when it is an ONNX one, else onnx, the "
                           "default backend); may be given twice")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "automations":  # against the Prefect server in PREFECT_API_URL: its own output, no flow
        from flows import automations

        return automations.main([args.action])
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    if args.command == "prepare-model":
        return _prepare_model(args.backend)
    previous = _on_sigterm(_terminated)
    try:
        result = _dispatch(args)
    except (Terminated, KeyboardInterrupt) as exc:  # the stages' own cleanup ran (locks, the ingest pipeline)
        name, code = (exc.name if isinstance(exc, Terminated) else "SIGINT"), exit_code(exc)
        message = (f"interrupted by {name}; what was stored before stays (the next run goes on from the index as "
                   "it is)")
        if args.json:
            print(dumps({"verdict": "error", "error": message, "exit_code": code}))
        print(f"rag-health: error: {message}", file=sys.stderr)
        return code
    except Exception as exc:  # library errors become one clean line and an exit code (rag_health.errors)

        code = exit_code(exc)
        if args.json:
            print(dumps({"verdict": "error", "error": _one_line(exc), "exit_code": code}))
        print(f"rag-health: error: {_one_line(exc)}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            _on_sigterm(previous)
    if isinstance(result, Listing):  # reading the archive: the verdict of a stored run is not this command's
        print(dumps(result.data, indent=1) if args.json else result.text)
        return 0
    from rag_health.results import to_json

    data = to_json(result)
    print(dumps(data, indent=1) if args.json else _human(args.command, result, data))
    return 1 if data.get("verdict", data.get("status", "pass")) == "fail" else 0


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM", 143) if signum == signal.SIGTERM else Terminated("SIGINT", 130)


def _on_sigterm(handler: Any) -> Any:
    """Install a handler of SIGTERM and SIGINT (returns the previous ones); only the main thread may (main()
    called from another thread keeps the defaults)."""
    try:
        if isinstance(handler, tuple):
            return signal.signal(signal.SIGTERM, handler[0]), signal.signal(signal.SIGINT, handler[1])
        return signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    except (ValueError, TypeError):
        return None


def dumps(value: Any, **kwargs: Any) -> str:
    from rag_health.archive import dumps as archive_dumps  # redacted, never a bare NaN

    return archive_dumps(value, **kwargs)


def _one_line(exc: BaseException) -> str:
    """An error as the one line the CLI prints: PII redacted, control characters escaped."""
    from rag_health.views import one_line

    return one_line(str(exc) or type(exc).__name__)


def _prepare_model(backends: list[str] | None) -> int:
    """Export (or find already exported) the ONNX files of the configured model into the model cache: the given
    backends, else the configured one when it is an ONNX backend, else the default backend."""

    from rag_health.embedding import DEFAULT_BACKEND, load_embedder, model_cache_for
    from rag_health.settings import load_settings

    try:
        s = load_settings()
        cache = str(model_cache_for(s))
        if not backends and s.embed_backend in ("auto", "torch") and (s.embed_backend == "torch"
                                                                     or s.embed_device != "cpu"):
            print(f"nothing to export: embedding runs in torch (embed_backend {s.embed_backend}, embed_device "
                  f"{s.embed_device})")
            return 0
        for backend in backends or [s.embed_backend if s.embed_backend.startswith("onnx") else DEFAULT_BACKEND]:
            embedder = load_embedder(s.embed_model, "cpu", s.embed_batch_size, backend, cache)
            print(f"{embedder.info.name} {backend}: {embedder.onnx_file} (fingerprint {embedder.info.fingerprint})")
    except Exception as exc:
        print(f"rag-health: error: {exc}", file=sys.stderr)

        return exit_code(exc)
    return 0


class Listing:
    """What a command reading the run archive prints: its JSON, or text."""

    def __init__(self, data: Any, text: Callable[[Any], str]):
        self.data, self._text = data, text

    @property
    def text(self) -> str:
        return self._text(self.data)


def _archive_command(rt: Any, args: argparse.Namespace) -> Listing:
    """`runs list|show` and `baseline list`: read the run archive after its pre-flight check."""
    from rag_health import history, preflight, registry

    preflight.check(rt, {registry.ARCHIVE})
    if args.command == "baseline":
        return Listing(history.baseline_list(rt.archive), history.baseline_text)
    if args.runs_command == "list":
        return Listing(history.runs_list(rt.archive, args.limit), history.runs_text)
    return Listing(history.runs_show(rt.archive, args.run_id), history.show_text)


def _dispatch(args: argparse.Namespace) -> Any:
    """Settings from the options, the pre-flight checks of what the command needs, then its flow. Returns the
    command's result (a stage's typed result, or the run's JSON)."""
    from flows.resources import runtime_for, settings_from
    from rag_health import preflight, registry
    from rag_health.run_ids import new_run_id

    stage = registry.stages().get(args.command)
    options = stage.options if stage else registry.suite_options() if args.command == "run" else ()
    overrides = {o.dest: getattr(args, o.dest) for o in options if o.setting and getattr(args, o.dest) is not None}
    common = {"state_dir": args.state_dir, "collection": args.collection}
    settings = settings_from(common, overrides)
    rt = runtime_for(settings)
    if args.command == "runs" or getattr(args, "baseline_command", None) == "list":
        return _archive_command(rt, args)
    if args.command == "baseline":
        from rag_health.results import BaselineResult
        from rag_health.stages.drift import promote

        preflight.check(rt, {registry.ARCHIVE})
        return BaselineResult("pass", promote(rt, args.run_id))
    inputs = {o.dest: getattr(args, o.dest) for o in options if not o.setting}
    if "allow_mass_delete" in inputs:  # nobody can approve at a terminal later: hold unless allowed now
        from rag_health.ingest import OnMassChange

        inputs["on_mass_change"] = OnMassChange.for_terminal(bool(inputs.pop("allow_mass_delete"))).value
    preflight.check(rt, stage.needs if stage else registry.suite_needs(), inputs.get("configs"))
    from rag_health import local

    if not (args.prefect or local.prefect_configured()):  # no server to report to: no flows, seconds not tens
        if stage is None:
            return local.run_suite(settings, on_mass_change=inputs.get("on_mass_change", "hold"),
                                   promote_baseline=bool(inputs.get("promote_baseline")))
        return local.run_stage(settings, stage.name, inputs, new_run_id() if stage.new_run_id else None)
    from flows.resources import unwrap
    from flows.stages import FLOWS
    from flows.suite import suite_flow

    flow = FLOWS[stage.name] if stage else suite_flow
    # Options the flow has as parameters go as parameters (the UI and the flow run's name show them); the rest
    # are settings overrides.
    accepted = inspect.signature(flow.fn).parameters
    kwargs = {**common, **inputs, **{k: v for k, v in overrides.items() if k in accepted},
              "settings_overrides": {k: v for k, v in overrides.items() if k not in accepted}}
    if stage is not None and stage.new_run_id:
        kwargs["run_id"] = new_run_id()
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # parameters are never None: left out, defaulted
    return unwrap(flow(return_state=True, **kwargs))


def _human(command: str, result: Any, data: dict[str, Any]) -> str:
    from rag_health import registry, suite

    if command == "run":
        return suite.summary(data)
    stage = registry.stages().get(command)
    if stage is not None and stage.summary is not None:
        return stage.summary(result)
    return dumps({k: v for k, v in data.items() if k not in ("per_probe", "documents", "items")}, indent=1)


if __name__ == "__main__":
    sys.exit(main())
