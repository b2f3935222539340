"""Personal data in chunk text: card numbers, IBANs, national identifiers, e-mail addresses and phone numbers.

Pure: text in, matches out. Checksums and number formats come from maintained libraries (python-stdnum for the
Luhn, IBAN and national-identifier checks, Google's libphonenumber port `phonenumbers` for phone numbers); the
regular expressions here only propose candidates. A match carries a redacted excerpt (a hint of the kind, never
the value), so findings, reports and logs can say what was found without repeating it.

Precision over recall: a candidate counts only when its checksum or number plan validates, national identifiers
without a distinctive shape need a context word (e.g. "BSN") just before them, and phone numbers written as one
bare run of digits or glued to an identifier (INC-2026112900, ids, versions, timestamps) are not taken.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from typing import Any

KINDS = ("card-number", "iban", "national-id", "email", "phone")
PHONE_REGIONS = ("GB", "US")  # how numbers without a +country prefix are read
MAX_EXCERPTS = 5  # per chunk summary; the rest are counted


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data in a text: its kind, where it is (text[start:end]) and a redacted excerpt."""

    kind: str
    start: int
    end: int
    excerpt: str

    @property
    def detail(self) -> str:
        return f"{self.kind}: {self.excerpt}"


# --- card numbers ------------------------------------------------------------------------------------------

# Issuer prefixes and lengths of the card schemes (ISO/IEC 7812 IIN ranges); the checksum is stdnum's Luhn.
_CARD_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    ("visa", ((4, 4),), frozenset({13, 16, 19})),
    ("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    ("amex", ((34, 34), (37, 37)), frozenset({15})),
    ("discover", ((6011, 6011), (644, 649), (65, 65)), frozenset({16, 17, 18, 19})),
    ("diners", ((300, 305), (36, 36), (38, 39)), frozenset({14, 16})),
    ("jcb", ((3528, 3589),), frozenset({16, 17, 18, 19})),
    ("unionpay", ((62, 62),), frozenset({16, 17, 18, 19})),
    ("maestro", ((50, 50), (56, 58), (63, 63), (67, 67)), frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
)
# `:` and `#` may precede a number ("card no:4111…", "card #4111…"); NBSP separates groups as a space does.
_DIGIT_RUN = re.compile(r"(?<![\w.,/-])\d+(?:[ \u00a0-]\d+)*(?![\w/#:-]|[.,]\d)")


def card_brand(digits: str) -> str | None:
    for brand, ranges, lengths in _CARD_BRANDS:
        if len(digits) in lengths and any(lo <= int(digits[:len(str(lo))]) <= hi for lo, hi in ranges):
            return brand
    return None


def _card_grouping(groups: Sequence[str], seps: Sequence[str]) -> bool:
    """How card numbers are written: one run, groups of four (the last may be shorter), or 4-6-5 / 4-6-4."""
    if len(groups) == 1:
        return True
    if len(set(seps)) != 1:
        return False
    sizes = [len(g) for g in groups]
    return all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4 or sizes in ([4, 6, 5], [4, 6, 4])


# A card number glued into an identifier or a file name ("refund-4111111111111111.md", "card_4111..."): one
# contiguous run of 13-19 digits, taken only with a scheme's prefix and a valid Luhn checksum.
_GLUED_CARD = re.compile(r"(?<![0-9])\d{13,19}(?![0-9])")


def _cards(text: str) -> Iterator[PiiMatch]:
    yield from _spaced_cards(text)
    from stdnum import luhn

    for m in _GLUED_CARD.finditer(text):
        digits = m.group()
        if card_brand(digits) and luhn.is_valid(digits):
            yield PiiMatch("card-number", m.start(), m.end(), "**** **** **** " + digits[-4:])


def _spaced_cards(text: str) -> Iterator[PiiMatch]:
    from stdnum import luhn

    for run in _DIGIT_RUN.finditer(text):
        parts = re.split(r"([ \u00a0-])", run.group())
        groups, seps = parts[0::2], parts[1::2]
        offsets = [run.start()]
        for g, s in zip(groups, seps):
            offsets.append(offsets[-1] + len(g) + len(s))
        i = 0
        while i < len(groups):
            # Only windows of at most 19 digits can be a card: linear in the run, never all pairs of groups.
            j_max, total = i, 0
            while j_max < len(groups) and total + len(groups[j_max]) <= 19:
                total += len(groups[j_max])
                j_max += 1
            # Several groups are a card only when written in fours (or 4-6-5): otherwise only this group alone.
            windows = range(j_max, i, -1) if len(groups[i]) == 4 else [i + 1]
            for j in windows:  # the longest valid number starting at group i
                digits = "".join(groups[i:j])
                if len(digits) < 12:
                    break
                if (13 <= len(digits) <= 19 or len(digits) == 12 and j - i == 1) \
                        and _card_grouping(groups[i:j], seps[i:j - 1]) and card_brand(digits) and luhn.is_valid(digits):
                    yield PiiMatch("card-number", offsets[i], offsets[j - 1] + len(groups[j - 1]),
                                   "**** **** **** " + digits[-4:])
                    i = j - 1
                    break
            i += 1


# --- IBANs -------------------------------------------------------------------------------------------------

# Any case (generated probe queries are lower-cased), spaces or dashes between groups; stdnum decides.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}(?:[ -]?[A-Za-z0-9]{1,3})?"
                   r"(?![A-Za-z0-9])")


