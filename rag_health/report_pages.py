"""The pages people open from a link: a run's front page (the verdict first, then what changed, retrieval,
freshness, coverage, quality, drift and links) and the history of every run. Pure rendering: dicts in, HTML out,
no I/O. The pages are self-contained (inline CSS, no script, style sheet, font or image from elsewhere) and every
string that comes from a document, a probe file or a rule file is escaped."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from checks.drift import EMBEDDING_DRIFT_THRESHOLD, embedding_drifted
from rag_health.run_ids import run_created
from rag_health.views import one_line

MAX_REASONS = 6  # sentences per severity in the banner (at least one per stage); the sections hold the rest
MAX_ROWS = 100  # rows per table on the front page; the run's JSON and CSVs hold all of them
HISTORY_TREND_RUNS = 30
METRICS = (("n", "n"), ("hit@1", "hit@1"), ("hit@5", "hit@5"), ("mrr", "MRR"), ("ndcg@10", "nDCG@10"))
LINKS = (("evidently", "Evidently drift report"), ("chunks_csv", "Every chunk (CSV)"),
         ("findings_csv", "Every quality finding (CSV)"), ("previous", "Previous run"),
         ("history", "History of every run"), ("prefect", "The flow run in Prefect"))
_SAFE_HREF = re.compile(r"^(?:https?://|file://|[^:]*$)", re.IGNORECASE)  # no javascript:, data:, ...

CSS = (
    "*{box-sizing:border-box}"
    "body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1f2328;"
    "background:#f6f8fa}"
    "main{max-width:1200px;margin:0 auto;padding:0 24px 40px}"
    ".banner{padding:18px 24px;color:#fff;display:flex;gap:28px;align-items:flex-start}"
    ".banner.pass{background:#1a7f37}.banner.warn{background:#9a6700}.banner.fail{background:#cf222e}"
    ".banner.skip{background:#57606a}"
    ".word{font-size:44px;font-weight:800;letter-spacing:1px;line-height:1}"
    ".lead{font-size:20px;font-weight:600;margin:0 0 6px}.meta{opacity:.9;font-size:13px;margin:0 0 8px}"
    ".why h2{font-size:14px;text-transform:uppercase;letter-spacing:.5px;margin:10px 0 2px;color:#fff}"
    ".why ul{margin:0;padding-left:20px}.why li{margin:1px 0}"
    ".why{flex:1;min-width:0;overflow-wrap:anywhere}"
    ".stages{display:flex;flex-wrap:wrap;gap:6px;margin:14px 0 4px}"
    ".chip{padding:2px 10px;border-radius:12px;font-size:13px;font-weight:600;border:1px solid #d0d7de;"
    "background:#fff}"
    ".chip.pass{color:#1a7f37}.chip.warn{color:#9a6700;background:#fff8c5}"
    ".chip.fail{color:#fff;background:#cf222e}.chip.skip{color:#57606a}"
    "section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 18px;margin:14px 0}"
    "h1{font-size:22px}section h2{font-size:18px;margin:0 0 8px}"
    "table{border-collapse:collapse;font-size:14px}"
    "th,td{text-align:left;padding:3px 10px 3px 0;border-bottom:1px solid #eaeef2;vertical-align:top}"
    "td{overflow-wrap:anywhere}.num{text-align:right;font-variant-numeric:tabular-nums}.up{color:#1a7f37}"
    ".down{color:#cf222e}.same{color:#8c959f}.muted{color:#57606a}.badge{font-weight:700}"
    ".badge.pass{color:#1a7f37}.badge.warn{color:#9a6700}.badge.fail{color:#cf222e}code{font-size:13px}"
    ".trends{display:flex;flex-wrap:wrap;gap:14px}ul.ids{columns:3 260px;margin:4px 0 10px}ul.ids li{overflow-wrap:anywhere;break-inside:avoid}"
    ".banner a{color:#fff}"
    ".trend{width:340px;margin:0;border:1px solid #d0d7de;border-radius:6px;padding:6px 8px}"
    "figcaption{font-size:13px;margin-bottom:4px}.nowrap{white-space:nowrap}"
)


def esc(value: Any) -> str:
    """Any document-derived value as HTML text: one line (control characters shown escaped), then escaped."""
    return html.escape(one_line("" if value is None else value))


def _href(url: str) -> str:
    return html.escape(url if _SAFE_HREF.match(url.strip()) else "#", quote=True)


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else esc(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _table(headers: list[str], rows: list[list[str]], total: int | None = None) -> str:
    """Cells are HTML already (escaped by the caller); headers are ours. `total`: rows there were before the cut."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows[:MAX_ROWS])
    more = total if total is not None else len(rows)
    note = f"<p class='muted'>… and {more - MAX_ROWS} more (in the run's JSON)</p>" if more > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{note}"


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{title}</h2>{body}</section>"


