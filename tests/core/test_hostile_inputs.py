"""Hostile documents (issue 10): alias bombs, oversized files, zip bombs, long PDFs, links out of the docs root,
binary files without an extension and odd S3 keys. Each is one skipped or failed document with its reason; the
rest of the run indexes as usual and the last good version of a document stays indexed."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

from rag_health.documents import DocumentError, Limits, Rejected, parse_document
from rag_health.sources import OUTSIDE_ROOT, LocalFolderSource
from tests.conftest import REPO
from tests.support.fixtures import docx_bytes, pdf_bytes
from tests.support.stages import stage

# The classic "billion laughs" as YAML front-matter: 391 bytes that expand to 9**9 strings when materialised.
ALIAS_BOMB = (
    '---\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "title: *i\n---\n# Laughs\nBody text of the page\n"
)


def ingest(rt, **kw):
    return stage(rt, "ingest", **kw)


def reasons(result, kind: str) -> dict[str, str]:
    return {e["doc_id"]: e["reason"] for e in result[kind]}


def test_the_bomb_is_the_reported_size():
    assert len(ALIAS_BOMB.encode()) == 391


def test_alias_bomb_front_matter_is_one_document_error(small_corpus, make_runtime):
    (small_corpus / "runbooks" / "bomb.md").write_text(ALIAS_BOMB)
    rt = make_runtime(small_corpus)
    started = time.perf_counter()
    result = ingest(rt)
    assert time.perf_counter() - started < 60
    errors = reasons(result, "errors")
    assert list(errors) == ["runbooks/bomb.md"] and "YAML aliases are not allowed" in errors["runbooks/bomb.md"]
    assert result["added"] == 4  # the rest of the corpus indexes


def test_alias_bomb_peak_rss_stays_small(tmp_path):
    """In a fresh process (its own peak RSS): the bomb through the front-matter parser, a manifest and an
    alert-rule file. Before the fix, front-matter alone passed 4.4 GB."""
    (tmp_path / "bomb.md").write_text(ALIAS_BOMB)
    yaml_bomb = ALIAS_BOMB.split("---\n")[1]
    (tmp_path / "manifest.yaml").write_text(yaml_bomb + "documents: []\n")
    (tmp_path / "rules.yaml").write_text(yaml_bomb + "groups: []\n")
    script = textwrap.dedent(f"""
        import json, resource
        from pathlib import Path
        from rag_health.alert_rules import load_rules
        from rag_health.documents import DocumentError, parse_document
        from rag_health.manifest import ManifestError, load_manifest
        out = {{}}
        root = Path({str(tmp_path)!r})
        try:
            parse_document("bomb.md", (root / "bomb.md").read_bytes())
        except DocumentError as exc:
            out["document"] = str(exc)
        try:
            load_manifest(root / "manifest.yaml")
        except ManifestError as exc:
            out["manifest"] = str(exc)
        out["rules"] = load_rules([root / "rules.yaml"])[1][0]["reason"]
        # VmHWM: this process's own peak (ru_maxrss would carry the forking pytest process's across exec)
        hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
        out["peak_rss_mb"] = (int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS {out['peak_rss_mb']:.0f} MB")
    assert out["peak_rss_mb"] < 1536
    for key in ("document", "manifest", "rules"):
        assert "YAML aliases are not allowed" in out[key]


def test_markdown_over_the_byte_and_character_limits_is_skipped(small_corpus, make_runtime):
    sentence = "Settlement files are produced late when the consumer group falls behind. "
    (small_corpus / "huge.md").write_text("# Huge\n" + sentence * 100)  # 7.3 KB: over max_document_bytes
    (small_corpus / "long.txt").write_text(sentence * 30)  # 2.2 KB of text: under the bytes, over the characters
    rt = make_runtime(small_corpus, max_document_bytes=4000, max_text_chars=2000)
    result = ingest(rt)
    skipped = reasons(result, "skipped")
    assert "max_document_bytes" in skipped["huge.md"] and "RAG_HEALTH_MAX_DOCUMENT_BYTES" in skipped["huge.md"]
    assert "max_text_chars" in skipped["long.txt"]
    assert result["added"] == 4 and result["errors"] == [] and result["read"] == 5  # huge.md never read
    assert not {"huge.md", "long.txt"} & set(rt.index.ledger())


def test_a_document_growing_past_a_limit_keeps_its_last_good_version(small_corpus, make_runtime):
    rt = make_runtime(small_corpus, max_document_bytes=4000)
    ingest(rt)
    before = rt.index.ledger()["runbooks/kafka-lag.md"].chunk_ids
    path = small_corpus / "runbooks" / "kafka-lag.md"
    path.write_text(path.read_text() + "More lag. " * 500)
    result = ingest(rt)
    assert "max_document_bytes" in reasons(result, "errors")["runbooks/kafka-lag.md"]
    assert result["removed_ids"] == [] and rt.index.ledger()["runbooks/kafka-lag.md"].chunk_ids == before


def test_front_matter_over_its_limit_is_refused_before_yaml():
    fields = "".join(f"field_{i}: {'x' * 60}\n" for i in range(400))  # about 28 KB of front-matter
    data = f"---\n{fields}---\n# Body\nText.\n".encode()
    with pytest.raises(Rejected, match="max_front_matter_bytes"):
        parse_document("big-front.md", data)
    assert parse_document("big-front.md", data, Limits(max_front_matter_bytes=64_000)).title == "Body"
    with pytest.raises(DocumentError, match="never closed"):
        parse_document("open.md", b"---\ntitle: x\n" + b"y: z\n" * 5000)


def _zip_with(base: bytes, name: str, payload: bytes) -> bytes:
    buf = io.BytesIO(base)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, payload)
    return buf.getvalue()


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite a member's uncompressed size in its local and central headers: the headers now lie."""
    out = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    struct.pack_into("<I", out, info.header_offset + 22, size)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", out, pos + 28)[0]
        if bytes(out[pos + 46:pos + 46 + name_len]) == name.encode():
            struct.pack_into("<I", out, pos + 24, size)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def test_docx_zip_bomb_is_rejected_quickly(small_corpus, make_runtime):
    good = docx_bytes("Vendors", {"Due diligence": ["Every vendor completes a security questionnaire."]})
    bomb = _zip_with(good, "word/media/bomb.xml", b"\0" * 50_000_000)  # 50 MB of zeros in about 50 KB
    assert len(bomb) < 200_000
    with pytest.raises(Rejected, match="max_archive_member_bytes"):
        parse_document("bomb.docx", bomb, Limits(max_archive_member_bytes=10_000_000))
    # A header that lies (declares 1 KB for 5 MB) is caught when the member is inflated with a bound.
    liar = _lie_about_size(_zip_with(good, "word/media/liar.xml", b"\0" * 5_000_000), "word/media/liar.xml", 1000)
    with pytest.raises(DocumentError, match="corrupt or unreadable DOCX"):
        parse_document("liar.docx", liar)
    (small_corpus / "bomb.docx").write_bytes(bomb)
    (small_corpus / "vendors.docx").write_bytes(good)
    result = ingest(make_runtime(small_corpus))
    assert "max_archive_member_bytes" in reasons(result, "skipped")["bomb.docx"]
    assert "vendors.docx" in result["added_ids"] and result["errors"] == []


