"""Reading the run archive back for people: `rag-health runs list`, `runs show RUN_ID` and `baseline list`
(bucket or state directory, whichever holds the history)."""

from __future__ import annotations

from typing import Any

from rag_health.archive import RunArchive, checked_run_id, dumps
from rag_health.errors import ConfigError
from rag_health.run_ids import run_created
from rag_health.views import one_line


def _readable(archive: RunArchive) -> RunArchive:
    if archive.unreachable:
        raise RuntimeError(archive.unreachable)
    return archive


def runs_list(archive: RunArchive, limit: int = 50) -> dict[str, Any]:
    """The newest `limit` runs with a stored result: id, created, verdict and each stage's status."""
    if limit < 1:
        from rag_health.errors import ConfigError

        raise ConfigError(f"--limit must be at least 1, got {limit}")
    ids = _readable(archive).run_ids()
    rows = []
    for run_id in ids[:limit]:
        result = archive.result(run_id) or {}
        rows.append({"run_id": run_id, "created": run_created(run_id), "verdict": result.get("verdict", ""),
                     "stages": result.get("stages", {})})
    return {"runs": rows, "total": len(ids), "archive": archive.uri("")}


def runs_show(archive: RunArchive, run_id: str) -> dict[str, Any]:
    result = _readable(archive).result(checked_run_id(run_id))
    if result is None:
        raise ConfigError(f"no run {run_id} in the run archive {archive.uri('')}")
    return result


def baseline_list(archive: RunArchive) -> dict[str, Any]:
    """The baseline pointer, the latest run and every run that could become the baseline (it has a snapshot)."""
    pointer = _readable(archive).baseline_pointer()
    latest = archive.latest_run()
    candidates = [{"run_id": r, "created": run_created(r), "baseline": bool(pointer) and pointer["run_id"] == r,
                   "latest": r == latest} for r in archive.snapshot_runs()]
    return {"baseline": pointer, "latest_run": latest, "candidates": candidates, "archive": archive.uri("")}


def runs_text(listing: dict[str, Any]) -> str:
    lines = [f"{len(listing['runs'])} of {listing['total']} runs in {listing['archive']}, newest first", ""]
    for row in listing["runs"]:
        stages = " ".join(f"{k}={v}" for k, v in row["stages"].items())
        lines.append(f"{row['run_id']:<26} {row['created']:<26} {row['verdict']:<5} {one_line(stages)}")
    return "\n".join(lines)


def baseline_text(listing: dict[str, Any]) -> str:
    pointer = listing["baseline"]
    lines = [f"baseline: {pointer['run_id']} (promoted {pointer.get('promoted_at', '?')})" if pointer
             else "baseline: none yet (the next drift run becomes it)", f"latest run: {listing['latest_run']}",
             "", "candidates (runs with a drift snapshot), newest first:"]
    lines += [f"  {c['run_id']:<26} {c['created']:<26}" + ("  baseline" if c["baseline"] else "")
              + ("  latest" if c["latest"] else "") for c in listing["candidates"]]
    return "\n".join(lines)


def show_text(result: dict[str, Any]) -> str:
    """A stored result as `rag-health run` prints it (the JSON itself when it is not a whole run's)."""
    from rag_health.suite import summary

    try:
        return summary(result)
    except (KeyError, TypeError, AttributeError):
        return dumps(result, indent=1)