def _items(values: list[Any], limit: int = MAX_ROWS) -> str:
    shown = "".join(f"<li><code>{esc(v)}</code></li>" for v in values[:limit])
    more = f"<li class='muted'>… and {len(values) - limit} more</li>" if len(values) > limit else ""
    return f"<ul class='ids'>{shown}{more}</ul>"


# The verdict and why.

def _stage_sentences(result: dict[str, Any]) -> dict[str, list[str]]:
    """Each stage's own sentences, as far as the result keeps them apart (drift keeps none: its sentences are
    the run's findings no other stage claims)."""
    quality = result.get("quality") or {}
    out = {
        # The ingest keeps its sentences (a held change, each document's error) only among the run's findings.
        "ingest": [s for s in result.get("findings") or [] if s.startswith(("ingest error ", "ingest held back"))],
        "freshness": list((result.get("freshness") or {}).get("findings") or []),
        "coverage": list((result.get("coverage") or {}).get("findings") or []),
        "quality": [s for part in ("chunks", "embeddings") for s in (quality.get(part) or {}).get("findings") or []],
        "probes": list((result.get("probes") or {}).get("findings") or []),
    }
    claimed = {s for sentences in out.values() for s in sentences}
    out["drift"] = [s for s in result.get("findings") or [] if s not in claimed]
    return out


def _severity(sentence: str, stage_status: str) -> str:
    text = sentence.rstrip()
    if text.endswith("(fail)"):
        return "fail"
    if text.endswith("(warn)"):
        return "warn"
    return "note"  # every warn and fail sentence says so (checks.result.severity): the rest are notes


def reasons(result: dict[str, Any]) -> dict[str, list[tuple[str, list[str]]]]:
    """Why the verdict is what it is: {"fail": [(stage, sentences)], "warn": [...]}, stages in run order, plain
    text (not escaped). A failing stage is listed even when it left no sentence."""
    stages = result.get("stages") or {}
    out: dict[str, list[tuple[str, list[str]]]] = {"fail": [], "warn": []}
    sentences = _stage_sentences(result)
    for stage in list(stages) + [s for s in sentences if s not in stages]:
        by_level: dict[str, list[str]] = {"fail": [], "warn": []}
        for sentence in sentences.get(stage, []):
            level = _severity(sentence, stages.get(stage, "pass"))
            if level in by_level:
                by_level[level].append(sentence)
        for level in ("fail", "warn"):
            if by_level[level] or stages.get(stage) == level:
                out[level].append((stage, by_level[level]))
    return out


SECTION_OF = {"ingest": "changes", "freshness": "freshness", "coverage": "coverage", "quality": "quality",
              "probes": "retrieval", "drift": "drift"}


