"""Personal data in chunk text: checksums decide (valid numbers are found, one digit off is not), excerpts never
repeat a value, and the numbers that runbooks and policies are full of (dates, amounts, versions, timestamps,
run and chunk ids, ports, addresses) are not taken for personal data."""

from __future__ import annotations

import dataclasses

import pytest

from checks.pii import KINDS, PiiMatch, find_pii, redact, summary


def kinds(text: str) -> list[tuple[str, str]]:
    return [(m.kind, text[m.start:m.end]) for m in find_pii(text)]


@pytest.mark.parametrize("number", ["4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111",
                                    "5555 5555 5555 4444", "3782 822463 10005", "6011 1111 1111 1117"])
def test_luhn_valid_card_numbers_are_found(number):
    text = f"The customer read out card {number} on the call."
    assert kinds(text) == [("card-number", number)]
    assert find_pii(text)[0].excerpt == "**** **** **** " + number[-4:]


@pytest.mark.parametrize("number", [
    "4111 1111 1111 1112",  # Luhn fails
    "1234 5678 9012 3456",  # no card scheme starts with 1
    "4111 11111 111 1111",  # not how a card number is grouped
])
def test_invalid_card_numbers_are_not(number):
    assert find_pii(f"Reference {number} is in the ledger.") == []


def test_ibans_by_checksum_with_country_and_last_four_kept():
    text = "Refund to GB82 WEST 1234 5698 7654 32 then close. Also DE89370400440532013000."
    found = find_pii(text)
    assert [(m.kind, text[m.start:m.end]) for m in found] == [("iban", "GB82 WEST 1234 5698 7654 32"),
                                                              ("iban", "DE89370400440532013000")]
    assert found[0].excerpt == "GB** **** **** **** **54 32"
    assert find_pii("Refund to GB82 WEST 1234 5698 7654 33 then close.") == []  # mod-97 check fails
    assert find_pii("Refund to GB82 WXST 1234 5698 7654 32 then close.") == []


@pytest.mark.parametrize("text,scheme", [
    ("Customer SSN 123-45-6789 on file.", "us-ssn"),
    ("DNI 12345678Z del titular.", "es-dni"),
    ("NIE X1234567L del titular.", "es-nie"),
    ("Codice fiscale RSSMRA85T10A562S.", "it-codice-fiscale"),
    ("NIR 2 95 10 99 126 111 93.", "fr-nir"),
    ("BSN: 111222333.", "nl-bsn"),
    ("NHS number 943 476 5919.", "gb-nhs"),
    ("Steuer-ID 86095742719.", "de-idnr"),
])
def test_national_identifiers_validated_by_stdnum(text, scheme):
    found = find_pii(text)
    assert [m.kind for m in found] == ["national-id"]
    assert found[0].excerpt.startswith(scheme + " ") and "*" in found[0].excerpt


@pytest.mark.parametrize("text", [
    "SSN 078-05-1120 is the famous invalid one.",  # never issued: stdnum rejects it
    "SSN 000-12-3456.",
    "DNI 12345678A del titular.",  # wrong check letter
    "BSN: 111222334.",  # fails the eleven test
    "Batch 111222333 settled.",  # valid BSN digits but no context word: an ordinary number
    "NHS number 943 476 5918.",  # fails mod 11 (its 3-3-4 digits still read as a US phone number)
    "Partition 86095742719 was rebalanced.",  # a valid Steuer-ID, without context
])
def test_national_identifier_lookalikes_are_not(text):
    assert "national-id" not in [m.kind for m in find_pii(text)]


def test_emails_keep_first_letter_and_domain():
    text = "Send it to jane.doe+refunds@example.co.uk or (ops@bank.example)."
    found = find_pii(text)
    assert [(m.kind, m.excerpt) for m in found] == [("email", "j***@example.co.uk"), ("email", "o***@bank.example")]
    assert find_pii("Clone git@github.com:org/repo.git, decorate with @pytest.mark.slow, mention @oncall.") == []


