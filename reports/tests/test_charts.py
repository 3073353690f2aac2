"""Dashboard charts: figures traced to the ledger, the pages that draw them, a fixed number of
queries whatever the data, and tenant isolation."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing import charging, services
from billing.models import Entry, Holding, MemberConsumption, Transaction, TransactionKind, Wallet
from billing.services import wallet_adjust, wallet_recharge
from billing.tests import oracle
from billing.tests.oracle import CST, allocate
from reports import charts
from teachcloud.testing.factories import UserFactory
from tenancy import selectors as tenancy_selectors
from tenancy.models import Membership
from tenancy.services import domain_create, domain_role_set, membership_add, project_create

pytestmark = pytest.mark.django_db

PAID = (TransactionKind.RESOURCE_CHARGE, TransactionKind.MANAGEMENT_FEE)


def posted_at(tx: Transaction, when: datetime) -> Transaction:
    """Date a recharge or adjustment back (the ledger's clock is now)."""
    Transaction.objects.filter(pk=tx.pk).update(created_at=when)
    return tx


class School:
    """A platform, two domains with a project each (charged hourly for three days), a student
    whose VM was rated all that time and still runs, recharges and an adjustment on earlier
    days."""

    def __init__(self) -> None:
        self.now = timezone.now()
        self.staff = oracle.setup_platform()
        self.domain = domain_create(actor=self.staff, name="北方理工大学", code="north")
        self.project = project_create(
            actor=self.staff, domain=self.domain, name="计算机网络", code="net101"
        )
        self.idle = project_create(
            actor=self.staff, domain=self.domain, name="Idle course", code="idle1"
        )
        self.other_domain = domain_create(actor=self.staff, name="Southern Secret", code="south")
        self.other_project = project_create(
            actor=self.staff, domain=self.other_domain, name="Hidden Databases", code="db201"
        )
        self.domain_admin = UserFactory(home_domain=self.domain)
        domain_role_set(actor=self.staff, domain=self.domain, user=self.domain_admin, role="admin")
        self.teacher = UserFactory(home_domain=self.domain)
        membership_add(actor=self.staff, project=self.project, user=self.teacher, role="admin")
        self.student = UserFactory(home_domain=self.domain, real_name="李雷")
        self.membership = membership_add(
            actor=self.staff, project=self.project, user=self.student, role="member"
        )
        self.dw = Wallet.objects.get(domain=self.domain)
        self.pw = Wallet.objects.get(project=self.project)
        self.other_pw = Wallet.objects.get(project=self.other_project)
        days_ago = self.now - timedelta(days=5)
        for wallet, amount in ((self.dw, "500"), (self.pw, "200"), (self.other_pw, "300")):
            posted_at(
                wallet_recharge(actor=self.staff, wallet=wallet, amount=amount, method="bank"),
                days_ago,
            )
        other_dw = Wallet.objects.get(domain=self.other_domain)
        posted_at(
            wallet_recharge(actor=self.staff, wallet=other_dw, amount="400", method="bank"),
            days_ago,
        )
        posted_at(
            wallet_adjust(actor=self.staff, wallet=self.pw, amount="-1.2345", reason="refund"),
            self.now - timedelta(days=1),
        )
        start = charging.floor_hour(self.now) - timedelta(days=3) + timedelta(minutes=17)
        allocate(self.staff, start, (4, 8, 100), domain=self.domain)
        allocate(self.staff, start, (2, 4, 50), project=self.project)
        allocate(self.staff, start, (3, 6, 60), domain=self.other_domain)
        allocate(self.staff, start, (1, 2, 10), project=self.other_project)
        services.allocation_set(
            actor=self.staff,
            target=services.target_of(membership=self.membership),
            vcpus=2,
            ram_gib=4,
            disk_gib=20,
            budget="5",
        )
        Holding.objects.create(
            membership=self.membership,
            project=self.project,
            user=self.student,
            server_ref="vm-1",
            vcpus=1,
            ram_gib=2,
            disk_gib=20,
            start=start,
            end=None,
        )
        charging.billing_run(until=self.now)


@pytest.fixture
def school() -> School:
    return School()


def booked_entries(wallet: Wallet) -> list[tuple[datetime, Decimal, str, bool]]:
    """(booked, amount, kind, paid by this wallet) of every entry, computed here in Python."""
    rows = []
    for e in Entry.objects.filter(wallet=wallet).select_related("transaction"):
        tx = e.transaction
        rows.append(
            (tx.period_start or tx.created_at, e.amount, tx.kind, tx.wallet_id == wallet.pk)
        )
    return rows


def window(now: datetime, days: int = 30) -> list[tuple[str, datetime, datetime]]:
    today = now.astimezone(CST).date()
    out = []
    for i in range(days - 1, -1, -1):
        day = today - timedelta(days=i)
        start = datetime.combine(day, time(), tzinfo=CST)
        out.append((day.isoformat(), start, start + timedelta(days=1)))
    return out


# -- Figures against the ledger ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["dw", "pw"])
def test_closing_balances_and_spending_day_by_day_are_the_ledger(school, which):
    wallet = getattr(school, which)
    history = charts.wallet_history(wallet=wallet, now=school.now)
    entries = booked_entries(wallet)
    assert [d["date"] for d in history["days"]] == [d for d, _s, _e in window(school.now)]
    spent_days = 0
    for row, (day, start, end) in zip(history["days"], window(school.now), strict=True):
        closing = sum((a for b, a, _k, _p in entries if b < end), Decimal(0))
        spending = -sum(
            (a for b, a, k, p in entries if start <= b < end and k in PAID and p), Decimal(0)
        )
        recharges = sum(
            (a for b, a, k, _p in entries if start <= b < end and k == "recharge"), Decimal(0)
        )
        assert (Decimal(row["balance"]), Decimal(row["spending"])) == (closing, spending), day
        assert Decimal(row["recharges"]) == recharges
        spent_days += spending > 0
    assert spent_days >= 3  # three days of hourly charges: the scenario is not trivial
    wallet.refresh_from_db()
    assert Decimal(history["days"][-1]["balance"]) == wallet.balance
    assert sum(Decimal(d["recharges"]) for d in history["days"]) == Decimal(
        "500" if which == "dw" else "200"
    )
    assert history["empty"] is False
    assert history["balance"]["datasets"][0]["data"] == [d["balance"] for d in history["days"]]


def test_domain_income_is_what_its_projects_paid(school):
    history = charts.wallet_history(wallet=school.dw, now=school.now)
    project_days = charts.wallet_history(wallet=school.pw, now=school.now)["days"]
    assert [d["income"] for d in history["days"]] == [d["spending"] for d in project_days]
    assert sum(Decimal(d["income"]) for d in history["days"]) > 0
    labels = [d["label"] for d in history["spending"]["datasets"]]
    assert labels == ["Paid to the platform", "Received from projects"]


def test_adjustment_moves_the_balance_but_is_not_spending(school):
    history = charts.wallet_history(wallet=school.pw, now=school.now)["days"]
    entries = booked_entries(school.pw)
    paid = -sum((a for _b, a, k, p in entries if k in PAID and p), Decimal(0))
    assert sum(Decimal(d["spending"]) for d in history) == paid
    assert Decimal(history[-1]["balance"]) == Decimal("200") - paid - Decimal("1.2345")


def test_a_reversed_charge_nets_out_of_the_spending(school):
    charge = Transaction.objects.filter(
        wallet=school.pw, kind=TransactionKind.RESOURCE_CHARGE
    ).first()
    amount = -charge.entries.get(wallet=school.pw).amount
    before = sum(
        Decimal(d["spending"])
        for d in charts.wallet_history(wallet=school.pw, now=school.now)["days"]
    )
    services.transaction_reverse(actor=school.staff, tx=charge, reason="wrong hour")
    after_days = charts.wallet_history(wallet=school.pw, now=timezone.now())["days"]
    assert sum(Decimal(d["spending"]) for d in after_days) == before - amount
    school.pw.refresh_from_db()
    assert Decimal(after_days[-1]["balance"]) == school.pw.balance


def test_new_wallet_is_an_empty_chart_with_a_line_saying_what_comes(school):
    fresh = Wallet.objects.get(project=school.idle)
    history = charts.wallet_history(wallet=fresh, now=school.now)
    assert history["empty"] and history["balance"]["empty"] and history["spending"]["empty"]
    assert "first recharge" in history["balance"]["empty_text"]
    assert all(d["balance"] == "0.0000" for d in history["days"])


def test_spending_by_project_sums_to_the_project_wallets_outflows(school):
    chart = charts.spending_by_child(domain=school.domain, now=school.now)
    start = window(school.now)[0][1]
    outflow = Decimal(0)
    for wallet in Wallet.objects.filter(project__domain=school.domain):
        outflow -= sum(
            (a for b, a, k, p in booked_entries(wallet) if b >= start and k in PAID and p),
            Decimal(0),
        )
    assert outflow > 0
    assert sum(Decimal(r["amount"]) for r in chart["rows"]) == outflow == Decimal(chart["total"])
    assert [r["name"] for r in chart["rows"]] == ["计算机网络"]  # the idle course paid nothing
    assert chart["id"] == "chart-spending-by-project" and chart["type"] == "doughnut"


def test_spending_by_domain_is_what_the_domains_paid_the_platform(school):
    chart = charts.spending_by_child(platform=True, now=school.now)
    by_name = {r["name"]: Decimal(r["amount"]) for r in chart["rows"]}
    for domain in (school.domain, school.other_domain):
        paid = -sum(
            (a for _b, a, k, p in booked_entries(domain.wallet) if k in PAID and p), Decimal(0)
        )
        assert by_name[domain.name] == paid > 0
    platform = Wallet.objects.get(kind="platform")
    revenue = charts.wallet_history(wallet=platform, now=school.now)["days"]
    assert sum(Decimal(d["income"]) for d in revenue) == sum(by_name.values())


def test_spending_by_member_sums_their_consumption(school):
    other = UserFactory(home_domain=school.domain)
    membership_add(actor=school.staff, project=school.project, user=other, role="member")
    MemberConsumption.objects.create(
        project=school.project,
        user=other,
        hour=charging.floor_hour(school.now) - timedelta(days=40),  # outside the 30 days
        amount=Decimal("9.0000"),
    )
    chart = charts.spending_by_child(project=school.project, now=school.now)
    rated = sum(
        MemberConsumption.objects.filter(project=school.project, user=school.student).values_list(
            "amount", flat=True
        )
    )
    assert rated > 0
    assert chart["rows"] == [
        {"id": school.student.pk, "name": f"李雷 ({school.student.username})", "amount": str(rated)}
    ]


def test_many_children_are_topped_with_others_and_still_sum(school):
    rows = [{"id": i, "name": f"p{i}", "value": Decimal(i)} for i in range(1, 21)]
    top = charts._top(rows, limit=5)
    assert [r["name"] for r in top[:5]] == ["p20", "p19", "p18", "p17", "p16"]
    assert top[5]["value"] == sum(range(1, 16)) and len(top) == 6


def test_allocation_used_and_free_add_up_at_every_level(school):
    platform = charts.allocation_usage(platform=True)
    assert platform["resources"][0] == {
        "resource": "vcpus",
        "total": 100_000,
        "used": 7,
        "free": 99_993,
    }
    domain = charts.allocation_usage(domain=school.domain)
    assert [(r["total"], r["used"], r["free"]) for r in domain["resources"]] == [
        (4, 2, 2),
        (8, 4, 4),
        (100, 50, 50),
    ]
    assert domain["datasets"][0]["data"] == ["50.0", "50.0", "50.0"]
    project = charts.allocation_usage(project=school.project)
    assert [(r["total"], r["used"], r["free"], r["limits"]) for r in project["resources"]] == [
        (2, 1, 1, 2),
        (4, 2, 2, 4),
        (50, 20, 30, 20),
    ]
    for chart in (platform, domain, project):
        for r in chart["resources"]:
            assert r["used"] + r["free"] == r["total"]
    assert "Member limits given out: 2 vCPU, 4 GiB RAM, 20 GiB disk" in project["note"]
    fresh = charts.allocation_usage(project=school.idle)
    assert fresh["empty"] and "no allocation yet" in fresh["empty_text"]


def test_member_budgets_are_the_member_table_figures(school):
    chart = charts.member_budgets(project=school.project)
    by_user = {m["user_id"]: m for m in chart["members"]}
    membership = tenancy_selectors.with_consumption(
        Membership.objects.filter(pk=school.membership.pk)
    ).get()
    consumption = tenancy_selectors.membership_consumption(membership)
    assert consumption > 0
    student = by_user[school.student.pk]
    assert student["consumption"] == str(consumption)
    assert student["budget"] == "5.0000"
    assert Decimal(student["percent"]) == (consumption * 100 / 5).quantize(Decimal("0.1"))
    assert by_user[school.teacher.pk]["budget"] is None  # no budget: no bar
    assert by_user[school.teacher.pk]["percent"] is None


def test_student_usage_per_day_and_limit_against_held(school):
    [item] = charts.member_usage_history(user=school.student, now=school.now)
    rated = {}
    for c in MemberConsumption.objects.filter(user=school.student):
        day = c.hour.astimezone(CST).date().isoformat()
        rated[day] = rated.get(day, Decimal(0)) + c.amount
    assert {d["date"]: Decimal(d["consumption"]) for d in item["days"] if d["date"] in rated} == (
        rated
    )
    total = sum(rated.values())
    assert Decimal(item["days"][-1]["total"]) == total == Decimal(item["total"])
    assert item["budget"] == "5.0000"
    budget_line = item["consumption"]["datasets"][2]
    assert budget_line["label"] == "Budget" and set(budget_line["data"]) == {"5.0000"}
    assert [(r["total"], r["used"], r["free"]) for r in item["limit"]["resources"]] == [
        (2, 1, 1),
        (4, 2, 2),
        (20, 20, 0),
    ]
    assert item["consumption"]["id"] == f"chart-usage-{school.project.pk}"


# -- Pages ------------------------------------------------------------------------------------


def chart_data(body: str, data_id: str) -> dict:
    match = re.search(rf'<script id="{data_id}" type="application/json">(.*?)</script>', body)
    assert match, data_id
    return json.loads(match.group(1))


def test_domain_billing_page_draws_its_charts(school, client):
    client.force_login(school.domain_admin)
    response = client.get(reverse("portal:domain_billing", args=[school.domain.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    for chart_id in ("chart-balance", "chart-spending", "chart-spending-by-project"):
        assert f'<canvas id="{chart_id}" data-chart=' in body
    assert 'id="chart-allocation"' in body
    assert "vendor/chartjs/chart.umd.min.js" in body and "js/charts.js" in body
    data = chart_data(body, "chart-balance-data")
    school.dw.refresh_from_db()
    assert data["datasets"][0]["data"][-1] == str(school.dw.balance)
    assert chart_data(body, "chart-spending-by-project-data")["labels"] == ["计算机网络"]
    # Tenant isolation: nothing of the other domain, in the charts or anywhere on the page.
    assert "Hidden Databases" not in body and "Southern Secret" not in body


def test_project_billing_page_draws_its_charts(school, client):
    client.force_login(school.teacher)
    response = client.get(reverse("portal:project_billing", args=[school.project.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    for chart_id in (
        "chart-balance",
        "chart-spending",
        "chart-spending-by-member",
        "chart-allocation",
        "chart-budgets",
    ):
        assert f'<canvas id="{chart_id}"' in body, chart_id
    budgets = chart_data(body, "chart-budgets-data")
    assert f"李雷 ({school.student.username})" in budgets["labels"]
    assert "<details" in body and "Member limits given out" in body


def test_my_usage_page_draws_the_students_charts(school, client):
    client.force_login(school.student)
    response = client.get(reverse("portal:my_usage"))
    assert response.status_code == 200
    body = response.content.decode()
    pk = school.project.pk
    assert f'<canvas id="chart-usage-{pk}"' in body and f'<canvas id="chart-limit-{pk}"' in body
    assert chart_data(body, f"chart-usage-{pk}-data")["datasets"][1]["label"] == "Total so far"


def test_platform_dashboard_draws_revenue_domains_and_capacity(school, client):
    client.force_login(school.staff)
    response = client.get(reverse("portal:dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    for chart_id in ("chart-balance", "chart-spending", "chart-spending-by-domain"):
        assert f'<canvas id="{chart_id}"' in body, chart_id
    assert '<canvas id="chart-allocation"' in body
    by_domain = chart_data(body, "chart-spending-by-domain-data")
    assert set(by_domain["labels"]) == {"北方理工大学", "Southern Secret"}


def test_domain_admin_dashboard_has_no_platform_charts(school, client):
    client.force_login(school.domain_admin)
    body = client.get(reverse("portal:dashboard")).content.decode()
    assert "chart-spending-by-domain" not in body and "chart.umd.min.js" not in body


def test_empty_project_page_says_what_will_appear(school, client):
    client.force_login(school.domain_admin)
    body = client.get(reverse("portal:project_billing", args=[school.idle.pk])).content.decode()
    assert 'id="chart-balance-empty"' in body and '<canvas id="chart-balance"' not in body
    assert "first recharge" in body
    assert 'id="chart-allocation-empty"' in body


# -- Query counts -----------------------------------------------------------------------------


def grow(school: School, n: int) -> None:
    """n more projects (the student in each), members with consumption, a few domains."""
    for i in range(n):
        project = project_create(
            actor=school.staff, domain=school.domain, name=f"Extra {i}", code=f"extra{i}"
        )
        student = UserFactory(home_domain=school.domain)
        membership_add(actor=school.staff, project=school.project, user=student, role="member")
        membership_add(actor=school.staff, project=project, user=student, role="member")
        wallet_recharge(actor=school.staff, wallet=project.wallet, amount="10", method="bank")
        membership_add(actor=school.staff, project=project, user=school.student, role="member")
        if i < 3:
            domain = domain_create(actor=school.staff, name=f"Extra school {i}", code=f"xs{i}")
            wallet_recharge(actor=school.staff, wallet=domain.wallet, amount="10", method="bank")
        MemberConsumption.objects.create(
            project=school.project,
            user=student,
            hour=charging.floor_hour(school.now) - timedelta(days=i % 20, hours=1),
            amount=Decimal("0.5000"),
        )


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_page_queries_do_not_grow_with_the_data(school, client):
    pages = [
        (school.domain_admin, reverse("portal:domain_billing", args=[school.domain.pk])),
        (school.teacher, reverse("portal:project_billing", args=[school.project.pk])),
        (school.staff, reverse("portal:dashboard")),
        (school.student, reverse("portal:my_usage")),
    ]
    before = []
    for user, url in pages:
        client.force_login(user)
        queries(client, url)  # warm caches (content types, sessions)
        before.append(queries(client, url))
    grow(school, 10)
    after = []
    for user, url in pages:
        client.force_login(user)
        queries(client, url)
        after.append(queries(client, url))
    assert after == before


def test_chart_functions_run_a_fixed_number_of_queries(school, django_assert_num_queries):
    grow(school, 10)
    with django_assert_num_queries(2):
        charts.wallet_history(wallet=school.dw, now=school.now)
    with django_assert_num_queries(1):
        charts.spending_by_child(domain=school.domain, now=school.now)
    with django_assert_num_queries(1):
        charts.spending_by_child(project=school.project, now=school.now)
    with django_assert_num_queries(2):
        charts.allocation_usage(project=school.project)
    with django_assert_num_queries(2):
        charts.member_budgets(project=school.project)
    with django_assert_num_queries(4):
        charts.member_usage_history(user=school.student, now=school.now)


def test_chart_data_is_json_with_decimal_strings(school):
    bundle = charts.project_charts(project=school.project, wallet=school.pw, now=school.now)
    encoded = json.dumps(bundle)  # plain data: no Decimal, no lazy strings
    assert '"balance"' in encoded
    amounts = bundle["balance"]["datasets"][0]["data"]
    assert all(re.fullmatch(r"-?\d+\.\d{4}", a) for a in amounts)


def test_dates_are_shanghai_days(school):
    """An entry booked at 23:30 Shanghai on a day counts on that day, not the UTC one."""
    wallet = Wallet.objects.get(project=school.idle)
    late = datetime.combine(school.now.astimezone(CST).date(), time(0, 30), tzinfo=CST)
    tx = wallet_recharge(actor=school.staff, wallet=wallet, amount="7", method="bank")
    posted_at(tx, late - timedelta(hours=1))  # 23:30 yesterday, Shanghai (15:30 UTC)
    days = charts.wallet_history(wallet=wallet, now=school.now)["days"]
    assert days[-2]["recharges"] == "7.0000" and days[-1]["recharges"] == "0.0000"
    per_day = defaultdict(Decimal)
    for d in days:
        per_day[d["date"]] += Decimal(d["recharges"])
    assert sum(per_day.values()) == Decimal("7")


# -- In a real browser ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_chromium_draws_every_chart_of_the_project_page(live_server, settings):
    """Chart.js (served from our static files) sizes and draws each canvas, with no script
    error; the figures table opens."""
    from teachcloud.testing.browser import chromium, settle, watch_csp

    settings.LANGUAGE_CODE = "en"
    school = School()
    client_cookie = _session_cookie(school.teacher)
    url = live_server.url + reverse("portal:project_billing", args=[school.project.pk])
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{**client_cookie, "url": live_server.url}])
        page = context.new_page()
        errors: list[str] = []
        watch_csp(context, errors)  # sized by Chart.js through CSSOM, no inline style
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda request: errors.append(f"failed to load {request.url}"))
        page.goto(url)
        page.wait_for_load_state("networkidle")
        drawn = page.evaluate(
            """() => Array.from(document.querySelectorAll("canvas[data-chart]")).map(c => ({
                id: c.id, width: c.width, height: c.height, drawn: c.dataset.chartDrawn === "1",
                chart: !!window.Chart.getChart(c)}))"""
        )
        assert errors == []
        assert {c["id"] for c in drawn} == {
            "chart-balance",
            "chart-spending",
            "chart-spending-by-member",
            "chart-allocation",
            "chart-budgets",
        }
        for canvas in drawn:
            assert canvas["drawn"] and canvas["chart"], canvas
            assert canvas["width"] > 300 and canvas["height"] > 150, canvas
        page.locator("#chart-budgets-card summary").click()
        assert page.locator("#chart-budgets-card table").is_visible()
        settle(context)
        assert errors == []
        context.close()


def _session_cookie(user) -> dict:
    from django.conf import settings as django_settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    return {"name": cookie.key, "value": cookie.value}