def test_pdf_over_max_pdf_pages_is_skipped(small_corpus, make_runtime):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for page in range(6):
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Page {page}: wires after the cut-off settle the next business day.")
    (small_corpus / "long.pdf").write_bytes(bytes(pdf.output()))
    (small_corpus / "short.pdf").write_bytes(pdf_bytes("Short", ["Disputes need delivery proof."]))
    result = ingest(make_runtime(small_corpus, max_pdf_pages=5))
    assert "6 pages > 5" in reasons(result, "skipped")["long.pdf"]
    assert "max_pdf_pages" in reasons(result, "skipped")["long.pdf"]
    assert "short.pdf" in result["added_ids"]


def test_symlinks_out_of_the_root_are_skipped_and_nothing_is_read(small_corpus, make_runtime, tmp_path):
    secret = tmp_path / "etc" / "passwd"  # stands in for /etc/passwd
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc" / "shadow.md").write_text("# Shadow\nroot hash here\n")
    (small_corpus / "passwd").symlink_to(secret)  # extensionless, read as Markdown if followed
    (small_corpus / "runbooks" / "users.md").symlink_to(secret)
    (small_corpus / "system").symlink_to(secret.parent)  # a folder link out
    rt = make_runtime(small_corpus)
    result = ingest(rt)
    skipped = reasons(result, "skipped")
    assert skipped == {"passwd": OUTSIDE_ROOT, "runbooks/users.md": OUTSIDE_ROOT, "system/": OUTSIDE_ROOT}
    assert result["added"] == 4 and result["errors"] == []
    assert not any("root:x:0:0" in text for text in rt.index.collection.get(include=["documents"])["documents"])
    # read() checks again by itself: a link may be changed to point out after the listing.
    source = LocalFolderSource(small_corpus)
    with pytest.raises(Rejected):
        source.read("passwd")


