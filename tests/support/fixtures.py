"""Documents in real binary formats, written by libraries at test time (no third-party files checked in)."""

from __future__ import annotations

import io


def pdf_bytes(title: str, paragraphs: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.add_page()
    pdf.set_font("Helvetica", size=16)
    pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    for para in paragraphs:
        pdf.multi_cell(0, 6, para, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    return bytes(pdf.output())


def scanned_pdf_bytes() -> bytes:
    """A PDF whose pages hold only drawings, like a scan: no text layer."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_fill_color(40, 40, 40)
    for i in range(12):
        pdf.rect(20, 20 + i * 12, 150, 6, style="F")
    return bytes(pdf.output())


def docx_bytes(title: str, sections: dict[str, list[str]], table: list[list[str]] | None = None) -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for heading, paragraphs in sections.items():
        document.add_heading(heading, level=2)
        for para in paragraphs:
            document.add_paragraph(para)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def html_bytes(title: str, body_html: str, meta: dict[str, str] | None = None) -> bytes:
    metas = "".join(f'<meta name="{k}" content="{v}">' for k, v in (meta or {}).items())
    return (f"<!doctype html><html><head><title>{title}</title>{metas}<style>.x{{color:red}}</style>"
            f"<script>var secret = 'not visible';</script></head><body><nav>Home | Policies</nav>{body_html}"
            "<footer>Copyright Example Bank</footer></body></html>").encode()


def shared_stream_pdf_bytes(pages: int = 40, inflated_bytes: int = 70_000_000) -> bytes:
    """A small PDF whose pages all draw one content stream that inflates to `inflated_bytes` (text operators over
    and over): about 75 KB on disk, each page's text extraction decodes the whole stream again."""
    import zlib

    op = b"BT /F1 12 Tf 72 720 Td (" + b"Reconciliation break escalated. " * 30 + b") Tj ET\n"
    content = zlib.compress(op * (inflated_bytes // len(op)), 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(f"{5 + i} 0 R".encode() for i in range(pages))
               + f"] /Count {pages} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Length {len(content)} /Filter /FlateDecode >>\nstream\n".encode() + content + b"\nendstream"]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                b"/Resources << /Font << /F1 3 0 R >> >> >>"] * pages
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
