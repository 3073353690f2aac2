"""`?export=csv|xlsx` on transactions/, allocations/ and wallets/{id}/recharges/: the whole
filtered, scoped list as a download, in bounded memory and a constant number of queries."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from openpyxl import load_workbook
from rest_framework.test import APIClient

from billing import services
from billing.models import Transaction, Wallet
from teachcloud.testing.factories import api_token
from tenancy.models import Domain

API = "/api/v1"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TX_HEADERS = [
    "Transaction",
    "Kind",
    "Created at",
    "Period start",
    "Wallet",
    "Tenant",
    "Amount (CNY)",
    "Memo",
]


def client_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def wallet(tenant) -> Wallet:
    if isinstance(tenant, Domain):
        return Wallet.objects.get(domain=tenant)
    return Wallet.objects.get(project=tenant)


def recharge(w, tenant, amount="100.00", method="bank"):
    return services.wallet_recharge(
        actor=w.platform, wallet=wallet(tenant), amount=amount, method=method
    )


def body(response) -> bytes:
    assert response.status_code == 200, getattr(response, "content", b"")
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    raw = body(response)
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def xlsx_rows(response) -> list[tuple]:
    assert response["Content-Type"] == XLSX
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert ".xlsx" in response["Content-Disposition"]
    book = load_workbook(io.BytesIO(body(response)), read_only=True)
    return list(book.active.iter_rows(values_only=True))


def test_transactions_csv_one_row_per_entry_scoped(w):
    tx = recharge(w, w.domain, "123.45")
    recharge(w, w.other_domain, "999")  # foreign: never exported to the domain admin
    response = client_for(w.domain_admin).get(f"{API}/transactions/", {"export": "csv"})
    rows = csv_rows(response)
    assert rows[0] == TX_HEADERS
    assert response["Content-Disposition"].endswith('.csv"')
    data = rows[1:]
    assert {row[0] for row in data} == {str(tx.pk)}
    assert len(data) == tx.entries.count() == 2
    by_amount = {row[6]: row for row in data}
    assert set(by_amount) == {"123.4500", "-123.4500"}
    mine = by_amount["123.4500"]
    assert mine[1] == "Recharge"
    assert mine[4] == str(wallet(w.domain).pk)
    assert mine[5] == "North School"
    assert mine[2].endswith("+08:00")
    created = timezone.datetime.fromisoformat(mine[2])
    assert abs(created - tx.created_at) < timedelta(seconds=1)
    assert by_amount["-123.4500"][4] == ""  # the outside world's leg
    assert "999.0000" not in {row[6] for row in data}


def test_transactions_xlsx_reads_back(w):
    tx = recharge(w, w.domain, "10.5")
    response = client_for(w.platform).get(
        f"{API}/transactions/", {"export": "xlsx", "wallet": wallet(w.domain).pk}
    )
    rows = xlsx_rows(response)
    assert list(rows[0]) == TX_HEADERS
    data = rows[1:]
    assert {row[0] for row in data} == {tx.pk}
    amounts = sorted(Decimal(str(row[6])) for row in data)
    assert amounts == [Decimal("-10.5"), Decimal("10.5")]
    assert all(isinstance(row[2], str) and row[2].endswith("+08:00") for row in data)


def test_transactions_export_applies_the_filters(w):
    domain_tx = recharge(w, w.domain, "5")
    project_tx = recharge(w, w.project, "7")
    old = recharge(w, w.domain, "3")
    Transaction.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    client = client_for(w.domain_admin)

    def exported(params) -> set[int]:
        rows = csv_rows(client.get(f"{API}/transactions/", {"export": "csv", **params}))
        return {int(row[0]) for row in rows[1:]}

    assert exported({}) == {domain_tx.pk, project_tx.pk, old.pk}
    assert exported({"wallet": wallet(w.project).pk}) == {project_tx.pk}
    start = (timezone.now() - timedelta(days=1)).isoformat()
    assert exported({"start": start}) == {domain_tx.pk, project_tx.pk}
    assert exported({"kind": "adjustment"}) == set()


def test_export_is_the_whole_list_not_one_page(w):
    for _i in range(35):  # the default page holds 30
        recharge(w, w.project, "1")
    client = client_for(w.project_admin)
    assert len(client.get(f"{API}/transactions/").json()["results"]) == 30
    rows = csv_rows(client.get(f"{API}/transactions/", {"export": "csv", "size": 2}))
    assert len({row[0] for row in rows[1:]}) == 35
    url = f"{API}/wallets/{wallet(w.project).pk}/recharges/"
    assert len(csv_rows(client.get(url, {"export": "csv"}))) == 36


@pytest.mark.parametrize("value", ["pdf", "", "CSV"])
def test_unknown_export_format_is_400(w, value):
    for url in (
        f"{API}/transactions/",
        f"{API}/allocations/",
        f"{API}/wallets/{wallet(w.domain).pk}/recharges/",
    ):
        response = client_for(w.domain_admin).get(url, {"export": value})
        assert response.status_code == 400, (url, response.content)
        assert response.json()["code"] == "invalid_export"
        assert response.json()["detail"]


def test_recharges_export_and_foreign_wallet_404(w):
    tx = recharge(w, w.domain, "50", method="bank")
    recharge(w, w.other_domain, "60")
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    rows = csv_rows(client_for(w.domain_admin).get(url, {"export": "csv"}))
    assert rows[0][:3] == ["Transaction", "Created at", "Amount (CNY)"]
    assert rows[1:] == [
        [str(tx.pk), rows[1][1], "50.0000", tx.payer, "bank", tx.reference, "Recharge"]
    ]
    xrows = xlsx_rows(client_for(w.domain_admin).get(url, {"export": "xlsx"}))
    assert xrows[1][0] == tx.pk and Decimal(str(xrows[1][2])) == Decimal("50")
    foreign = f"{API}/wallets/{wallet(w.other_domain).pk}/recharges/"
    for value in ("csv", "xlsx"):
        response = client_for(w.domain_admin).get(foreign, {"export": value})
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_allocations_export_scoped_and_filtered(w):
    for domain in (w.domain, w.other_domain):
        services.allocation_set(
            actor=w.platform,
            target=services.target_of(domain=domain),
            vcpus=100,
            ram_gib=400,
            disk_gib=2000,
        )
    project_alloc = services.allocation_set(
        actor=w.domain_admin,
        target=services.target_of(project=w.project),
        vcpus=10,
        ram_gib=20,
        disk_gib=100,
    )
    client = client_for(w.domain_admin)
    rows = csv_rows(client.get(f"{API}/allocations/", {"export": "csv"}))
    assert rows[0][0] == "Allocation"
    data = rows[1:]
    assert {row[2] for row in data} == {"North School"}  # never the other domain's
    assert len(data) == 2
    rows = csv_rows(client.get(f"{API}/allocations/", {"export": "csv", "project": w.project.pk}))
    assert [row[0] for row in rows[1:]] == [str(project_alloc.pk)]
    assert rows[1][3] == "Networks 101"
    assert rows[1][5:8] == ["10", "20", "100"]
    assert rows[1][9].endswith("+08:00") and rows[1][10] == ""
    xrows = xlsx_rows(client.get(f"{API}/allocations/", {"export": "xlsx"}))
    assert len(xrows) == 3 and xrows[1][5] in (10, 100)


def test_member_exports_only_their_own_limits_and_no_money(w):
    recharge(w, w.project, "5")
    rows = csv_rows(client_for(w.member).get(f"{API}/transactions/", {"export": "csv"}))
    assert rows == [TX_HEADERS]


@pytest.mark.parametrize("export", ["csv", "xlsx"])
def test_constant_number_of_queries(w, export):
    client = client_for(w.platform)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            for url in (
                f"{API}/transactions/",
                f"{API}/wallets/{wallet(w.project).pk}/recharges/",
                f"{API}/allocations/",
            ):
                body(client.get(url, {"export": export}))
        return len(captured)

    recharge(w, w.project, "1")
    few = count_queries()
    for _i in range(25):
        recharge(w, w.project, "1")
        recharge(w, w.domain, "1")
    assert count_queries() == few


def test_text_cannot_start_a_formula(w):
    tx = services.wallet_recharge(
        actor=w.platform,
        wallet=wallet(w.domain),
        amount="2",
        method="bank",
        reference="=HYPERLINK(1)",
        payer="@SUM(A1)",
    )
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    client = client_for(w.domain_admin)
    row = csv_rows(client.get(url, {"export": "csv"}))[1]
    assert row[0] == str(tx.pk)
    assert row[2] == "2.0000"  # amounts stay numbers, negative ones too
    assert (row[3], row[5]) == ("'@SUM(A1)", "'=HYPERLINK(1)")
    xrow = xlsx_rows(client.get(url, {"export": "xlsx"}))[1]
    assert (xrow[3], xrow[5]) == ("'@SUM(A1)", "'=HYPERLINK(1)")
