"""`reports/` and `reports/{slug}/`: the catalogue per role, pages of rows as JSON, the whole
filtered set as CSV and XLSX, errors, and a query count that does not grow with the rows."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook
from rest_framework.test import APIClient

from billing import services
from billing.charging import billing_run, charge_month, rate_hour
from billing.models import Holding, PriceVersion, Wallet
from billing.tests.oracle import CST, allocate
from reports.tests.test_reports import ALL, OWN, build_ledger, finance_user, hour
from teachcloud.testing.factories import UserFactory, api_token
from tenancy.models import Domain
from tenancy.services import membership_add, project_create

pytestmark = pytest.mark.django_db

API = "/api/v1"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def ledger(world):
    return build_ledger(world)


def client_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def get(user, url: str, **params):
    return client_for(user).get(url, params)


def listed(user) -> list[str]:
    response = get(user, f"{API}/reports/", size=100)
    assert response.status_code == 200, response.content
    return [entry["slug"] for entry in response.json()["results"]]


def test_the_catalogue_lists_the_reports_each_role_may_open(world):
    w = world
    assert (
        set(listed(w.member)) == OWN == {"allocations", "prices", "member-consumption", "vm-usage"}
    )
    assert set(listed(w.outsider)) == OWN
    assert set(listed(finance_user())) == ALL
    assert set(listed(w.platform)) == ALL
    assert set(listed(w.project_assistant)) == OWN | {"recharges", "charges", "recharge-requests"}
    # Paginated like every list.
    page = get(w.member, f"{API}/reports/", size=3).json()
    assert page["count"] == 4 and len(page["results"]) == 3 and page["next"]
    assert get(w.member, page["next"]).json()["results"][0]["slug"] == listed(w.member)[3]
    entries = {e["slug"]: e for e in get(w.platform, f"{API}/reports/", size=100).json()["results"]}
    charges = entries["charges"]
    assert charges["title"] == "Charges" and charges["description"]
    assert charges["filters"] == ["domain", "project"]
    assert charges["columns"][0] == {"key": "transaction", "title": "Transaction", "kind": "text"}
    assert {"key": "amount", "title": "Amount (CNY)", "kind": "money"} in charges["columns"]
    assert entries["prices"]["filters"] == []
    assert entries["revenue"]["filters"] == ["domain"]
    assert get(None, f"{API}/reports/").status_code == 401


def test_rows_as_json_pages(ledger):
    w = ledger
    url = f"{API}/reports/charges/"
    first = get(w.domain_admin, url, size=2, start="2026-10-05", end="2026-10-05")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["count"] == 6 and len(body["results"]) == 2 and body["previous"] is None
    assert "start=2026-10-05" in body["next"] and "size=2" in body["next"]
    row = body["results"][0]
    assert row["hour"] == "2026-10-05T12:00:00+08:00"
    assert isinstance(row["transaction"], int) and isinstance(row["vcpus"], int)
    assert row["vcpu_hour"] == "0.0500"  # money: a decimal string with 4 places
    every = get(w.domain_admin, url, size=100).json()["results"]
    north_domain = next(
        r for r in every if r["project"] is None and r["start"].endswith("10:17:23+08:00")
    )
    assert north_domain["amount"] == "0.2912" and north_domain["end"] == "2026-10-05T11:00:00+08:00"
    third = get(w.domain_admin, url, size=2, page=3, start="2026-10-05", end="2026-10-05").json()
    assert third["next"] is None and len(third["results"]) == 2
    consumption = get(w.member, f"{API}/reports/member-consumption/").json()["results"]
    assert consumption == [
        {
            "project": "Networks 101",
            "username": "member",
            "real_name": w.member.real_name,
            "consumption": "0.4040",
            "budget": "10.0000",
            "budget_used": "0.0404",
        }
    ]
    arrears = get(w.platform, f"{API}/reports/arrears/").json()["results"]
    assert arrears[0]["locked"] is True and isinstance(arrears[0]["age_days"], int)
    assert arrears[0]["billing_admin"] is None


def test_errors(ledger):
    w = ledger
    for user, slug in [(w.member, "charges"), (w.domain_admin, "revenue"), (w.platform, "nope")]:
        response = get(user, f"{API}/reports/{slug}/")
        assert response.status_code == 404, (user, slug)
        assert response.json()["code"] == "not_found"
    for params in (
        {"start": "2026-02-30"},
        {"start": "2026-10-05", "end": "2026-10-01"},
        {"domain": w.other_domain.pk},  # out of the domain admin's sight
        {"project": "x"},
    ):
        response = get(w.domain_admin, f"{API}/reports/charges/", **params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_filter"
    bad_export = get(w.platform, f"{API}/reports/charges/", export="pdf")
    assert bad_export.status_code == 400 and bad_export.json()["code"] == "invalid_export"
    assert get(w.platform, f"{API}/reports/charges/", size="0").status_code == 400
    assert get(None, f"{API}/reports/vm-usage/").status_code == 401


# -- Exports ----------------------------------------------------------------------------------

# Per report, filters that make the set deterministic (hours of a running VM grow with the
# clock) and that really filter something.
EXPORT_PARAMS = {
    "recharges": {"domain": "north"},
    "charges": {"domain": "north", "start": "2026-10-05", "end": "2026-10-05"},
    "allocations": {"domain": "north"},
    "prices": {},
    "member-consumption": {"project": "net101"},
    "vm-usage": {"start": "2026-10-05", "end": "2026-10-05"},
    "revenue": {"domain": "south"},
    "arrears": {},
    "recharge-requests": {},
}


def params_for(w, slug: str) -> dict:
    params = dict(EXPORT_PARAMS[slug])
    if params.get("domain"):
        params["domain"] = (w.domain if params["domain"] == "north" else w.other_domain).pk
    if params.get("project"):
        params["project"] = w.project.pk
    return params


def body(response) -> bytes:
    assert response.status_code == 200, getattr(response, "content", b"")
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def as_csv_text(value) -> str:
    """A JSON cell as the CSV writes it (None empty, booleans as Python's text)."""
    if value is None:
        return ""
    return {True: "True", False: "False"}[value] if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("slug", sorted(ALL))
def test_csv_and_xlsx_hold_the_whole_filtered_set(ledger, slug):
    w = ledger
    services.recharge_request_create(
        actor=w.project_admin, wallet=w.project.wallet, amount="5", method="bank"
    )
    url = f"{API}/reports/{slug}/"
    params = params_for(w, slug)
    entry = next(
        e
        for e in get(w.platform, f"{API}/reports/", size=100).json()["results"]
        if e["slug"] == slug
    )
    headers = [column["title"] for column in entry["columns"]]
    keys = [column["key"] for column in entry["columns"]]
    pages, page = [], 1
    while True:  # the JSON rows, two to a page
        data = get(w.platform, url, size=2, page=page, **params).json()
        pages += data["results"]
        if not data["next"]:
            break
        page += 1
    assert pages, slug  # the scenario has rows in every report
    unfiltered = get(w.platform, url, size=100).json()["count"]
    if params and slug not in ("vm-usage", "member-consumption"):
        assert unfiltered > len(pages), slug  # the filter really filters

    csv_response = get(w.platform, url, export="csv", **params)
    assert csv_response["Content-Type"].startswith("text/csv")
    assert f'filename="{slug}-' in csv_response["Content-Disposition"]
    table = list(csv.reader(io.StringIO(body(csv_response).decode("utf-8-sig"))))
    assert table[0] == headers
    assert table[1:] == [[as_csv_text(row[key]) for key in keys] for row in pages]

    xlsx_response = get(w.platform, url, export="xlsx", **params)
    assert xlsx_response["Content-Type"] == XLSX
    sheet = load_workbook(io.BytesIO(body(xlsx_response))).active
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == headers
    assert len(values) == len(pages) + 1
    for row, cells in zip(pages, values[1:], strict=True):
        for key, column, cell in zip(keys, entry["columns"], cells, strict=True):
            if row[key] is None:
                assert cell is None, (slug, key)  # null in JSON, no cell in XLSX
            elif column["kind"] == "money":
                assert Decimal(str(cell)).quantize(Decimal("0.0001")) == Decimal(row[key])
            elif column["kind"] == "number":
                assert Decimal(str(cell)) == Decimal(str(row[key])), (slug, key)
            else:  # an empty text is no cell at all in XLSX
                assert cell == (row[key] or None), (slug, key)
    second = next(iter(sheet.iter_rows(min_row=2, max_row=2)))
    money_cells = [
        cell
        for column, cell in zip(entry["columns"], second, strict=True)
        if column["kind"] == "money" and cell.value is not None
    ]
    assert all(cell.number_format == "0.0000" for cell in money_cells)


# -- Query count ------------------------------------------------------------------------------


def _charges(w, i: int) -> None:
    if i == 0:
        services.wallet_recharge(actor=w.platform, wallet=w.domain.wallet, amount="999", method="x")
        allocate(w.platform, hour(10), (1, 1, 1), domain=w.domain)
    billing_run(until=hour(10) + timedelta(hours=i + 1))  # one more hour, one more line


def _allocations(w, i: int) -> None:
    allocate(w.platform, hour(10) + timedelta(hours=i), (i + 1, 1, 1), domain=w.domain)


def _prices(w, i: int) -> None:
    PriceVersion.objects.create(  # history (the service refuses the past)
        effective_from=datetime(2025, 1, 1, tzinfo=CST) + timedelta(days=i),
        vcpu_hour=Decimal("0.05"),
        ram_gib_hour=Decimal("0.02"),
        disk_gib_hour=Decimal("0.0005"),
        domain_fee=Decimal("100"),
        project_fee=Decimal("10"),
        user_fee=Decimal("1"),
    )


def _holding(w, user, i: int) -> None:
    Holding.objects.create(
        project=w.project,
        user=user,
        server_ref=f"vm-{i}",
        vcpus=1,
        ram_gib=1,
        disk_gib=1,
        start=hour(10) + timedelta(hours=i),
        end=hour(10) + timedelta(hours=i, minutes=30),
    )


def _vm_usage(w, i: int) -> None:
    _holding(w, w.member, i)


def _member_consumption(w, i: int) -> None:
    student = UserFactory(home_domain=w.domain)
    membership_add(actor=w.platform, project=w.project, user=student)
    _holding(w, student, i)
    rate_hour(hour(10) + timedelta(hours=i))


def _revenue(w, i: int) -> None:
    if i == 0:
        Domain.objects.filter(pk=w.domain.pk).update(created_at=datetime(2020, 1, 1, tzinfo=CST))
    charge_month(datetime(2023 + i // 12, 1 + i % 12, 1, tzinfo=CST))


def _arrears(w, i: int) -> None:
    project = project_create(actor=w.platform, domain=w.domain, name=f"Course {i}", code=f"c{i}")
    services.wallet_adjust(actor=w.platform, wallet=project.wallet, amount="-1", reason="test")


def _recharges(w, i: int) -> None:
    services.wallet_recharge(actor=w.platform, wallet=w.domain.wallet, amount="1", method="x")


def _recharge_requests(w, i: int) -> None:
    services.recharge_request_create(
        actor=w.domain_admin, wallet=w.domain.wallet, amount="1", method="bank"
    )


GROW = {
    "charges": _charges,
    "allocations": _allocations,
    "prices": _prices,
    "vm-usage": _vm_usage,
    "member-consumption": _member_consumption,
    "revenue": _revenue,
    "arrears": _arrears,
    "recharges": _recharges,
    "recharge-requests": _recharge_requests,
}


@pytest.fixture
def tenants(world):
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    services.wallet_open(domain=world.domain)
    services.wallet_open(project=world.project)
    return world


def test_every_report_has_a_query_count_case():
    assert set(GROW) == ALL


@pytest.mark.parametrize("slug", sorted(ALL))
def test_query_count_does_not_grow_with_the_rows(tenants, slug):
    w = tenants
    url = f"{API}/reports/{slug}/"
    base = get(w.platform, url).json()["count"]  # e.g. the price plan of the migration
    for i in range(3):
        GROW[slug](w, i)

    def measure(expected: int) -> int:
        client = client_for(w.platform)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, {"size": 100})
        assert response.status_code == 200, response.content
        assert response.json()["count"] == base + expected
        assert len(response.json()["results"]) == base + expected
        return len(queries)

    small = measure(3)
    for i in range(3, 30):
        GROW[slug](w, i)
    assert measure(30) == small
    assert Wallet.objects.filter(kind="platform").exists()
