"""A whole run's result from its stages' results: the verdict, the findings in stage order, the report links,
and the result file in the run archive."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from checks.result import severity, worst
from checks.result import warning as warned
from rag_health.archive import FRONT_PAGE, front_page_key, front_page_links, previous_front_page_link, result_key
from rag_health.report_pages import history_entry
from rag_health.results import RunResult, failing_sentences, to_json
from rag_health.runtime import Runtime
from rag_health.views import LISTED_IDS, Artifact, Link, Markdown, Table, md, one_line


def overall_verdict(stage_statuses: Mapping[str, str]) -> str:
    return worst(*[st for st in stage_statuses.values() if st in ("pass", "warn", "fail")])


def statuses(outputs: Mapping[str, Any]) -> dict[str, str]:
    return {name: getattr(out, "status", "pass") for name, out in outputs.items()}


REPORT_KEYS = ("html", "s3_uri", "s3_index", "presigned_url", "url", "outbox", "baseline_run")
PUBLISH_WARN = "publish: warn — "


def assemble(run_id: str, rt: Runtime, outputs: Mapping[str, Any], timings: Mapping[str, float]) -> RunResult:
    """The run's result: the CLI contract. Later versions add keys; they never rename these."""
    stage_statuses = statuses(outputs)
    findings = [sentence for out in outputs.values() for sentence in out.sentences()]
    drift = outputs.get("drift")
    report = None
    if drift is not None:
        shown = to_json(drift)
        report = {k: shown[k] for k in REPORT_KEYS if k in shown}
    return RunResult(run_id=run_id, verdict=overall_verdict(stage_statuses), stages=stage_statuses,
                     findings=tuple(findings), docs=rt.settings.docs, collection=rt.index.name,
                     model=rt.model_info.as_metadata(), outputs=dict(outputs),
                     timings={k: round(v, 3) for k, v in timings.items()},
                     report=report, documents=audit_documents(rt))


def audit_documents(rt: Runtime) -> tuple[dict[str, Any], ...]:
    """Per indexed document: content hash, chunk count, chunker configuration and model fingerprint."""
    return tuple({"doc_id": e.doc_id, "content_hash": e.content_hash, "chunks": len(e.chunk_ids),
                  "chunker": e.chunker, "model_fingerprint": e.model_fingerprint, "source_version": e.source_version,
                  "ingested_at": e.ingested_at, "complete": e.complete}
                 for e in sorted(rt.ledger().values(), key=lambda e: e.doc_id))


def save(rt: Runtime, result: RunResult, front_page: Callable[[dict[str, Any]], str] | None = None) -> RunResult:
    """Store the run in the archive, its objects before its pointers: the front page (front_page renders it from
    the result), the result (never overwritten), then commit() moves the index, latest and baseline pointers.
    The returned result names its local file; files the bucket did not take are listed in report.outbox."""
    archive = rt.archive
    run_id = result.run_id
    report = dict(result.report or {})
    shown = to_json(result)  # once for the front page and the history entry
    if front_page is not None:
        archive.save_page(run_id, front_page_key(run_id), front_page(shown))
        report["index_html"] = archive.link(front_page_key(run_id), run_id)
    page = {"page": FRONT_PAGE} if front_page is not None else {}
    archive.amend_entry(run_id, {**{k: v for k, v in history_entry(shown).items() if k != "created_at"}, **page})
    if archive.remote:
        report["outbox"] = archive.waiting(run_id, (result_key(run_id), *archive.pointer_keys(run_id)))
    result = _with_outbox(dataclasses.replace(result, report=report or result.report), report.get("outbox"))
    path = archive.save_result(run_id, to_json(result))
    archive.commit(run_id)
    late = archive.waiting(run_id) if archive.remote else []
    if late and late != report.get("outbox"):  # the store failed while the result or pointers were written
        result = _with_outbox(dataclasses.replace(result, report={**report, "outbox": late}), late)
    return dataclasses.replace(result, result_file=path)


def _with_outbox(result: RunResult, outbox: list[str] | None) -> RunResult:
    """One publish finding with the final count of files waiting, and a warn verdict (never a fail)."""
    findings = tuple(f for f in result.findings if not f.startswith(PUBLISH_WARN))
    if not outbox:
        return dataclasses.replace(result, findings=findings)
    return dataclasses.replace(result, findings=(*findings, f"{PUBLISH_WARN}{len(outbox)} files in the outbox, "
                                                            "not published (warn)"),
                               verdict=worst(result.verdict, "warn"))


MESSAGE_CHARS = 400  # a flow run's state message: the UI shows it on one line
EVENT_FINDINGS = 20  # findings an event carries (the run archive and the artifacts hold all of them)
SENTENCE_CHARS = 300


