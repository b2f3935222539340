"""Settings come from RAG_HEALTH_* variables; explicit overrides win; bad values are configuration errors."""

import pytest

from rag_health.errors import ConfigError
from rag_health.settings import SAMPLE_FILTER_PROBES, SAMPLE_MANIFEST, SAMPLE_PROBES, load_settings


def test_environment_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_HEALTH_PROBES", "a.jsonl:b.jsonl")
    monkeypatch.setenv("RAG_HEALTH_S3_BUCKET", "reports")
    monkeypatch.setenv("RAG_HEALTH_CHUNK_SIZE", "128")
    s = load_settings(state_dir=str(tmp_path))
    assert [p.name for p in s.probes] == ["a.jsonl", "b.jsonl"]
    assert s.s3_bucket == "reports" and s.chunk_size == 128 and s.state_dir == tmp_path
    assert load_settings(chunk_size=64).chunk_size == 64


def test_sample_manifest_and_probes_only_for_the_sample_corpus(tmp_path):
    sample = load_settings()
    assert sample.effective_manifest() == SAMPLE_MANIFEST and sample.effective_probes() == [SAMPLE_PROBES, SAMPLE_FILTER_PROBES]
    other = load_settings(docs=str(tmp_path))
    assert other.effective_manifest() is None and other.effective_probes() == []


def test_bad_value_is_a_config_error(monkeypatch):
    monkeypatch.setenv("RAG_HEALTH_CHROMA_MODE", "cloud")
    with pytest.raises(ConfigError, match="chroma_mode"):
        load_settings()


def test_quality_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_HEALTH_REQUIRED_METADATA", "classification, product")
    monkeypatch.setenv("RAG_HEALTH_MAX_FINDING_FRACTION", '{"lost-heading": 0.2}')
    monkeypatch.setenv("RAG_HEALTH_CHUNK_STRATEGY", "markdown")
    s = load_settings(docs=str(tmp_path))
    assert s.effective_required_metadata() == ["classification", "product"]
    assert s.max_finding_fraction == {"lost-heading": 0.2} and s.chunk_strategy == "markdown"
    monkeypatch.delenv("RAG_HEALTH_REQUIRED_METADATA")
    assert load_settings(docs=str(tmp_path)).effective_required_metadata() == []
    assert load_settings().effective_required_metadata() == ["classification", "jurisdiction", "product"]


@pytest.mark.parametrize("variable,value,message", [
    ("RAG_HEALTH_MAX_DELETE_FRACTION", "nan", "max_delete_fraction .*finite number"),
    ("RAG_HEALTH_MAX_DELETE_FRACTION", "2", "max_delete_fraction .*less than or equal to 1"),
    ("RAG_HEALTH_MAX_DELETE_FRACTION", "-1", "max_delete_fraction .*greater than or equal to 0"),
    ("RAG_HEALTH_HIT_AT_5_WARN", "inf", "hit_at_5_warn .*finite"),
    ("RAG_HEALTH_PROBE_TOP_K", "0", "probe_top_k .*greater than or equal to 1"),
    ("RAG_HEALTH_CHUNK_SIZE", "-5", "chunk_size .*greater than 0"),
    ("RAG_HEALTH_S3_READ_TIMEOUT", "0", "s3_read_timeout .*greater than 0"),
    ("RAG_HEALTH_CHUNK_OVERLAP", "300", "chunk_overlap \\(300\\) must be smaller than chunk_size"),
    ("RAG_HEALTH_MAX_FINDING_FRACTION", '{"lost-heading": "nan"}', "max_finding_fraction.lost-heading .*finite"),
    ("RAG_HEALTH_MAX_FINDING_FRACTION", '{"structure-splits": 0.1}', "unknown threshold key.*structure-splits"),
    ("RAG_HEALTH_COLLECTION", "../x", "not a valid Chroma collection name"),
    ("RAG_HEALTH_CHROMA_PORT", "70000", "chroma_port"),
])
def test_nonsense_settings_are_refused_naming_the_field(monkeypatch, variable, value, message):
    """Regression: RAG_HEALTH_MAX_DELETE_FRACTION=nan (or 2, or -1) was accepted, and nan switched the
    mass-deletion guard off (NaN compares false with everything). Every fraction is now in 0-1, counts are
    positive, NaN and infinity are refused, and the message names the field and its variable on one line."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings()
    assert "\n" not in str(caught.value)
