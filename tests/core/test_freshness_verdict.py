"""The freshness verdict is computed in plain Python (Great Expectations' import costs more than the whole
`rag-health freshness` command may take); it must agree with the equivalent Great Expectations suite on every
table, including the edges of the `mostly` threshold."""

from __future__ import annotations

import random

import pytest

from checks.expectations import validate_frame
from checks.freshness import STATUSES, _verdict, verdict_expectations, verdict_table
from checks.result import worst


def _gx_verdict(documents, max_overdue_fraction):
    outcomes = validate_frame(verdict_table(documents), "freshness", verdict_expectations(max_overdue_fraction))
    failed = [o for o in outcomes if not o.success]
    return worst(*(o.severity for o in failed)), [(o.description, o.severity, o.unexpected_count) for o in failed]


def _plain_verdict(documents, max_overdue_fraction):
    failed = _verdict(documents, max_overdue_fraction)
    return worst(*(r.severity for r in failed)), [(r.description, r.severity, r.unexpected) for r in failed]


def _documents(statuses, required=()):
    return [{"doc_id": f"d{i}", "status": s, "required": i in required} for i, s in enumerate(statuses)]


EDGES = [
    (_documents(["fresh"] * 9 + ["review-overdue"]), 0.1),       # exactly at the threshold: passes
    (_documents(["fresh"] * 8 + ["review-overdue"] * 2), 0.1),   # just over
    (_documents(["fresh"] * 2 + ["review-overdue"]), 1 / 3),
    (_documents(["review-overdue"] * 3), 1.0),
    (_documents(["review-overdue"] * 3), 0.0),
    (_documents(["fresh", "missing", "missing"], required={1}), 0.0),
    (_documents(["model-mismatch", "orphaned", "fresh"]), 0.5),
    (_documents(["fresh"] * 7 + ["review-overdue"] * 3), 0.3),
    (_documents(["fresh"] * 70 + ["review-overdue"] * 30), 0.3),
]


@pytest.mark.parametrize("documents,fraction", EDGES)
def test_plain_verdict_matches_great_expectations_at_the_edges(documents, fraction):
    assert _plain_verdict(documents, fraction) == _gx_verdict(documents, fraction)


def test_plain_verdict_matches_great_expectations_on_random_tables():
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 30)
        statuses = [rng.choice(STATUSES + ("fresh",) * 4) for _ in range(n)]
        required = {i for i in range(n) if rng.random() < 0.3}
        fraction = rng.choice([0.0, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, rng.random()])
        documents = _documents(statuses, required)
        assert _plain_verdict(documents, fraction) == _gx_verdict(documents, fraction), (statuses, sorted(required), fraction)


def test_empty_inventory_passes():
    assert _plain_verdict([], 0.0) == ("pass", [])
