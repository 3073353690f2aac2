"""Monthly statements: figures traced to the ledger, issued once, PDF with Chinese text, API."""

from __future__ import annotations

import io
import re
import zlib
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from billing.charging import billing_run
from billing.models import Entry, Notification, Transaction, Wallet
from billing.services import wallet_adjust, wallet_recharge
from billing.tests import oracle
from billing.tests.oracle import CST, allocate
from reports.models import LineKind, Statement, StatementLine
from reports.pdf import FONT_NAME, statement_pdf
from reports.statements import (
    statement_issue,
    statement_ledger_closing,
    statement_line_entries,
    statements_issue,
)
from teachcloud.errors import ServiceError
from teachcloud.testing.clock import (
    local_today,
    month_of,
    month_start_after,
    next_month,
    pinned,
    previous_month,
)
from teachcloud.testing.factories import UserFactory
from tenancy.models import Domain, Project
from tenancy.services import domain_create, membership_add, project_create

pytestmark = pytest.mark.django_db

# The ledger lives in October 2026 (tenants, recharges and charges dated back): long past, so
# these fixed dates cannot be overtaken by "now"; what is posted now is dated from now.
OCT = date(2026, 10, 1)
T0 = datetime(2026, 10, 5, 10, 17, 23, tzinfo=CST)  # allocations start
SEPT = datetime(2026, 9, 15, tzinfo=CST)  # tenants exist before 1 October: October's fees are due


def hour(h: int) -> datetime:
    return datetime(2026, 10, 5, h, tzinfo=CST)


def posted_at(tx: Transaction, when: datetime) -> Transaction:
    """Date a recharge or adjustment back into October (the test clock is later)."""
    Transaction.objects.filter(pk=tx.pk).update(created_at=when)
    return tx


@pytest.fixture
def school():
    staff = oracle.setup_platform()
    domain = domain_create(actor=staff, name="北方理工大学", code="north")
    project = project_create(actor=staff, domain=domain, name="计算机网络", code="net101")
    Domain.objects.filter(pk=domain.pk).update(created_at=SEPT)
    Project.objects.filter(pk=project.pk).update(created_at=SEPT)
    Wallet.objects.exclude(kind="platform").update(created_at=SEPT)
    admin = UserFactory(home_domain=domain, email="teacher@example.edu")
    membership_add(actor=staff, project=project, user=admin, role="admin")
    Wallet.objects.filter(project=project).update(billing_admin=admin)
    dw, pw = Wallet.objects.get(domain=domain), Wallet.objects.get(project=project)
    posted_at(
        wallet_recharge(actor=staff, wallet=dw, amount="500", method="bank"),
        hour(1) - timedelta(days=3),
    )
    posted_at(
        wallet_recharge(actor=staff, wallet=pw, amount="200", method="bank", reference="R-1"),
        hour(1) - timedelta(days=3),
    )
    posted_at(
        wallet_adjust(actor=staff, wallet=pw, amount="-1.2345", reason="duplicate refund"),
        datetime(2026, 10, 20, 9, tzinfo=CST),
    )
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, T0, (2, 4, 50), project=project)
    billing_run(until=hour(12))  # October's fees (1 Oct) and the hours 10:00 and 11:00
    return staff, domain, project, admin


def ledger_total(wallet: Wallet) -> Decimal:
    return Entry.objects.filter(wallet=wallet).aggregate(s=Sum("amount"))["s"]


def traced(line: StatementLine) -> Decimal:
    return statement_line_entries(line).aggregate(s=Sum("amount"))["s"]


def lines(statement: Statement) -> dict[str, StatementLine]:
    return {line.kind: line for line in statement.lines.all()}