def _ibans(text: str) -> Iterator[PiiMatch]:
    from stdnum import iban

    for m in _IBAN.finditer(text):
        candidate = m.group()
        while candidate:  # the regex may have swallowed a following word: shorten group by group
            if iban.is_valid(candidate.upper().replace("-", " ")):
                compact = iban.compact(candidate.upper().replace("-", " "))
                masked = compact[:2] + "*" * (len(compact) - 6) + compact[-4:]
                yield PiiMatch("iban", m.start(), m.start() + len(candidate),
                               " ".join(masked[k:k + 4] for k in range(0, len(masked), 4)))
                break
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            candidate = candidate[:cut] if cut > 0 else ""


# --- national identifiers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NationalId:
    """A national identifier that python-stdnum validates. context: a pattern that must occur in the
    CONTEXT_CHARS before the number, for formats that an ordinary number could take by chance."""

    scheme: str
    module: str
    pattern: re.Pattern[str]
    context: re.Pattern[str] | None = None


CONTEXT_CHARS = 40
_I = re.IGNORECASE
NATIONAL_IDS: tuple[NationalId, ...] = (
    # US: no checksum, but stdnum rejects the never-issued areas, groups and serials; dashed form only, or a
    # bare nine digits after "SSN" / "social security".
    NationalId("us-ssn", "stdnum.us.ssn", re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")),
    NationalId("us-ssn", "stdnum.us.ssn", re.compile(r"(?<![\w-])\d{3} ?\d{2} ?\d{4}(?![\w-])"),
               re.compile(r"\bssn\b|social security", _I)),
    NationalId("es-dni", "stdnum.es.dni", re.compile(r"(?<![\w-])\d{8}-?[A-Z](?![\w-])")),
    NationalId("es-nie", "stdnum.es.nie", re.compile(r"(?<![\w-])[XYZ]-?\d{7}-?[A-Z](?![\w-])")),
    NationalId("it-codice-fiscale", "stdnum.it.codicefiscale",
               re.compile(r"(?<![\w-])[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z](?![\w-])")),
    NationalId("fr-nir", "stdnum.fr.nir",
               re.compile(r"(?<![\w-])[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\w-])")),
    NationalId("ie-pps", "stdnum.ie.pps", re.compile(r"(?<![\w-])\d{7}[A-W][A-IW]?(?![\w-])")),
    NationalId("de-idnr", "stdnum.de.idnr", re.compile(r"(?<![\w-])\d{2} ?\d{3} ?\d{3} ?\d{3}(?![\w-])"),
               re.compile(r"steuer|\bidnr\b|identifikationsnummer|\btax\s*id", _I)),
    NationalId("nl-bsn", "stdnum.nl.bsn", re.compile(r"(?<![\w.-])\d{4}\.?\d{2}\.?\d{3}(?![\w-]|\.\d)"),
               re.compile(r"\bbsn\b|burgerservice|\bsofi", _I)),
    NationalId("gb-nhs", "stdnum.gb.nhs", re.compile(r"(?<![\w-])\d{3} ?\d{3} ?\d{4}(?![\w-])"),
               re.compile(r"\bnhs\b", _I)),
)


def _national_ids(text: str) -> Iterator[PiiMatch]:
    for spec in NATIONAL_IDS:
        is_valid: Callable[[str], bool] = import_module(spec.module).is_valid
        for m in spec.pattern.finditer(text):
            if spec.context and not spec.context.search(text[max(0, m.start() - CONTEXT_CHARS):m.start()]):
                continue
            if is_valid(m.group()):
                compact = re.sub(r"[\s.-]", "", m.group())
                yield PiiMatch("national-id", m.start(), m.end(), f"{spec.scheme} {'*' * (len(compact) - 2)}"
                               f"{compact[-2:]}")


# --- e-mail addresses --------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|:[\w/~])")


def _emails(text: str) -> Iterator[PiiMatch]:
    for m in _EMAIL.finditer(text):
        local, domain = m.group().split("@", 1)
        yield PiiMatch("email", m.start(), m.end(), f"{local[0]}***@{domain}")


# --- phone numbers -----------------------------------------------------------------------------------------

_GLUED_BEFORE = re.compile(r"[\w#/:.@-]$")
_GLUED_AFTER = re.compile(r"^(?:[\w#/:@-]|[.,]\d)")


def _phones(text: str, regions: Sequence[str]) -> Iterator[PiiMatch]:
    import phonenumbers
    from phonenumbers import Leniency, PhoneNumberMatcher

    for region in regions:
        # max_tries: the default (65,535) silently stops looking in a long document
        for m in PhoneNumberMatcher(text, region, leniency=Leniency.VALID, max_tries=sys.maxsize):
            raw = m.raw_string
            if _GLUED_BEFORE.search(text[max(0, m.start - 1):m.start]) or _GLUED_AFTER.match(text[m.end:m.end + 2]):
                continue  # part of an identifier, a version, an address or a longer number
            if not raw.startswith("+") and re.fullmatch(r"\d{9,}", raw):
                continue  # a bare run of digits is more often an id than a phone number
            e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
            yield PiiMatch("phone", m.start, m.end, f"+{m.number.country_code} {'*' * 6}{e164[-2:]}")


# --- secrets ----------------------------------------------------------------------------------------------
# Credentials are not personal data, but a document that holds one must not pass it on either: detect-secrets'
# precise detectors (fixed formats, JWTs checked to decode as JSON), never its entropy or keyword guesses, plus
# the formats it does not know (GitHub's fine-grained tokens, an AWS secret key written after its name, a whole PEM
# private key block).

_PEM_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE "
                        r"KEY(?: BLOCK)?-----|\Z)", re.DOTALL)
