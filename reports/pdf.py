"""A statement as PDF (ReportLab) with an embedded CJK TrueType font (WenQuanYi Zen Hei).

ReportLab embeds TrueType (glyf) fonts only; Noto CJK is CFF/OTF and cannot be embedded, so the
Debian package `fonts-wqy-zenhei` provides the font (bin/test installs it). Amounts are shown
rounded to cents (half up, once) next to the exact 4-place figure they came from (SPEC Money 1).

ReportLab's `Paragraph` reads its text as markup: `<img src=…>` fetches a URL or reads a file
of the server, an unclosed `<b>` is an error. Names come from tenants, so every text becomes a
paragraph through `_para`, which escapes it (`pdf_text`) — names, figures and translations alike.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.money import q2
from reports.models import Statement, StatementLine
from teachcloud.errors import ServiceError

FONT_NAME = "WenQuanYiZenHei"
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"),
)


@cache
def cjk_font() -> str:
    """Register the CJK font once; its ReportLab name."""
    path = getattr(settings, "TEACHCLOUD_PDF_FONT", None)
    candidates = [Path(path)] if path else list(FONT_PATHS)
    for candidate in candidates:
        if candidate.exists():
            pdfmetrics.registerFont(TTFont(FONT_NAME, str(candidate), subfontIndex=0))
            return FONT_NAME
    raise ServiceError(
        _("The PDF font is not installed (Debian package fonts-wqy-zenhei)."),
        code="pdf_font_missing",
        status=503,
    )


def _quantity(value: Decimal) -> str:
    """Exact, but without trailing zeros and with thousands separators: 1,152 / 28,800.5."""
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{q2(value):,.2f}"


def pdf_text(value: object) -> str:
    """`value` as ReportLab paragraph text that shows it literally: markup characters escaped."""
    return escape(str(value))


def _para(value: object, style: ParagraphStyle) -> Paragraph:
    """The one way text becomes a paragraph of the PDF (never `Paragraph(raw text)`)."""
    return Paragraph(pdf_text(value), style)


def statement_filename(statement: Statement) -> str:
    return f"statement-{statement.wallet_id}-{statement.month:%Y-%m}.pdf"


def statement_pdf(statement: Statement, *, lines: Sequence[StatementLine] | None = None) -> bytes:
    """The statement as a PDF document (A4), in the platform's language; `lines` are its lines
    (read from the database when not given)."""
    font = cjk_font()
    if lines is None:
        lines = list(statement.lines.all())
    with translation.override(settings.LANGUAGE_CODE):
        return _render(statement, lines, font)


def _render(statement: Statement, lines: Sequence[StatementLine], font: str) -> bytes:
    title = ParagraphStyle("title", fontName=font, fontSize=16, leading=22, wordWrap="CJK")
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=13, wordWrap="CJK")
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=10, textColor=colors.grey)
    month = f"{statement.month:%Y-%m}"
    story: list = [
        _para(_("Monthly statement %(month)s") % {"month": month}, title),
        Spacer(1, 4 * mm),
        _para(statement.wallet_name, body),
        _para(
            _("Period: %(start)s to %(end)s (Asia/Shanghai); issued %(issued)s")
            % {
                "start": timezone.localtime(statement.period_start).strftime("%Y-%m-%d %H:%M"),
                "end": timezone.localtime(statement.period_end).strftime("%Y-%m-%d %H:%M"),
                "issued": timezone.localtime(statement.issued_at).strftime("%Y-%m-%d %H:%M"),
            },
            body,
        ),
        Spacer(1, 5 * mm),
    ]
    cell = lambda text: _para(text, body)  # noqa: E731
    rows = [
        [
            cell(_("Item")),
            cell(_("Quantity")),
            cell(_("Unit price (¥)")),
            cell(_("Amount (¥)")),
            cell(_("Exact (¥)")),
        ],
        [
            cell(_("Opening balance")),
            "",
            "",
            cell(_money(statement.opening_balance)),
            cell(statement.opening_balance),
        ],
    ]
    total = Decimal(0)
    for line in lines:
        quantity = f"{_quantity(line.quantity)} {line.unit}" if line.quantity is not None else ""
        rows.append(
            [
                cell(line.name),
                cell(quantity),
                cell(line.unit_price if line.unit_price is not None else ""),
                cell(_money(line.amount)),
                cell(line.amount),
            ]
        )
        total += line.amount
    rows += [
        [cell(_("Movements of the month")), "", "", cell(_money(total)), cell(total)],
        [
            cell(_("Closing balance")),
            "",
            "",
            cell(_money(statement.closing_balance)),
            cell(statement.closing_balance),
        ],
    ]
    table = Table(rows, colWidths=[50 * mm, 46 * mm, 24 * mm, 25 * mm, 27 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ("BACKGROUND", (0, -1), (-1, -1), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    story += [
        table,
        Spacer(1, 4 * mm),
        _para(
            _(
                "Amounts are rounded once to cents (half up); the exact ledger figures (4 decimal "
                "places) are shown next to them. Closing balance = opening balance + movements of "
                "the month. Every line lists the ledger transactions it sums in the API "
                "(statements/%(id)s/)."
            )
            % {"id": statement.pk},
            small,
        ),
    ]
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=_("Monthly statement %(month)s") % {"month": month},
        author="TeachCloud",
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
    )
    document.build(story)
    return buffer.getvalue()
