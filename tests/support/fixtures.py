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