@pytest.mark.parametrize("phone", ["+44 20 7946 0958", "020 7946 0958", "(212) 555-0142", "+1 415-555-2671",
                                   "+49 30 901820", "0800 123 4567"])
def test_phone_numbers_in_several_formats(phone):
    text = f"Call the duty manager on {phone} out of hours."
    found = find_pii(text)
    assert [(m.kind, text[m.start:m.end]) for m in found] == [("phone", phone)]
    assert found[0].excerpt.startswith("+") and found[0].excerpt.endswith(phone[-2:])


TRAPS = """Released 2026-11-29 at 2026-11-29T17:00:04Z (29/11/2026, 11/29/2026, 29.11.2026, 17:00-18:00 UTC).
Run 20261129T170004Z-79e2fa wrote chunk runbooks/a.md#abc123:0001 and policies/b.md#9f86d0:0012.
Version 1.14.2, v2.0.11, chart 45.27.2, CVE-2024-3094, ISO 27001:2013, PCI DSS 4.0.1, RFC 5321.
Amounts: EUR 1,234,567.89, £12 345 678, 250 000 000 EUR, 12345678.00, fee 0.35%, SLA 99.95%.
Hosts 10.0.12.255:8443, 192.168.100.200, [2001:db8::1]:5432, port 5432, HTTP 503, epoch 1732900000.
Ticket INC-2026112900, PR #123456789, sort code 20-00-00, account 12345678, ABA 021000021, BIC DEUTDEFF500.
uuid 123e4567-e89b-12d3-a456-426614174000, trace 4bf92f3577b34da6a3ce929d0e0e4736, sha 9f86d081884c7d65.
Limits: 100000000 rows, 1 000 000 rows, 365 days, 4096 MiB, 86400 s, batch of 5000, top-k 10."""


def test_ordinary_numbers_in_runbooks_are_not_personal_data():
    assert find_pii(TRAPS) == []


def test_overlapping_candidates_go_to_the_stronger_kind():
    """An IBAN's or a card's digits also parse as a phone number: only the IBAN or card is reported."""
    text = "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32."
    assert [m.kind for m in find_pii(text)] == ["card-number", "iban"]


PLANTED = ("Refund card 4111 1111 1111 1111 to IBAN GB82 WEST 1234 5698 7654 32; confirm with "
           "jane.doe@example.com and cc j.smith@example.org, or call +44 20 7946 0958.")
RAW = ["4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "jane.doe@example.com", "j.smith@example.org",
       "+44 20 7946 0958", "7946 0958"]


def test_redact_replaces_every_value_and_keeps_the_rest():
    out = redact(PLANTED)
    assert out == ("Refund card [card-number redacted] to IBAN [iban redacted]; confirm with [email redacted] and "
                   "cc [email redacted], or call [phone redacted].")
    assert not any(raw in out for raw in RAW)
    assert redact(TRAPS) == TRAPS and redact("") == ""
    assert redact(out) == out  # idempotent: a redacted text holds nothing left to find


def test_summary_and_matches_hold_no_raw_value():
    found = find_pii(PLANTED)
    assert [m.kind for m in found] == ["card-number", "iban", "email", "email", "phone"]
    assert set(KINDS) >= {m.kind for m in found}
    text = summary(found)
    assert text.startswith("card-number: **** **** **** 1111; iban: GB** ")
    assert not any(raw in text for raw in RAW)
    assert summary(found, limit=2).endswith("; and 3 more")
    assert summary([]) == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].start = 0  # type: ignore[misc]
    assert isinstance(found[0], PiiMatch) and found[0].detail == "card-number: **** **** **** 1111"


