"""A roster upload costs what the limits allow, never what the file claims. An XLSX (a zip) that
would unpack to too much is refused from its zip directory before anything is unpacked; its
sheet is read as a stream that stops at row limit + 1; a refused file changes nothing."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from accounts.models import RosterImport, User
from accounts.roster import XLSX_ELEMENTS_PER_ROW, RosterReadStats, parse_roster
from teachcloud.errors import ServiceError
from tenancy.models import AuditEvent

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
HEADER = (
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>real_name</t></is></c>'
    b'<c r="B1" t="inlineStr"><is><t>id_number</t></is></c>'
    b'<c r="C1" t="inlineStr"><is><t>email</t></is></c></row>'
)
SHEET = "xl/worksheets/sheet1.xml"
LIMIT = 20000  # TEACHCLOUD_ROSTER_MAX_ROWS of the settings


CONTENT_TYPES = (
    '<?xml version="1.0"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
)
SHARED_TYPE = (
    '<Override PartName="/xl/sharedStrings.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
)


def relationships(*rels: tuple[str, str, str]) -> bytes:
    body = "".join(f'<Relationship Id="{i}" Type="{DOC}/{t}" Target="{g}"/>' for i, t, g in rels)
    return f'<?xml version="1.0"?><Relationships xmlns="{RELS}">{body}</Relationships>'.encode()


def workbook(
    sheet: Iterable[bytes],
    *,
    shared: bytes | None = None,
    sheets: str = '<sheet name="Roster" sheetId="1" r:id="rId1"/>',
    rels: tuple[tuple[str, str, str], ...] = (("rId1", "worksheet", "worksheets/sheet1.xml"),),
) -> bytes:
    """An XLSX made by hand: the sheet XML is written chunk by chunk (a large sheet is never
    one bytes object), the rest is the minimum a reader needs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        types = CONTENT_TYPES + (SHARED_TYPE if shared is not None else "") + "</Types>"
        archive.writestr("[Content_Types].xml", types)
        archive.writestr(
            "_rels/.rels", relationships(("rId1", "officeDocument", "xl/workbook.xml"))
        )
        archive.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{MAIN}" xmlns:r="{DOC}"><sheets>{sheets}</sheets></workbook>',
        )
        if shared is not None:
            rels += (("rIdS", "sharedStrings", "sharedStrings.xml"),)
            archive.writestr("xl/sharedStrings.xml", shared)
        archive.writestr("xl/_rels/workbook.xml.rels", relationships(*rels))
        with archive.open(SHEET, "w") as stream:
            for chunk in sheet:
                stream.write(chunk)
    return buffer.getvalue()


def sheet_xml(rows: Iterable[bytes], *, header: bytes = HEADER) -> Iterator[bytes]:
    yield f'<worksheet xmlns="{MAIN}"><sheetData>'.encode() + header
    batch: list[bytes] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 10000:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch) + b"</sheetData></worksheet>"


