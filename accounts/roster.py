"""Reading class rosters: CSV (UTF-8, UTF-8 with BOM, or GB18030 as Excel in China writes it) and
XLSX. The header names the columns, in English or Chinese; rows come out as plain dicts."""

from __future__ import annotations

import csv
import io
from typing import IO

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


def _column_map(header: list[str]) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for index, raw in enumerate(header):
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


def _rows(table: list[list[str]]) -> list[dict[str, str]]:
    if not table:
        raise ServiceError(_("The file is empty."), code="empty_roster")
    mapping = _column_map(table[0])
    rows = []
    for raw in table[1:]:
        cells = ["" if c is None else str(c).strip() for c in raw]
        if not any(cells):
            continue
        rows.append({key: cells[i] if i < len(cells) else "" for i, key in mapping.items()})
    limit = settings.TEACHCLOUD_ROSTER_MAX_ROWS
    if len(rows) > limit:
        raise ServiceError(
            _("A roster may have at most %(n)d rows.") % {"n": limit}, code="roster_too_large"
        )
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


def parse_roster(file: IO[bytes], filename: str) -> list[dict[str, str]]:
    """Parse an uploaded roster into rows of real_name, id_number, email[, username]."""
    data = file.read(settings.TEACHCLOUD_ROSTER_MAX_BYTES + 1)
    if len(data) > settings.TEACHCLOUD_ROSTER_MAX_BYTES:
        raise ServiceError(
            _("The file is too large (at most %(mb)s MB).")
            % {"mb": f"{settings.TEACHCLOUD_ROSTER_MAX_BYTES / (1024 * 1024):g}"},
            code="roster_too_large",
        )
    name = filename.lower()
    if name.endswith(".xlsx"):
        return _rows(_xlsx_table(data))
    if name.endswith(".csv") or name.endswith(".txt"):
        text = _decode(data)
        return _rows(list(csv.reader(io.StringIO(text))))
    raise ServiceError(_("Upload a .csv or .xlsx file."), code="roster_format")


def _xlsx_table(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise ServiceError(_("The XLSX file could not be read."), code="roster_format") from exc
    try:
        sheet = workbook.worksheets[0]
        return [
            ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
        ]
    finally:
        workbook.close()
