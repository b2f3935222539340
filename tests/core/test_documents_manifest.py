"""Parsing documents and manifests: clear errors naming the reason (and the line)."""

import pytest

from rag_health.documents import DocumentError, parse_document
from rag_health.errors import ManifestError
from rag_health.manifest import load_manifest


def test_front_matter_and_title():
    doc = parse_document("a/b.md", b"---\ntitle: T\nlast_reviewed: 2026-01-02\nreview_every_days: 90\n---\nBody.\n")
    assert doc.title == "T" and doc.text == "Body."
    assert doc.metadata == {"title": "T", "last_reviewed": "2026-01-02", "review_every_days": 90}


def test_title_falls_back_to_heading_then_file_name():
    assert parse_document("x.md", b"# Heading here\ntext").title == "Heading here"
    assert parse_document("dir/notes.txt", b"plain text").title == "notes"


@pytest.mark.parametrize("data, reason", [
    (b"---\ntitle: [unclosed\n---\nbody", "invalid YAML front-matter"),
    (b"---\n- a\n- b\n---\nbody", "must be a mapping"),
    (b"---\nlast_reviewed: last spring\n---\nbody", "not a date"),
    (b"---\nreview_every_days: -3\n---\nbody", "positive whole number"),
    (b"---\ntitle: x\n---\n   \n", "front-matter only, no body text"),
    (b"  \n", "empty document"),
    (b"\xff\xfe\x00bad", "not valid UTF-8"),
])
def test_bad_documents_name_the_reason(data, reason):
    with pytest.raises(DocumentError, match=reason):
        parse_document("doc.md", data)


def test_sample_manifest_loads(tmp_path):
    from rag_health.settings import SAMPLE_MANIFEST

    manifest = load_manifest(SAMPLE_MANIFEST)
    assert len(manifest.entries) >= 27 and manifest.review_every_days == 365


@pytest.mark.parametrize("text, expected", [
    ("documents:\n  - id: a.md\n  - owner: x\n", "line 3: give exactly one of 'id' or 'glob'"),
    ("documents:\n  - id: a.md\n    reviw_every_days: 3\n", "line 3: unknown field 'reviw_every_days'"),
    ("defaults:\n  review_every_days: soon\n", "line 2: 'review_every_days' must be a positive"),
    ("documents:\n  - id: a.md\n  - id: a.md\n", "line 3: 'a.md' is listed twice"),
    ("documents: [\n", "invalid YAML"),
    ("documents:\n  - id: a.md\n    required: maybe\n", "line 3: 'required' must be true or false"),
])
def test_invalid_manifest_names_line_and_reason(tmp_path, text, expected):
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_front_matter_numbers_chroma_cannot_hold_keep_their_digits():
    """Regression: a 64-bit-overflowing integer in front-matter silently became a float; a review interval of
    10**30 days overflowed date arithmetic."""
    import pytest

    from rag_health.documents import DocumentError, normalise_metadata

    assert normalise_metadata({"ticket": 2**70, "count": 5}) == {"ticket": str(2**70), "count": 5}
    with pytest.raises(DocumentError, match="review_every_days"):
        normalise_metadata({"review_every_days": 10**30})