def test_extensionless_files_only_when_they_look_like_text(small_corpus, make_runtime):
    (small_corpus / "runbooks" / "SyncFailed").write_text("# SyncFailed\nSync of components failed.\n")
    (small_corpus / "runbooks" / "core").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40)
    result = ingest(make_runtime(small_corpus))
    assert "runbooks/SyncFailed" in result["added_ids"]
    assert "do not look like text" in reasons(result, "skipped")["runbooks/core"]
    off = ingest(make_runtime(small_corpus, read_extensionless=False, state_dir=str(small_corpus.parent / "s2")))
    assert "read_extensionless is off" in reasons(off, "skipped")["runbooks/SyncFailed"]
    assert "runbooks/SyncFailed" not in off["added_ids"]


def test_odd_s3_keys_are_normalised_or_reported(seaweed, embedder, tmp_path):
    """Against SeaweedFS: it refuses '.' and '..' segments itself and stores 'a//b' as 'a/b', but keeps control
    characters in keys; the unit test below covers what other servers may list."""
    from rag_health.ingest import ingest as core_ingest
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings
    from rag_health.sources import S3Source

    client = seaweed.client()
    client.create_bucket(Bucket="odd-keys")
    body = b"# Wires\nOutgoing wires after 16:00 CET settle the next business day.\n"
    for key in ["kb/ok.md", "kb/a//b.md", "kb//lead.md", "kb/new\nline.md", "kb/tab\tx.md"]:
        client.put_object(Bucket="odd-keys", Key=key, Body=body)
    rt = build_runtime(load_settings(state_dir=str(tmp_path / "state")), embedder=embedder, s3=client)
    source = S3Source(client, "odd-keys", "kb")
    result = core_ingest(source, rt.index, rt.embedder, rt.chunker)
    assert sorted(result.added) == ["a/b.md", "lead.md", "ok.md"] and result.errors == ()
    skipped = {e.doc_id: e.reason for e in result.skipped}
    assert set(skipped) == {"kb/new\\x0aline.md", "kb/tab\\x09x.md"}
    assert all("control characters" in reason for reason in skipped.values())
    assert not any(d.startswith("/") for d in rt.index.ledger())


