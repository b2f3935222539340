"""Probes: retrieval hit rate per probe set (files, alerts from coverage, generated from the corpus, lifecycle
guards), per-probe ranks against the baseline run, and the verdict from checks.retrieval."""

from __future__ import annotations

from typing import Any

from checks.pii import redact
from checks.retrieval import probe_check, regressions
from rag_health import registry
from rag_health.probe_generation import GenerationSettings, generate_probes
from rag_health.probes import ProbeSet, load_probe_set, probe_rows, probe_set_from_rows, run_probes, unique_set_names
from rag_health.results import ProbesResult, Skipped
from rag_health.runtime import Runtime
from rag_health.settings import Settings
from rag_health.sources import unlisted_reason
from rag_health.views import Artifact, table

UNGATED_SETS = ("generated", "lifecycle")  # no default hit@5 gate: synthetic or guard-only; --fail-under applies


def probe_files(settings: Settings) -> list[ProbeSet]:
    """The configured probe files (or the sample's), each a set named after its file."""
    paths = settings.effective_probes()
    return [load_probe_set(p, name) for p, name in zip(paths, unique_set_names(paths))]


def lifecycle_probes(rt: Runtime) -> list[dict[str, Any]]:
    """Guard probes for documents that must not be retrieved: each superseded document that is still indexed
    (asked with its replacement's title; the replacement must rank above it) and each document deleted at the
    source but still indexed (asked with its own title; it must not be in the top k)."""
    ledger, manifest, source = rt.ledger(), rt.manifest, rt.source()
    listed = {e.doc_id for e in source.list()}
    unlisted = getattr(source, "unlisted", ())
    rows = []
    for doc_id, entry in sorted(ledger.items()):
        meta = {**manifest.defaults_for(doc_id), **entry.metadata}
        title = str(meta.get("title") or doc_id)
        successor = str(meta.get("superseded_by") or "")
        if successor and successor in ledger:
            succ = {**manifest.defaults_for(successor), **ledger[successor].metadata}
            rows.append({"id": f"superseded:{doc_id}", "query": str(succ.get("title") or successor),
                         "relevant": [successor], "must_not_retrieve": [doc_id], "kind": "superseded"})
        elif doc_id not in listed and not unlisted_reason(doc_id, unlisted):
            rows.append({"id": f"deleted:{doc_id}", "query": title, "relevant": [], "must_not_retrieve": [doc_id],
                         "kind": "deleted"})
    return rows


def probe_sets(rt: Runtime, extra_sets: dict[str, list[dict[str, Any]]] | None = None) -> list[ProbeSet]:
    """Every probe set of a run: the configured files, generated sets handed in (alerts), the corpus-generated
    set and the lifecycle guards."""
    s = rt.settings
    sets = probe_files(s)
    sets += [probe_set_from_rows(name, rows) for name, rows in (extra_sets or {}).items() if rows]
    if s.generate_probes and rt.index.count():
        rows = generate_probes(
            ((r.doc_id, int(r.metadata.get("chunk_index", 0)), str(r.metadata.get("title", "")),
              str(r.metadata.get("section", "")), r.text)
             for records, _ in rt.index.iter_chunks() for r in records),
            GenerationSettings(title_words=s.probe_title_words, keep_ratio=s.probe_keep_ratio,
                               max_verbatim=s.probe_max_verbatim, max_probes=s.generated_probes_max))
        if rows:  # queries and sections are cut from document text: no PII in what the run stores or shows
            rows = [{**r, **{k: redact(r[k]) for k in ("query", "section") if isinstance(r.get(k), str)}}
                    for r in rows]
            sets.append(probe_set_from_rows("generated", rows))
    lifecycle = lifecycle_probes(rt)
    if lifecycle:
        sets.append(probe_set_from_rows("lifecycle", lifecycle))
    return sets


