"""The run's front page and the history page: self-contained, small, escaped, the verdict first; rendered in
headless Chromium where it is installed."""

from __future__ import annotations

import copy
import json
import re
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rag_health.report_pages import front_page, history_entry, history_page, reasons
from tests.support.screenshot import CHROMIUM, dump_dom, png_size, screenshot

HOSTILE_ID = "runbooks/<img src=x onerror=alert(1)>.md"
NEWLINE_ID = "runbooks/two\nlines.md"
HOSTILE_FINDING = f"{HOSTILE_ID}: review-overdue — <script>alert(2)</script> owner \"x\" & 'y' (fail)"
LINKS = {"evidently": "drift-report.html", "chunks_csv": "chunks.csv", "findings_csv": "quality-findings.csv",
         "previous": "../20261127T020000Z-aaaaaa/index.html", "history": "../index.html",
         "prefect": "http://127.0.0.1:4200/runs/flow-run/1234"}


def _sets(hit5: float, mrr: float) -> dict:
    m = {"n": 40, "hit@1": hit5 - 0.1, "hit@3": hit5 - 0.05, "hit@5": hit5, "hit@10": hit5, "recall@5": hit5,
         "recall@10": hit5, "precision@1": 0.7, "precision@5": 0.2, "precision@10": 0.1, "mrr": mrr,
         "ndcg@10": mrr + 0.02, "regressions": []}
    return {"golden": m, "generated": {**m, "n": 100, "hit@5": 0.95}}


def make_result(run_id: str = "20261128T020000Z-bbbbbb", baseline_run: str = "20261127T020000Z-aaaaaa",
                verdict: str = "fail") -> dict:
    """A run's result as the CLI contract gives it: probes and freshness fail, coverage warns."""
    stages = {"ingest": "pass", "freshness": "fail", "coverage": "warn", "quality": "pass", "probes": "fail",
              "drift": "warn"}
    if verdict != "fail":
        stages = {k: ("warn" if v == "fail" else v) for k, v in stages.items()}
    fresh_findings = [HOSTILE_FINDING, "policies/kyc.md: missing — listed in the manifest, absent at the source (fail)"]
    probe_findings = ["probe set golden: hit@5 0.450 is below 0.5 (fail)",
                      "probe golden/g007 regressed: rank 1 -> missed, displaced by policies/old.md (fail)"]
    cov_findings = ["alert AchReturnRateHigh: its runbook URL points to a document that does not exist (warn)"]
    drift_findings = ["embedding drift score 0.71 is above 0.55 (warn)"]
    regression = {"set": "golden", "probe_id": "g007", "was_rank": 1, "now_rank": None,
                  "displaced_by": "policies/old<b>.md"}
    return {
        "run_id": run_id, "verdict": verdict, "stages": stages,
        "findings": fresh_findings + cov_findings + probe_findings + drift_findings,
        "docs": "datasets/docs", "collection": "rag-health",
        "model": {"model_name": "all-MiniLM-L6-v2", "model_fingerprint": "c5bc72c86445a996"},
        "ingest": {"documents": 3, "added": 1, "changed": 1, "removed": 1, "unchanged": 0,
                   "added_ids": [HOSTILE_ID], "changed_ids": [NEWLINE_ID], "removed_ids": ["policies/kyc.md"],
                   "skipped": [], "errors": [], "status": "pass"},
        "freshness": {"status": stages["freshness"], "summary": {"documents": 3, "fresh": 1, "review-overdue": 1,
                                                                 "missing": 1},
                      "documents": [{"doc_id": HOSTILE_ID, "status": "review-overdue", "owner": "<b>ops</b>",
                                     "reason": "<script>alert(3)</script>", "days_overdue": 3},
                                    {"doc_id": "policies/kyc.md", "status": "missing", "owner": "kyc-team",
                                     "reason": "listed in the manifest, absent at the source"},
                                    {"doc_id": "runbooks/fresh.md", "status": "fresh", "owner": "sre",
                                     "reason": "reviewed recently"}],
                      "findings": fresh_findings},
        "coverage": {"status": "warn", "rules": 8, "covered_rules": 7, "alerts_missing_runbook": ["AchReturnRateHigh"],
                     "runbooks_without_alert": [HOSTILE_ID], "findings": cov_findings},
        "quality": {"status": "pass", "score": 0.9123, "tokens_lost": 0, "findings_total": 2,
                    "documents": [{"doc_id": HOSTILE_ID, "score": 0.5, "chunks": 2,
                                   "findings": {"lost-heading": 2}}],
                    "findings_by_kind": {"lost-heading": 2}, "chunks": {"findings": []},
                    "embeddings": {"findings": []}},
        "probes": {"status": stages["probes"], "sets": _sets(0.45, 0.40), "regressions": [regression],
                   "per_probe": [{"probe_id": "g007", "set": "golden", "query": "how do I <i>rotate</i> keys?"}],
                   "findings": probe_findings, "baseline_run": baseline_run},
        "drift": {"status": "warn", "run_id": run_id, "baseline_run": baseline_run, "embedding_drift_score": 0.71,
                  "mean_vector_cosine_distance": 0.0123, "drifted_columns": 1, "sample_rows": 170,
                  "reference_rows": 168,
                  "columns": {"n_chars": {"drifted": True}, "n_tokens": {"drifted": False}}},
    }


