"""The one result type every check returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
_ORDER = {"pass": 0, "skip": 0, "warn": 1, "fail": 2}


def worst(*statuses: str) -> Status:
    return max(statuses, key=lambda s: _ORDER[s], default="pass") if statuses else "pass"  # type: ignore[return-value]


@dataclass(frozen=True)
class CheckResult:
    """name: what was checked; status: the verdict; metrics: figures; items: offending rows; findings: sentences."""

    name: str
    status: Status
    metrics: dict[str, Any] = field(default_factory=dict)
    items: tuple[dict[str, Any], ...] = ()
    findings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "metrics": dict(self.metrics),
            "items": [dict(i) for i in self.items],
            "findings": list(self.findings),
        }
