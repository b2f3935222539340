"""The stage registry: one entry per stage with everything the rest of the system builds from it. The Prefect
tasks and flows (flows/), the CLI sub-commands, their options and the pre-flight checks are made from these
entries, so adding a stage is one module under rag_health/stages/ plus one line in STAGES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag_health.views import Artifact


@dataclass(frozen=True)
class Option:
    """A CLI option and the flow parameter of the same name. `setting`: it overrides the settings field `dest`
    (otherwise it is an input of the stage's run function)."""

    flags: tuple[str, ...]
    dest: str
    help: str
    repeat: bool = False
    switch: bool = False
    metavar: str | None = None
    setting: bool = True


# Options several stages share, so their wording is written once.
def docs() -> Option:
    return Option(("--docs",), "docs", "document folder or s3://bucket/prefix (default: the sample corpus in "
                                       "datasets/docs)")


def manifest() -> Option:
    return Option(("--manifest",), "manifest", "manifest of expected documents (YAML)")


def probes() -> Option:
    return Option(("--probes",), "probes", "probe set (JSONL); repeatable", repeat=True)


def rules() -> tuple[Option, ...]:
    return (Option(("--rules",), "rules", "Prometheus rule file or folder (groups[].rules[] or PrometheusRule); "
                                          "repeatable", repeat=True),
            Option(("--runbook-url-prefix",), "runbook_url_prefix", "runbook URL prefix mapped to the docs root, "
                                                                   "or URL=FOLDER; repeatable", repeat=True))


def today() -> Option:
    return Option(("--today",), "today", "audit date YYYY-MM-DD (default: today)")


def fail_under(help: str) -> Option:
    return Option(("--fail-under",), "fail_under", help, repeat=True, metavar="[SET:]METRIC=MIN")


def require_metadata() -> Option:
    return Option(("--require-metadata",), "required_metadata", "metadata field every chunk must carry; repeatable "
                  "(default: RAG_HEALTH_REQUIRED_METADATA)", repeat=True, metavar="FIELD")


def promote_baseline() -> Option:
    return Option(("--promote-baseline",), "promote_baseline", "make this run the drift baseline", switch=True,
                  setting=False)


def allow_mass_delete() -> Option:
    return Option(("--allow-mass-delete",), "allow_mass_delete", "go ahead even when more than max_delete_fraction "
                  "of the indexed documents would be removed or replaced (otherwise the change is held back and "
                  "nothing is written)", switch=True, setting=False)


# What a stage needs before it may start: each is checked up front so bad configuration exits 2 before any work.
SOURCE, MANIFEST, RULES, PROBES, THRESHOLDS, CHUNKINGS = "source", "manifest", "rules", "probes", "thresholds", \
    "chunkings"
INDEX, ARCHIVE = "index", "archive"  # the Chroma collection (server reachable), the run archive (bucket exists)


@dataclass(frozen=True)
class SuiteOptions:
    """What a whole run was asked to do, beyond the settings: its stages read what they need of it."""

    on_mass_change: str = "hold"  # an ingest.OnMassChange value
    promote_baseline: bool = False


@dataclass(frozen=True)
class Stage:
    """name: the CLI command, the key of its result in a run's JSON and the flow's suffix.
    run(runtime, **inputs): the core function; its result is `result_type` (or results.Skipped).
    artifacts(result): what the flow publishes. summary(result): the human output of the stage's own command
    (None: the result's JSON without its long lists)."""

    name: str
    run: Callable[..., Any]
    result_type: type
    artifacts: Callable[[Any], list[Artifact]]
    help: str
    example: str
    task_name: str
    options: tuple[Option, ...] = ()
    needs: frozenset[str] = frozenset()
    summary: Callable[[Any], str] | None = None
    retries: int = 2  # tries after the first, taken only when the stage talks to S3 or a Chroma server
    new_run_id: bool = False  # its own command starts a run id (so what it stores can be a later baseline)
    reports_progress: bool = False  # it calls rt.progress as it goes (a bar on a terminal, an artifact in Prefect)
    writes: bool = False  # writes the collection or the run archive: runs under the collection lock
    takes_run_id: bool = False  # in a suite, it is given the run's id (what it stores belongs to that run)
    # In a suite: what it takes from the stages before it (their results by name) and from the run's options.
    from_earlier: Callable[[dict[str, Any], SuiteOptions], dict[str, Any]] | None = None


def stages() -> dict[str, Stage]:
    """Every stage, in suite order (compare-chunking is not part of the suite)."""
    from rag_health.stages import compare, coverage, drift, freshness, ingest, probes, quality

    return {s.name: s for s in (ingest.STAGE, freshness.STAGE, coverage.STAGE, quality.STAGE, probes.STAGE,
                                drift.STAGE, compare.STAGE)}


SUITE = ("ingest", "freshness", "coverage", "quality", "probes", "drift")


def suite_options() -> tuple[Option, ...]:
    """`rag-health run` (the suite flow): every setting its stages take, each once, and --promote-baseline (the
    stages' other inputs, such as ingest's --only, are their own commands' business)."""
    found: dict[str, Option] = {}
    every = stages()
    for name in SUITE:
        for option in every[name].options:
            if option.setting:
                found.setdefault(option.dest, option)
    return (*found.values(), promote_baseline(), allow_mass_delete())


def suite_needs() -> frozenset[str]:
    every = stages()
    return frozenset(n for name in SUITE for n in every[name].needs)


def talks_to_remote(stage: Stage, settings: Any) -> bool:
    """Whether this stage, with these settings, talks to S3 or a Chroma server (and so may meet a passing network
    failure worth a retry): a local folder, an embedded Chroma and a local archive never are."""
    return ((INDEX in stage.needs and settings.chroma_mode == "http")
            or (SOURCE in stage.needs and str(settings.docs).startswith("s3://"))
            or (ARCHIVE in stage.needs and bool(settings.s3_bucket))
            or (stage.name == "compare-chunking" and settings.chroma_mode == "http"))