def sizes(data: bytes) -> dict[str, tuple[int, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: (i.file_size, i.compress_size) for i in archive.infolist()}


class Unpacked:
    """Bytes decompressed out of any zip, per part — whoever reads them (our reader, openpyxl).
    More than `allowed` in total fails the test at once, so a reader that unpacks everything
    fails fast instead of taking minutes."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = defaultdict(int)
        self.allowed = 64 * 1024 * 1024
        self.over = ""  # why the reader was stopped (it may have swallowed the AssertionError)

    def count(self, name: str, data: Any) -> Any:
        self.bytes[name] += len(data)
        total = sum(self.bytes.values())
        if total > self.allowed:
            self.over = f"unpacked {total} bytes of {name} (at most {self.allowed} expected)"
            raise AssertionError(self.over)
        return data


@pytest.fixture
def unpacked(monkeypatch) -> Unpacked:
    counter = Unpacked()
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, mode="r", *args, **kwargs):
        stream = real_open(self, name, mode, *args, **kwargs)
        if mode == "r":
            part = name if isinstance(name, str) else name.filename
            read, read1 = stream.read, stream.read1
            stream.read = lambda n=-1: counter.count(part, read(n))
            stream.read1 = lambda n=-1: counter.count(part, read1(n))
        return stream

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    return counter


def refusal(
    data: bytes,
    filename: str = "class.xlsx",
    stats: RosterReadStats | None = None,
    unpacked: Unpacked | None = None,
) -> ServiceError:
    with pytest.raises(ServiceError) as exc:
        parse_roster(io.BytesIO(data), filename, stats=stats)
    assert unpacked is None or not unpacked.over, unpacked.over
    return exc.value


# -- Refused from the zip directory, before anything is unpacked --------------------------------


@pytest.fixture(scope="module")
def million_same_rows() -> bytes:
    """What the probe sent: a small file of 1,000,000 rows (here 26 MB of XML in ~60 KB)."""
    return workbook(sheet_xml(b"<row><c><v>1</v></c></row>" for _ in range(1_000_000)))


def test_a_million_row_file_that_compresses_like_a_bomb_is_refused_unread(
    million_same_rows, unpacked
):
    unpacked.allowed = 4096  # workbook.xml and its relationships, not the sheet
    unpacked_size, packed_size = sizes(million_same_rows)[SHEET]
    assert unpacked_size > 25_000_000 and packed_size < 100_000
    stats = RosterReadStats()
    error = refusal(million_same_rows, stats=stats, unpacked=unpacked)
    assert error.code == "roster_too_large"
    assert unpacked.bytes[SHEET] == 0
    assert (stats.rows_read, stats.xml_bytes, stats.elements) == (0, 0, 0)


def test_a_zip_bomb_is_refused_by_the_size_check_before_parsing(unpacked):
    unpacked.allowed = 4096
    block = b"<row/>" * (1 << 20)  # 6 MB
    bomb = workbook(sheet_xml(block for _ in range(34)))  # 200 MB of sheet XML
    assert sizes(bomb)[SHEET][0] > 200 * 1024 * 1024 and len(bomb) < 1024 * 1024
    stats = RosterReadStats()
    error = refusal(bomb, stats=stats, unpacked=unpacked)
    assert error.code == "roster_too_large"
    assert "32 MB" in error.detail
    assert unpacked.bytes[SHEET] == 0 and stats.xml_bytes == 0


# -- Read as a stream that stops at the row limit ----------------------------------------------


@pytest.fixture(scope="module")
def million_rows() -> bytes:
    """1,000,000 distinct rows that pass the directory checks: 32 MB of XML, packed ~14:1."""
    return workbook(sheet_xml(b"<row><c><v>%d</v></c></row>" % n for n in range(1_000_000)))


def test_reading_stops_at_the_row_limit_plus_one(million_rows, unpacked):
    sheet_size = sizes(million_rows)[SHEET][0]
    unpacked.allowed = sheet_size // 10  # a tenth of the sheet is already far too much
    stats = RosterReadStats()
    error = refusal(million_rows, stats=stats, unpacked=unpacked)
    assert error.code == "roster_too_large"
    assert f"{LIMIT}" in error.detail
    assert stats.rows_read == LIMIT + 1
    assert stats.xml_bytes == unpacked.bytes[SHEET] < sheet_size // 20


@override_settings(TEACHCLOUD_ROSTER_MAX_ROWS=100)
def test_blank_rows_get_no_free_ride():
    data = workbook(sheet_xml(b'<row r="%d"/>' % n for n in range(2, 100_000)))
    stats = RosterReadStats()
    assert refusal(data, stats=stats).code == "roster_too_large"
    assert stats.rows_read == 101
    text = "real_name,id_number,email\n" + "\n" * 100_000
    stats = RosterReadStats()
    assert refusal(text.encode(), "class.csv", stats=stats).code == "roster_too_large"
    assert stats.rows_read == 101


@override_settings(TEACHCLOUD_ROSTER_MAX_ROWS=100)
def test_elements_beyond_what_the_row_limit_needs_are_refused():
    budget = XLSX_ELEMENTS_PER_ROW * 102
    padding = (b"<x%d/>" % (n % 7) for n in range(10 * budget))
    data = workbook(sheet_xml([b'<row r="2"><c r="A2"><v>1</v></c>', *padding, b"</row>"]))
    stats = RosterReadStats()
    assert refusal(data, stats=stats).code == "roster_too_large"
    assert stats.elements == budget + 1
    assert stats.rows_read == 0


def test_a_csv_is_read_only_up_to_the_row_limit_plus_one():
    data = b"real_name,id_number,email\n" + b"a,1,b\n" * 800_000  # 4.8 MB
    stats = RosterReadStats()
    assert refusal(data, "class.csv", stats=stats).code == "roster_too_large"
    assert stats.rows_read == LIMIT + 1


def test_a_csv_field_over_the_csv_module_limit_is_a_format_error_not_a_crash():
    data = b"real_name,id_number,email\n" + b"a" * 200_000 + b",1,b@example.edu\n"
    assert refusal(data, "class.csv").code == "roster_format"


@pytest.mark.parametrize(
    "row",
    [b"," * 5_000_000, b",".join(b"%02d" % (n % 100) for n in range(1_600_000))],
    ids=["commas", "short-fields"],
)
def test_a_csv_row_of_millions_of_fields_is_refused_before_it_is_split(row):
    data = b"real_name,id_number,email\n" + row + b"\n"
    tracemalloc.start()
    try:
        error = refusal(data[: 5 * 1024 * 1024], "class.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.code == "roster_format"
    assert "64 KB" in error.detail
    assert peak < 64 * 1024 * 1024


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
        b'<!DOCTYPE worksheet [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    ],
)
def test_a_sheet_with_a_dtd_is_refused(doctype):
    sheet = sheet_xml([b'<row r="2"><c r="A2" t="inlineStr"><is><t>x</t></is></c></row>'])
    data = workbook([b'<?xml version="1.0"?>' + doctype, *sheet])
    assert refusal(data).code == "roster_format"


# -- What spreadsheet programs write still reads right -----------------------------------------


def test_prefixes_shared_rich_and_phonetic_strings_numbers_and_missing_references():
    shared = (
        f'<sst xmlns="{MAIN}"><si><t>姓名</t></si>'
        "<si><r><t>学</t></r><r><rPr><b/></rPr><t>号</t></r>"
        '<rPh sb="0" eb="1"><t>がく</t></rPh></si>'
        "<si><t>李雷</t><rPh><t>リ</t></rPh></si></sst>"
    ).encode()
    rows = [
        f'<x:worksheet xmlns:x="{MAIN}"><x:sheetData>',
        '<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c>'
        '<x:c r="C1" t="inlineStr"><x:is><x:t>Email</x:t></x:is></x:c></x:row>',
        '<x:row r="3"><x:c t="s"><x:v>2</x:v></x:c><x:c><x:v>2.0260001E7</x:v></x:c>'
        '<x:c t="str"><x:f>LOWER("LI@EXAMPLE.EDU")</x:f><x:v>li@example.edu</x:v></x:c></x:row>',
        '<x:row r="4" s="2" customFormat="1"/>',
        '<x:row r="5"><x:c r="A5" t="inlineStr"><x:is><x:r><x:t>韩</x:t></x:r>'
        '<x:r><x:t xml:space="preserve">梅梅 </x:t></x:r></x:is></x:c>'
        '<x:c r="B5" s="1"><x:v>20260002</x:v></x:c><x:c r="D5" s="3"/>'
        '<x:c r="C5" t="inlineStr"><x:is><x:t>han@example.edu</x:t></x:is></x:c>'
        '<x:c r="F5" t="b"><x:v>1</x:v></x:c></x:row>',
        '<x:row r="9"><x:c r="A9" t="inlineStr"><x:is><x:t>A&amp;B &lt;b&gt;</x:t></x:is></x:c>'
        '<x:c r="B9"><x:v>20260003</x:v></x:c>'
        '<x:c r="C9" t="inlineStr"><x:is><x:t>ab@example.edu</x:t></x:is></x:c></x:row>',
        "</x:sheetData></x:worksheet>",
    ]
    data = workbook(
        [row.encode() for row in rows],
        shared=shared,
        sheets=(
            '<sheet name="Chart" sheetId="3" r:id="rId3"/>'
            '<sheet name="Roster" sheetId="1" r:id="rId1"/>'
            '<sheet name="Other" sheetId="2" r:id="rId2"/>'
        ),
        rels=(
            ("rId3", "chartsheet", "chartsheets/sheet1.xml"),
            ("rId1", "worksheet", "/xl/worksheets/sheet1.xml"),
            ("rId2", "worksheet", "worksheets/missing.xml"),
        ),
    )
    assert parse_roster(io.BytesIO(data), "Class.XLSX") == [
        {"real_name": "李雷", "id_number": "20260001", "email": "li@example.edu"},
        {"real_name": "韩梅梅", "id_number": "20260002", "email": "han@example.edu"},
        {"real_name": "A&B <b>", "id_number": "20260003", "email": "ab@example.edu"},
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x05\x06" + b"\x00" * 18,  # an empty zip
        workbook([b"<worksheet><sheetData><row><c"]),  # cut off
        workbook(sheet_xml([b'<row><c r="1A"><v>1</v></c></row>'])),  # no column letters
        workbook(sheet_xml([b'<row><c r="XFE2"><v>1</v></c></row>'])),  # past Excel's last
        workbook(sheet_xml([b'<row><c t="s"><v>7</v></c></row>']), shared=b"<sst/>"),
        workbook(sheet_xml([]), rels=(("rId1", "chartsheet", "worksheets/sheet1.xml"),)),
    ],
)
def test_a_broken_workbook_is_a_format_error(data):
    assert refusal(data).code == "roster_format"


# -- Through the portal: refused quickly, nothing changes ---------------------------------------


@pytest.mark.django_db
def test_the_portal_refuses_a_million_row_roster_and_changes_nothing(
    world, client, million_rows, million_same_rows, unpacked
):
    unpacked.allowed = 8 * 1024 * 1024
    client.force_login(world.project_admin)
    url = reverse("portal:project_import", args=[world.project.pk])
    before = (User.objects.count(), AuditEvent.objects.count())
    for data in (million_rows, million_same_rows):
        upload = SimpleUploadedFile("class.xlsx", data, content_type="application/octet-stream")
        response = client.post(url, {"file": upload}, HTTP_ACCEPT_LANGUAGE="en")
        assert not unpacked.over, unpacked.over
        assert response.status_code == 200
        errors = " ".join(response.context["form"].non_field_errors())
        assert "at most 20000 rows" in errors or "Save a workbook with only the roster" in errors
    assert not RosterImport.objects.exists()
    assert (User.objects.count(), AuditEvent.objects.count()) == before
