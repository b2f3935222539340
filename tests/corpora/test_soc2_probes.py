"""The SOC 2 corpus's own probe file, as its authors wrote it: `criterion`, `query`, `relevant`, no `id`."""

import pytest

from rag_health.probes import load_probe_set
from tests.conftest import shared_corpus

pytestmark = pytest.mark.corpus


def test_every_line_of_a_probe_file_without_ids_loads():
    """Regression: all 62 lines were rejected for lacking `id` and the golden probes never ran."""
    path = shared_corpus("strongdm-soc2-policies") / "golden_probes_tsc_to_policies.jsonl"
    probe_set = load_probe_set(path)
    assert probe_set.errors == [] and len(probe_set.probes) == 62
    assert len({p.probe_id for p in probe_set.probes}) == 62
    assert load_probe_set(path).probes == probe_set.probes  # ids are stable
