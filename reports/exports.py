"""Exports of API lists (`?export=csv|xlsx`, SPEC API contract "Exports"): the WHOLE filtered list
the caller may see (same scoping and filters as the list, never one page) as a download.

Memory stays bounded whatever the size: the rows come from one query read through a server-side
cursor (`QuerySet.iterator(chunk_size=…)`); CSV is streamed as it is produced
(`StreamingHttpResponse`, UTF-8 with a BOM so Excel opens it), XLSX is written by openpyxl's
write-only workbook to a temporary file which is then streamed (`FileResponse`).

Cells: translated headers; amounts with 4 decimal places (a decimal string in CSV, a number shown
with 4 places in XLSX); datetimes ISO-8601 with their offset in Asia/Shanghai (text, in both).
The rows handed to `export_response` are final but for the amounts: datetimes already made text
by `iso_local` (in the one per-row conversion each list needs anyway), amounts Decimals as read
from their `decimal_places=4` column (`str()` of such a Decimal keeps its 4 places), None empty.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Exists, OuterRef, QuerySet
from django.http import FileResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.request import Request

from billing.memos import memo_renderer
from billing.models import Allocation, Entry, Transaction, TransactionKind, Wallet
from teachcloud.errors import ServiceError

CSV = "csv"
XLSX = "xlsx"
FORMATS = (CSV, XLSX)
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK_SIZE = 5000  # rows fetched per round trip from the server-side cursor
CSV_BATCH = 1000  # CSV rows joined into one streamed chunk
CST = ZoneInfo("Asia/Shanghai")

# Cell kinds: what XLSX does with the value (CSV writes every value as its text).
TEXT = "text"
NUMBER = "number"
MONEY = "money"  # a Decimal: a number shown with 4 places in XLSX
DATETIME = "datetime"  # already text (iso_local): Excel has no time zones


@dataclass(frozen=True)
class Column:
    header: Any  # a (lazy) translated string
    kind: str = TEXT


# -- The query parameter and the schema ------------------------------------------------------

EXPORT_PARAMETER = OpenApiParameter(
    "export",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=False,
    enum=list(FORMATS),
    description=gettext_lazy(
        "Download the whole filtered list (not one page) as CSV (UTF-8 with BOM) or XLSX "
        "instead of a JSON page."
    ),
)


def export_responses(json_response: Any) -> dict:
    """`responses=` for extend_schema: the JSON list, or a CSV or XLSX download."""
    return {
        (200, "application/json"): json_response,
        (200, CSV_MEDIA_TYPE): OpenApiResponse(
            OpenApiTypes.BINARY, description=gettext_lazy("With ?export=csv: the CSV file.")
        ),
        (200, XLSX_MEDIA_TYPE): OpenApiResponse(
            OpenApiTypes.BINARY, description=gettext_lazy("With ?export=xlsx: the XLSX file.")
        ),
    }


def requested_export(request: Request) -> str | None:
    """The export format asked for with `?export=`, None for the JSON list; 400 if unknown."""
    value = request.query_params.get("export")
    if value is None:
        return None
    if value not in FORMATS:
        raise ServiceError(
            _("Unknown export format “%(value)s”: use csv or xlsx.") % {"value": value[:20]},
            code="invalid_export",
        )
    return value


# -- Cells and files --------------------------------------------------------------------------


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text(value: str | None) -> str | None:
    """Free text typed by someone (names, memos, references) made inert for spreadsheets: a
    leading =, +, -, @ would start a formula in Excel (and in openpyxl), so it gets a quote."""
    if value and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def iso_local(value: datetime | None) -> str | None:
    """ISO-8601 with the offset, in Asia/Shanghai: `2026-10-05T10:00:00+08:00`."""
    return None if value is None else value.astimezone(CST).isoformat()


class _Echo:
    """A file-like object whose write() hands the line back (csv.writer without a buffer)."""

    def write(self, value: str) -> str:
        return value


def _csv_chunks(headers: list[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text in chunks of CSV_BATCH rows (csv writes None as an empty cell)."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(headers)
    row_text = writer.writerow
    batch: list[str] = []
    append = batch.append
    for row in rows:
        append(row_text(row))
        if len(batch) >= CSV_BATCH:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)


def _xlsx_file(headers: list[str], kinds: list[str], rows: Iterable[Sequence[Any]]) -> Any:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(headers)
    for row in rows:
        cells: list[Any] = []
        for kind, value in zip(kinds, row, strict=True):
            if value is None:
                cells.append(None)
            elif kind == MONEY:
                cell = WriteOnlyCell(sheet, value=Decimal(value))
                cell.number_format = "0.0000"
                cells.append(cell)
            else:
                cells.append(value)
        sheet.append(cells)
    # Not a `with`: FileResponse closes (and so deletes) it once the download is sent.
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115
    workbook.save(handle)
    handle.seek(0)
    return handle


def export_response(
    *,
    export: str,
    filename: str,
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
) -> HttpResponseBase:
    """A download of `rows` (raw values, one per column) as CSV or XLSX. Headers are
    translated now, in the request's language: CSV rows are produced after the view returns."""
    headers = [str(column.header) for column in columns]
    kinds = [column.kind for column in columns]
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    name = f"{filename}-{stamp}.{export}"
    if export == CSV:
        response = StreamingHttpResponse(
            _csv_chunks(headers, rows), content_type=f"{CSV_MEDIA_TYPE}; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    return FileResponse(
        _xlsx_file(headers, kinds, rows),
        as_attachment=True,
        filename=name,
        content_type=XLSX_MEDIA_TYPE,
    )


