"""Portal pages of reports and statements: the catalogue per role, a report page (scope, filters,
bad filters, pagination, constant queries), the synchronous export, the statements pages."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from billing import services
from billing.models import Transaction, Wallet
from reports.models import Statement
from reports.statements import statement_issue
from teachcloud.testing.clock import pinned
from tenancy.models import Domain

pytestmark = pytest.mark.django_db


def wallet(tenant) -> Wallet:
    if isinstance(tenant, Domain):
        return Wallet.objects.get(domain=tenant)
    return Wallet.objects.get(project=tenant)


def recharge(w, tenant, amount: str, reference: str = "") -> Transaction:
    return services.wallet_recharge(
        actor=w.platform, wallet=wallet(tenant), amount=amount, method="bank", reference=reference
    )


def client_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def page(client: Client, url: str, **params) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def report_url(slug: str = "recharges") -> str:
    return reverse("portal:report", args=[slug])


def table_rows(html: str) -> list[str]:
    """The rows of the report table (excluding the empty state)."""
    body = html.split('class="table table-sm table-hover mb-0 align-middle report-table"')[1]
    body = body.split("<tbody>")[1].split("</tbody>")[0]
    return [row for row in re.findall(r"<tr>(.*?)</tr>", body, re.S) if "report-empty" not in row]


# -- The catalogue ---------------------------------------------------------------------------


def test_index_lists_the_reports_of_each_role(w):
    html = page(client_for(w.member), reverse("portal:reports"))
    assert 'data-report="recharges"' not in html
    assert 'data-report="revenue"' not in html
    assert "Reports" in html
    assert reverse("portal:statements") not in html  # a student sees no wallet

    html = page(client_for(w.domain_admin), reverse("portal:reports"))
    assert 'data-report="recharges"' in html
    assert "Each payment recorded into a wallet, newest first." in html
    assert 'data-report="revenue"' not in html
    assert reverse("portal:statements") in html  # nav

    html = page(client_for(w.platform), reverse("portal:reports"))
    assert 'data-report="recharges"' in html
    assert 'data-report="revenue"' in html


def test_index_needs_a_signed_in_user(w):
    response = Client().get(reverse("portal:reports"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"] or "login" in response["Location"]


def test_invisible_or_unknown_report_is_404(w):
    member = client_for(w.member)
    assert member.get(report_url("revenue")).status_code == 404
    assert member.get(report_url("recharges")).status_code == 404
    assert member.get(reverse("portal:report_export", args=["recharges"])).status_code == 404
    assert client_for(w.domain_admin).get(report_url("no-such-report")).status_code == 404
    assert client_for(w.platform).get(report_url("revenue")).status_code == 200


def test_every_report_page_renders_for_its_viewers(w):
    from reports.catalog import reports_for

    recharge(w, w.project, "20.5000")
    for user in (w.platform, w.domain_admin, w.project_assistant, w.member):
        client = client_for(user)
        for report in reports_for(user):
            html = page(client, report_url(report.slug))
            assert str(report.title) in html
            assert "Export CSV" in html and "Export XLSX" in html


# -- A report page ---------------------------------------------------------------------------


def test_report_page_shows_rows_in_scope_only(w):
    recharge(w, w.domain, "100.0000", reference="DOMAIN-1")
    recharge(w, w.project, "20.5000", reference="PROJECT-1")
    recharge(w, w.other_domain, "777.0000", reference="FOREIGN-1")
    recharge(w, w.other_project, "888.0000", reference="FOREIGN-2")

    html = page(client_for(w.domain_admin), report_url())
    rows = table_rows(html)
    assert len(rows) == 2
    assert "DOMAIN-1" in html and "PROJECT-1" in html
    assert "FOREIGN" not in html and "777.0000" not in html and "888.0000" not in html
    # Translated headers; money right-aligned with its 4 places.
    assert '<th class="text-end">Amount (CNY)</th>' in html
    assert re.search(r'<td class="text-end text-nowrap money">\s*100\.0000</td>', html)
    # The selects list only what the viewer can see.
    assert "North School" in html and "South School" not in html
    assert "Networks 101" in html and "Databases" not in html

    html = page(client_for(w.project_admin), report_url())
    assert "PROJECT-1" in html and "DOMAIN-1" not in html and "FOREIGN" not in html

    html = page(client_for(w.platform), report_url())
    assert len(table_rows(html)) == 4


def test_filters_by_project_domain_and_period(w):
    with pinned() as posted:  # all three on one day, even at midnight
        recharge(w, w.domain, "100.0000", reference="DOMAIN-1")
        recharge(w, w.project, "20.5000", reference="PROJECT-1")
        recharge(w, w.other_domain, "777.0000", reference="FOREIGN-1")
    client = client_for(w.platform)

    html = page(client, report_url(), project=w.project.pk)
    assert "PROJECT-1" in html and "DOMAIN-1" not in html and "FOREIGN-1" not in html
    assert f'<option value="{w.project.pk}" selected>' in html

    html = page(client, report_url(), domain=w.other_domain.pk)
    assert "FOREIGN-1" in html and "PROJECT-1" not in html and "DOMAIN-1" not in html

    today = timezone.localdate(posted)  # the day they were posted (Asia/Shanghai)
    html = page(client, report_url(), start=today.isoformat(), end=today.isoformat())
    assert len(table_rows(html)) == 3
    assert f'type="date" name="start" value="{today.isoformat()}"' in html
    # The export buttons carry the filters.
    period = f"start={today.isoformat()}&amp;end={today.isoformat()}"
    assert f'/reports/recharges/export/?{period}&amp;format=csv"' in html
    assert f'/reports/recharges/export/?{period}&amp;format=xlsx"' in html

    later = today + timedelta(days=1)
    html = page(client, report_url(), start=later.isoformat())
    assert table_rows(html) == []
    assert "No rows match these filters. Widen the period" in html


def test_empty_state_without_filters(w):
    html = page(client_for(w.domain_admin), report_url())
    assert table_rows(html) == []
    assert "Nothing recorded yet in your scope." in html


@pytest.mark.parametrize(
    "params, message",
    [
        ({"start": "yesterday"}, "is not a date: use YYYY-MM-DD."),
        ({"start": "2026-10-05", "end": "2026-10-01"}, "The period ends before it starts."),
        ({"project": "abc"}, "is not an id."),
    ],
)
def test_bad_filters_show_a_message_and_the_unfiltered_table(w, params, message):
    recharge(w, w.domain, "100.0000", reference="DOMAIN-1")
    html = page(client_for(w.domain_admin), report_url(), **params)
    assert "alert-danger" in html
    assert message in html
    assert "DOMAIN-1" in html  # unfiltered
    assert 'value="yesterday"' not in html  # the form is the unfiltered one


def test_a_foreign_domain_filter_is_refused(w):
    recharge(w, w.domain, "100.0000", reference="DOMAIN-1")
    html = page(client_for(w.domain_admin), report_url(), domain=w.other_domain.pk)
    assert f"There is no domain #{w.other_domain.pk} you can see." in html
    assert "DOMAIN-1" in html


def test_pagination_keeps_the_filters(w):
    with pinned() as posted:  # all on one day, even at midnight (ties: the newest id first)
        for number in range(33):
            recharge(w, w.project, f"{number + 1}.0000", reference=f"R-{number:03d}")
    client = client_for(w.domain_admin)
    today = timezone.localdate(posted).isoformat()
    html = page(client, report_url(), start=today)
    assert len(table_rows(html)) == 30
    assert "R-032" in html and "R-002" not in html  # newest first
    assert f"?start={today}&amp;page=2" in html
    assert "33 rows" in html
    html = page(client, report_url(), start=today, page=2)
    rows = table_rows(html)
    assert len(rows) == 3
    assert "R-002" in html and "R-000" in html and "R-032" not in html


def test_report_page_queries_do_not_grow_with_rows(w):
    def queries() -> int:
        client = client_for(w.domain_admin)
        client.get(report_url())  # warm the session
        with CaptureQueriesContext(connection) as ctx:
            html = page(client, report_url())
        return len(ctx), len(table_rows(html))

    for number in range(3):
        recharge(w, w.project, f"{number + 1}.0000")
    few, shown = queries()
    assert shown == 3
    for number in range(27):
        recharge(w, w.domain, f"{number + 1}.0000")
    many, shown = queries()
    assert shown == 30
    assert many == few


# -- The synchronous export ------------------------------------------------------------------


def test_small_export_streams_now(w):
    recharge(w, w.domain, "100.0000", reference="DOMAIN-1")
    recharge(w, w.project, "20.5000", reference="=HYPERLINK(1)")
    recharge(w, w.other_domain, "777.0000", reference="FOREIGN-1")
    client = client_for(w.domain_admin)
    url = reverse("portal:report_export", args=["recharges"])

    response = client.get(url, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="recharges-')
    raw = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(raw)))
    assert rows[0][:3] == ["Transaction", "Recorded at", "Wallet"]
    assert len(rows) == 3
    assert {row[5] for row in rows[1:]} == {"100.0000", "20.5000"}
    assert "'=HYPERLINK(1)" in raw

    response = client.get(url, {"format": "xlsx", "project": w.project.pk})
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = list(sheet.values)
    assert len(values) == 2
    assert Decimal(str(values[1][5])) == Decimal("20.5")


def test_export_with_bad_filters_or_format_goes_back_with_a_message(w):
    client = client_for(w.domain_admin)
    url = reverse("portal:report_export", args=["recharges"])
    response = client.get(url, {"format": "pdf"}, follow=True)
    assert response.redirect_chain[-1][0] == report_url()
    assert "Unknown export format" in response.content.decode()
    response = client.get(url, {"format": "csv", "start": "13/10/2026"}, follow=True)
    assert response.redirect_chain[-1][0] == report_url()
    assert "is not a date" in response.content.decode()


# -- Statements ------------------------------------------------------------------------------


def issue(tenant, month: date) -> Statement:
    statement = statement_issue(wallet=wallet(tenant), month=month, force=True)
    assert statement is not None
    return statement


def months(count: int, last: date = date(2026, 10, 1)) -> list[date]:
    result = []
    year, month = last.year, last.month
    for _ in range(count):
        result.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return list(reversed(result))


def statement_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-statement="(\d+)">', html)


def test_statements_are_scoped_filtered_and_newest_first(w):
    mine = [issue(w.project, month) for month in months(2)]
    domain_statement = issue(w.domain, date(2026, 10, 1))
    foreign = issue(w.other_domain, date(2026, 10, 1))
    url = reverse("portal:statements")

    html = page(client_for(w.domain_admin), url)
    shown = statement_rows(html)
    assert str(foreign.pk) not in shown
    assert set(shown) == {str(mine[0].pk), str(mine[1].pk), str(domain_statement.pk)}
    assert shown[-1] == str(mine[0].pk)  # September last: newest first

    html = page(client_for(w.project_admin), url)
    assert set(statement_rows(html)) == {str(s.pk) for s in mine}

    html = page(client_for(w.domain_admin), url, month="2026-09")
    assert statement_rows(html) == [str(mine[0].pk)]
    html = page(client_for(w.domain_admin), url, wallet=wallet(w.domain).pk)
    assert statement_rows(html) == [str(domain_statement.pk)]
    html = page(client_for(w.domain_admin), url, month="2026-13")
    assert statement_rows(html) == []
    assert "Give the month as YYYY-MM" in html

    html = page(client_for(w.member), url)
    assert statement_rows(html) == []
    assert "You see no wallet" in html


def test_statement_detail_and_pdf_are_scoped(w):
    recharge(w, w.project, "20.5000")
    statement = issue(w.project, months(1)[0])
    foreign = issue(w.other_project, months(1)[0])
    client = client_for(w.project_admin)

    html = page(client, reverse("portal:statement_detail", args=[statement.pk]))
    assert statement.wallet_name in html
    assert "Opening balance" in html and "Closing balance" in html
    assert f"{statement.closing_balance}" in html

    response = client.get(reverse("portal:statement_pdf", args=[statement.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert response["Content-Disposition"].startswith("attachment; filename=")

    for name in ("portal:statement_detail", "portal:statement_pdf"):
        assert client.get(reverse(name, args=[foreign.pk])).status_code == 404
        assert client_for(w.member).get(reverse(name, args=[statement.pk])).status_code == 404


def test_statements_page_queries_do_not_grow(w):
    def queries() -> tuple[int, int]:
        client = client_for(w.domain_admin)
        client.get(reverse("portal:statements"))
        with CaptureQueriesContext(connection) as ctx:
            html = page(client, reverse("portal:statements"))
        return len(ctx), len(statement_rows(html))

    all_months = months(30)
    for month in all_months[:3]:
        issue(w.project, month)
    few, shown = queries()
    assert shown == 3
    for month in all_months[3:]:
        issue(w.project, month)
    many, shown = queries()
    assert shown == 30
    assert many == few
