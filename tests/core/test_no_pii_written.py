"""No file a run writes (state directory and bucket) holds the PII planted in a policy; with redact_pii not even
the vector store does. Regressions from the review: a card number parsed from front-matter as an integer, and a
bad front-matter value quoted in an ingest error, reached the store and result.json."""

import pytest

from rag_health.registry import SUITE, stages
from rag_health.suite import assemble, render_front_page, save
from tests.conftest import write_doc

CARD, IBAN, EMAIL, PHONE = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "jane.doe@examplebank.co.uk", \
    "+44 20 7946 0958"
AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
OWNER_EMAIL, PRODUCT_CARD, NAMED_CARD = "owner.person@examplebank.co.uk", "5555555555554444", "4012888888881881"
PLANTED = [CARD, CARD.replace(" ", ""), IBAN, IBAN.replace(" ", ""), EMAIL, PHONE, PHONE.replace(" ", ""),
           AWS_KEY, AWS_SECRET, GITHUB, JWT.split(".")[0], PEM, OWNER_EMAIL, PRODUCT_CARD, NAMED_CARD]


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
    # Round 3 (issue 19): PII in owner and product values and in a file name, and secrets in a runbook, were
    # written raw (result.json, drift groups, the snapshot, the Evidently report, the front page, probe queries).
    write_doc(root, "runbooks/deploy-keys.md", f"""# Deploy keys
    ## Rotating the keys
    The CI role uses access key {AWS_KEY} with aws_secret_access_key = {AWS_SECRET}; the release bot pushes
    with {GITHUB}. A session token looks like {JWT} and the signing key starts:
    -----BEGIN RSA PRIVATE KEY-----
    {PEM}
    -----END RSA PRIVATE KEY-----
    ## After rotating
    Revoke the old keys, update the vault entry and page the platform team when the rotation is complete.""",
              title="Deploy keys", owner=OWNER_EMAIL, product=PRODUCT_CARD, last_reviewed="2026-10-01")
    write_doc(root, f"policies/refund-{NAMED_CARD}.md", """# Named refund
    A refund policy whose file name holds a card number: every report names the file, none may show it.""",
              title="Named refund", owner="refunds")
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
    save(rt, assemble(run_id, rt, outputs, {}), front_page=lambda shown: render_front_page(rt, shown))
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
    by_kind = outputs["quality"].findings_by_kind
    assert by_kind.get("pii", 0) == (0 if redact else 2)  # the refunds chunk, and the card in a file name
    assert by_kind.get("secret", 0) == (0 if redact else 2)  # the deploy-keys chunks holding a secret
    assert any("bad-date" in e.doc_id for e in outputs["ingest"].errors)
    if redact:  # a file name with PII would put it in every chunk id: not indexed, named redacted
        assert [e.doc_id for e in outputs["ingest"].skipped] == ["policies/refund-[card-number redacted].md"]
    state = tmp_path / "state"
    written = [(str(p), p.read_bytes()) for p in state.rglob("*") if p.is_file()
               and (redact or "chroma" not in p.relative_to(state).parts)]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    written += [(f"s3://{bucket}/{k}", client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    assert any("quality.json" in p for p, _ in written) and any("chroma" in p for p, _ in written) == redact
    assert any(p.endswith("reports/run-1/index.html") for p, _ in written)
    assert any(p.endswith("drift-report.html") for p, _ in written) and any("snapshot.parquet" in p for p, _ in written)
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
