"""Statement PDFs show tenant-chosen text literally. ReportLab reads paragraph text as markup, so a
project named `Cloud<img src="http://…"/>` must not make the server fetch that URL, an `<img>` of
a file must not read or embed it, and an unclosed `<b>` must not break the PDF."""

from __future__ import annotations

import base64
import io
import re
import threading
import unicodedata
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from reportlab.pdfbase import pdfmetrics

from billing.models import Wallet
from reports.models import LineKind, Statement, StatementLine
from reports.pdf import cjk_font, statement_pdf
from reports.statements import statement_issue
from tenancy.services import project_create


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- A loopback web server that records every request ------------------------------------------


@dataclass
class Recorder:
    port: int = 0
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """Answers every GET with a PNG (what an attacker would serve) and records the path."""
    recorder = Recorder()
    image = png_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- What a text extractor reads from the PDF (ReportLab-independent) --------------------------


def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(n): body for n, body in re.findall(rb"(\d+) 0 obj\r?\n(.*?)\r?\nendobj", pdf, re.S)}


def _stream(body: bytes) -> bytes | None:
    length = re.search(rb"/Length (\d+)", body)
    start = body.find(b"stream")
    if length is None or start < 0:
        return None
    start += len(b"stream\r\n") if body[start + 6 : start + 8] == b"\r\n" else len(b"stream\n")
    data = body[start : start + int(length.group(1))]
    if b"/ASCII85Decode" in body:
        data = base64.a85decode(data, adobe=True)
    if b"/FlateDecode" in body:
        data = zlib.decompress(data)
    return data


def _literal(raw: bytes) -> bytes:
    """A PDF literal string's bytes, escapes resolved."""
    out = bytearray()
    i = 0
    simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
    while i < len(raw):
        ch = raw[i]
        if ch != 0x5C:  # backslash
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1]
        octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i += 1 + len(octal.group())
        elif nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in (0x0A, 0x0D):  # a line continuation
            i += 2
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def _utf16(hexdigits: bytes) -> str:
    return bytes.fromhex(hexdigits.decode()).decode("utf-16-be", "surrogatepass")


def _cmap(cmap: bytes) -> dict[int, str]:
    """A ToUnicode CMap: character code -> text."""
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(code, 16)] = _utf16(text)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for low, high, text in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
        ):
            first = ord(_utf16(text)[-1])
            for offset, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                mapping[code] = _utf16(text)[:-1] + chr(first + offset)
    return mapping


def extracted_text(pdf: bytes) -> str:
    """The text drawn on the pages, decoded through each font's ToUnicode map."""
    objects = _objects(pdf)
    maps: dict[str, dict[int, str]] = {}
    for body in objects.values():
        name = re.search(rb"/Name /(\S+)", body)
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", body)
        if b"/Type /Font" not in body or name is None or to_unicode is None:
            continue
        cmap = _stream(objects[int(to_unicode.group(1))]) or b""
        maps[name.group(1).decode()] = _cmap(cmap)
    drawn: list[str] = []
    token = re.compile(rb"/(\S+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", re.S)
    for body in objects.values():
        if b"/ToUnicode" in body or b"/Length1" in body:
            continue  # fonts and their maps are no page content
        content = _stream(body)
        if not content or b" Tj" not in content:
            continue
        font: dict[int, str] | None = None
        for match in token.finditer(content):
            if match.group(1) is not None:
                font = maps.get(match.group(1).decode())
                continue
            codes = _literal(match.group(2))
            if font is None:  # a standard font: WinAnsi
                drawn.append(codes.decode("cp1252", "replace"))
            else:
                drawn.append("".join(font.get(code, "\ufffd") for code in codes))
    return "".join(drawn)


@cache
def _glyphs() -> frozenset[int]:
    return frozenset(pdfmetrics.getFont(cjk_font()).face.charToGlyph)


def squeezed(text: str) -> str:
    """What can be read back of `text`: no white space (a paragraph wraps anywhere and collapses
    runs of it), no control characters and nothing the font has no glyph for."""
    glyphs = _glyphs()
    return "".join(
        ch
        for ch in text
        if not ch.isspace() and unicodedata.category(ch) != "Cc" and ord(ch) in glyphs
    )


# -- Statements with hostile names, through the portal -----------------------------------------


def last_month() -> date:
    return (timezone.localdate().replace(day=1) - timedelta(days=1)).replace(day=1)


def statement_of_project_named(world, name: str) -> Statement:
    project = project_create(actor=world.domain_admin, domain=world.domain, name=name, code="hx")
    statement = statement_issue(
        wallet=Wallet.objects.get(project=project), month=last_month(), force=True
    )
    assert statement is not None
    assert name in statement.wallet_name
    return statement


