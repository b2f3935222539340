"""The quality stage on real embedded Chroma and the real model: every finding kind is planted in a small corpus
and reported on the planted document, and a clean corpus gives none."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_doc
from tests.support.stages import stage

FULL_META = {"title": None, "owner": "ops", "last_reviewed": "2026-10-01", "classification": "internal",
             "jurisdiction": "EU", "product": "payments"}
REQUIRED = "classification,jurisdiction,product"
DISCLAIMER = ("This document is confidential and intended solely for Example Bank staff; do not forward it "
              "outside the organisation.")


def clean_corpus(dest: Path) -> Path:
    """The sample documents cut to their title, first heading and first paragraph: one tidy chunk each."""
    for src in sorted((REPO / "datasets" / "docs").rglob("*.md")):
        raw = src.read_text(encoding="utf-8")
        end = raw.index("\n---", 4) + 4
        blocks = re.split(r"\n\s*\n", raw[end:].strip())
        keep = []
        for block in blocks:
            keep.append(block)
            if not block.lstrip().startswith(("#", "|", "-", "1.", "```")):
                break
        out = dest / src.relative_to(REPO / "datasets" / "docs")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(raw[:end] + "\n\n" + "\n\n".join(keep) + "\n", encoding="utf-8")
    return dest


def plant(root: Path, doc_id: str, body: str, **meta) -> None:
    fields = {**FULL_META, **meta}
    fields["title"] = fields["title"] or re.search(r"^# (.+)$", body, re.M).group(1)
    write_doc(root, doc_id, body, **{k: v for k, v in fields.items() if v is not None})


LONG_SENTENCE = ("# Settlement cut-off handling\n\nWhen the settlement batch misses the scheme cut-off the operator "
                 + ", ".join(f"checks queue {i} for files held by the sanctions filter and releases the ones cleared "
                             f"by compliance within window {i}" for i in range(14)) + ".")
CODE = ("# Ledger replay\n\n## Diagnose\n\nRun the replay script against the standby ledger:\n\n```bash\n"
        + "\n".join(f"ledgerctl replay --partition {i} --from-offset $(ledgerctl offsets --partition {i} --committed)"
                    for i in range(30)) + "\n```\n\nCompare the balances afterwards.")
TABLE = ("# Scheme fee schedule\n\n## Fees\n\n| Scheme | Region | Fee type | Basis points |\n|---|---|---|---|\n"
         + "\n".join(f"| Scheme {i} | Region {i % 5} | interchange tier {i} | {i * 3} |" for i in range(40))
         + "\n\nFees are reviewed quarterly.")
STEP = ("# Payment hub drain\n\n## Steps\n\n1. **Drain.** " + " ".join(
    f"Move partition {i} to the standby hub after confirming its consumer has committed every offset." for i in range(14))
        + "\n2. **Verify.** Check the standby hub.")
LONG_SECTION = ("# Vendor onboarding background\n\n## Background\n\n" + "\n\n".join(
    " ".join(f"Vendor assessment paragraph {p} sentence {i} explains the due diligence evidence required." for i in range(6))
    for p in range(4)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, embedder):
    """Clean corpus plus one planted document per chunk-level kind; embedding-level faults written into the
    collection directly, as a broken writer would."""
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    base = tmp_path_factory.mktemp("planted")
    root = clean_corpus(base / "docs")
    plant(root, "planted/long-sentence.md", LONG_SENTENCE)
    plant(root, "planted/tiny.md", "# Pager number\n\nCall the duty manager.")
    refund = (root / "policies" / "refund-processing.md").read_text().split("\n---", 1)[1]
    plant(root, "planted/refund-copy.md", refund.strip(), title="Refund processing copy")
    kyc = (root / "policies" / "kyc-escalation.md").read_text()
    (root / "planted" / "kyc-escalation-v2.md").write_text(kyc.replace(" the ", " this ", 1), encoding="utf-8")
    for i, topic in enumerate(["card token vault", "ACH return file", "SEPA instant gateway", "FX rate feed",
                               "chargeback portal", "KYC document scanner"]):
        plant(root, f"planted/notice-{i}.md",
              f"# Notice on the {topic}\n\nThe {topic} has a maintenance window on Sunday night.\n\n{DISCLAIMER}")
    plant(root, "planted/code.md", CODE)
    plant(root, "planted/table.md", TABLE)
    plant(root, "planted/step.md", STEP)
    plant(root, "planted/long-section.md", LONG_SECTION)
    plant(root, "planted/no-product.md", "# Card limits\n\nDaily card limits are set per customer segment and "
          "reviewed by the cards risk team every quarter.", product=None)
    # The previous default chunking, which produces the cut blocks and lost headings planted here ("auto" avoids
    # them: tests/core/test_auto_chunking.py).
    settings = load_settings(docs=str(root), state_dir=str(base / "state"), required_metadata=REQUIRED,
                             chunk_strategy="sentence")
    rt = build_runtime(settings, embedder=embedder)
    stage(rt, "ingest")
    ledger = rt.index.ledger()
    first = {doc: entry.chunk_ids[0] for doc, entry in ledger.items()}
    col = rt.index.collection
    got = col.get(ids=list(first.values()), include=["embeddings"])
    vec = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    col.update(ids=[first["policies/change-freeze.md"]], embeddings=[vec[first["policies/change-freeze.md"]] * 1.5])
    col.update(ids=[first["policies/complaint-handling.md"]], embeddings=[vec[first["policies/aml-alert-triage.md"]]])
    col.update(ids=[first["runbooks/on-call-handover.md"]], embeddings=[np.zeros(384, dtype=np.float32)])
    rng = np.random.default_rng(0)
    odd = rng.normal(size=384).astype(np.float32)
    col.update(ids=[first["runbooks/token-vault-latency.md"]], embeddings=[odd / np.linalg.norm(odd)])
    rt.index.update_metadata([first["runbooks/fx-rate-feed-stale.md"]], {"model_fingerprint": "0ther-model"})
    pci = first["policies/pci-dss-scope-management.md"]
    col.update(ids=[pci], documents=[""], embeddings=[vec[pci]])  # with its vector: Chroma would embed the text
    return stage(rt, "quality", "planted-run")


PLANTED = [
    ("ends-mid-sentence", "planted/long-sentence.md"),
    ("starts-mid-sentence", "planted/long-sentence.md"),
    ("tiny-chunk", "planted/tiny.md"),
    ("duplicate-chunk", "planted/refund-copy.md"),
    ("near-duplicate", "planted/kyc-escalation-v2.md"),
    ("boilerplate", "planted/notice-0.md"),
    ("boilerplate", "planted/notice-5.md"),
    ("code-block-split", "planted/code.md"),
    ("table-split", "planted/table.md"),
    ("step-split", "planted/step.md"),
    ("lost-heading", "planted/long-section.md"),
    ("missing-metadata", "planted/no-product.md"),
    ("non-normalised", "policies/change-freeze.md"),
    ("shared-vector", "policies/complaint-handling.md"),
    ("zero-vector", "runbooks/on-call-handover.md"),
    ("embedding-outlier", "runbooks/token-vault-latency.md"),
    ("model-mismatch", "runbooks/fx-rate-feed-stale.md"),
    ("empty-chunk", "policies/pci-dss-scope-management.md"),
]


@pytest.mark.parametrize("kind,doc_id", PLANTED)
def test_planted_fault_is_reported_on_its_document(planted, kind, doc_id):
    """It names the document and chunk, and says what is wrong."""
    hits = [f for f in planted["findings"] if f["kind"] == kind and f["doc_id"] == doc_id]
    assert hits, f"no {kind} finding for {doc_id}: {planted['findings_by_kind']}"
    assert all(h["chunk_id"].startswith(doc_id + "#") and h["detail"] for h in hits)


def test_planted_faults_stay_on_their_documents(planted):
    """Clean documents get findings only as the other half of a planted copy (both copies are named)."""
    embedding_planted = {d for _, d in PLANTED if not d.startswith("planted/")}
    stray = {(f["doc_id"], f["kind"]) for f in planted["findings"]
             if not f["doc_id"].startswith("planted/") and f["doc_id"] not in embedding_planted}
    assert stray == {("policies/refund-processing.md", "duplicate-chunk"),
                     ("policies/aml-alert-triage.md", "shared-vector"),
                     ("policies/kyc-escalation.md", "near-duplicate")}


def test_scores_per_document_and_corpus(planted):
    docs = {d["doc_id"]: d for d in planted["documents"]}
    assert docs["policies/sanctions-screening.md"]["score"] == 1.0
    assert docs["planted/code.md"]["score"] < 1.0 and docs["runbooks/on-call-handover.md"]["score"] == 0.0
    assert planted["documents"][0]["score"] == min(d["score"] for d in planted["documents"])  # worst first
    assert 0.0 < planted["score"] < 1.0
    assert planted["status"] == "fail"  # a zero vector and a foreign model's vector are failures
    assert Path(planted["findings_csv"]).read_text().count("\n") == planted["findings_total"] + 1


def test_clean_corpus_has_no_findings(tmp_path, make_runtime):
    rt = make_runtime(clean_corpus(tmp_path / "docs"), required_metadata=REQUIRED)
    stage(rt, "ingest")
    result = stage(rt, "quality", "clean-run")
    assert result["findings"] == [] and result["findings_by_kind"] == {}
    assert result["score"] == 1.0 and result["status"] == "pass" and result["tokens_lost"] == 0
    assert all(d["score"] == 1.0 for d in result["documents"])


def test_token_overflow_counts_the_tokens_never_embedded(tmp_path, make_runtime, embedder):
    root = clean_corpus(tmp_path / "docs")
    plant(root, "planted/long-section.md", LONG_SECTION)
    # bigger than the model's 256-token window ("auto" never exceeds the window: it sizes within it)
    rt = make_runtime(root, chunk_strategy="sentence", chunk_size=400, chunk_overlap=40)
    stage(rt, "ingest")
    result = stage(rt, "quality")
    overflow = [f for f in result["findings"] if f["kind"] == "token-overflow"]
    assert {f["doc_id"] for f in overflow} == {"planted/long-section.md"}
    texts = {r.chunk_id: r.metadata["title"] + "\n\n" + r.text for recs, _ in rt.index.iter_chunks() for r in recs}
    lost = sum(max(0, n - 256) for n in embedder.count_tokens([texts[f["chunk_id"]] for f in overflow]))
    assert result["tokens_lost"] == lost > 0
    assert result["chunks"]["metrics"]["tokens_lost"] == lost


def test_neighbour_stability_and_anisotropy_against_the_baseline(tmp_path, make_runtime):
    """An unchanged index keeps its neighbours; a reshuffled vector space is reported against the baseline."""
    rt = make_runtime(clean_corpus(tmp_path / "docs"))
    stage(rt, "ingest")
    first = stage(rt, "quality", "run-1")
    assert first["baseline_run"] is None and first["embeddings"]["metrics"]["neighbour_overlap"] is None
    rt.archive.point_baseline("run-1")
    same = stage(rt, "quality", "run-2")
    m = same["embeddings"]["metrics"]
    assert same["baseline_run"] == "run-1" and m["neighbour_overlap"] == 1.0 and m["anisotropy_change"] == 0.0
    assert same["status"] == "pass"

    # A re-embed gone wrong: vectors shuffled between chunks and pulled towards one direction.
    got = rt.index.collection.get(include=["embeddings"])
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    pull = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    shuffled = vectors[np.random.default_rng(1).permutation(len(vectors))] + 0.3 * pull
    shuffled /= np.linalg.norm(shuffled, axis=1, keepdims=True)
    rt.index.collection.update(ids=got["ids"], embeddings=shuffled)
    moved = stage(rt, "quality", "run-3")
    m = moved["embeddings"]["metrics"]
    assert m["neighbour_overlap"] < 0.6 and abs(m["anisotropy_change"]) > 0.05
    assert moved["status"] == "warn"
    assert any(f["kind"] == "neighbour-shift" for f in moved["findings"])
    assert any("baseline neighbour documents" in f for f in moved["embeddings"]["findings"])


SMALL_CODE = ("# Cache flush\n\n## Flush\n\n" + " ".join(
    f"Sentence {i} explains why the pricing cache must be flushed after a fee change." for i in range(4))
    + "\n\n```bash\n" + "\n".join(f"cachectl flush --region eu-{i} --namespace pricing" for i in range(3))
    + "\n\n" + "\n".join(f"cachectl verify --region eu-{i} --namespace pricing" for i in range(3)) + "\n```\n\nThen verify the prices on the checkout page.")


def test_markdown_chunking_keeps_blocks_whole_and_headings_attached(tmp_path, make_runtime):
    """The sentence splitter cuts a code block that would fit a chunk and loses section headings; the
    markdown-aware strategy keeps the block whole and carries the section into every chunk's embedding."""
    root = tmp_path / "docs"
    plant(root, "planted/small-code.md", SMALL_CODE)
    plant(root, "planted/long-section.md", LONG_SECTION)
    sentence = make_runtime(root, collection="sentence-chunks", chunk_strategy="sentence", chunk_size=120,
                            chunk_overlap=12)
    stage(sentence, "ingest")
    by_sentence = stage(sentence, "quality")["findings_by_kind"]
    assert by_sentence.get("code-block-split") and by_sentence.get("lost-heading")
    for strategy in ("markdown", "auto"):
        rt = make_runtime(root, collection=f"{strategy}-chunks", chunk_strategy=strategy, chunk_size=120,
                          chunk_overlap=0)
        stage(rt, "ingest")
        by_kind = stage(rt, "quality")["findings_by_kind"]
        assert not by_kind.get("code-block-split") and not by_kind.get("lost-heading"), strategy
        texts = [r.text for recs, _ in rt.index.iter_chunks() for r in recs]
        block = SMALL_CODE[SMALL_CODE.index("```bash"):SMALL_CODE.rindex("```") + 3]
        assert any(block in t for t in texts), strategy


