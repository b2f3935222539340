"""The probe stage on real Chroma and the real model: regressions against the baseline with the displacing
document, filter probes, deletion and supersession guards, and probes generated from the corpus."""

from __future__ import annotations

import json
import re

import pytest

from rag_health.probe_generation import GenerationSettings, _longest_common_run, generate_probes
from rag_health.probes import load_probe_set
from tests.conftest import write_doc
from tests.support.stages import stage

PROBES = [
    {"id": "lag", "query": "payments consumer group is behind", "relevant": ["runbooks/kafka-lag.md"]},
    {"id": "declines", "query": "card authorisations declined by the issuer processor",
     "relevant": ["runbooks/card-declines.md"]},
]


def probe_file(tmp_path, rows) -> str:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_regressed_probe_is_reported_with_the_displacing_document(small_corpus, make_runtime, tmp_path):
    """New documents that answer the lag question better push the right runbook down: exactly that probe
    regresses, the first new document is named as displacing it, and the stage fails."""
    rt = make_runtime(small_corpus, probes=probe_file(tmp_path, PROBES), generate_probes=False)
    stage(rt, "ingest")
    first = stage(rt, "probes", run_id="run-1")
    assert {p["probe_id"]: p["rank"] for p in first["per_probe"]} == {"lag": 1, "declines": 1}
    rt.archive.point_baseline("run-1")
    for i in range(5):
        write_doc(small_corpus, f"runbooks/payments-consumer-{i}.md",
                  f"# Payments consumer group is behind ({i})\nThe payments consumer group is behind: alert {i} "
                  f"fires when the payments consumer group is behind the producer.", title=f"Payments consumer {i}")
    stage(rt, "ingest")
    second = stage(rt, "probes", run_id="run-2")
    assert second["baseline_run"] == "run-1"
    assert [r["probe_id"] for r in second["regressions"]] == ["lag"]
    regression = second["sets"]["golden"]["regressions"][0]
    assert regression["was_rank"] == 1 and (regression["now_rank"] or 99) > 4
    now = next(p for p in second["per_probe"] if p["probe_id"] == "lag")
    assert regression["displaced_by"] == now["retrieved"][0]
    assert regression["displaced_by"].startswith("runbooks/payments-consumer-")
    assert second["status"] == "fail" and any("regressed since baseline run-1" in f for f in second["findings"])


def test_fail_under_threshold_fails_the_stage(small_corpus, make_runtime, tmp_path):
    rt = make_runtime(small_corpus, probes=probe_file(tmp_path, PROBES), generate_probes=False,
                      fail_under=["golden:precision@1=1.0", "mrr=0.5"])
    stage(rt, "ingest")
    assert stage(rt, "probes")["status"] == "pass"
    strict = make_runtime(small_corpus, probes=probe_file(tmp_path, PROBES), generate_probes=False,
                          fail_under=["precision@5=0.5"])
    result = stage(strict, "probes")
    assert result["status"] == "fail" and "precision@5 0.200 below the required 0.5" in result["findings"][0]


def test_filter_probes_report_the_field_that_excludes_the_right_document(tmp_path, make_runtime):
    root = tmp_path / "docs"
    write_doc(root, "policies/refunds-eu.md", "# Refunds\nRefunds are paid back to the original card within five "
              "business days.", title="Refund policy EU", jurisdiction="EU", product="cards")
    write_doc(root, "policies/refunds-uk.md", "# Refunds\nRefunds are paid back to the original card within ten "
              "business days.", title="Refund policy UK", jurisdiction="UK", product="cards")
    write_doc(root, "policies/refunds-untagged.md", "# Refunds\nRefunds for loans are credited to the loan account.",
              title="Loan refunds", product="loans")
    rows = [
        {"id": "eu", "query": "how fast are card refunds paid back", "relevant": ["policies/refunds-eu.md"],
         "filters": {"jurisdiction": "EU"}},
        {"id": "wrong-value", "query": "how fast are card refunds paid back", "relevant": ["policies/refunds-uk.md"],
         "filters": {"jurisdiction": "EU"}},
        {"id": "missing-field", "query": "loan refunds credited", "relevant": ["policies/refunds-untagged.md"],
         "filters": {"jurisdiction": "EU", "product": "loans"}},
    ]
    rt = make_runtime(root, probes=probe_file(tmp_path, rows), generate_probes=False)
    stage(rt, "ingest")
    result = stage(rt, "probes")
    ranks = {p["probe_id"]: p for p in result["per_probe"]}
    assert ranks["eu"]["rank"] == 1 and ranks["eu"]["retrieved"] == ["policies/refunds-eu.md"]  # filter applied
    assert ranks["wrong-value"]["rank"] is None and ranks["missing-field"]["rank"] is None
    excluded = {(e["probe_id"], e["doc_id"], e["reason"]) for e in result["filter_excluded"]}
    assert excluded == {("wrong-value", "policies/refunds-uk.md", "has jurisdiction='UK', not 'EU'"),
                        ("missing-field", "policies/refunds-untagged.md", "lacks 'jurisdiction'")}
    assert result["status"] == "fail"  # hit@5 of the golden set is 1/3


