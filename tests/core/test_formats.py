"""HTML, PDF and DOCX documents: visible text and titles; broken files are errors naming the reason."""

import pytest

from rag_health.documents import DocumentError, parse_document
from tests.support.fixtures import docx_bytes, html_bytes, pdf_bytes, scanned_pdf_bytes


def test_html_visible_text_title_and_meta():
    data = html_bytes("Wire transfer cut-off policy",
                      "<h1>Cut-off times</h1><p>Outgoing wires after 16:00 CET settle the next business day.</p>",
                      meta={"owner": "treasury@example.com", "last_reviewed": "2026-10-01"})
    doc = parse_document("policies/wires.html", data)
    assert doc.title == "Wire transfer cut-off policy"
    assert "settle the next business day" in doc.text and "# Cut-off times" in doc.text
    assert "secret" not in doc.text and "color:red" not in doc.text and "Copyright" not in doc.text
    assert doc.metadata["owner"] == "treasury@example.com" and doc.metadata["last_reviewed"] == "2026-10-01"


def test_pdf_text_layer_and_title():
    data = pdf_bytes("Card dispute evidence", ["Merchants must upload delivery proof within ten days.",
                                               "Evidence packs are reviewed by the disputes desk."])
    doc = parse_document("policies/disputes.pdf", data)
    assert doc.title == "Card dispute evidence"
    assert "delivery proof within ten days" in doc.text


def test_pdf_without_text_layer_is_reported_not_indexed_empty():
    with pytest.raises(DocumentError, match="no text layer"):
        parse_document("scans/signed-policy.pdf", scanned_pdf_bytes())


@pytest.mark.parametrize("data", [b"%PDF-1.7\nthis is not really a pdf", b"garbage", b""])
def test_corrupt_pdf(data):
    with pytest.raises(DocumentError, match="PDF"):
        parse_document("x.pdf", data)


def test_docx_headings_paragraphs_tables():
    data = docx_bytes("Vendor onboarding", {"Due diligence": ["Every vendor completes a security questionnaire."]},
                      table=[["Tier", "Review"], ["Critical", "Annual on-site audit"]])
    doc = parse_document("policies/vendors.docx", data)
    assert doc.title == "Vendor onboarding"
    assert "## Due diligence" in doc.text and "security questionnaire" in doc.text
    assert "| Critical | Annual on-site audit |" in doc.text


def test_corrupt_docx():
    with pytest.raises(DocumentError, match="corrupt or unreadable DOCX"):
        parse_document("x.docx", b"PK\x03\x04 truncated zip")


def test_html_tables_hidden_content_and_svg_titles():
    data = (b"<html><body><svg><title>chevron</title></svg><h1>Severity levels</h1>"
            b"<table><tr><th>Level</th><th>Action</th></tr><tr><td>SEV1</td><td>Page on-call</td></tr></table>"
            b"<dl><dt>RTO</dt><dd>4h</dd></dl><div hidden>draft notes</div>"
            b"<p style='display: none'>old text</p></body></html>")
    doc = parse_document("sev.html", data)
    assert doc.title == "Severity levels"
    assert "SEV1 | Page on-call" in doc.text and "RTO | 4h" in doc.text
    assert "draft notes" not in doc.text and "old text" not in doc.text


def test_owner_password_only_pdf_is_read():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Encrypted but openable policy text.")
    pdf.set_encryption(owner_password="owner-secret")
    doc = parse_document("locked.pdf", bytes(pdf.output()))
    assert "openable policy text" in doc.text
