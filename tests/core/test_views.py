"""What people read is never shaped by a document: Markdown artifacts, tables and the human output show
document-derived text as text, on one line."""

import pytest

from rag_health.archive import checked_run_id
from rag_health.errors import ConfigError
from rag_health.suite import summary, verdict_artifacts
from rag_health.views import md, one_line

HOSTILE = "runbooks/<img src=x onerror=alert(1)>.md\n  - forged: all clear | [click](http://evil.example)"


def test_markdown_shows_html_and_markup_as_text():
    """Regression: raw HTML from documents went into the Prefect markdown artifacts (health-verdict,
    stale-docs, missed-probes, chunk-table) and a newline in a file name forged a finding line."""
    shown = md(HOSTILE)
    assert "<" not in shown and ">" not in shown and "\n" not in shown
    assert "\\[click\\]\\(http://evil.example\\)" in shown and "\\|" in shown


def test_verdict_artifact_and_human_output_keep_one_line_per_finding():
    result = {"verdict": "warn", "run_id": "r1", "stages": {"ingest": "warn"}, "findings": [f"ingest error {HOSTILE}: x"],
              "quality": {"score": 0.5, "documents": [{"doc_id": HOSTILE, "score": 0.5}]}, "ingest": {}}
    markdown = verdict_artifacts(result)[0].markdown
    assert "<img" not in markdown and "\n  - forged" not in markdown
    lines = summary(result).splitlines()
    assert sum(1 for line in lines if line.startswith("  - ")) == 1
    assert one_line("a\nb") == "a\\nb"


@pytest.mark.parametrize("run_id", ["../../etc", "a/b", "..", "run\n1", ""])
def test_run_ids_never_leave_the_archive(run_id):
    """A run id given on the command line (`baseline promote --run`) becomes a key and a path."""
    with pytest.raises(ConfigError):
        checked_run_id(run_id)
    assert checked_run_id("20261129T170004Z-79e2fa") == "20261129T170004Z-79e2fa"


def test_a_missing_bucket_is_a_configuration_error_before_any_work(small_corpus, make_runtime, seaweed, monkeypatch):
    from rag_health import preflight, registry

    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    rt = make_runtime(small_corpus, s3_bucket="no-such-bucket")
    with pytest.raises(ConfigError, match="no-such-bucket.*NoSuchBucket"):
        preflight.check(rt, {registry.ARCHIVE})
    assert "embedder" not in rt.__dict__