# Committed transactions, as in production: PostgreSQL's now(), which stamps the charges the
# engine writes, is the start of the transaction, and inside a test's single wrapping
# transaction that start precedes October's cut-off, so the late charge would count as posted
# before October's statement.
@pytest.mark.django_db(transaction=True)
def test_closing_equals_opening_plus_the_months_ledger_entries(school):
    staff, domain, project, admin = school
    pw, dw = Wallet.objects.get(project=project), Wallet.objects.get(domain=domain)
    issued_at = timezone.now()

    assert statements_issue(month=OCT, now=issued_at) == 3  # platform, domain, project

    st = Statement.objects.get(wallet=pw, month=OCT)
    by_kind = lines(st)
    # 10:17:23 → 12:00 is 6,157 s of 2 vCPU, 4 GiB RAM, 50 GiB disk at 0.05 / 0.02 / 0.0005.
    assert by_kind[LineKind.VCPU].quantity == Decimal("3.4206")  # 12,314 s / 3600
    assert by_kind[LineKind.VCPU].unit_price == Decimal("0.0500")
    assert by_kind[LineKind.VCPU].amount == Decimal("-0.1710")
    assert by_kind[LineKind.RAM].amount == Decimal("-0.1368")
    assert by_kind[LineKind.DISK].amount == Decimal("-0.0428")
    assert LineKind.CHARGE_ROUNDING not in by_kind  # 0.1710 + 0.1368 + 0.0428 = 0.1456 + 0.2050
    assert by_kind[LineKind.FEE].amount == Decimal("-10.0000")  # the member joined later: free
    assert by_kind[LineKind.RECHARGE].amount == Decimal("200.0000")
    assert by_kind[LineKind.ADJUSTMENT].amount == Decimal("-1.2345")
    charge_ids = set(
        Transaction.objects.filter(wallet=pw, kind="resource_charge").values_list("id", flat=True)
    )
    assert set(by_kind[LineKind.VCPU].transaction_ids) == charge_ids
    assert by_kind[LineKind.VCPU].price_version_id is not None

    assert st.opening_balance == Decimal("0")
    expected = Decimal("200") - Decimal("10") - Decimal("1.2345") - Decimal("0.3506")
    assert st.closing_balance == expected
    assert st.closing_balance == st.opening_balance + sum(x.amount for x in st.lines.all())
    assert st.closing_balance == statement_ledger_closing(st) == ledger_total(pw)
    assert Wallet.objects.get(pk=pw.pk).balance == st.closing_balance

    # Every line is traceable: its filter gives back the ledger entries it sums.
    resource = {LineKind.VCPU, LineKind.RAM, LineKind.DISK, LineKind.CHARGE_ROUNDING}
    for statement in Statement.objects.filter(month=OCT):
        for line in statement.lines.exclude(kind__in=resource):
            assert traced(line) == line.amount, (statement, line)
        charged = statement.lines.filter(kind__in=resource)
        if charged:
            assert traced(charged[0]) == sum(x.amount for x in charged)

    dst = Statement.objects.get(wallet=dw, month=OCT)
    assert lines(dst)[LineKind.CHARGES_RECEIVED].amount == Decimal("0.3506")
    assert dst.closing_balance == ledger_total(dw) == statement_ledger_closing(dst)
    assert dst.tenant_name == "北方理工大学"

    # "Statement ready" goes to the project wallet's billing admin, once.
    ready = Notification.objects.filter(event="statement_ready")
    assert [n.recipient for n in ready] == [admin]
    assert "2026-10" in ready[0].subject
    assert f"/statements/{st.pk}/pdf/" in ready[0].body and "/api/" not in ready[0].body

    # Issuing again (the task runs twice) changes nothing; a statement cannot be saved again.
    assert statements_issue(month=OCT, now=timezone.now()) == 0
    assert statement_issue(wallet=pw, month=OCT) == st
    assert Notification.objects.filter(event="statement_ready").count() == 1
    with pytest.raises(ValueError):
        st.save()

    # Later: the 12:00 hour of 5 October is charged late (catch-up) and a correction is posted,
    # both now (the charge stamped by the database's clock, the correction by Python's). They
    # land on the next statement: the one of the month the correction is posted in, issued at
    # 00:30 on the 1st after it (the months in between have no statement).
    billing_run(until=hour(13))
    correction = wallet_adjust(
        actor=staff, wallet=pw, amount="1.2345", reason="correction of 20 Oct"
    )
    posted = correction.created_at
    following = statement_issue(
        wallet=pw,
        month=month_of(posted),
        now=month_start_after(posted) + timedelta(minutes=30),
    )
    assert following.opening_balance == st.closing_balance
    following_lines = lines(following)
    assert following_lines[LineKind.VCPU].quantity == Decimal("2.0000")  # the late hour
    assert following_lines[LineKind.ADJUSTMENT].amount == Decimal("1.2345")
    assert following.closing_balance == ledger_total(pw) == statement_ledger_closing(following)
    # October's statement is unchanged.
    again = Statement.objects.get(pk=st.pk)
    assert again.closing_balance == st.closing_balance and again.lines.count() == len(by_kind)