def test_deleted_and_superseded_documents_are_guarded(small_corpus, make_runtime, tmp_path):
    """A superseded policy still indexed may rank below its replacement (warn), never above it (fail); a
    document deleted at the source but still indexed must not be retrieved at all (fail)."""
    write_doc(small_corpus, "policies/chargebacks-2025.md", "# Chargeback handling policy 2025\nEvery chargeback "
              "is answered within the scheme deadline with compelling evidence gathered by the disputes team.",
              title="Chargeback handling policy 2025")
    chargebacks = small_corpus / "policies" / "chargebacks.md"
    chargebacks.write_text(chargebacks.read_text().replace("title: Chargebacks",
                                                           "title: Chargebacks\nsuperseded_by: policies/chargebacks-2025.md"))
    rt = make_runtime(small_corpus, generate_probes=False, remove_deleted=False)
    stage(rt, "ingest")
    result = stage(rt, "probes")
    guards = {p["probe_id"]: p for p in result["per_probe"] if p["set"] == "lifecycle"}
    superseded = guards["superseded:policies/chargebacks.md"]
    assert superseded["relevant"] == ["policies/chargebacks-2025.md"]
    assert superseded["rank"] == 1 and superseded["forbidden_ranks"][0] > 1
    assert result["sets"]["lifecycle"]["violations@10"] == 0 and result["status"] == "warn"

    (small_corpus / "runbooks" / "card-declines.md").unlink()  # deleted at the source, kept in the index
    stage(rt, "ingest")
    result = stage(rt, "probes")
    deleted = next(p for p in result["per_probe"] if p["probe_id"] == "deleted:runbooks/card-declines.md")
    assert deleted["forbidden_ranks"] == [1]
    assert result["status"] == "fail" and result["sets"]["lifecycle"]["violations@10"] == 1


@pytest.mark.slow
def test_generated_probes_target_their_document_and_are_not_verbatim(sample_docs_copy, make_runtime):
    rt = make_runtime(sample_docs_copy)
    stage(rt, "ingest")
    chunks = [(r.doc_id, r.metadata["chunk_index"], str(r.metadata["title"]), str(r.metadata["section"]), r.text)
              for records, _ in rt.index.iter_chunks() for r in records]
    rows = generate_probes(chunks)
    assert rows == generate_probes(reversed(chunks))  # stable ids and queries whatever the read order
    kinds = {r["kind"] for r in rows}
    assert kinds == {"section", "term", "step"}
    texts = {}
    for doc_id, _, _, _, text in chunks:
        texts[doc_id] = texts.get(doc_id, "") + "\n" + text
    for r in rows:
        assert r["relevant"][0] in texts
        if r["kind"] == "step":
            words = re.findall(r"[A-Za-z][A-Za-z0-9'-]+", r["query"])[2:]  # after "how to"
            assert _longest_common_run(words, re.findall(r"[A-Za-z][A-Za-z0-9'-]+", texts[r["relevant"][0]])) <= 3
        assert r["query"] not in texts[r["relevant"][0]]
    harder = generate_probes(chunks, GenerationSettings(keep_ratio=0.3))
    step_len = lambda rs: sum(len(r["query"].split()) for r in rs if r["kind"] == "step")  # noqa: E731
    assert step_len(harder) < step_len(rows)
    result = stage(rt, "probes")
    generated = result["sets"]["generated"]
    assert generated["n"] == len(rows) and generated["hit@10"] > 0.8 and "chunk_hit@5" in generated


def test_probe_file_errors_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "query": "q", "relevant": {"x.md": 2, "y.md": 1}}\n'
                    '{"id": "b", "query": "q", "relevant": ["x.md"], "filters": {"tags": ["a"]}}\n'
                    '{"id": "c", "query": "q", "must_not_retrieve": ["old.md"], "relevant": []}\n'
                    'not json\n')
    ps = load_probe_set(path)
    assert [p.probe_id for p in ps.probes] == ["a", "c"]
    assert ps.probes[0].grades == (2.0, 1.0) and ps.probes[1].must_not_retrieve == ("old.md",)
    assert [(e["line"], e["reason"][:20]) for e in ps.errors] == [
        (2, "'filters' must map m"), (4, "Expecting value: lin")]


def test_probe_files_as_people_write_them(tmp_path):
    """Regression: lines with `query` and `relevant` but no `id` (the SOC 2 corpus's own probe file) were all
    rejected, one finding per line, and the run went on with the set missing. Ids are now derived from the
    query (stable while it is), rejected lines make one finding per file, and a file from which nothing loads
    is a configuration error."""
    from checks.retrieval import probe_check
    from rag_health.errors import ConfigError
    from rag_health.probes import derived_id

    path = tmp_path / "people.jsonl"
    lines = [{"criterion": "A1.1", "query": "Capacity planning", "relevant": ["a.md"]},
             {"criterion": "A1.2", "query": "Backup and recovery", "relevant": ["b.md"]}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n" + "[]\n" * 7)
    probe_set = load_probe_set(path)
    assert [p.probe_id for p in probe_set.probes] == [derived_id("Capacity planning"), derived_id("backup  AND recovery")]
    assert len(probe_set.errors) == 8
    check = probe_check([], hit_at_5_warn=0.8, hit_at_5_fail=0.5, file_errors=probe_set.errors)
    assert len(check.findings) == 1 and check.status == "warn"
    assert re.search(r"8 line\(s\) rejected \(line 3, 4, 5, 6, 7, \.\.\.\)", check.findings[0])
    (tmp_path / "junk.jsonl").write_text("{broken\n" * 62)
    with pytest.raises(ConfigError, match=r"junk.jsonl: no probe could be read \(62 line\(s\) rejected, e.g. line 1"):
        load_probe_set(tmp_path / "junk.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no probe"):
        load_probe_set(tmp_path / "empty.jsonl")
