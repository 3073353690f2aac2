"""Reading class rosters: CSV (UTF-8, UTF-8 with BOM, or GB18030 as Excel in China writes it) and
XLSX. The header names the columns, in English or Chinese; rows come out as plain dicts.

The work is bounded by the limits, never by what the file claims to hold. An upload is at most
TEACHCLOUD_ROSTER_MAX_BYTES. An XLSX is a zip: its directory is checked before anything is
decompressed — the parts' total uncompressed size, their compression ratio, their number — and
the first sheet is then read as a stream (expat, no DTD) that stops the moment row limit + 1 is
seen, or more XML elements than that many rows need. A CSV is read row by row with the same stop
(and rows of at most CSV_MAX_RECORD characters). Nothing builds the whole table in memory.
"""

from __future__ import annotations

import csv
import io
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from xml.parsers import expat

from django.conf import settings
from django.utils.translation import gettext as _

from teachcloud.errors import ServiceError

COLUMNS = {
    "real_name": {"real_name", "real name", "name", "姓名", "真实姓名"},
    "id_number": {
        "id_number",
        "id number",
        "student number",
        "staff number",
        "number",
        "学号",
        "工号",
        "学号/工号",
    },
    "email": {"email", "e-mail", "mail", "邮箱", "电子邮箱", "电子邮件"},
    "username": {"username", "user name", "login", "用户名"},
}
REQUIRED = ("real_name", "id_number", "email")

# An XLSX's zip directory, checked before anything is decompressed. A 20,000-row roster with a
# dozen columns unpacks to well under 32 MB; sheet XML compresses about 10:1, a zip bomb 1000:1.
XLSX_MAX_UNPACKED = 32 * 1024 * 1024  # all parts together
XLSX_MAX_RATIO = 100  # uncompressed : compressed, for any part larger than XLSX_RATIO_FROM
XLSX_RATIO_FROM = 1024 * 1024
XLSX_MAX_PARTS = 1000
XLSX_MAX_LISTED = 10000  # elements of the workbook part or a relationships part
XLSX_MAX_COLUMN = 16384  # XFD, Excel's last column
# Parsing costs about a microsecond per XML element, whatever the bytes: the workbook's parts
# together may hold this many elements per roster row allowed (a row of a dozen text columns
# with its shared strings needs about 50), so the worst file costs about as much as the largest
# roster.
XLSX_ELEMENTS_PER_ROW = 64
CHUNK = 16 * 1024  # bytes of XML parsed at a time: a stop comes at most this late
CSV_MAX_RECORD = 64 * 1024  # characters of one CSV row (a roster row has a few dozen)


@dataclass
class RosterReadStats:
    """What reading a roster cost; pass one to parse_roster to observe it."""

    rows_read: int = 0  # rows after the header that were read, blank ones included
    xml_bytes: int = 0  # bytes of XML decompressed and parsed (shared strings and sheet)
    elements: int = 0  # XML elements parsed (shared strings and sheet)


Row = dict[int, str]  # column index -> cell text; empty cells absent


def _too_many_rows(limit: int) -> ServiceError:
    return ServiceError(
        _("A roster may have at most %(n)d rows.") % {"n": limit}, code="roster_too_large"
    )


def _unreadable_xlsx() -> ServiceError:
    return ServiceError(_("The XLSX file could not be read."), code="roster_format")


def _column_map(header: Row) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for index, raw in sorted(header.items()):
        name = (raw or "").strip().lower()
        for key, aliases in COLUMNS.items():
            if name in aliases and key not in mapping.values():
                mapping[index] = key
    missing = [key for key in REQUIRED if key not in mapping.values()]
    if missing:
        raise ServiceError(
            _("The first row must name the columns; missing: %(cols)s.")
            % {"cols": ", ".join(missing)},
            code="roster_columns_missing",
        )
    return mapping


