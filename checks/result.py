"""The one result type every check returns, and the base of typed metric records."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
_ORDER = {"pass": 0, "skip": 0, "warn": 1, "fail": 2}


def worst(*statuses: str) -> Status:
    return max(statuses, key=lambda s: _ORDER[s], default="pass") if statuses else "pass"  # type: ignore[return-value]


# A finding sentence says how much it matters at its end: "... (fail)" or "... (warn)". A sentence without either
# is a note (it explains, e.g. one document's status, and gates nothing). The suffix travels with the sentence into
# the JSON, so what failed can be told apart in a stored result as well as in a live one.
_SEVERITY_SUFFIX = {"fail": " (fail)", "warn": " (warn)"}


def severity(sentence: str) -> str | None:
    """"fail" or "warn" as the sentence ends with it; None for a note."""
    for level, suffix in _SEVERITY_SUFFIX.items():
        if sentence.endswith(suffix):
            return level
    return None


def said(text: str, level: str | None) -> str:
    """The sentence with its severity suffix (none for a note)."""
    return text + _SEVERITY_SUFFIX[level] if level in _SEVERITY_SUFFIX else text


def failing(sentences: Iterable[str]) -> tuple[str, ...]:
    return tuple(s for s in sentences if severity(s) == "fail")


def warning(sentences: Iterable[str]) -> tuple[str, ...]:
    return tuple(s for s in sentences if severity(s) == "warn")


def named(items: Sequence[str], shown: int = 5) -> str:
    """"a, b, c and 4 more": the first items of a list a sentence names."""
    head = ", ".join(str(i) for i in items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


class Metrics(Mapping[str, Any]):
    """A frozen dataclass of figures that also reads like the mapping the JSON contract shows: fields left None
    are absent (so a partial record, e.g. of an empty index, lists only what was measured)."""

    def _present(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None or f.metadata.get("keep_none")}

    def __getitem__(self, key: str) -> Any:
        present = self._present()
        if key not in present:
            raise KeyError(key)
        return present[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def __len__(self) -> int:
        return len(self._present())


def keep_none() -> Any:
    """A Metrics field that is reported even when None (the contract shows null for figures not computed)."""
    return field(default=None, metadata={"keep_none": True})


@dataclass(frozen=True)
class CheckResult:
    """name: what was checked; status: the verdict; metrics: figures; items: offending rows (dicts, or Finding
    for the quality checks); findings: one sentence per failed expectation."""

    name: str
    status: Status
    metrics: Mapping[str, Any] = field(default_factory=dict)
    items: tuple[Any, ...] = ()
    findings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.metrics, dict):  # frozen means frozen: nobody adds figures afterwards
            object.__setattr__(self, "metrics", MappingProxyType(self.metrics))