class _ListingOnly:
    """A fake S3 client for a unit test: lists the given keys and serves get_object for them."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.gets: list[str] = []

    def head_bucket(self, Bucket):
        return {}

    def get_paginator(self, name):
        keys = self.keys

        class Paginator:
            def paginate(self, Bucket, Prefix):
                yield {"Contents": [{"Key": k, "ETag": f'"{i}"', "Size": 3} for i, k in enumerate(keys)
                                    if k.startswith(Prefix)]}

        return Paginator()

    def get_object(self, Bucket, Key, Range=None):
        self.gets.append(Key)
        return {"Body": io.BytesIO(b"abc")}


def test_s3_keys_are_normalised_and_bad_ones_reported_unit():
    from rag_health.sources import S3Source

    client = _ListingOnly(["kb/ok.md", "kb/a//b.md", "kb/a/b.md", "kb//lead.md", "kb/x/../y.md", "kb/./dot.md",
                           "kb/new\nline.md", "kb/.git/config", "kb/folder/", "kb/c//d.md"])
    source = S3Source(client, "bucket", "kb")
    assert [e.doc_id for e in source.list()] == ["a/b.md", "c/d.md", "lead.md", "ok.md"]
    rejected = dict(source.rejected)
    assert "'..' segment" in rejected["kb/x/../y.md"] and "'.' or '..'" in rejected["kb/./dot.md"]
    assert "control characters" in rejected["kb/new\\x0aline.md"]
    assert "same document id" in rejected["kb/a//b.md"]  # the key that needed no normalising wins
    assert source.read("c/d.md") == b"abc" and client.gets[-1] == "kb/c//d.md"
    assert source.read("a/b.md") == b"abc" and client.gets[-1] == "kb/a/b.md"


def test_many_members_each_under_the_limit_are_refused_in_all():
    """Review: 200 members of 10 MB zeros each stayed under the per-member limit and cost ~90 s of CPU."""
    good = docx_bytes("Vendors", {"Due diligence": ["Every vendor completes a security questionnaire."]})
    many = good
    for i in range(5):
        many = _zip_with(many, f"word/media/part{i}.xml", b"\0" * 900_000)
    with pytest.raises(Rejected, match="decompressed in all"):
        parse_document("many.docx", many, Limits(max_archive_member_bytes=1_000_000))


@pytest.mark.slow
def test_a_folder_tree_thousands_deep_is_listed_without_recursion(tmp_path):
    """Review: os.walk recursed, so ~1,000 nested folders crashed the listing with RecursionError."""
    root = tmp_path / "docs"
    root.mkdir()
    deep = root
    for _ in range(1_200):  # one level at a time: pathlib's own mkdir(parents=True) recurses too
        deep = deep / "a"
        deep.mkdir()
    (deep / "bottom.md").write_text("# Bottom\nA runbook at the bottom of a deep tree.\n")
    try:
        source = LocalFolderSource(root)
        assert [e.doc_id for e in source.list()] == ["a/" * 1_200 + "bottom.md"]
    finally:  # bottom up, one level at a time: pytest's own clean-up (shutil.rmtree) recurses and would crash
        (deep / "bottom.md").unlink()
        while deep != root:
            deep.rmdir()
            deep = deep.parent


def test_links_into_hidden_parts_of_the_root_are_not_followed(tmp_path):
    """Review: a link inside the root to .git/config (credentials in remote URLs) was indexed."""
    root = tmp_path / "docs"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[remote]\nurl = https://user:token@example.com/repo\n")
    (root / "notes.md").symlink_to(root / ".git" / "config")
    (root / "..data").mkdir()
    (root / "..data" / "policy.md").write_text("# Policy\nMounted by Kubernetes.\n")
    (root / "policy.md").symlink_to(root / "..data" / "policy.md")
    source = LocalFolderSource(root)
    assert [e.doc_id for e in source.list()] == ["policy.md"]
    assert [doc for doc, _ in source.rejected] == ["notes.md"]


def test_an_empty_s3_object_is_an_empty_document_not_an_error(seaweed, embedder, tmp_path):
    """Review: a Range request on a zero-byte object answers 416 InvalidRange, which made it an error every run."""
    from rag_health.documents import EmptyDocument
    from rag_health.sources import S3Source

    client = seaweed.client()
    client.create_bucket(Bucket="empty-objects")
    client.put_object(Bucket="empty-objects", Key="kb/empty.md", Body=b"")
    source = S3Source(client, "empty-objects", "kb")
    assert [e.doc_id for e in source.list()] == ["empty.md"]
    assert source.read("empty.md") == b""
    with pytest.raises(EmptyDocument):
        parse_document("empty.md", b"")