def clip(text: str, limit: int) -> str:
    """One line, at most `limit` characters (an ellipsis marks the cut)."""
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def failure_message(outputs: Mapping[str, Any], label: str = "rag-health verdict") -> str:
    """A short state message naming the failing checks: '<label>: fail — probes: hit@5 0.62 below 0.9; quality:
    …'. The findings of stages that only warn are left out; the artifacts and the run archive hold everything."""
    from checks.pii import redact
    parts = []
    for name, out in outputs.items():
        failing = failing_sentences(out)
        if getattr(out, "status", None) != "fail":
            continue
        first = clip(redact(failing[0]), 200) if failing else "failed"  # a state message is shown and logged
        parts.append(f"{name}: {first}" + (f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""))
    return clip(f"{label}: fail — " + "; ".join(parts), MESSAGE_CHARS)


def event_payload(run_id: str | None, outputs: Mapping[str, Any], report: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """What a rag-health event carries: the verdict, each stage's status, the failing and warning findings
    (bounded, one line each, PII redacted), and the report link when a browser can open it."""
    from checks.pii import redact

    stage_statuses = statuses(outputs)
    verdict = overall_verdict(stage_statuses)
    failing = [{"stage": name, "finding": clip(redact(f), SENTENCE_CHARS)}
               for name, out in outputs.items() for f in failing_sentences(out)]
    warning = [{"stage": name, "finding": clip(redact(f), SENTENCE_CHARS)}
               for name, out in outputs.items() for f in warned(out.sentences())]
    payload: dict[str, Any] = {
        "run_id": run_id, "verdict": verdict, "stages": stage_statuses,
        "summary": failure_message(outputs) if verdict == "fail" else f"rag-health verdict: {verdict}",
        "failing": failing[:EVENT_FINDINGS], "failing_total": len(failing),
        "warnings": warning[:EVENT_FINDINGS], "warnings_total": len(warning)}
    url = str((report or {}).get("url") or "")
    if url.startswith(("https://", "http://")):
        payload["report_url"] = url
    return payload


def _ids(label: str, ids: list[str]) -> list[str]:
    if not ids:
        return []
    shown_ids = ", ".join(md(d) for d in ids[:LISTED_IDS])
    more = f" … and {len(ids) - LISTED_IDS} more (ingest.{label}_ids in result.json)" if len(ids) > LISTED_IDS else ""
    return [f"- **{label}** ({len(ids)}): {shown_ids}{more}"]


def verdict_artifacts(result: dict[str, Any]) -> list[Artifact]:
    """What the suite's own flow run shows: the verdict with stages, quality score, what the ingest changed (by
    id) and links; the findings as a table; the report as a link artifact."""
    lines = [f"# rag-health verdict: **{result['verdict']}**", "", f"Run {md(result.get('run_id', ''))} on collection "
             f"{md(result.get('collection', ''))}, documents from {md(result.get('docs', ''))}.", "",
             "| stage | status |", "|---|---|"]
    lines += [f"| {stage} | {status} |" for stage, status in result["stages"].items()]
    quality = result.get("quality") or {}
    if "score" in quality:
        lowest = ", ".join(f"{md(d['doc_id'])} {d['score']:.2f}" for d in quality.get("documents", [])[:5])
        lines += ["", f"Quality score **{quality['score']:.3f}**; lowest documents: {lowest or 'none'}"]
    ingest = result.get("ingest") or {}
    if ingest.get("status") not in (None, "skip"):
        changes = [*_ids("added", ingest.get("added_ids") or []), *_ids("changed", ingest.get("changed_ids") or []),
                   *_ids("removed", ingest.get("removed_ids") or [])]
        held = ingest.get("held") or {}
        if held:
            changes += _ids("held back", [*(held.get("removed_ids") or []), *(held.get("replaced_ids") or [])])
        lines += ["", "## What the ingest changed", ""] + (changes or ["No document was added, changed or removed."])
    report = result.get("report") or {}
    links = [(name, report[key]) for name, key in (("front page", "index_html"), ("drift report", "url"))
             if str(report.get(key, "")).startswith(("https://", "http://"))]  # links a browser opens from the UI
    if links:
        lines += ["", " · ".join(f"[{name}](<{url}>)" for name, url in links)]
    elif report.get("index_html"):
        lines += ["", f"Front page on the worker: {md(report['index_html'])}"]
    if report.get("outbox"):
        lines += ["", f"{len(report['outbox'])} files wait in the outbox (not published yet)"]
    if result.get("findings"):
        lines += ["", "## Findings"] + [f"- {md(f)}" for f in result["findings"][:50]]
        if len(result["findings"]) > 50:
            lines.append(f"- … and {len(result['findings']) - 50} more (the health-findings table and result.json)")
    shown_artifacts: list[Artifact] = [Markdown("health-verdict", "\n".join(lines),
                                                "The run's verdict: stages, quality, ingest changes, findings, links")]
    rows = [{"stage": stage, "status": status, "finding": f}
            for stage, status, f in _stage_findings(result)]
    if rows:
        shown_artifacts.append(Table("health-findings", tuple(rows[:200]),
                                     "Every finding of the run with the stage that raised it and its status"))
    for name, key, description in (("front page", "index_html", "The run's front page: verdict, changes, links"),
                                   ("drift report", "url", "The Evidently drift report of this run")):
        url = str(report.get(key, ""))
        if url.startswith(("https://", "http://")):
            shown_artifacts.append(Link(f"health-{name.replace(' ', '-')}", url, f"rag-health {name}", description))
    return shown_artifacts


def _stage_findings(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(stage, the finding's own status, finding) for the run's findings, in stage order: fail or warn as the
    sentence says, "note" for one that explains and gates nothing."""
    out = []
    for stage in result["stages"]:
        shown = result.get(stage) or {}
        sentences = [f for f in shown.get("findings") or [] if isinstance(f, str)]
        for check in ("chunks", "embeddings"):  # quality: its findings are rows; the checks' sentences are here
            if isinstance(shown.get(check), dict):
                sentences += shown[check].get("findings") or []
        out += [(stage, severity(f) or "note", f) for f in sentences]
    known = {f for _, _, f in out}
    out += [("run", severity(f) or "note", f) for f in result.get("findings") or [] if f not in known]
    return out


def summary(result: dict[str, Any]) -> str:
    """What `rag-health run` prints without --json."""
    lines = [f"rag-health verdict: {result['verdict'].upper()}  (run {result['run_id']})", ""]
    lines += [f"  {stage:<10} {status}" for stage, status in result["stages"].items()]
    cov = result.get("coverage", {})
    if cov.get("rules"):
        lines += ["", f"coverage: {cov['covered_rules']} of {cov['rules']} alert rules have a runbook; "
                  f"{len(cov['alerts_missing_runbook'])} alerts without one; "
                  f"{len(cov['runbooks_without_alert'])} runbooks no alert points to"]
    ing = result.get("ingest", {})
    lines += ["", f"ingest: {ing.get('documents')} documents, {ing.get('added')} added, {ing.get('changed')} changed, "
              f"{ing.get('removed')} removed, {ing.get('unchanged')} unchanged, "
              f"{ing.get('chunks_embedded')} chunks embedded"]
    lines += [f"  note: {one_line(n)}" for n in ing.get("notices") or []]
    skipped = ing.get("skipped") or []
    lines += [f"  skipped {one_line(x['doc_id'])}: {one_line(x['reason'])}" for x in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  ... and {len(skipped) - 10} more skipped (ingest.skipped in --json)")
    quality = result.get("quality") or {}
    if "score" in quality:
        kinds = ", ".join(f"{k} {v}" for k, v in (quality.get("findings_by_kind") or {}).items()) or "no findings"
        lines.append(f"quality: score {quality['score']:.3f}, {quality.get('tokens_lost', 0)} tokens past the "
                     f"model window; {kinds}")
    lines += [_probe_line(name, m) for name, m in (result.get("probes", {}).get("sets") or {}).items()]
    if result.get("findings"):
        lines += ["", "findings:"] + [f"  - {one_line(f)}" for f in result["findings"]]
    report = result.get("report") or {}
    if report.get("html"):
        lines += ["", f"drift report: {one_line(report['html'])}"]
    if report.get("s3_uri"):
        lines.append(f"published:    {report['s3_uri']}")
    if str(report.get("url", "")).startswith(("https://", "http://")):
        lines.append(f"open:         {report['url']}")
    if report.get("index_html"):
        lines.append(f"front page:   {one_line(report['index_html'])}")
    if report.get("outbox"):
        lines.append(f"outbox:       {len(report['outbox'])} files wait under the state directory's outbox/ "
                     "(uploaded by the next run)")
    return "\n".join(lines)


def _probe_line(name: str, m: dict[str, Any]) -> str:
    if not m.get("n"):
        lingering = next((v for k, v in m.items() if k.startswith("lingering@")), 0)
        return f"probes {name}: {m.get('guarded_n', 0)} guard probes, {lingering} still retrieve a removed document"
    return (f"probes {name}: n={m['n']} hit@1={m['hit@1']:.3f} hit@5={m['hit@5']:.3f} hit@10={m['hit@10']:.3f} "
            f"recall@10={m['recall@10']:.3f} P@5={m['precision@5']:.3f} MRR={m['mrr']:.3f} "
            f"nDCG@10={m['ndcg@10']:.3f}" + (f" regressions={len(m['regressions'])}" if m.get("regressions") else ""))


def render_front_page(rt: Runtime, result: dict[str, Any]) -> str:
    """The run's front page (rag_health.report_pages) with the baseline run's result for the changes, and links
    relative to reports/<run id>/ so the page opens from disk, from the bucket and behind a base URL alike."""
    import os

    from rag_health.errors import Unreachable
    from rag_health.report_pages import front_page

    run_id = result["run_id"]
    baseline_id = (result.get("drift") or {}).get("baseline_run")
    try:  # the history may be unreachable (the run's files then wait in the outbox): render without it
        baseline = rt.archive.result(baseline_id) if baseline_id and baseline_id != run_id else None
        runs = [r for r in rt.archive.run_ids() if r != run_id]
    except Unreachable:
        baseline, runs = None, []
    links = front_page_links(run_id)
    if runs:
        links["previous"] = previous_front_page_link(runs[0])
    ui, flow_run = os.environ.get("PREFECT_UI_URL"), result.get("flow_run_id")
    if ui and flow_run:
        links["prefect"] = f"{ui.rstrip('/')}/runs/flow-run/{flow_run}"
    return front_page(result, baseline, links)
