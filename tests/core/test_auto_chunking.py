"""The default chunking, "auto": structure where a document has it, without the tiny and duplicate chunks that
packing section by section leaves; plain text split exactly as the previous default; the upgrade said once."""

import collections
from pathlib import Path

import pytest

from checks.chunk_quality import text_key, word_count
from rag_health.chunking import PREVIOUS_DEFAULT, Chunker
from rag_health.documents import DocumentError, is_supported, parse_document
from tests.conftest import SHARED_CORPORA
from tests.support.stages import stage

PARA = "The settlement consumer group reads the payments topic and writes the ledger batches. "
STEPS = "\n".join(f"{i}. Check partition {i} of the payments topic and note the lag for the handover." for i in
                  range(1, 5))


def split(embedder, text: str, spec: str = "auto:200:24", doc_id: str = "runbooks/x.md"):
    return Chunker.from_spec(embedder, spec).split(parse_document(doc_id, text.encode()))


def test_short_sibling_sections_share_a_chunk(embedder):
    doc = f"# Kafka lag\n\n## Meaning\n\n{PARA * 4}\n\n## Impact\n\n{PARA * 4}\n\n## Mitigation\n\nTODO\n"
    chunks = split(embedder, doc)
    assert len(chunks) == 1 and chunks[0].text.startswith("# Kafka lag") and "TODO" in chunks[0].text
    markdown = split(embedder, doc, "markdown:200")
    assert len(markdown) > 1  # the section-by-section packing this replaces


def test_no_tiny_trailing_section_and_no_heading_left_at_a_chunk_end(embedder):
    diagnosis = " ".join([PARA] * 8)  # two such paragraphs do not fit one chunk
    doc = (f"# Settlement late\n\n## Meaning\n\n{PARA * 3}\n\n## Diagnosis\n\n{diagnosis}\n\n{diagnosis}\n\n"
           f"## Mitigation\n\nTODO\n")
    chunks = split(embedder, doc)
    assert len(chunks) > 1
    assert all(word_count(c.text) >= 12 for c in chunks)
    assert not any(c.text.rstrip().splitlines()[-1].startswith("#") for c in chunks)
    # A chunk that continues a section carries its heading in the embedding: none is lost.
    assert not any(c.heading_lost for c in chunks)
    continued = [c for c in chunks if not c.text.startswith("#")]
    assert continued and all("Diagnosis" in c.embed_text.split("\n\n")[0] for c in continued)


def test_blocks_that_fit_stay_whole_and_a_split_table_keeps_its_header(embedder):
    code = "```bash\n" + "\n".join(f"kafka-consumer-groups --describe --group settle-{i}" for i in range(6)) + "\n```"
    rows = "\n".join(f"| key-{i} | encrypts batch files of scheme {i} | HSM partition {i} | 1 year |" for i in
                     range(30))
    doc = (f"# Keys\n\n## Check\n\n{PARA * 4}\n\nRun:\n\n{code}\n\n{STEPS}\n\n"
           f"## Hierarchy\n\n| Key | Purpose | Where | Period |\n|---|---|---|---|\n{rows}\n")
    chunks = split(embedder, doc)
    assert any("Run:" in c.text and code in c.text for c in chunks)  # the block with the line that introduces it
    assert not any("code block" in c.split_blocks or "step" in c.split_blocks for c in chunks)
    pieces = [c for c in chunks if "| key-" in c.text]
    assert len(pieces) > 1  # the table is larger than a chunk
    assert all("| Key | Purpose | Where | Period |" in c.embed_text for c in pieces)
    assert all(not c.text.startswith("| Key") for c in pieces[1:])  # the header is embedded, not stored again


def test_chunks_are_slices_that_cover_the_document_and_fit_the_window(embedder):
    body = "\n\n".join(f"## Section {i}\n\n{PARA * (i % 5 + 1)}\n\n{STEPS}" for i in range(12))
    doc = f"# Big runbook\n\n{body}\n"
    chunks = split(embedder, doc, "auto:120:16")
    text = parse_document("runbooks/x.md", doc.encode()).text
    pos = 0
    for c in chunks:
        at = text.find(c.text, pos)
        assert at >= 0 and not text[pos:at].strip()  # in order, nothing skipped in between
        pos = at + len(c.text)
    assert not text[pos:].strip()
    window = embedder.info.max_tokens - 2
    title_tokens = len(embedder.tokenize("Big runbook"))
    assert all(len(embedder.tokenize(c.embed_text)) <= window for c in chunks)
    assert all(len(embedder.tokenize(c.text)) + title_tokens <= 120 for c in chunks)


