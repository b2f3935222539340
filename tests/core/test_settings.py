"""Settings come from RAG_HEALTH_* variables; explicit overrides win; bad values are configuration errors."""

import pytest

from rag_health.settings import SAMPLE_FILTER_PROBES, SAMPLE_MANIFEST, SAMPLE_PROBES, ConfigError, load_settings


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