@pytest.mark.slow
def test_compare_chunking_never_touches_the_live_collection(small_corpus, make_runtime, tmp_path):
    import json

    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps({"id": "k", "query": "payments consumer group is behind",
                                  "relevant": ["runbooks/kafka-lag.md"]}) + "\n")
    rt = make_runtime(small_corpus, probes=str(probes))
    stage(rt, "ingest")
    before = (rt.index.collection.get()["ids"], [c.name for c in rt.index.client.list_collections()])
    result = stage(rt, "compare-chunking", ["sentence:64:8", "markdown:64"])
    after = (rt.index.collection.get()["ids"], [c.name for c in rt.index.client.list_collections()])
    assert before == after
    assert [c["chunking"] for c in result["configs"]] == ["sentence:64:8", "markdown:64:0"]
    assert result["winner"] in ("sentence:64:8", "markdown:64:0") and result["reason"]
    for c in result["configs"]:
        assert c["documents"] == 4 and c["chunks"] > 4 and 0 <= c["quality"]["score"] <= 1
        assert c["retrieval"]["overall"]["n"] == 1
    # The live chunking's vectors are read from the live collection (same ids: same content, chunking, model).
    live = stage(rt, "compare-chunking", ["auto:200:24", "sentence:200:24"])["configs"][0]
    assert live["chunks_embedded"] == 0 and live["vectors_reused_from_live"] == live["chunks"] == rt.index.count()
    assert (rt.index.collection.get()["ids"], [c.name for c in rt.index.client.list_collections()]) == before


