"""The real prometheus-operator runbooks with probes built from real alerting rules (../shared/corpora)."""

import json

import pytest

from benchmarks.prometheus_runbooks import alert_probes
from rag_health.alert_rules import strip_templating
from tests.conftest import shared_corpus
from tests.support.stages import stage

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def test_strip_templating():
    text = "Alertmanager {{ $labels.namespace }}/{{ $labels.pod}} failed to send {{ $value | humanizePercentage }} of notifications."
    assert strip_templating(text) == "Alertmanager failed to send of notifications."


def test_alert_probe_conversion(tmp_path):
    corpus = shared_corpus("prometheus-runbooks")
    out = tmp_path / "alerts.jsonl"
    counts = alert_probes(corpus / "golden_probes_from_kube-prometheus_alerts.jsonl", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert counts["probes"] == len(rows) and counts["alerts_without_runbook"] == 27
    assert len({r["id"] for r in rows}) == len(rows)
    assert all("{{" not in r["query"] and r["relevant"][0].startswith("runbooks/") for r in rows)
    assert all((corpus / "content" / r["relevant"][0]).is_file() for r in rows)


def test_whole_corpus_ingests_and_probes(tmp_path, make_runtime):
    corpus = shared_corpus("prometheus-runbooks")
    probes = tmp_path / "alerts.jsonl"
    alert_probes(corpus / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
    rt = make_runtime(corpus / "content", probes=[probes])
    result = stage(rt, "ingest")
    md_files = [p for p in (corpus / "content").rglob("*") if p.is_file()]
    assert result["documents"] == len(md_files) and result["errors"] == []
    indexed = rt.index.ledger()
    assert len(indexed) + len(result["skipped"]) == len(md_files)
    out = stage(rt, "probes")
    m = out["sets"]["alerts"]
    per = [p for p in out["per_probe"] if p["set"] == "alerts"]
    assert m["n"] == len(per) > 100
    generated = out["sets"]["generated"]  # headings, terms and steps of the runbooks themselves
    assert generated["n"] > 50 and generated["hit@10"] > 0.7
    assert m["hit@5"] == pytest.approx(sum(1 for p in per if p["rank"] and p["rank"] <= 5) / len(per), abs=1e-4)
    assert m["mrr"] == pytest.approx(sum(1 / p["rank"] for p in per if p["rank"] and p["rank"] <= 10) / len(per),
                                     abs=1e-3)
    assert stage(rt, "ingest")["chunks_embedded"] == 0


def test_alert_coverage_lists_exactly_the_absent_runbooks(tmp_path, make_runtime):
    """The coverage stage on the real rule files agrees with the corpus's ground truth (27 rules, no runbook)."""
    corpus = shared_corpus("prometheus-runbooks")
    golden = [json.loads(line) for line in
              (corpus / "golden_probes_from_kube-prometheus_alerts.jsonl").read_text().splitlines() if line]
    rt = make_runtime(corpus / "content", rules=[corpus / "probes_src_kube-prometheus"],
                      runbook_url_prefix=["https://runbooks.prometheus-operator.dev/"])
    out = stage(rt, "coverage")
    assert out["rules"] == len(golden)
    assert out["alerts_missing_runbook"] == sorted({g["alert"] for g in golden if g["relevant_doc"] is None})
    missing_rules = sum(1 for a in out["alerts"] if a["status"] == "missing-runbook")
    assert missing_rules == sum(1 for g in golden if g["relevant_doc"] is None) == 27
    expected = {(g["alert"], g["relevant_doc"].removeprefix("content/")) for g in golden if g["relevant_doc"]}
    assert {(p["id"].split(":")[1], p["relevant"][0]) for p in out["probes"]} == expected
    assert out["probes_generated"] == len(golden) - 27


def test_same_corpus_from_s3_gives_identical_inventory(tmp_path, seaweed, embedder):
    """Folder and S3 give the same doc ids, hashes and chunk ids; a second S3 run downloads nothing."""
    from rag_health.ingest import ingest
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings
    from rag_health.sources import LocalFolderSource, S3Source
    from rag_health.store import ChunkIndex

    corpus = shared_corpus("prometheus-runbooks") / "content"
    client = seaweed.client()
    client.create_bucket(Bucket="runbooks")
    files = [p for p in corpus.rglob("*") if p.is_file()]
    for path in files:
        client.put_object(Bucket="runbooks", Key=f"content/{path.relative_to(corpus).as_posix()}",
                          Body=path.read_bytes())
    rt = build_runtime(load_settings(state_dir=str(tmp_path / "state")), embedder=embedder, s3=client)
    views = {}
    for name, source in (("folder", LocalFolderSource(corpus)), ("s3", S3Source(client, "runbooks", "content"))):
        index = ChunkIndex(rt.index.client, f"prom-{name}", embedder.info)
        result = ingest(source, index, embedder, rt.chunker)
        assert result.errors == () and result.documents == len(files)
        views[name] = {d: (e.content_hash, e.chunk_ids) for d, e in index.ledger().items()}
    assert views["s3"] == views["folder"]
    again = S3Source(client, "runbooks", "content")
    second = ingest(again, ChunkIndex(rt.index.client, "prom-s3", embedder.info), embedder, rt.chunker)
    # Section pages with front-matter only were noted as skipped in the store: not even they are fetched again.
    assert second.chunks_embedded == 0 and again.downloads == 0 and len(second.skipped) > 0