def make_baseline() -> dict:
    base = make_result(run_id="20261127T020000Z-aaaaaa", verdict="pass")
    base["probes"]["sets"] = _sets(0.90, 0.80)
    base["drift"]["baseline_run"] = base["run_id"]
    return base


def make_first_run() -> dict:
    first = make_result(run_id="20261127T020000Z-aaaaaa", verdict="warn")
    first["drift"]["baseline_run"] = first["run_id"]
    return first


def _assert_self_contained(page: str) -> None:
    lowered = page.lower()
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "@import" not in lowered
    assert "url(" not in lowered
    assert not re.search(r"""src\s*=\s*["']?https?:""", lowered)
    assert "fonts.googleapis" not in lowered and "@font-face" not in lowered


class _Text(HTMLParser):
    """Text nodes and attribute values, to see what a reader (and a browser) gets from the page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def test_front_page_is_self_contained_small_and_escaped():
    page = front_page(make_result(), make_baseline(), LINKS)
    _assert_self_contained(page)
    assert len(page.encode()) < 300_000
    parsed = _parse(page)
    assert "img" not in parsed.tags and "script" not in parsed.tags and "i" not in parsed.tags
    text = "".join(parsed.text)
    assert HOSTILE_ID in text  # shown as the text it is
    assert "runbooks/two\\nlines.md" in text  # a newline in a doc id is shown, not obeyed
    assert "<script>alert(2)</script>" in text and "<b>ops</b>" in text


def test_verdict_and_failing_checks_come_before_the_first_section():
    page = front_page(make_result(), make_baseline(), LINKS)
    first_section = page.index("<section")
    assert page.index(">FAIL<") < first_section
    banner = page[:first_section]
    for failing in ("freshness", "probes", "hit@5 0.450 is below 0.5 (fail)"):
        assert failing in banner
    assert banner.index("Failing") < banner.index("Warnings")
    why = reasons(make_result())
    assert [stage for stage, _ in why["fail"]] == ["freshness", "probes"]
    assert [stage for stage, _ in why["warn"]] == ["coverage", "drift"]


def test_first_run_says_baseline_established():
    page = front_page(make_first_run(), None, {})
    assert "Baseline established" in page
    assert page.count("Baseline established") >= 2  # what changed, and drift
    assert "▲" not in page and "▼" not in page


def test_change_arrows_against_the_baseline():
    page = front_page(make_result(), make_baseline(), LINKS)
    assert "▼0.450" in page  # golden hit@5 0.90 -> 0.45
    assert "Compared with baseline run" in page
    improved = make_result()
    improved["probes"]["sets"] = _sets(0.99, 0.95)
    assert "▲0.090" in front_page(improved, make_baseline(), LINKS)


def test_regressions_name_what_displaced_them_and_links_are_listed():
    page = front_page(make_result(), make_baseline(), LINKS)
    assert "policies/old&lt;b&gt;.md" in page and "missed" in page
    assert "how do I &lt;i&gt;rotate&lt;/i&gt; keys?" in page
    for href in LINKS.values():
        assert f"href='{href}'" in page
    assert "href='#'" in front_page(make_result(), None, {"prefect": "javascript:alert(1)"})


def test_history_is_newest_first_with_a_trend():
    days = [date(2026, 10, 1) + timedelta(days=i) for i in range(35)]
    runs = [make_result(run_id=f"{d:%Y%m%d}T020000Z-{i:06d}", verdict="pass") for i, d in enumerate(days)]
    for i, run in enumerate(runs):
        run["probes"]["sets"] = _sets(0.5 + i / 100, 0.6)
    hostile = copy.deepcopy(runs[-1])
    hostile["run_id"] = "20261206T020000Z-<img src=x>"
    entries = [history_entry(r) for r in runs + [hostile]]
    assert set(entries[0]) == {"run_id", "created_at", "verdict", "hit@5", "quality_score", "drift_score",
                               "stages", "baseline_run"}
    assert entries[0]["created_at"] == "2026-10-01T02:00:00+00:00"
    assert entries[0]["hit@5"] == {"golden": 0.5, "generated": 0.95}
    page = history_page(list(reversed(entries[:10])) + entries[10:])  # any order in, newest first out
    _assert_self_contained(page)
    assert "<svg" in page and "<polyline" in page
    rows = re.findall(r"href='([^']+)/index\.html'", page[page.index("id='runs'"):])
    assert rows[0] == "20261206T020000Z-%3Cimg%20src%3Dx%3E"
    assert rows[1:] == [r["run_id"] for r in reversed(runs)]
    points = re.search(r"<polyline[^>]*points='([^']+)'", page).group(1).split()
    assert len(points) == 30  # the last 30 runs
    assert "<img" not in page


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_pages_render_in_headless_chromium(tmp_path: Path):
    front = tmp_path / "front.html"
    front.write_text(front_page(make_result(), make_baseline(), LINKS), encoding="utf-8")
    history = tmp_path / "history.html"
    history.write_text(history_page([history_entry(make_baseline()), history_entry(make_result())]),
                       encoding="utf-8")
    for html_file in (front, history):
        png = screenshot(html_file, tmp_path / f"{html_file.stem}.png")
        assert png_size(png) == (1400, 900)
        assert png.stat().st_size > 20_000  # a blank page is a few kilobytes
    dom = dump_dom(front)
    assert "onerror" not in dom.split("<body", 1)[1].replace("onerror=alert(1)&gt;", "")
    # The first screen: the banner, with the verdict and the failing stages, fits in 900 pixels. Chromium lays
    # the page out at 1400 wide; print the banner's height into the DOM with a tiny probe page that frames it.
    probe = tmp_path / "probe.html"
    probe.write_text(_height_probe(front), encoding="utf-8")
    height = re.search(r"data-banner-bottom=\"(\d+)\"", dump_dom(probe))
    assert height and int(height.group(1)) < 900, height


def _height_probe(front: Path) -> str:
    """The front page plus a script (test-only, never in a page we publish) that records where the banner ends."""
    page = front.read_text(encoding="utf-8")
    script = ("<script>document.body.setAttribute('data-banner-bottom',"
              "Math.round(document.querySelector('header.banner').getBoundingClientRect().bottom))</script>")
    return page.replace("</body>", script + "</body>")



def _suite_result(rt, run_id: str) -> dict:
    """The whole suite in process (no Prefect), its result as the CLI contract prints it."""
    from rag_health.registry import SUITE, stages
    from rag_health.results import to_json
    from rag_health.suite import assemble

    outputs = {}
    for name in SUITE:
        kwargs = {"run_id": run_id} if name in ("quality", "probes", "drift") else {}
        outputs[name] = stages()[name].run(rt, **kwargs)
    return to_json(assemble(run_id, rt, outputs, {}))


@pytest.mark.slow
def test_front_page_of_real_runs(small_corpus, make_runtime):
    from tests.conftest import write_doc

    hostile = "runbooks/<img src=x onerror=alert(1)>.md"
    write_doc(small_corpus, hostile, """# Ledger <b>break</b>
    When the ledger and the bank statement disagree for more than two days, escalate to finance operations with
    the statement line and the ledger entry, and open a <script>alert(1)</script> ticket.""", owner="<b>ops</b>")
    probes = small_corpus.parent / "golden.jsonl"
    probes.write_text("\n".join(json.dumps(p) for p in [
        {"id": "p1", "query": "consumer lag on payments partitions", "relevant": ["runbooks/kafka-lag.md"]},
        {"id": "p2", "query": "issuer processor timing out, declines rising", "relevant": ["runbooks/card-declines.md"]},
        {"id": "p3", "query": "ledger and bank statement disagree <b>", "relevant": [hostile]},
    ]) + "\n", encoding="utf-8")
    rt = make_runtime(small_corpus, probes=[probes])
    first = _suite_result(rt, "20261127T020000Z-aaaaaa")
    page = front_page(first, None, {"history": "../index.html"})
    _assert_self_contained(page)
    assert len(page.encode()) < 300_000
    assert "Baseline established" in page
    assert "<img" not in page and "runbooks/&lt;img src=x onerror=alert(1)&gt;.md" in page
    (small_corpus / "notes" / "reconciliation.txt").unlink()
    second = _suite_result(rt, "20261128T020000Z-bbbbbb")
    page = front_page(second, first, {"previous": "../20261127T020000Z-aaaaaa/index.html"})
    _assert_self_contained(page)
    assert "Compared with baseline run" in page and "notes/reconciliation.txt" in page
    assert page.index(f">{second['verdict'].upper()}<") < page.index("<section")
    entries = [history_entry(first), history_entry(second)]
    assert entries[1]["baseline_run"] == first["run_id"] and entries[1]["hit@5"]
    assert history_page(entries).index("20261128T020000Z-bbbbbb") < history_page(entries).index("aaaaaa")