def test_compare_chunking_rejects_bad_configurations(small_corpus, make_runtime):
    from rag_health.errors import ConfigError

    rt = make_runtime(small_corpus)
    with pytest.raises(ConfigError, match="bad chunking configuration 'words:100'"):
        stage(rt, "compare-chunking", ["sentence:100", "words:100"])
    with pytest.raises(ConfigError, match="the same"):
        stage(rt, "compare-chunking", ["sentence:100:12", "100"])


def test_structure_fields_written_at_ingest(tmp_path, make_runtime):
    root = tmp_path / "docs"
    plant(root, "planted/table.md", TABLE)
    rt = make_runtime(root)
    stage(rt, "ingest")
    metas = [m for _, m in rt.index.iter_metadata()]
    assert all(m["structure_known"] for m in metas)
    assert all(m["section"].startswith("Scheme fee schedule") for m in metas)
    assert sum(bool(m["split_blocks"]) for m in metas) >= 2


def test_whole_document_chunking_reports_what_the_model_truncates(tmp_path, make_runtime):
    """One chunk per document, as MTEB embeds them: the model's window cuts long ones, and quality says how much."""
    root = tmp_path / "docs"
    plant(root, "planted/long-section.md", LONG_SECTION)
    plant(root, "planted/tiny.md", "# Pager number\n\nCall the duty manager on the number in the on-call tool.")
    rt = make_runtime(root, chunk_strategy="whole")
    stage(rt, "ingest")
    assert rt.index.count() == 2 and rt.chunker.config == "whole"
    result = stage(rt, "quality")
    overflow = [f for f in result["findings"] if f["kind"] == "token-overflow"]
    assert [f["doc_id"] for f in overflow] == ["planted/long-section.md"] and result["tokens_lost"] > 0


def test_chunks_from_an_older_version_get_the_structure_fields_without_re_embedding(small_corpus, make_runtime):
    """Chunks written before the structure metadata existed are re-chunked on the next ingest and keep their
    vectors (same ids): the quality stage then sees sections and cut blocks for them too."""
    rt = make_runtime(small_corpus)
    stage(rt, "ingest")
    ids = rt.index.collection.get()["ids"]
    before = rt.index.vectors_for(ids)
    rt.index.update_metadata(ids, {"meta_version": 1, "section": "", "headings": "", "structure_known": False})
    again = stage(rt, "ingest")
    assert again["metadata_upgraded"] == 4 and again["chunks_embedded"] == 0 and again["changed"] == 0
    metas = dict(rt.index.iter_metadata())
    assert sorted(metas) == sorted(ids)
    assert all(m["meta_version"] == 2 and m["structure_known"] for m in metas.values())
    after = rt.index.vectors_for(ids)
    assert max(float(np.abs(before[i] - after[i]).max()) for i in ids) < 1e-6, [float(np.abs(before[i] - after[i]).max()) for i in ids]
    assert stage(rt, "ingest")["read"] == 0  # upgraded once, then skipped as before