_EXTRA_SECRETS = (
    ("github-token", re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}")),
    ("aws-secret-key", re.compile(r"(?i)(?:aws_secret_access_key|secret access key|aws_secret_key)[\s:=\"']{1,6}"
                                  r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")),
)
_SECRET_HINT = re.compile(r"AKIA|ASIA|ABIA|ACCA|A3T|gh[pousr]_|github_pat_|eyJ|PRIVATE KEY|glpat-|xox[abpors]-|"
                          r"sk_live|rk_live|pypi-|npm_|SG\.|sk-|SK[0-9a-f]|secret", re.IGNORECASE)


def _secret_detectors() -> list[tuple[str, Any]]:
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.stripe import StripeDetector

    return [("aws-access-key", AWSKeyDetector()), ("github-token", GitHubTokenDetector()),
            ("gitlab-token", GitLabTokenDetector()), ("jwt", JwtTokenDetector()), ("npm-token", NpmDetector()),
            ("openai-key", OpenAIDetector()), ("pypi-token", PypiTokenDetector()),
            ("sendgrid-key", SendGridDetector()), ("slack-token", SlackDetector()), ("stripe-key", StripeDetector())]


_DETECTORS: list[tuple[str, Any]] = []


def _jwt_end(text: str, end: int) -> int:
    """detect-secrets reports a JWT up to its payload: the signature segment after it belongs to it too."""
    m = re.compile(r"[A-Za-z0-9_-]*").match(text, end)
    return m.end() if m else end


def find_secrets(text: str) -> list[PiiMatch]:
    """Credentials in the text (kind "secret"), in reading order; the excerpt names the type only, never a
    character of the value."""
    if not text or not _SECRET_HINT.search(text):
        return []
    if not _DETECTORS:
        _DETECTORS.extend(_secret_detectors())
    spans: list[tuple[int, int, str]] = [(m.start(), m.end(), "private-key") for m in _PEM_BLOCK.finditer(text)]
    spans += [(m.start("v"), m.end("v"), label) if "v" in pattern.groupindex else (m.start(), m.end(), label)
              for label, pattern in _EXTRA_SECRETS for m in pattern.finditer(text)]
    for label, detector in _DETECTORS:
        # Their regular expressions, for where each match is (analyze_string yields only a capture group, e.g.
        # "ghp" of a GitHub token); a JWT must also decode as JSON, as its detector requires.
        for regex in detector.denylist:
            for m in regex.finditer(text):
                if label == "jwt" and not detector.is_formally_valid(m.group()):
                    continue
                spans.append((m.start(), _jwt_end(text, m.end()) if label == "jwt" else m.end(), label))
    kept: list[PiiMatch] = []
    for start, end, label in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if kept and start < kept[-1].end:
            continue  # inside a longer match (a PEM block, a JWT)
        kept.append(PiiMatch("secret", start, end, f"{label} (value withheld)"))
    return kept


# --- all together ------------------------------------------------------------------------------------------

_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


def find_pii(text: str, regions: Sequence[str] = PHONE_REGIONS) -> list[PiiMatch]:
    """Every piece of personal data in the text, in reading order. Where candidates overlap (an IBAN's digits
    also read as a phone number), the kind earlier in KINDS wins."""
    if not text or not any(c.isdigit() or c == "@" for c in text):
        return []
    candidates = [*_cards(text), *_ibans(text), *_national_ids(text), *_emails(text), *_phones(text, regions)]
    kept: list[PiiMatch] = []
    for c in sorted(candidates, key=lambda c: (_PRIORITY[c.kind], c.start, -(c.end - c.start))):
        if all(c.end <= k.start or c.start >= k.end for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: c.start)


def find_sensitive(text: str, regions: Sequence[str] = PHONE_REGIONS) -> list[PiiMatch]:
    """Personal data and secrets together, in reading order (a secret wins where the two overlap)."""
    secrets = find_secrets(text)
    found = secrets + [m for m in find_pii(text, regions) if all(m.end <= s.start or m.start >= s.end
                                                                for s in secrets)]
    return sorted(found, key=lambda m: m.start)


def redact(text: str, matches: Sequence[PiiMatch] | None = None, regions: Sequence[str] = PHONE_REGIONS) -> str:
    """The text with every match of personal data or a secret replaced by "[<kind> redacted]": what a corpus that
    must not hold personal data embeds and stores instead of the chunk text, and what every report shows."""
    if matches is None and regions == PHONE_REGIONS:
        # Cached for the short texts shown many times a run (ids, owners, sentences), never whole documents.
        return _redacted(text) if len(text) <= CACHED_CHARS else _redact_uncached(text)
    found = find_sensitive(text, regions) if matches is None else sorted(matches, key=lambda m: m.start)
    return _replace(text, found)


CACHED_CHARS = 4096


@lru_cache(maxsize=65536)
def _redacted(text: str) -> str:
    """redact() of a text with the default regions: the same ids, owners and sentences are shown many times a run."""
    return _redact_uncached(text)


def _redact_uncached(text: str) -> str:
    if not text or not (any(c.isdigit() or c == "@" for c in text) or _SECRET_HINT.search(text)):
        return text
    return _replace(text, find_sensitive(text))


def _replace(text: str, found: Sequence[PiiMatch]) -> str:
    out, pos = [], 0
    for m in found:
        out.append(text[pos:m.start])
        out.append(f"[{m.kind} redacted]")
        pos = m.end
    out.append(text[pos:])
    return "".join(out)


def summary(matches: Sequence[PiiMatch], limit: int = MAX_EXCERPTS) -> str:
    """"card-number: **** **** **** 1111; email: j***@example.com": the redacted excerpts, at most `limit`."""
    shown = "; ".join(m.detail for m in matches[:limit])
    return shown + (f"; and {len(matches) - limit} more" if len(matches) > limit else "")


def scrub(value: Any) -> Any:
    """Data with personal data and secrets redacted in every string, keys included (dicts, lists and tuples are
    walked; numbers and everything else pass as they are): what any file, artifact or output is written from."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value