def _stream(queryset: QuerySet) -> Iterator:
    return queryset.iterator(chunk_size=CHUNK_SIZE)


def _mapped(rows: Iterator, convert: Callable[[tuple], Sequence[Any]]) -> Iterator:
    return (convert(row) for row in rows)


# -- The exported lists -----------------------------------------------------------------------


def _tenant_names() -> dict[int | None, str]:
    """Wallet id → its tenant's name (None: the outside world), in one query: cheaper than
    joining three tables for each of a million entries, and bounded by the number of wallets."""
    names: dict[int | None, str] = {None: _("Outside world (paid in)")}
    platform = _("Platform")
    for pk, domain, project in Wallet.objects.values_list(
        "pk", "domain__name", "project__name"
    ).iterator(chunk_size=CHUNK_SIZE):
        names[pk] = text(project or domain) or platform
    return names


TRANSACTION_COLUMNS = [
    Column(gettext_lazy("Transaction")),
    Column(gettext_lazy("Kind")),
    Column(gettext_lazy("Created at"), DATETIME),
    Column(gettext_lazy("Period start"), DATETIME),
    Column(gettext_lazy("Wallet")),
    Column(gettext_lazy("Tenant")),
    Column(gettext_lazy("Amount (CNY)"), MONEY),
    Column(gettext_lazy("Memo")),
]


def transactions_export(*, transactions: QuerySet[Transaction], export: str) -> HttpResponseBase:
    """One row per ledger entry of the (already scoped and filtered) transactions, newest
    transaction first: one query, whatever the number of rows."""
    entries = (
        Entry.objects.filter(
            Exists(transactions.filter(pk=OuterRef("transaction_id")).values("pk"))
        )
        .order_by("-transaction__created_at", "-transaction_id", "id")
        .values_list(
            "transaction_id",
            "transaction__kind",
            "transaction__created_at",
            "transaction__period_start",
            "wallet_id",
            "amount",
            "transaction__memo",
            "transaction__reverses_id",
        )
    )
    kinds = {value: str(label) for value, label in TransactionKind.choices}
    names = _tenant_names()
    describe = memo_renderer()  # translated now, in the request's language

    def convert(row: tuple) -> tuple:
        tx, kind, created, period, wallet, amount, memo, reverses = row
        return (
            tx,
            kinds.get(kind, kind),
            iso_local(created),
            iso_local(period),
            wallet,
            names.get(wallet, ""),
            amount,
            text(describe(kind=kind, period_start=period, reverses_id=reverses, memo=memo)),
        )

    return export_response(
        export=export,
        filename="transactions",
        columns=TRANSACTION_COLUMNS,
        rows=_mapped(_stream(entries), convert),
    )


RECHARGE_COLUMNS = [
    Column(gettext_lazy("Transaction")),
    Column(gettext_lazy("Created at"), DATETIME),
    Column(gettext_lazy("Amount (CNY)"), MONEY),
    Column(gettext_lazy("Paid by")),
    Column(gettext_lazy("Method")),
    Column(gettext_lazy("Reference")),
    Column(gettext_lazy("Memo")),
]


def recharges_export(*, wallet: Wallet, export: str) -> HttpResponseBase:
    """The recharges of one wallet (the caller may see it: looked up in their scope), newest
    first, with the amount credited to that wallet."""
    rows = (
        Entry.objects.filter(
            wallet=wallet, transaction__wallet=wallet, transaction__kind=TransactionKind.RECHARGE
        )
        .order_by("-transaction__created_at", "-transaction_id", "id")
        .values_list(
            "transaction_id",
            "transaction__created_at",
            "amount",
            "transaction__payer",
            "transaction__method",
            "transaction__reference",
            "transaction__memo",
        )
    )

    describe = memo_renderer()  # translated now, in the request's language

    def convert(row: tuple) -> tuple:
        memo = describe(kind=TransactionKind.RECHARGE, memo=row[6])
        return (row[0], iso_local(row[1]), row[2], *(text(cell) for cell in (*row[3:6], memo)))

    return export_response(
        export=export,
        filename=f"wallet-{wallet.pk}-recharges",
        columns=RECHARGE_COLUMNS,
        rows=_mapped(_stream(rows), convert),
    )


def allocations_export(*, allocations: QuerySet[Allocation], export: str) -> HttpResponseBase:
    """The (already scoped, filtered and ordered) allocation intervals, one row each: the cells
    of the allocation history report (`reports.definitions`), for the API's own filters."""
    from reports.catalog import REPORTS, load
    from reports.definitions import ALLOCATION_FIELDS

    load()
    report = REPORTS["allocations"]
    return export_response(
        export=export,
        filename="allocations",
        columns=report.export_columns,
        rows=_mapped(_stream(allocations.values_list(*ALLOCATION_FIELDS)), report.convert),
    )