def _rows(table: Iterator[Row], stats: RosterReadStats) -> list[dict[str, str]]:
    """The rows with data under the header. Reading stops the moment the row limit is passed:
    at limit + 1 rows with data, or limit + 1 blank ones (skipped, but no free ride)."""
    header = next(table, None)
    if header is None:
        raise ServiceError(_("The file is empty."), code="empty_roster")
    mapping = _column_map(header)
    limit = settings.TEACHCLOUD_ROSTER_MAX_ROWS
    rows: list[dict[str, str]] = []
    blank = 0
    for raw in table:
        stats.rows_read += 1
        if not any(value.strip() for value in raw.values()):
            blank += 1
            if blank > limit:
                raise _too_many_rows(limit)
            continue
        if len(rows) == limit:
            raise _too_many_rows(limit)
        rows.append({key: (raw.get(index) or "").strip() for index, key in mapping.items()})
    if not rows:
        raise ServiceError(_("The file has no rows to import."), code="empty_roster")
    return rows


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ServiceError(_("The CSV file is neither UTF-8 nor GB18030 text."), code="roster_encoding")


def parse_roster(
    file: IO[bytes], filename: str, *, stats: RosterReadStats | None = None
) -> list[dict[str, str]]:
    """Parse an uploaded roster into rows of real_name, id_number, email[, username]."""
    stats = stats if stats is not None else RosterReadStats()
    data = file.read(settings.TEACHCLOUD_ROSTER_MAX_BYTES + 1)
    if len(data) > settings.TEACHCLOUD_ROSTER_MAX_BYTES:
        raise ServiceError(
            _("The file is too large (at most %(mb)s MB).")
            % {"mb": f"{settings.TEACHCLOUD_ROSTER_MAX_BYTES / (1024 * 1024):g}"},
            code="roster_too_large",
        )
    name = filename.lower()
    if name.endswith(".xlsx"):
        return _xlsx_roster(data, stats)
    if name.endswith(".csv") or name.endswith(".txt"):
        return _csv_roster(data, stats)
    raise ServiceError(_("Upload a .csv or .xlsx file."), code="roster_format")


# -- CSV --------------------------------------------------------------------------------------