def test_plain_text_is_split_exactly_as_the_previous_default(embedder):
    doc = " ".join(f"Sentence {i} says why chargebacks are disputed within the scheme's deadline." for i in
                    range(80))
    auto = [(c.text, c.embed_text) for c in split(embedder, doc, "auto:200:24", "notes/plain.txt")]
    sentence = [(c.text, c.embed_text) for c in split(embedder, doc, PREVIOUS_DEFAULT, "notes/plain.txt")]
    assert auto == sentence and len(auto) > 1


def test_html_headings_are_followed(embedder):
    html = ("<html><head><title>Card declines</title></head><body><h1>Card declines</h1>"
            + "".join(f"<h2>Step {i}</h2><p>{PARA * 4}</p>" for i in range(6)) + "</body></html>")
    chunks = Chunker.from_spec(embedder, "auto:200:24").split(parse_document("runbooks/declines.html",
                                                                             html.encode()))
    assert len(chunks) > 1 and all(c.text.startswith("#") for c in chunks[1:])
    assert not any(c.heading_lost for c in chunks)


def _shapes(embedder, root: Path, spec: str) -> dict[str, int]:
    chunker = Chunker.from_spec(embedder, spec)
    chunks = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        doc_id = path.relative_to(root).as_posix()
        if is_supported(doc_id):
            try:
                chunks += chunker.split(parse_document(doc_id, path.read_bytes()))
            except DocumentError:
                continue
    keys = collections.Counter(text_key(c.text) for c in chunks)
    return {"chunks": len(chunks), "duplicate": sum(n for n in keys.values() if n > 1),
            "tiny": sum(1 for c in chunks if word_count(c.text) < 12),
            "cut": sum(1 for c in chunks if c.split_blocks), "lost": sum(1 for c in chunks if c.heading_lost)}


@pytest.mark.skipif(not (SHARED_CORPORA / "prometheus-runbooks").exists(), reason="shared corpora absent")
def test_prometheus_runbooks_fewer_duplicate_and_tiny_chunks_than_the_previous_default(embedder):
    root = SHARED_CORPORA / "prometheus-runbooks" / "content"
    auto, previous, markdown = (_shapes(embedder, root, s) for s in ("auto:200:24", PREVIOUS_DEFAULT, "markdown:200"))
    print("auto", auto, "previous", previous, "markdown", markdown)
    assert auto["duplicate"] < previous["duplicate"] < markdown["duplicate"]
    assert auto["tiny"] < previous["tiny"] < markdown["tiny"]
    assert auto["cut"] == 0 and auto["lost"] == 0
    assert previous["lost"] > 0 and previous["cut"] > 0


def test_the_upgrade_is_said_once_and_the_previous_default_is_one_setting_away(small_corpus, make_runtime):
    old = make_runtime(small_corpus, chunk_strategy="sentence")
    first = stage(old, "ingest")
    assert first["chunking"] == PREVIOUS_DEFAULT and first["notices"] == [] and first["rechunked"] == {}
    # The previous default, set explicitly: the same recipe, nothing re-embedded.
    again = stage(make_runtime(small_corpus, chunk_strategy="sentence"), "ingest")
    assert again["chunks_embedded"] == 0 and again["notices"] == []
    upgraded_rt = make_runtime(small_corpus)
    upgraded = stage(upgraded_rt, "ingest")
    n = first["documents"]
    assert upgraded["chunking"] == "auto:200:24" and upgraded["rechunked"] == {PREVIOUS_DEFAULT: n}
    assert upgraded["chunks_embedded"] > 0 and upgraded["removed"] == 0 and upgraded["held"] is None
    (notice,) = upgraded["notices"]
    assert f"{n} document(s) indexed with chunking {PREVIOUS_DEFAULT} were re-chunked and re-embedded" in notice
    assert "RAG_HEALTH_CHUNK_STRATEGY=sentence" in notice
    assert {e.chunker for e in upgraded_rt.index.ledger().values()} == {"auto:200:24"}
    assert stage(make_runtime(small_corpus), "ingest")["notices"] == []  # said once


def test_compare_chunking_measures_the_default_against_the_previous_one():
    from rag_health.settings import Settings
    from rag_health.stages.compare import default_comparison

    assert default_comparison(Settings()) == ["auto:200:24", PREVIOUS_DEFAULT]
    assert default_comparison(Settings(chunk_strategy="sentence")) == [PREVIOUS_DEFAULT, "auto:200:24"]
    assert default_comparison(Settings(chunk_strategy="sentence", chunk_size=256, chunk_overlap=32)) == \
        ["sentence:256:32", "auto:256:32"]
    assert default_comparison(Settings(chunk_strategy="markdown", chunk_overlap=0, chunk_size=256)) == \
        ["markdown:256:0", "auto:256:0"]


