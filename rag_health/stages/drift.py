"""Drift: snapshot this run's chunks, compare them with the baseline run's in an Evidently report, publish it
through the run archive."""

from __future__ import annotations

from datetime import datetime, timezone

from checks.drift import drift_check
from checks.result import worst
from rag_health import registry
from rag_health.archive import DRIFT_PAGE, REPORT_INDEX_HTML, report_key, result_key
from rag_health.errors import ConfigError
from rag_health.results import DriftResult, Skipped
from rag_health.runtime import Runtime
from rag_health.suite import overall_verdict, statuses
from rag_health.views import Artifact, Link


def run(rt: Runtime, run_id: str, promote_baseline: bool = False, verdict: str = "",
        final: bool = True) -> DriftResult | Skipped:
    """The first run (or a promoted one) becomes the baseline and is compared with itself. final: this stage is
    the run's last write, so it moves the pointers (index, latest, baseline) itself; the suite passes False and
    moves them after the run's result is stored."""
    archive = rt.archive
    from rag_health.drift import drift_report, snapshot_frame  # pandas and Evidently: only when a report is made

    current = snapshot_frame(rt.index, rt.settings.drift_sample_rows)
    if current.empty:
        return Skipped("the index is empty")
    archive.save_snapshot(run_id, current)
    baseline_run = archive.baseline_run()
    unavailable = archive.unreachable  # the baseline pointer could not be read: never promote over it blindly
    promoted = promote_baseline or (baseline_run is None and not unavailable)
    if promoted or baseline_run is None:
        baseline_run = run_id
    reference = current if baseline_run == run_id else archive.snapshot(baseline_run)
    if reference is None or reference.empty:
        reference, baseline_run = current, run_id
    name = rt.index.name
    title = (f"rag-health drift: run {run_id} vs baseline {baseline_run} — collection {name}"
             if baseline_run != run_id else
             f"rag-health drift: run {run_id} is the baseline (first run or promoted) — collection {name}")
    html_text, figures = drift_report(
        reference, current, title, first_run=baseline_run == run_id, run_id=run_id, top_k=rt.settings.probe_top_k,
        retrieval=(archive.probe_ranks(baseline_run), archive.probe_ranks(run_id)))
    entry = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "baseline_run": baseline_run,
             "verdict": verdict, "embedding_drift_score": figures.get("embedding_drift_score"),
             "drift_score": figures.get("embedding_drift_score"), "page": DRIFT_PAGE}
    uri, local_path = archive.publish_report(run_id, html_text, entry, commit=False)
    archive.defer_pointers(run_id, baseline=promoted)
    if final:
        archive.commit(run_id)
    check = drift_check(figures, baseline_run=baseline_run if baseline_run != run_id else None,
                        max_drifted_share=rt.settings.drift_threshold)
    still = () if final else (result_key(run_id), *archive.pointer_keys(run_id))
    outbox = archive.waiting(run_id, still)
    status, findings = _publish_status(check.status, check.findings, outbox, unavailable)
    return DriftResult(
        status=status, html=local_path, run_id=run_id, baseline_run=baseline_run, baseline_promoted=promoted,
        figures=figures, sample_rows=int(len(current)), reference_rows=int(len(reference)),
        s3_uri=uri if archive.remote else None,
        s3_index=archive.uri(REPORT_INDEX_HTML) if archive.remote and uri else None,
        presigned_url=archive.presign(report_key(run_id)) if uri else None,
        url=archive.link(report_key(run_id), run_id), outbox=tuple(outbox) if archive.remote else None,
        findings=findings)


def _publish_status(status: str, findings: tuple[str, ...], outbox: list[str],
                    unavailable: str | None) -> tuple[str, tuple[str, ...]]:
    """The drift check's status and findings, with a warn for a baseline that could not be read and for files
    left in the outbox."""
    more = []
    if unavailable:
        more.append(f"drift: warn — the baseline could not be read ({unavailable}); no baseline comparison (warn)")
    if outbox:
        more.append(f"publish: warn — {len(outbox)} files in the outbox, not published (warn)")
    return (worst(status, "warn") if more else status), (*findings, *more)


def promote(rt: Runtime, run_id: str | None = None) -> str:
    """Make a run (default: the latest) the drift baseline."""
    run_id = run_id or rt.archive.latest_run()
    if not run_id:
        raise ConfigError("no run has been recorded yet: run the suite (or the drift stage) first")
    rt.archive.promote(run_id)
    return run_id


def artifacts(result: DriftResult | Skipped) -> list[Artifact]:
    if isinstance(result, Skipped):
        return []
    local = Link("drift-report" if not result.s3_uri else "drift-report-local", f"file://{result.html}",
                 "Evidently drift report (state directory)",
                 "The Evidently drift report as a file on the worker that wrote it")
    # A link a browser opens from the Prefect UI: https (presigned or the base URL) once published, else the file.
    if result.s3_uri and result.url and result.url.startswith(("https://", "http://")):
        return [Link("drift-report", result.url, "Evidently drift report",
                     "The Evidently drift report of this run against the baseline, published to the bucket"), local]
    return [local]


STAGE = registry.Stage(
    name="drift", run=run, result_type=DriftResult, artifacts=artifacts, task_name="drift-report",
    help="build the drift report against the baseline", example="rag-health drift --promote-baseline",
    needs=frozenset({registry.INDEX, registry.ARCHIVE}), writes=True, takes_run_id=True,
    options=(registry.promote_baseline(),),
    # The verdict so far goes into the report index; the suite moves the pointers itself, after the run's result.
    from_earlier=lambda earlier, options: {"promote_baseline": options.promote_baseline, "final": False,
                                           "verdict": overall_verdict(statuses(earlier))},
)