def portal_pdf(world, statement: Statement) -> bytes:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.domain_admin)
    response = client.get(reverse("portal:statement_pdf", args=[statement.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    return response.content


@pytest.mark.django_db
def test_an_img_url_in_a_project_name_is_not_fetched(world):
    with recording_server() as server:
        name = f'Cloud<img src="{server.url}/x.png"/>'
        pdf = portal_pdf(world, statement_of_project_named(world, name))
        assert server.hits == []
    assert b"/Subtype /Image" not in pdf
    assert squeezed(name) in squeezed(extracted_text(pdf))


@pytest.mark.django_db
@pytest.mark.parametrize("name", ['<img src="/etc/passwd">', '<img src="/etc/passwd"/>'])
def test_an_img_of_a_missing_or_non_image_file_is_text_not_an_error(world, name):
    pdf = portal_pdf(world, statement_of_project_named(world, name))
    assert squeezed(name) in squeezed(extracted_text(pdf))


@pytest.mark.django_db
def test_an_img_of_a_png_on_the_servers_disk_is_not_embedded(world, tmp_path: Path):
    picture = tmp_path / "secret.png"
    picture.write_bytes(png_bytes())
    name = f'<img src="{picture}" width="40" height="40"/>'
    pdf = portal_pdf(world, statement_of_project_named(world, name))
    assert b"/Subtype /Image" not in pdf
    assert squeezed(name) in squeezed(extracted_text(pdf))


@pytest.mark.django_db
def test_an_unclosed_tag_in_a_project_name_is_text_not_an_error(world):
    name = "ML<b>unclosed"
    pdf = portal_pdf(world, statement_of_project_named(world, name))
    assert "ML<b>unclosed" in extracted_text(pdf)


# -- Property: any name and line text renders literally -----------------------------------------

MARKUP = [
    "<",
    ">",
    "&",
    "&amp;",
    "&lt;",
    "&#60;",
    "&nbsp;",
    "&bogus;",
    "<b>",
    "</b>",
    "<i>",
    "<para>",
    "</para>",
    "<br/>",
    "<font size=40>",
    '<font color="red">',
    "<a href='http://127.0.0.1:1/'>",
    "<link href=x>",
    "<span style=x>",
    "<seq/>",
    "<onDraw name=x/>",
    "<img src='/etc/passwd'/>",
    '<img src="data:image/png;base64,AAAA"/>',
    '"',
    "'",
    "\\",
    "(",
    ")",
    "%",
    "北方理工大学",
    "计算机网络",
    "学生",
    "é",
    "😀",
]


def texts(url: str, max_size: int) -> st.SearchStrategy[str]:
    pieces = st.one_of(
        st.sampled_from([*MARKUP, f'<img src="{url}/p.png"/>', f"<img src={url}/q.png>"]),
        st.text(max_size=8),
    )
    return st.lists(pieces, max_size=12).map("".join).map(lambda text: text[:max_size])


def in_memory_statement(wallet_name: str, lines: list[tuple[str, str]]):
    """A statement and its lines as the PDF reads them (unsaved: the PDF never writes)."""
    now = timezone.now()
    statement = Statement(
        pk=4242,
        wallet_id=1,
        month=last_month(),
        period_start=now - timedelta(days=30),
        period_end=now - timedelta(days=1),
        cutoff=now,
        wallet_name=wallet_name,
        opening_balance=Decimal("12.3456"),
        closing_balance=Decimal("10.0000"),
        issued_at=now,
    )
    items = [
        StatementLine(
            statement=statement,
            position=position,
            kind=LineKind.ADJUSTMENT,
            name=name,
            quantity=Decimal("1.5"),
            unit=unit,
            unit_price=Decimal("0.0500"),
            amount=Decimal("-1.1728"),
        )
        for position, (name, unit) in enumerate(lines, start=1)
    ]
    return statement, items


def test_any_name_and_line_text_renders_literally_and_fetches_nothing():
    with recording_server() as server:

        @settings(max_examples=100, deadline=None)
        @given(
            wallet_name=texts(server.url, 300),
            lines=st.lists(st.tuples(texts(server.url, 200), texts(server.url, 40)), max_size=3),
        )
        def check(wallet_name: str, lines: list[tuple[str, str]]) -> None:
            statement, items = in_memory_statement(wallet_name, lines)
            pdf = statement_pdf(statement, lines=items)
            assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
            assert b"/Subtype /Image" not in pdf
            text = squeezed(extracted_text(pdf))
            for shown in [wallet_name, *(part for line in lines for part in line)]:
                assert squeezed(shown) in text

        check()
        assert server.hits == []
