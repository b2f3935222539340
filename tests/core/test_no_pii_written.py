"""No file a run writes (state directory and bucket) holds the PII planted in a policy; with redact_pii not even
the vector store does. Regressions from the review: a card number parsed from front-matter as an integer, and a
bad front-matter value quoted in an ingest error, reached the store and result.json."""

import pytest

from rag_health.registry import SUITE, stages
from rag_health.suite import assemble, save
from tests.conftest import write_doc

CARD, IBAN, EMAIL, PHONE = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "jane.doe@examplebank.co.uk", \
    "+44 20 7946 0958"
PLANTED = [CARD, CARD.replace(" ", ""), IBAN, IBAN.replace(" ", ""), EMAIL, PHONE, PHONE.replace(" ", "")]


def planted_corpus(root):
    write_doc(root, "policies/refunds.md", f"""# Refund exceptions
    ## Escalation
    Refund exceptions above the limit go to the duty manager, Jane Doe, at {EMAIL} or {PHONE}. The test card
    {CARD} may be used in the sandbox only, and the settlement account is {IBAN}. Every exception is logged with
    the ticket number and the approver's name before the refund is released to the customer.
    ## Review
    The refunds team reviews every exception monthly and reports the totals to the risk committee.""",
              title="Refund exceptions", owner="refunds", last_reviewed="2026-10-01", account=CARD.replace(" ", ""))
    # A bad front-matter value is quoted in the error reason: the reason must not carry it either.
    write_doc(root, "policies/bad-date.md", "# Bad date\nA policy whose review date field holds a name.",
              title="Bad date", last_reviewed=f"checked by {EMAIL}")
    write_doc(root, "runbooks/card-declines.md", """# Card declines
    When declines spike, check the issuer processor latency and fail over to the secondary link after ten
    minutes of timeouts above five percent of requests.""", title="Card declines", owner="cards")


def leaks(files):
    found = []
    for path, data in files:
        text = data.decode("utf-8", "ignore")
        found += [(path, v) for v in PLANTED if v in text]
    return found


def run_everything(rt, run_id):
    outputs = {}
    for name in SUITE:
        stage = stages()[name]
        kwargs = {"run_id": run_id} if name in ("quality", "probes", "drift") else {}
        outputs[name] = stage.run(rt, **kwargs)
    save(rt, assemble(run_id, rt, outputs, {}))
    return outputs


@pytest.mark.parametrize("redact", [False, True])
def test_planted_pii_is_in_no_file_the_run_writes(tmp_path, make_runtime, redact, seaweed, monkeypatch):
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    client = seaweed.client()
    bucket = f"pii-{'redacted' if redact else 'plain'}"
    client.create_bucket(Bucket=bucket)
    docs = tmp_path / "docs"
    planted_corpus(docs)
    rt = make_runtime(docs, s3_bucket=bucket, redact_pii=redact)
    outputs = run_everything(rt, "run-1")
    assert outputs["quality"].findings_by_kind.get("pii", 0) == (0 if redact else 1)
    assert any("bad-date" in e.doc_id for e in outputs["ingest"].errors)
    state = tmp_path / "state"
    written = [(str(p), p.read_bytes()) for p in state.rglob("*") if p.is_file()
               and (redact or "chroma" not in p.relative_to(state).parts)]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    written += [(f"s3://{bucket}/{k}", client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    assert any("quality.json" in p for p, _ in written) and any("chroma" in p for p, _ in written) == redact
    assert leaks(written) == []
    if not redact:  # the index itself holds what the documents say: that is what it is for
        assert leaks([(p, data) for p, data in ((str(f), f.read_bytes()) for f in (state / "chroma").rglob("*")
                                                if f.is_file())])


def test_freed_memory_is_scrubbed_in_a_process_that_writes_to_chroma(small_corpus, make_runtime):
    """Regression: embedded Chroma wrote a raw IBAN (freed document text) into an HNSW file (length.bin) in one
    full-suite run; glibc now overwrites freed memory in any process that opens the index."""
    import platform

    from rag_health.store import scrub_freed_memory

    make_runtime(small_corpus).index.count()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert scrub_freed_memory() is True