class _Lines:
    """The lines of a CSV text for csv.reader, refusing a record (a row, which quoted fields may
    spread over several lines) longer than CSV_MAX_RECORD: the csv module would turn 5 MB of
    commas into millions of fields."""

    def __init__(self, text: str) -> None:
        self.lines = io.StringIO(text)
        self.record = 0  # characters of the record being read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.record += len(line)
        if self.record > CSV_MAX_RECORD:
            raise ServiceError(
                _("The CSV file has a row longer than %(kb)d KB.") % {"kb": CSV_MAX_RECORD // 1024},
                code="roster_format",
            )
        return line


def _csv_table(text: str) -> Iterator[Row]:
    lines = _Lines(text)
    for record in csv.reader(lines):
        lines.record = 0
        yield {index: value for index, value in enumerate(record) if value}


def _csv_roster(data: bytes, stats: RosterReadStats) -> list[dict[str, str]]:
    try:
        return _rows(_csv_table(_decode(data)), stats)
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
        raise ServiceError(_("The CSV file could not be read."), code="roster_format") from exc


# -- XLSX -------------------------------------------------------------------------------------


def _xlsx_roster(data: bytes, stats: RosterReadStats) -> list[dict[str, str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_archive(archive)
            sheet, strings = _workbook_parts(archive)
            budget = XLSX_ELEMENTS_PER_ROW * (settings.TEACHCLOUD_ROSTER_MAX_ROWS + 2)
            shared = _shared_strings(archive, strings, stats, budget) if strings else []
            with archive.open(sheet) as stream:
                return _rows(_sheet_rows(stream, shared, stats, budget), stats)
    except ServiceError:
        raise
    except (zipfile.BadZipFile, zlib.error, KeyError, EOFError, NotImplementedError) as exc:
        raise _unreadable_xlsx() from exc
    except (RuntimeError, ValueError, expat.ExpatError) as exc:  # encrypted, broken XML
        raise _unreadable_xlsx() from exc


def _too_much_xlsx() -> ServiceError:
    return ServiceError(
        _(
            "The XLSX file holds more than a roster of %(n)d rows needs (at most %(mb)d MB "
            "unpacked, compressed at most %(ratio)d:1). Save a workbook with only the roster in it."
        )
        % {
            "mb": XLSX_MAX_UNPACKED // (1024 * 1024),
            "ratio": XLSX_MAX_RATIO,
            "n": settings.TEACHCLOUD_ROSTER_MAX_ROWS,
        },
        code="roster_too_large",
    )


def _check_archive(archive: zipfile.ZipFile) -> None:
    """Refuse from the zip directory alone what would take too much to unpack. (zipfile never
    hands out more than the size a directory entry declares, so the declaration binds.)"""
    parts = archive.infolist()
    unpacked = sum(part.file_size for part in parts)
    bomb = any(
        part.file_size > XLSX_RATIO_FROM
        and part.file_size > XLSX_MAX_RATIO * max(part.compress_size, 1)
        for part in parts
    )
    if len(parts) > XLSX_MAX_PARTS or unpacked > XLSX_MAX_UNPACKED or bomb:
        raise _too_much_xlsx()


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def _parser() -> expat.XMLParserType:
    """An expat parser that refuses any DTD (entities are how XML bombs are built)."""
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def refuse(*args: object) -> None:
        raise _unreadable_xlsx()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    return parser


def _elements(xml: bytes) -> list[tuple[str, dict[str, str]]]:
    """The elements of a small part (relationships, workbook): local name and attributes."""
    found: list[tuple[str, dict[str, str]]] = []
    parser = _parser()

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(found) >= XLSX_MAX_LISTED:
            raise _too_much_xlsx()
        found.append((_local(name), {_local(key): value for key, value in attrs.items()}))

    parser.StartElementHandler = start
    parser.Parse(xml, True)
    return found


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type, target part) of `part` ("" for the package)."""
    folder, name = posixpath.split(part)
    found = {}
    for element, attrs in _elements(archive.read(posixpath.join(folder, "_rels", f"{name}.rels"))):
        if element == "Relationship" and attrs.get("TargetMode") != "External":
            target = attrs.get("Target", "")
            target = target[1:] if target.startswith("/") else posixpath.join(folder, target)
            found[attrs.get("Id", "")] = (attrs.get("Type", ""), posixpath.normpath(target))
    return found


def _workbook_parts(archive: zipfile.ZipFile) -> tuple[str, str | None]:
    """The first worksheet's part and the shared strings' part (if any)."""
    package = _relationships(archive, "")
    workbook = next(
        (target for kind, target in package.values() if kind.endswith("/officeDocument")), None
    )
    if workbook is None:
        raise _unreadable_xlsx()
    related = _relationships(archive, workbook)
    worksheets = [
        related[attrs["id"]][1]
        for element, attrs in _elements(archive.read(workbook))
        if element == "sheet"
        and related.get(attrs.get("id", ""), ("", ""))[0].endswith("/worksheet")
    ]
    if not worksheets:
        raise _unreadable_xlsx()
    strings = next(
        (target for kind, target in related.values() if kind.endswith("/sharedStrings")), None
    )
    return worksheets[0], strings


def _feed(parser: expat.XMLParserType, stream: IO[bytes], stats: RosterReadStats) -> Iterator[None]:
    """Parse `stream` CHUNK bytes at a time, pausing after each chunk."""
    while True:
        chunk = stream.read(CHUNK)
        stats.xml_bytes += len(chunk)
        parser.Parse(chunk, not chunk)
        yield
        if not chunk:
            return


def _shared_strings(
    archive: zipfile.ZipFile, part: str, stats: RosterReadStats, budget: int
) -> list[str]:
    """The shared string table: the text of each <si> (rich-text runs joined, phonetic guides
    left out)."""
    strings: list[str] = []
    text: list[str] = []
    inside_t = phonetic = 0
    names: dict[str, str] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal inside_t, phonetic
        stats.elements += 1
        if stats.elements > budget:
            raise _too_much_xlsx()
        tag = names.get(name) or names.setdefault(name, _local(name))
        if tag == "t":
            inside_t += 1
        elif tag == "si":
            text.clear()
        elif tag == "rPh":
            phonetic += 1

    def end(name: str) -> None:
        nonlocal inside_t, phonetic
        tag = names[name]
        if tag == "t":
            inside_t -= 1
        elif tag == "si":
            strings.append("".join(text))
        elif tag == "rPh":
            phonetic -= 1

    def chars(data: str) -> None:
        if inside_t and not phonetic:
            text.append(data)

    parser = _parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    with archive.open(part) as stream:
        for _chunk in _feed(parser, stream, stats):
            pass
    return strings


_DIGITS = "0123456789"


def _column_of(letters: str) -> int:
    """0 for A, 25 for Z, 26 for AA … (a cell reference without its row number)."""
    if not (1 <= len(letters) <= 3 and letters.isascii() and letters.isalpha()):
        raise _unreadable_xlsx()
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - 64
    if index > XLSX_MAX_COLUMN:
        raise _unreadable_xlsx()
    return index - 1


def _number(text: str) -> str:
    """A numeric cell as a roster wants it: 20260001, not 20260001.0 or 2.0260001E7."""
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else str(value)


def _sheet_rows(
    stream: IO[bytes], shared: list[str], stats: RosterReadStats, budget: int
) -> Iterator[Row]:
    """The sheet's rows (column index -> text) as they are parsed, CHUNK bytes of XML at a
    time; the caller stops the reading by no longer asking. Hot path: plain closures."""
    done: list[Row] = []
    row: Row = {}
    text: list[str] = []
    column, kind, capture, phonetic = -1, "n", False, 0
    names: dict[str, str] = {}
    columns: dict[str, int] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal row, column, kind, capture, phonetic
        stats.elements += 1
        if stats.elements > budget:
            raise _too_much_xlsx()
        tag = names.get(name) or names.setdefault(name, _local(name))
        if tag == "c":
            ref = attrs.get("r")
            if ref is None:
                column += 1
                if column >= XLSX_MAX_COLUMN:
                    raise _unreadable_xlsx()
            else:
                letters = ref.rstrip(_DIGITS)
                found = columns.get(letters)
                column = (
                    found if found is not None else columns.setdefault(letters, _column_of(letters))
                )
            kind = attrs.get("t", "n")
            text.clear()
        elif tag == "v" or tag == "t":
            capture = not phonetic
        elif tag == "row":
            row = {}
            column = -1
        elif tag == "rPh":
            phonetic += 1

    def end(name: str) -> None:
        nonlocal capture, phonetic
        tag = names[name]
        if tag == "c":
            if text:
                shown = _cell(kind, "".join(text), shared)
                if shown:
                    row[column] = shown
        elif tag == "v" or tag == "t":
            capture = False
        elif tag == "row":
            done.append(row)
        elif tag == "rPh":
            phonetic -= 1

    def chars(data: str) -> None:
        if capture:
            text.append(data)

    parser = _parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    for _chunk in _feed(parser, stream, stats):
        yield from done
        done.clear()


def _cell(kind: str, raw: str, shared: list[str]) -> str:
    if kind == "s":
        try:
            return shared[int(raw)]
        except (ValueError, IndexError):
            raise _unreadable_xlsx() from None
    if kind == "n":
        return _number(raw.strip())
    if kind == "b":
        return "True" if raw.strip() == "1" else "False"
    return raw  # inlineStr, str (a formula's text), e (an error), d (an ISO date)