def _reason_list(title: str, level: str, stages: list[tuple[str, list[str]]]) -> str:
    """One line per stage: its name, its first sentences, how many more there are (in its section below)."""
    if not stages:
        return ""
    per_stage = max(1, MAX_REASONS // len(stages))
    lines = []
    for stage, sentences in stages:
        shown = "; ".join(esc(s) for s in sentences[:per_stage]) or f"the stage reported {level}"
        more = len(sentences) - per_stage
        link = (f" <a href='#{SECTION_OF.get(stage, 'links')}'>(+{more} more)</a>" if more > 0 else "")
        lines.append(f"<li><b>{esc(stage)}</b>: {shown}{link}</li>")
    return f"<h2>{title}</h2><ul>{''.join(lines)}</ul>"


def _names(stages: list[str]) -> str:
    return stages[0] if len(stages) == 1 else ", ".join(stages[:-1]) + " and " + stages[-1]


def _lead(verdict: str, stages: dict[str, str]) -> str:
    failed = [s for s, st in stages.items() if st == "fail"]
    warned = [s for s, st in stages.items() if st == "warn"]
    if verdict == "fail" and failed:
        return f"Failed: {_names(failed)}" + (f"; {_names(warned)} warn" if warned else "") + "."
    if verdict == "warn" and warned:
        return f"Passed with warnings: {_names(warned)} warn; nothing failed."
    if verdict == "pass":
        return "Passed: every check is healthy."
    return f"Verdict {verdict}."


def _banner(result: dict[str, Any]) -> str:
    verdict = str(result.get("verdict") or "skip").lower()
    stages = result.get("stages") or {}
    why = reasons(result)
    created = created_at(result)
    meta = (f"run <code>{esc(result.get('run_id'))}</code> · {esc(created)} · collection "
            f"{esc(result.get('collection'))} · model {esc((result.get('model') or {}).get('model_name'))}")
    css = verdict if verdict in ("pass", "warn", "fail") else "skip"
    return (f"<header class='banner {css}'><div class='word'>{esc(verdict.upper())}</div><div class='why'>"
            f"<p class='lead'>{esc(_lead(verdict, stages))}</p><p class='meta'>{meta}</p>"
            f"{_reason_list('Failing', 'fail', why['fail'])}{_reason_list('Warnings', 'warn', why['warn'])}"
            "</div></header>")


def _stage_chips(stages: dict[str, str]) -> str:
    chips = "".join(f"<span class='chip {esc(st)}'>{esc(name)} {esc(st)}</span>" for name, st in stages.items())
    return f"<div class='stages'>{chips}</div>"


# What changed, retrieval.

def _first_run(result: dict[str, Any]) -> bool:
    drift = result.get("drift") or {}
    return bool(drift.get("baseline_run")) and drift.get("baseline_run") == result.get("run_id")


def _changes(result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    ingest = result.get("ingest") or {}
    parts = []
    if baseline is None or _first_run(result):
        parts.append("<p><b>Baseline established</b>: this run is its own baseline; the next run is compared "
                     "with it.</p>")
    else:
        parts.append(f"<p>Compared with baseline run <code>{esc(baseline.get('run_id'))}</code> "
                     f"({esc(created_at(baseline))}).</p>")
    for key, label in (("added_ids", "added"), ("changed_ids", "changed"), ("removed_ids", "removed")):
        ids = ingest.get(key) or []
        if ids:
            parts.append(f"<p><b>{len(ids)} document(s) {label}</b> in this run's ingest</p>{_items(ids, 30)}")
    if not any(ingest.get(k) for k in ("added_ids", "changed_ids", "removed_ids")):
        parts.append("<p>No document was added, changed or removed.</p>")
    not_read = [*(ingest.get("skipped") or []), *(ingest.get("errors") or [])]
    if not_read:
        cells = [[f"<code>{esc(x.get('doc_id'))}</code>", esc(x.get("reason"))] for x in not_read]
        parts.append(f"<p><b>{len(not_read)} document(s) not read</b> (skipped or failed)</p>"
                     + _table(["document", "reason"], cells))
    parts.append(_regressions(result))
    return _section("changes", "What changed", "".join(parts))


def _regressions(result: dict[str, Any]) -> str:
    probes = result.get("probes") or {}
    rows = probes.get("regressions") or []
    if not rows:
        return "<p>No probe regressed against the baseline.</p>"
    queries = {(p.get("set"), p.get("probe_id")): p.get("query") for p in probes.get("per_probe") or []}
    cells = [[esc(r.get("set")), f"<code>{esc(r.get('probe_id'))}</code>",
              esc(queries.get((r.get("set"), r.get("probe_id")), "")), _num(r.get("was_rank")),
              _num(r.get("now_rank")) if r.get("now_rank") else "missed", f"<code>{esc(r.get('displaced_by'))}</code>"]
             for r in rows]
    return (f"<p><b>{len(rows)} probe(s) regressed</b>: the right document fell in the ranking.</p>"
            + _table(["set", "probe", "query", "was rank", "now rank", "displaced by"], cells))


def _delta(now: Any, was: Any) -> str:
    if not isinstance(now, (int, float)) or not isinstance(was, (int, float)) or isinstance(now, bool):
        return ""
    d = now - was
    if abs(d) < 0.0005:
        return " <span class='same'>=</span>"
    arrow, css = ("▲", "up") if d > 0 else ("▼", "down")
    text = f"{abs(d):.0f}" if isinstance(now, int) and isinstance(was, int) else f"{abs(d):.3f}"
    return f" <span class='{css}'>{arrow}{text}</span>"


def _retrieval(result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    sets = (result.get("probes") or {}).get("sets") or {}
    if not sets:
        return _section("retrieval", "Retrieval", "<p>No probe set ran.</p>")
    before = ((baseline or {}).get("probes") or {}).get("sets") or {}
    rows = []
    for name, m in sets.items():
        was = before.get(name) or {}
        rows.append([esc(name)] + [f"<span class='num'>{_num(m.get(k))}</span>{_delta(m.get(k), was.get(k))}"
                                   for k, _ in METRICS])
    note = ("<p class='muted'>▲/▼: change against the baseline run's same set.</p>" if before else
            "<p class='muted'>No baseline to compare with yet.</p>")
    return _section("retrieval", "Retrieval per probe set", _table(["set"] + [h for _, h in METRICS], rows) + note)


# Freshness, coverage, quality, drift, links.

def _freshness(result: dict[str, Any]) -> str:
    fresh = result.get("freshness") or {}
    rows = [d for d in fresh.get("documents") or [] if d.get("status") != "fresh"]
    if not fresh or fresh.get("status") == "skip":
        return _section("freshness", "Freshness", f"<p>Not checked: {esc(fresh.get('reason', 'no manifest'))}.</p>")
    summary = ", ".join(f"{esc(k)} {_num(v)}" for k, v in (fresh.get("summary") or {}).items() if v)
    cells = [[f"<code>{esc(d.get('doc_id'))}</code>", f"<b>{esc(d.get('status'))}</b>", esc(d.get("owner")),
              _num(d.get("days_overdue")) if d.get("days_overdue") else "", esc(d.get("reason"))] for d in rows]
    headers = ["document", "status", "owner", "days overdue", "reason"]
    body = f"<p>{summary}</p>" + (_table(headers, cells) if rows else "<p>Every document is fresh.</p>")
    return _section("freshness", "Freshness", body)


def _coverage(result: dict[str, Any]) -> str:
    cov = result.get("coverage") or {}
    if not cov.get("rules"):
        return _section("coverage", "Alert coverage", "<p>No alert rules were given.</p>")
    missing = cov.get("alerts_missing_runbook") or []
    orphans = cov.get("runbooks_without_alert") or []
    body = f"<p><b>{_num(cov.get('covered_rules'))} of {_num(cov.get('rules'))}</b> alert rules have a runbook.</p>"
    if missing:
        body += f"<p><b>{len(missing)} alert(s) without a runbook</b></p>{_items(missing)}"
    if orphans:
        body += f"<p>{len(orphans)} runbook(s) no alert points to</p>{_items(orphans, 20)}"
    return _section("coverage", "Alert coverage", body)


def _quality(result: dict[str, Any]) -> str:
    q = result.get("quality") or {}
    if "score" not in q:
        return _section("quality", "Quality", f"<p>Not checked: {esc(q.get('reason', 'no chunks'))}.</p>")
    docs = (q.get("documents") or [])[:10]
    cells = [[f"<code>{esc(d.get('doc_id'))}</code>", f"<span class='num'>{_num(d.get('score'))}</span>",
              _num(d.get("chunks")), esc(", ".join(f"{k} {v}" for k, v in (d.get("findings") or {}).items()))]
             for d in docs]
    kinds = [[esc(k), _num(v)] for k, v in (q.get("findings_by_kind") or {}).items()]
    body = (f"<p>Score <b>{_num(q.get('score'))}</b> (0–1, the mean chunk score); {_num(q.get('findings_total'))} "
            f"finding(s); {_num(q.get('tokens_lost'))} token(s) past the model window.</p>"
            "<h3>Worst documents</h3>" + _table(["document", "score", "chunks", "findings"], cells)
            + "<h3>Findings by kind</h3>" + (_table(["kind", "findings"], kinds) if kinds else "<p>None.</p>"))
    return _section("quality", "Quality", body)


def drift_summary(result: dict[str, Any]) -> str:
    """One paragraph of plain text on the drift figures (not escaped)."""
    d = result.get("drift") or {}
    if "embedding_drift_score" not in d:
        return f"Drift was not measured: {d.get('reason', 'no drift figures')}."
    if _first_run(result):
        return (f"Baseline established: this run is the drift baseline ({d.get('sample_rows')} sampled chunks), so "
                "there is nothing to compare yet; the next run is compared with it.")
    score = d["embedding_drift_score"]
    columns = d.get("columns") or {}
    drifted = [name for name, c in columns.items() if c.get("drifted")]
    if isinstance(score, (int, float)):
        said = (f"embedding drift score {score:.3f} (a classifier's ROC AUC telling the two samples apart; above "
                f"{EMBEDDING_DRIFT_THRESHOLD} is drift), so " + ("the embeddings have drifted" if embedding_drifted(score)
                                                         else "no embedding drift"))
    else:
        said = "no embedding drift score (too few chunks to tell the samples apart)"
    cols = (f"{len(drifted)} of {len(columns)} chunk statistics drifted ({', '.join(drifted)})" if drifted
            else f"none of the {len(columns)} chunk statistics drifted")
    distance = d.get("mean_vector_cosine_distance")
    dist = (f"; the mean vectors are {distance:.4f} apart (cosine distance)"
            if isinstance(distance, (int, float)) else "")
    return (f"Against baseline run {d.get('baseline_run')}: {said}; {cols}{dist}. "
            f"Sample: {d.get('sample_rows')} chunks now, {d.get('reference_rows')} in the baseline.")


def _links(links: dict[str, str]) -> str:
    items = [f"<li><a href='{_href(links[key])}'>{label}</a></li>" for key, label in LINKS if links.get(key)]
    return _section("links", "Links", f"<ul>{''.join(items)}</ul>" if items else "<p>No links.</p>")


def front_page(result: dict[str, Any], baseline: dict[str, Any] | None, links: dict[str, str]) -> str:
    """A run's front page: the verdict and why first, then each part of the run. `result` is the run's JSON
    result (the CLI contract), `baseline` the baseline run's (None for a first run), `links` hrefs by key
    (evidently, chunks_csv, findings_csv, previous, history, prefect)."""
    body = (_banner(result) + "<main>" + _stage_chips(result.get("stages") or {})
            + _changes(result, baseline) + _retrieval(result, baseline) + _freshness(result) + _coverage(result)
            + _quality(result) + _section("drift", "Drift", f"<p>{esc(drift_summary(result))}</p>")
            + _links(links) + "</main>")
    return _page(f"rag-health {str(result.get('verdict', '')).upper()} — run {result.get('run_id', '')}", body)


# History.

def created_at(result: dict[str, Any]) -> str:
    """When the run was made: its `created_at` when given, else read from the run id (YYYYMMDDTHHMMSSZ-...)."""
    if result.get("created_at"):
        return str(result["created_at"])
    return run_created(str(result.get("run_id", "")))


def history_entry(result: dict[str, Any]) -> dict[str, Any]:
    """What the history keeps of a run: run_id, created_at, verdict, hit@5 (per probe set), quality_score,
    drift_score (embedding_drift_score), stages, baseline_run."""
    sets = (result.get("probes") or {}).get("sets") or {}
    drift = result.get("drift") or {}
    baseline = drift.get("baseline_run") or (result.get("report") or {}).get("baseline_run") \
        or (result.get("probes") or {}).get("baseline_run")
    return {
        "run_id": result.get("run_id"),
        "created_at": created_at(result),
        "verdict": result.get("verdict"),
        "hit@5": {name: m["hit@5"] for name, m in sets.items() if m.get("n") and m.get("hit@5") is not None},
        "quality_score": (result.get("quality") or {}).get("score"),
        "drift_score": drift.get("embedding_drift_score"),
        "stages": dict(result.get("stages") or {}),
        "baseline_run": baseline,
    }


COLOURS = ("#0969da", "#8250df", "#1a7f37", "#bc4c00", "#bf3989", "#57606a")


def _polyline(values: list[float | None], lo: float, hi: float, w: int, h: int, colour: str) -> str:
    n = len(values)
    step = (w - 50) / max(n - 1, 1)
    points = [f"{40 + i * step:.1f},{10 + (h - 30) * (1 - (v - lo) / (hi - lo)):.1f}"
              for i, v in enumerate(values) if v is not None]
    if len(points) == 1:
        x, y = points[0].split(",")
        return f"<circle cx='{x}' cy='{y}' r='3' fill='{colour}'/>"
    return f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(points)}'/>" if points else ""


def trend_chart(title: str, series: dict[str, list[float | None]], limit: float | None = None) -> str:
    """A small line chart in a figure: one polyline per series (oldest left), the y range fitted to the values,
    the caption naming each series in its colour. Empty when there is nothing to draw."""
    w, h = 320, 140
    values = [v for vs in series.values() for v in vs if v is not None] + ([limit] if limit is not None else [])
    if not values:
        return ""
    lo, hi = min(values), max(values)
    pad = max(hi - lo, 0.05) * 0.08
    lo, hi = lo - pad, hi + pad
    lines = [_polyline(vs, lo, hi, w, h, COLOURS[i % len(COLOURS)]) for i, vs in enumerate(series.values())]
    if limit is not None:
        y = 10 + (h - 30) * (1 - (limit - lo) / (hi - lo))
        lines.append(f"<line x1='40' x2='{w - 10}' y1='{y:.1f}' y2='{y:.1f}' stroke='#cf222e' "
                     "stroke-dasharray='4 3'/>")
    legend = " ".join(f"<span style='color:{COLOURS[i % len(COLOURS)]}'>■ {esc(name)}</span>"
                      for i, name in enumerate(series))
    return (f"<figure class='trend'><figcaption><b>{esc(title)}</b> {legend if len(series) > 1 else ''}"
            f"</figcaption><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h - 10}' "
            f"viewBox='0 0 {w} {h - 10}' role='img' aria-label='{esc(title)}'>"
            f"<text x='2' y='18' font-size='11' fill='#57606a'>{hi - pad:.2f}</text>"
            f"<text x='2' y='{h - 22}' font-size='11' fill='#57606a'>{lo + pad:.2f}</text>"
            f"<rect x='40' y='10' width='{w - 50}' height='{h - 30}' fill='none' stroke='#d0d7de'/>"
            f"{''.join(lines)}</svg></figure>")


def _ordered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first."""
    return sorted(entries, key=lambda e: (str(e.get("created_at") or ""), str(e.get("run_id") or "")), reverse=True)


def _set_names(entries: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for e in reversed(entries):  # the order the sets first appeared in
        names += [n for n in (e.get("hit@5") or {}) if n not in names]
    return names


def _trends(entries: list[dict[str, Any]], sets: list[str]) -> str:
    recent = list(reversed(entries[:HISTORY_TREND_RUNS]))  # oldest first, left to right
    hit = {name: [(e.get("hit@5") or {}).get(name) for e in recent] for name in sets}
    charts = [trend_chart("hit@5 per set", hit),
              trend_chart("quality score", {"quality": [e.get("quality_score") for e in recent]}),
              trend_chart("embedding drift score", {"drift": [e.get("drift_score") for e in recent]},
                          limit=EMBEDDING_DRIFT_THRESHOLD)]
    shown = "".join(charts)
    return (f"<section id='trends'><h2>The last {len(recent)} run(s)</h2><div class='trends'>{shown}</div>"
            f"<p class='muted'>Oldest left, newest right; the dashed line is the drift limit "
            f"({EMBEDDING_DRIFT_THRESHOLD}).</p></section>")


def _when(stamp: Any) -> str:
    """An ISO time as `2026-11-28 02:00 UTC` when it parses, else as given."""
    try:
        t = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp or "")
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t.tzinfo else t.strftime("%Y-%m-%d %H:%M")


def _front_href(run_id: Any, entry: dict[str, Any] | None = None) -> str:
    """The run's front page, or (a drift stage run on its own has none) the page its entry names."""
    page = str((entry or {}).get("page") or "index.html").rsplit("/", 1)[-1]
    return _href(quote(str(run_id or ""), safe="") + "/" + quote(page, safe="."))


def _history_rows(entries: list[dict[str, Any]], sets: list[str]) -> str:
    head = ["run", "created", "verdict"] + [f"hit@5 {esc(s)}" for s in sets] + ["quality", "drift"]
    rows = []
    for e in entries:
        verdict = str(e.get("verdict") or "")
        link = f"<a href='{_front_href(e.get('run_id'), e)}'>{esc(e.get('run_id'))}</a>"
        cells = ([link, esc(_when(e.get("created_at"))),
                  f"<span class='badge {esc(verdict)}'>{esc(verdict.upper())}</span>"]
                 + [_num((e.get("hit@5") or {}).get(s)) for s in sets]
                 + [_num(e.get("quality_score")), _num(e.get("drift_score"))])
        rows.append("<tr>" + "".join(f"<td class='nowrap'>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def history_page(entries: list[dict[str, Any]]) -> str:
    """Every run, newest first, with a trend of the last 30. `entries`: history_entry() dicts, any order."""
    entries = _ordered(entries)
    sets = _set_names(entries)
    latest = entries[0] if entries else {}
    verdict = str(latest.get("verdict") or "skip")
    css = verdict if verdict in ("pass", "warn", "fail") else "skip"
    lead = (f"The latest run, <a href='{_front_href(latest.get('run_id'), latest)}'>{esc(latest.get('run_id'))}</a> "
            f"({esc(_when(latest.get('created_at')))}), is {esc(verdict.upper())}; {len(entries)} run(s) in all."
            if entries else "No run yet.")
    banner = (f"<header class='banner {css}'><div class='word'>{esc(verdict.upper())}</div><div class='why'>"
              f"<p class='lead'>rag-health history</p><p>{lead}</p></div></header>")
    runs = _history_rows(entries, sets) if entries else "<p>No run yet.</p>"
    body = banner + "<main>" + (_trends(entries, sets) if entries else "") + \
        _section("runs", "Every run, newest first", runs) + "</main>"
    return _page("rag-health history", body)