def test_refuses_a_month_not_over_and_skips_idle_wallets(school):
    _staff, _domain, project, _admin = school
    pw = Wallet.objects.get(project=project)
    upcoming = next_month(local_today())  # not over whatever the date (and not this month,
    with pytest.raises(ServiceError) as exc:  # which could end while the test runs)
        statement_issue(wallet=pw, month=upcoming)
    assert exc.value.code == "month_not_over"
    assert statement_issue(wallet=pw, month=date(2026, 8, 1), now=timezone.now()) is None

    out = io.StringIO()
    call_command("statements_issue", "--month", "2026-10", stdout=out)
    assert out.getvalue().strip() == "statements issued: 3"
    call_command("statements_issue", "--month", "2026-10", stdout=out)  # a no-op
    assert Statement.objects.count() == 3
    with pytest.raises(CommandError):
        call_command("statements_issue", "--month", f"{upcoming:%Y-%m}")
    with pytest.raises(ServiceError) as exc:  # September would overlap October's statement
        statement_issue(wallet=pw, month=date(2026, 9, 1), now=timezone.now())
    assert exc.value.code == "statement_out_of_order"


def _pdf_text_codepoints(pdf: bytes) -> set[int]:
    """Unicode code points mapped by the PDF's ToUnicode CMaps (what a text extractor reads)."""
    points: set[int] = set()
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            data = zlib.decompressobj().decompress(raw)
        except zlib.error:
            data = raw
        if b"beginbfchar" in data or b"beginbfrange" in data:
            points |= {int(h, 16) for h in re.findall(rb"<([0-9A-Fa-f]{4})>\s*$", data, re.M)}
            points |= {
                int(h, 16) for h in re.findall(rb"<[0-9A-Fa-f]+>\s*<([0-9A-Fa-f]{4})>", data)
            }
    return points


def test_pdf_embeds_the_cjk_font_and_the_chinese_tenant_name(school):
    statements_issue(month=OCT, now=timezone.now())
    st = Statement.objects.get(wallet__domain__code="north", month=OCT)
    pdf = statement_pdf(st)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert FONT_NAME.encode() in pdf and b"/FontFile2" in pdf  # embedded TrueType
    mapped = _pdf_text_codepoints(pdf)
    assert {ord(ch) for ch in "北方理工大学"} <= mapped


def test_api_lists_scoped_statements_and_serves_the_pdf(school):
    staff, domain, project, admin = school
    statements_issue(month=OCT, now=timezone.now())
    pw = Wallet.objects.get(project=project)
    st = Statement.objects.get(wallet=pw, month=OCT)
    client = APIClient()

    client.force_authenticate(admin)  # project admin: only the project wallet's statements
    body = client.get("/api/v1/statements/").json()
    assert [r["id"] for r in body["results"]] == [st.pk]
    row = body["results"][0]
    assert row["month"] == "2026-10" and row["closing_balance"] == f"{st.closing_balance:.4f}"
    assert row["closing_rounded"] == "188.41"  # 188.4149, rounded once (half up)
    dw = Wallet.objects.get(domain=domain)
    other = Statement.objects.get(wallet=dw, month=OCT)
    assert client.get(f"/api/v1/statements/{other.pk}/").status_code == 404
    missing = client.get(f"/api/v1/statements/{other.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    response = client.get(f"/api/v1/statements/{st.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response.content.startswith(b"%PDF-")

    client.force_authenticate(staff)
    assert client.get("/api/v1/statements/", {"month": "2026-10"}).json()["count"] == 3
    assert client.get("/api/v1/statements/", {"month": "2026-09"}).json()["count"] == 0
    assert client.get("/api/v1/statements/", {"wallet": dw.pk}).json()["count"] == 1
    bad = client.get("/api/v1/statements/", {"month": "2026-13"})
    assert bad.status_code == 400 and bad.json()["code"]

    client.force_authenticate(UserFactory(home_domain=domain))  # a plain user: nothing
    assert client.get("/api/v1/statements/").json()["count"] == 0


def test_beat_issues_last_months_statements_at_0030_on_the_first(school):
    from reports.tasks import issue_statements
    from teachcloud.celery import app

    entry = app.conf.beat_schedule["reports-monthly-statements"]
    assert entry["task"] == "reports.tasks.issue_statements"
    cron = entry["schedule"]
    assert (cron.minute, cron.hour, cron.day_of_month) == ({30}, {0}, {1})
    assert app.conf.timezone == "Asia/Shanghai"
    with pinned():  # the task reads the clock itself: no month may end in between
        last_month = previous_month(local_today())
        issued = issue_statements.delay().get()
        assert issued == Statement.objects.filter(month=last_month).count() == 3
        assert issue_statements.delay().get() == 0