def test_pii_column_becomes_a_pii_finding_that_warns():
    """The chunk check reports the `pii` column as is (redacted excerpts) and warns on any such chunk by default;
    a boilerplate example is quoted only after redaction."""
    import pandas as pd

    from checks.chunk_quality import chunk_quality
    from checks.findings import KINDS, FindingKind

    n = 4
    table = pd.DataFrame({
        "chunk_id": [f"d#{i}:000{i}" for i in range(n)], "doc_id": ["d"] * n, "chunk_index": list(range(n)),
        "n_chars": [200] * n, "n_tokens": [50] * n, "ends_mid_sentence": [False] * n, "n_words": [40] * n,
        "pii": ["", summary(find_pii(PLANTED)), "", ""],
        "boilerplate_share": [0.0, 0.0, 0.0, 0.9], "boilerplate_documents": [0, 0, 0, 9],
        "boilerplate_example": ["", "", "", "Questions to dpo@example.com or +44 20 7946 0958."]})
    result = chunk_quality(table, max_tokens=256)
    pii = [f for f in result.items if f.kind == FindingKind.PII]
    assert [(f.chunk_id, f.penalty) for f in pii] == [("d#1:0001", KINDS[FindingKind.PII].penalty)]
    assert pii[0].detail.startswith("card-number: **** **** **** 1111; iban: GB** ")
    assert result.status == "warn" and result.metrics["pii_chunks"] == 1
    assert any("personal data" in f and "1 of 4" in f for f in result.findings)
    boilerplate = next(f for f in result.items if f.kind == FindingKind.BOILERPLATE)
    assert "[email redacted]" in boilerplate.detail and "dpo@" not in boilerplate.detail
    assert result.metrics["findings_by_kind"]["pii"] == 1



@pytest.mark.parametrize("text,kind", [
    ("Card no:4111111111111111", "card-number"),
    ("card #4111111111111111", "card-number"),
    ("card 4111\u00a01111\u00a01111\u00a01111", "card-number"),
    ("credit gb82west12345698765432 approved", "iban"),
    ("DE89-3704-0044-0532-0130-00 ok", "iban"),
])
def test_formats_the_review_found_missed(text, kind):
    """Review: lower-cased IBANs (generated probe queries are lower-cased), dashed IBANs, NBSP-separated cards and
    cards after ':' or '#' were not found."""
    assert [m.kind for m in find_pii(text)] == [kind]


def test_card_search_is_linear_in_a_run_of_digit_groups():
    """Review: every start and end group of a run was tried (cubic: 8,000 characters took 94 s). Windows are now
    bounded by 19 digits and multi-group windows need groups of four; this input finishes at once (no timing
    assertion: the count of matches shows the search ran to the end)."""
    text = " ".join(["1"] * 20_000) + " 4111 1111 1111 1111"
    assert [m.kind for m in find_pii(text)] == ["card-number"]


# Round 3 (issue 19): secrets got no finding and leaked through generated probe queries into result.json.
_JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
_SECRETS = [
    ("access key AKIAIOSFODNN7EXAMPLE here", "aws-access-key"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws-secret-key"),
    ("token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 pushed", "github-token"),
    ("token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF pushed", "github-token"),
    (f"Authorization: Bearer {_JWT}", "jwt"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----", "private-key"),
    ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack-token"),
]


@pytest.mark.parametrize("text,label", _SECRETS)
def test_each_kind_of_secret_is_found_and_redacted_without_its_value(text, label):
    from checks.pii import find_secrets, find_sensitive, redact
    found = find_secrets(text)
    assert [m.excerpt for m in found] == [f"{label} (value withheld)"]
    value = text[found[0].start:found[0].end]
    assert value not in redact(text) and "[secret redacted]" in redact(text)
    assert [m.kind for m in find_sensitive(text)] == ["secret"]
    assert value not in summary(found) and value[-8:] not in summary(found)  # the type only, never the value


@pytest.mark.parametrize("text", ["the secret of a good runbook is brevity", "AKIA is a prefix, not a key",
                                  "ghp_short", "eyJ not a token"])
def test_words_that_only_look_like_secrets_are_not(text):
    from checks.pii import find_secrets
    assert find_secrets(text) == []


def test_a_card_number_glued_into_a_file_name_is_found():
    found = find_pii("runbooks/refund-4111111111111111.md")
    assert [m.kind for m in found] == ["card-number"]
    assert find_pii("runbooks/incident-20261207123456.md") == []  # a timestamp fails Luhn and card ranges