def test_grid_table_pieces_are_whole_rows(embedder):
    rule = "+" + "-" * 20 + "+" + "-" * 30 + "+"
    rows = "\n".join(f"| system {i:<13}| restored by the on-call engineer {i:<3}|\n{rule}" for i in range(40))
    doc = f"# Recovery\n\n## Systems\n\n{rule}\n{rows}\n"
    chunks = [c for c in split(embedder, doc) if "system" in c.text]
    assert len(chunks) > 1
    for c in chunks:
        lines = c.text.strip().splitlines()
        assert lines[-1] == rule  # a piece ends with the rule under its last row
        assert lines[0].startswith(("| system", rule, "#"))  # and starts with a row (or its headings)
    rebuilt = "\n".join(c.text.strip().split("## Systems\n\n")[-1] for c in chunks)
    assert rebuilt == f"{rule}\n{rows}"  # every row once, in order


def _check(embedder, doc: str, spec: str = "auto:200:24", doc_id: str = "runbooks/x.md"):
    """Chunks are in-order slices covering the (LF) text, every embed text within the window, and no chunk is
    headings alone unless the document ends with them."""
    parsed = parse_document(doc_id, doc.encode())
    chunks = Chunker.from_spec(embedder, spec).split(parsed)
    text = parsed.text.replace("\r\n", "\n")
    pos = 0
    for c in chunks:
        at = text.find(c.text, pos)
        assert at >= 0 and not text[pos:at].strip(), (c.index, c.text[:80])
        pos = at + len(c.text)
    assert not text[pos:].strip()
    window = embedder.info.max_tokens - 2
    assert all(len(embedder.tokenize(c.embed_text)) <= window for c in chunks)
    for c in chunks[:-1]:
        assert not all(line.startswith("#") for line in c.text.strip().splitlines() if line.strip()), c.text[:80]
    return chunks


def test_hard_shapes_stay_slices_within_the_window(embedder):
    long_para = " ".join(f"Sentence {i} says the ledger replay must wait for the snapshot." for i in range(60))
    _check(embedder, f"# Top\n\n## Diagnosis\n\n{long_para}\n\n## Next\n\n{PARA}\n")  # headings open piece one
    same_rows = "\n".join("| standby | n/a | n/a | not replicated |" for _ in range(60))
    chunks = _check(embedder, f"# DR\n\n| Site | RPO | RTO | Replication |\n|---|---|---|---|\n{same_rows}\n\n"
                              f"{PARA}\n\n## Contacts\n\nPlatform on-call.\n")
    assert sum(c.text.count("| standby |") for c in chunks) == 60  # repeated rows placed where they are
    _check(embedder, "# Logs\n\n```\n" + " ".join(f"field{i}=value{i}" for i in range(600)) + "\n```\n")
    _check(embedder, "# Wide\n\n| " + " | ".join(f"column {i}" for i in range(300)) + " |\n|---|\n| a |\n")
    heading = " ".join(f"w{i}" for i in range(30))
    _check(embedder, f"# Runbook\n\n## {heading}\n\n### Details\n\n{long_para}\n", "auto:300:24")
    _check(embedder, f"# Top\r\n\r\n## A\r\n\r\n{long_para}\r\n\r\n```\r\n" +
           "\r\n".join(f"run step {i}" for i in range(80)) + "\r\n```\r\n")
    _check(embedder, f"# Big chunks\n\n## A\n\n{long_para}\n\n## B\n\n{long_para}\n", "auto:400:40")


@pytest.mark.skipif(not (SHARED_CORPORA / "scifact").exists(), reason="shared corpora absent")
def test_scifact_abstracts_chunk_exactly_as_before(embedder, tmp_path):
    """Plain text: the upgrade changes no SciFact chunk, so the published-score check is unaffected."""
    from benchmarks.corpora import scifact_folder

    docs = scifact_folder(tmp_path / "scifact", limit=300)
    auto, previous = Chunker.from_spec(embedder, "auto:200:24"), Chunker.from_spec(embedder, PREVIOUS_DEFAULT)
    for path in sorted(docs.glob("*.md")):
        doc = parse_document(path.name, path.read_bytes())
        assert [(c.text, c.embed_text) for c in auto.split(doc)] == \
            [(c.text, c.embed_text) for c in previous.split(doc)], path.name