def run(rt: Runtime, extra_sets: dict[str, list[dict[str, Any]]] | None = None,
        run_id: str | None = None) -> ProbesResult | Skipped:
    """extra_sets: generated probe sets by name (e.g. "alerts" from the coverage stage), as probe dicts.
    With a run id, per-probe results are stored so later runs can list regressions against this one."""
    s = rt.settings
    sets = probe_sets(rt, extra_sets)
    if not sets:
        return Skipped("no probe sets configured (--probes)", {"sets": {}, "per_probe": []})
    top_k = s.probe_top_k
    outcomes = run_probes(rt.index, rt.embedder, [p for ps in sets for p in ps.probes], set(rt.ledger()),
                          top_k=top_k, chunk_depth=max(s.probe_chunk_depth, top_k * 3))
    per_probe = [o.row() for o in outcomes]
    baseline_run = rt.archive.baseline_run()
    baseline = rt.archive.probe_ranks(baseline_run) if baseline_run != run_id else None
    # The stored ranks are written as every run file is, PII redacted (archive.dumps): compared in that form.
    regressed = regressions(baseline or {}, [_as_stored(row) for row in per_probe],
                            max_rank_drop=s.regression_rank_drop, top_k=top_k)
    excluded = [{"probe_id": o.probe.probe_id, "set": o.probe.set_name, **e}
                for o in outcomes if o.rank is None or o.rank > top_k for e in o.filter_excluded]
    errors = [e for ps in sets for e in ps.errors]
    check = probe_check([o.as_ranks() for o in outcomes], hit_at_5_warn=s.hit_at_5_warn,
                        hit_at_5_fail=s.hit_at_5_fail, fail_under=s.fail_under, top_k=top_k,
                        recall_ks=sorted({5, 10, top_k}), ungated=UNGATED_SETS, regressed=regressed,
                        max_regressions=s.max_regressions, baseline_run=baseline_run, excluded=excluded,
                        file_errors=errors)
    if run_id:
        rt.archive.save_probe_ranks(run_id, {o.probe.key: {"rank": o.rank, "retrieved": list(o.retrieved),
                                                           "similarity": o.similarity,
                                                           "top_similarity": o.top_similarity}
                                             for o in outcomes})
    return ProbesResult(
        status=check.status, sets=check.metrics["sets"], overall=check.metrics["overall"],
        baseline_run=baseline_run if baseline is not None else None,
        regressions=tuple({k: r[k] for k in ("set", "probe_id", "was_rank", "now_rank", "displaced_by")}
                          for r in regressed),
        filter_excluded=tuple(excluded), per_probe=tuple(per_probe), errors=tuple(errors), findings=check.findings,
        files={ps.name: ps.path for ps in sets})


def artifacts(result: ProbesResult | Skipped) -> list[Artifact]:
    if isinstance(result, Skipped):
        return []
    missed = [{"probe_id": p["probe_id"], "set": p["set"], "query": p["query"], "rank": p["rank"],
               "relevant": ", ".join(p["relevant"]), "retrieved": ", ".join(p["retrieved"][:3])}
              for p in result.per_probe if p["relevant"] and (p["rank"] is None or p["rank"] > 5)]
    return [
        *table("retrieval-hit-rate", [{"set": name, **m} for name, m in result.sets.items()],
               "Document-level retrieval metrics per probe set"),
        *table("missed-probes", missed, "Probes whose relevant document is not in the top 5"),
        *table("probe-regressions", list(result.regressions),
               f"Probes that regressed against baseline run {result.baseline_run}, with the displacing document"),
        *table("filter-exclusions", list(result.filter_excluded),
               "Filter probes whose relevant document the metadata filter excludes (missing or wrong field)"),
    ]


def _as_stored(row: dict[str, Any]) -> dict[str, Any]:
    """A probe's row with its ids as the run archive stores them (a probe id or a doc id that reads as PII
    redacted), so this run compares with the baseline's stored ranks like for like."""
    return {**row, "probe_id": redact(str(row["probe_id"])), "set": redact(str(row["set"])),
            "retrieved": [redact(d) for d in row.get("retrieved") or []],
            "relevant": [redact(d) for d in row.get("relevant") or []]}


STAGE = registry.Stage(
    name="probes", run=run, result_type=ProbesResult, artifacts=artifacts, task_name="run-probes",
    help="run retrieval hit-rate probes", example="rag-health probes --probes datasets/probes/golden.jsonl",
    options=(registry.docs(), registry.probes(),
             registry.fail_under("fail when a probe set's metric is below MIN, e.g. 'hit@5=0.9'; repeatable")),
    needs=frozenset({registry.SOURCE, registry.PROBES, registry.THRESHOLDS, registry.INDEX, registry.ARCHIVE}),
    new_run_id=True, writes=True, takes_run_id=True,
    from_earlier=lambda earlier, options: {"extra_sets": {"alerts": probe_rows(getattr(earlier.get("coverage"),
                                                                                       "probes", ()))}},
)
