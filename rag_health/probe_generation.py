"""Probes generated from the corpus itself, without an LLM, each aimed at the document (and section) it came from.

Kinds, and how their difficulty is controlled (none of them can be answered by pasting the chunk's text):
  section  a level-2+ heading plus `title_words` of the document's rarest title words ("Escalation chargeback
           disputes"): generic headings ("Scope", "Rollback") repeat across documents, so the probe tests that
           the right document's section wins; fewer title words make it harder.
  term     a defined acronym, asked without its expansion ("What does STR mean in AML triage?"), or a term
           defined with "means" / "is defined as", asked without the definition.
  step     the first sentence of a numbered step, cut to its `keep_ratio` rarest content words, in their
           original order, with no run of more than `max_verbatim` consecutive words of the source.
Probe ids are stable while a document's text is: kind, doc id and a hash of the source text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from checks import heading_paths

STOPWORDS = frozenset("""a an and are as at be by for from has have how if in into is it its of on or that the their
then this to was were what when where which who will with within without not no all any each every per via
your our you we they them than there these those can could should would may must do does done use using also
only over under after before about out up down off more most less such other same so very just than""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")
_STEP = re.compile(r"^\s{0,3}\d{1,3}[.)]\s+(.+)$", re.M)
_ACRONYM = re.compile(r"\b([A-Za-z][a-z]+(?:[ -][A-Za-z][a-z]+){1,6})\s+\(([A-Z][A-Z0-9]{1,7})\)")
_DEFINED = re.compile(r"(?:^|[.!?]\s+)(?:An?\s+|The\s+)?\*{0,2}([A-Z][\w -]{2,40}?)\*{0,2}\s+(?:means|is defined as)\s",
                      re.M)
_MARKUP = re.compile(r"[*_`>#|]+")


@dataclass(frozen=True)
class GenerationSettings:
    title_words: int = 2
    keep_ratio: float = 0.5
    max_verbatim: int = 3
    per_document: int = 2  # probes of each kind per document
    max_probes: int = 200


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 2]


def _longest_common_run(query: list[str], source: list[str]) -> int:
    """Length of the longest run of consecutive words the query shares with the source (case-insensitive)."""
    q, s = [w.lower() for w in query], [w.lower() for w in source]
    best = 0
    for i in range(len(q)):
        for j in range(len(s)):
            n = 0
            while i + n < len(q) and j + n < len(s) and q[i + n] == s[j + n]:
                n += 1
            best = max(best, n)
    return best


def generate_probes(chunks: Iterable[tuple[str, int, str, str, str]], settings: GenerationSettings | None = None
                    ) -> list[dict[str, Any]]:
    """chunks: (doc_id, chunk index, title, section path, text) for every chunk, in any order. Returns probe rows
    for probe_set_from_rows; the same corpus always gives the same probes."""
    g = settings or GenerationSettings()
    corpus = _collect(chunks)
    rows: list[dict[str, Any]] = []
    for doc_id in sorted(corpus.titles):
        rows += _section_rows(corpus, doc_id, g)
        rows += _term_rows(corpus, doc_id, g)
        rows += _step_rows(corpus, doc_id, g)
    if len(rows) > g.max_probes:  # a deterministic spread over the corpus, not the first documents
        rows = sorted(rows, key=lambda r: hashlib.blake2b(r["id"].encode(), digest_size=8).digest())[:g.max_probes]
        rows.sort(key=lambda r: r["id"])
    return rows


@dataclass
class _Corpus:
    """What the chunks offer to ask about, per document and in document order, with the word counts that rank
    the words of a probe."""

    titles: dict[str, str]
    doc_freq: Counter[str]  # documents each (lower-cased) content word occurs in
    sections: defaultdict[str, list[str]]
    steps: defaultdict[str, list[tuple[str, str]]]  # (section heading, first sentence of the step)
    terms: defaultdict[str, list[tuple[str, str, str]]]  # ("acronym" or "defined", term, section heading)

    @cached_property
    def title_freq(self) -> Counter[str]:
        return Counter(w.lower() for t in self.titles.values() for w in set(content_words(t)))

    def idf(self, word: str) -> float:
        return math.log(max(1, len(self.titles)) / (1 + self.doc_freq.get(word.lower(), 0)))

    def context(self, doc_id: str, exclude: str, n_words: int) -> str:
        """The document's rarest title words (rare across titles), not already in the probe."""
        taken = {w.lower() for w in _WORD.findall(exclude)}
        words = [w for w in dict.fromkeys(content_words(self.titles[doc_id])) if w.lower() not in taken]
        words.sort(key=lambda w: (self.title_freq[w.lower()], -len(w)))
        return " ".join(words[:n_words])


def _collect(chunks: Iterable[tuple[str, int, str, str, str]]) -> _Corpus:
    """Every candidate section, step and term of every document, and how many documents use each word."""
    doc_freq: Counter[str] = Counter()
    seen_words: dict[str, set[str]] = defaultdict(set)
    titles: dict[str, str] = {}
    found: dict[str, list[tuple[int, int, str, tuple[str, ...]]]] = defaultdict(list)  # (chunk, offset, kind, data)
    for doc_id, index, title, section, text in chunks:
        titles.setdefault(doc_id, title)
        words = {w.lower() for w in content_words(text)} - seen_words[doc_id]
        seen_words[doc_id] |= words
        doc_freq.update(words)
        heading = heading_paths.last(section)
        if heading and heading_paths.nested(section):
            found[doc_id].append((index, -1, "section", (heading,)))
        for m in _STEP.finditer(text):
            first = re.split(r"(?<=[.!?])\s", _MARKUP.sub("", m.group(1)).strip(), maxsplit=1)[0]
            if len(content_words(first)) >= 4:
                found[doc_id].append((index, m.start(), "step", (heading, first)))
        for m in _ACRONYM.finditer(text):
            found[doc_id].append((index, m.start(), "term", ("acronym", m.group(2), heading)))
        for m in _DEFINED.finditer(text):
            found[doc_id].append((index, m.start(), "term", ("defined", m.group(1).strip(), heading)))
    corpus = _Corpus(titles, doc_freq, defaultdict(list), defaultdict(list), defaultdict(list))
    for doc_id, items in found.items():
        for _, _, kind, data in sorted(items):  # document order, whatever order the chunks came in
            if kind == "section" and data[0] not in corpus.sections[doc_id]:
                corpus.sections[doc_id].append(data[0])
            elif kind == "step" and all(data[1] != s for _, s in corpus.steps[doc_id]):
                corpus.steps[doc_id].append(data)  # type: ignore[arg-type]
            elif kind == "term":
                corpus.terms[doc_id].append(data)  # type: ignore[arg-type]
    return corpus


def _row(kind: str, doc_id: str, query: str, source: str, section: str = "") -> dict[str, Any]:
    digest = hashlib.blake2b(f"{kind}|{source}".encode(), digest_size=4).hexdigest()
    row = {"id": f"{kind}:{doc_id}:{digest}", "query": query, "relevant": [doc_id], "kind": kind}
    if section:
        row["section"] = section
    return row


def _section_rows(corpus: _Corpus, doc_id: str, g: GenerationSettings) -> list[dict[str, Any]]:
    headings = [h for h in corpus.sections[doc_id] if h.lower() != corpus.titles[doc_id].lower()]
    return [_row("section", doc_id, f"{heading} {corpus.context(doc_id, heading, g.title_words)}".strip(), heading,
                 heading)
            for heading in headings[:g.per_document]]


def _term_rows(corpus: _Corpus, doc_id: str, g: GenerationSettings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    used_terms: set[str] = set()
    for kind, term, heading in corpus.terms[doc_id]:
        if term.lower() in used_terms or len(used_terms) >= g.per_document:
            continue
        used_terms.add(term.lower())
        where = corpus.context(doc_id, term, g.title_words)
        query = (f"What does {term} mean in {where}?" if kind == "acronym"
                 else f"What is meant by {term} in {where}?")
        rows.append(_row("term", doc_id, query, term, heading))
    return rows


def _step_rows(corpus: _Corpus, doc_id: str, g: GenerationSettings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for heading, sentence in corpus.steps[doc_id][:g.per_document]:
        words = content_words(sentence)
        keep_n = max(3, round(len(words) * g.keep_ratio))
        keep = set(sorted(range(len(words)), key=lambda i: (-corpus.idf(words[i]), i))[:keep_n])
        chosen = [words[i] for i in sorted(keep)]
        source_words = _WORD.findall(sentence)
        while len(chosen) > 3 and _longest_common_run(chosen, source_words) > g.max_verbatim:
            # drop the most common remaining word until no shared run is too long
            chosen.remove(min(chosen, key=corpus.idf))
        rows.append(_row("step", doc_id, "how to " + " ".join(w.lower() for w in chosen), sentence, heading))
    return rows
