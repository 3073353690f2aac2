"""The report definitions (reports.definitions): figures on a small real ledger, scoping per
role, and the period/domain/project filters."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing import services
from billing.charging import billing_run, ledger_check
from billing.models import (
    ChargeLine,
    Entry,
    Holding,
    MemberConsumption,
    PriceVersion,
    RechargeRequest,
    Transaction,
    Wallet,
)
from billing.tests.oracle import CST, allocate
from reports.catalog import Filters, get_report, parse_filters, reports_for
from teachcloud.errors import ServiceError
from teachcloud.testing.clock import local_today, pinned
from tenancy.models import Domain, Membership, Project

pytestmark = pytest.mark.django_db

SEPT = datetime(2026, 9, 15, tzinfo=CST)  # tenants exist before 1 October: its fees are due
T0 = datetime(2026, 10, 5, 10, 17, 23, tzinfo=CST)  # allocations start


def hour(h: int, day: int = 5) -> datetime:
    return datetime(2026, 10, day, h, tzinfo=CST)


def rows(slug: str, user, **params) -> list[dict]:
    report = get_report(user, slug)
    filters = parse_filters(user, report, {k: str(v) for k, v in params.items()})
    return [dict(zip(report.keys, cells, strict=True)) for cells in report.rows(user, filters)]


@pytest.fixture
def ledger(world):
    return build_ledger(world)


def build_ledger(world):
    """Both domains with a project each, allocations from T0, a member with two VMs and a
    budget, charged and rated for 10:00–13:00 on 5 October and October's fees posted. The
    other project never paid anything: it is in arrears and locked."""
    w = world
    services.platform_capacity_set(
        actor=w.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (w.domain, w.other_domain):
        services.wallet_open(domain=domain)
    for project in (w.project, w.other_project):
        services.wallet_open(project=project)
    Domain.objects.update(created_at=SEPT)
    Project.objects.update(created_at=SEPT)
    Membership.objects.update(created_at=SEPT)
    Wallet.objects.exclude(kind="platform").update(created_at=SEPT)
    for tenant in (w.domain, w.other_domain, w.project):
        services.wallet_recharge(
            actor=w.platform, wallet=tenant.wallet, amount="1000", method="bank"
        )
    allocate(w.platform, T0, (4, 8, 100), domain=w.domain)
    allocate(w.platform, T0, (2, 4, 50), project=w.project)
    allocate(w.platform, T0, (2, 2, 20), domain=w.other_domain)
    allocate(w.platform, T0, (1, 1, 10), project=w.other_project)
    membership = Membership.objects.get(user=w.member, project=w.project)
    allocate(w.platform, T0, (2, 4, 40), membership=membership)
    services.member_budget_set(actor=w.platform, membership=membership, budget="10")
    # Compute writes holdings; the test writes them as compute would.
    Holding.objects.create(
        membership=membership,
        project=w.project,
        user=w.member,
        server_ref="vm-1",
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        start=hour(10) + timedelta(minutes=30),
        end=hour(12) + timedelta(minutes=6),
    )
    Holding.objects.create(
        membership=membership,
        project=w.project,
        user=w.member,
        server_ref="vm-2",
        vcpus=1,
        ram_gib=1,
        disk_gib=10,
        start=hour(11) + timedelta(minutes=40),
        end=None,
    )
    Holding.objects.create(
        membership=Membership.objects.get(user=w.project_assistant, project=w.project),
        project=w.project,
        user=w.project_assistant,
        server_ref="vm-3",
        vcpus=1,
        ram_gib=1,
        disk_gib=10,
        start=hour(12),
        end=hour(12) + timedelta(minutes=30),
    )
    billing_run(until=hour(13))
    assert ledger_check() == []
    return w


def finance_user():
    from accounts.models import PlatformRole
    from teachcloud.testing.factories import UserFactory

    return UserFactory(home_domain=None, platform_role=PlatformRole.FINANCE)


def slugs(user) -> set[str]:
    return {report.slug for report in reports_for(user)}


def assert_hidden(slug: str, user) -> None:
    with pytest.raises(ServiceError) as caught:
        get_report(user, slug)
    assert (caught.value.code, caught.value.status) == ("not_found", 404)


ALL = {
    "recharges",
    "charges",
    "allocations",
    "prices",
    "member-consumption",
    "vm-usage",
    "revenue",
    "arrears",
    "recharge-requests",
}
OWN = {"allocations", "prices", "member-consumption", "vm-usage"}
TENANT = OWN | {"recharges", "charges", "recharge-requests"}


def test_who_may_open_which_report(world):
    w = world
    assert slugs(w.platform) == ALL
    assert slugs(finance_user()) == ALL
    for staff in (w.domain_admin, w.domain_assistant, w.project_admin, w.project_assistant):
        assert slugs(staff) == TENANT, staff.username
    assert slugs(w.member) == OWN
    assert slugs(w.outsider) == OWN
    for slug in ALL - OWN:
        assert_hidden(slug, w.member)
    for slug in ("revenue", "arrears"):
        assert_hidden(slug, w.domain_admin)
    assert_hidden("no-such-report", w.platform)


# -- Charges ------------------------------------------------------------------------------------


def test_charge_lines_add_up_to_the_resource_charges(ledger):
    w = ledger
    lines = rows("charges", w.platform)
    charged = {
        tx.pk: -tx.entries.get(wallet_id=tx.wallet_id).amount
        for tx in Transaction.objects.filter(kind="resource_charge")
    }
    assert len(charged) == 12  # 4 paying wallets × 3 hours
    sums: dict[int, Decimal] = {}
    for line in lines:
        sums[line["transaction"]] = sums.get(line["transaction"], Decimal(0)) + line["amount"]
    assert sums == charged
    assert len(lines) == ChargeLine.objects.count()
    # Newest hour first; each line carries its hour, allocation and price.
    hours = [line["hour"] for line in lines]
    assert hours == sorted(hours, reverse=True)
    first = next(
        line
        for line in lines
        if line["hour"] == "2026-10-05T10:00:00+08:00"
        and line["domain"] == "North School"
        and line["project"] is None
    )
    # 10:17:23 → 11:00 is 2,557 s of 4 vCPU, 8 GiB, 100 GiB at 0.41 / h: 0.2912
    assert first["amount"] == Decimal("0.2912")
    assert (first["vcpus"], first["ram_gib"], first["disk_gib"]) == (4, 8, 100)
    assert (first["start"], first["end"]) == (
        "2026-10-05T10:17:23+08:00",
        "2026-10-05T11:00:00+08:00",
    )
    price = PriceVersion.objects.get(pk=first["price"])
    assert (first["vcpu_hour"], first["ram_gib_hour"], first["disk_gib_hour"]) == (
        price.vcpu_hour,
        price.ram_gib_hour,
        price.disk_gib_hour,
    )
    assert first["level"] == "Platform → domain"
    assert first["wallet"] == Wallet.objects.get(domain=w.domain).pk


def wallets_of(lines: list[dict]) -> set[int]:
    return {line["wallet"] for line in lines}


def test_charges_are_scoped_to_the_wallets_each_viewer_sees(ledger):
    w = ledger
    north = {Wallet.objects.get(domain=w.domain).pk, Wallet.objects.get(project=w.project).pk}
    south = {
        Wallet.objects.get(domain=w.other_domain).pk,
        Wallet.objects.get(project=w.other_project).pk,
    }
    assert wallets_of(rows("charges", w.platform)) == north | south
    assert wallets_of(rows("charges", finance_user())) == north | south
    assert wallets_of(rows("charges", w.domain_admin)) == north
    assert wallets_of(rows("charges", w.domain_assistant)) == north
    assert wallets_of(rows("charges", w.project_admin)) == {w.project.wallet.pk}
    assert wallets_of(rows("charges", w.project_assistant)) == {w.project.wallet.pk}
    assert wallets_of(rows("charges", w.other_admin)) == south
    assert_hidden("charges", w.member)
    assert_hidden("charges", w.outsider)


def test_charges_filter_by_local_dates_domain_and_project(ledger):
    w = ledger
    day = {"start": "2026-10-05", "end": "2026-10-05"}
    assert len(rows("charges", w.platform, **day)) == 12
    assert rows("charges", w.platform, start="2026-10-06") == []
    assert rows("charges", w.platform, end="2026-10-04") == []
    # The hours are Shanghai hours: 10:00–13:00 on the 5th is 02:00–05:00 UTC, still the 5th;
    # a UTC reading of "the 4th" (to 08:00 on the 5th local) would wrongly include them.
    assert len(rows("charges", w.platform, start="2026-10-05")) == 12
    south = rows("charges", w.platform, domain=w.other_domain.pk)
    assert wallets_of(south) == {w.other_domain.wallet.pk, w.other_project.wallet.pk}
    project = rows("charges", w.domain_admin, project=w.project.pk, **day)
    assert wallets_of(project) == {w.project.wallet.pk} and len(project) == 3


# -- Allocations and prices -------------------------------------------------------------------


def allocation_ids(user, **params) -> set[int]:
    return {row["allocation"] for row in rows("allocations", user, **params)}


def test_allocation_history_per_role_and_period(ledger):
    from billing.models import Allocation

    w = ledger
    everything = set(Allocation.objects.values_list("pk", flat=True))
    assert len(everything) == 6  # 2 domains, 2 projects, the member's limit twice
    member_limits = set(
        Allocation.objects.filter(level="member", user=w.member).values_list("pk", flat=True)
    )
    north = set(Allocation.objects.filter(domain=w.domain).values_list("pk", flat=True))
    south = set(Allocation.objects.filter(domain=w.other_domain).values_list("pk", flat=True))
    project = set(Allocation.objects.filter(project=w.project).values_list("pk", flat=True))
    assert allocation_ids(w.platform) == everything
    assert allocation_ids(w.domain_admin) == north
    assert allocation_ids(w.project_admin) == project
    assert allocation_ids(w.member) == member_limits
    assert allocation_ids(w.outsider) == set()
    assert allocation_ids(w.other_admin) == south
    # Overlapping the period: the budget change today opened a new interval after October.
    october = allocation_ids(w.platform, start="2026-10-01", end="2026-10-31")
    current = Allocation.objects.get(level="member", user=w.member, end__isnull=True)
    assert october == everything - {current.pk}
    assert allocation_ids(w.platform, end="2026-10-04") == set()
    # The day of the budget change (not "today", which may have turned since the fixture ran).
    changed_on = current.start.astimezone(CST).date().isoformat()
    assert allocation_ids(w.platform, start=changed_on) == everything  # open, or ended that day
    assert allocation_ids(w.domain_admin, project=w.project.pk) == project
    assert allocation_ids(w.platform, domain=w.other_domain.pk) == south
    row = next(r for r in rows("allocations", w.member) if r["allocation"] == current.pk)
    assert row["budget"] == Decimal("10.0000") and row["end"] is None
    assert row["member"] == "member" and row["created_by"] == "platform"
    assert (row["vcpus"], row["ram_gib"], row["disk_gib"]) == (2, 4, 40)


def test_price_history_newest_first_filtered_on_effective_from(ledger):
    w = ledger
    tomorrow = timezone.now() + timedelta(days=1)
    services.price_version_create(
        actor=w.platform,
        effective_from=tomorrow,
        vcpu_hour="0.06",
        ram_gib_hour="0.02",
        disk_gib_hour="0.0005",
        domain_fee="100",
        project_fee="10",
        user_fee="1",
    )
    history = rows("prices", w.member)
    assert len(history) == PriceVersion.objects.count() == 2
    assert history[0]["vcpu_hour"] == Decimal("0.0600") and history[0]["created_by"] == "platform"
    assert history[0]["effective_from"] > history[1]["effective_from"]
    local = tomorrow.astimezone(CST).date().isoformat()
    assert [r["vcpu_hour"] for r in rows("prices", w.member, start=local)] == [Decimal("0.0600")]
    assert len(rows("prices", w.member, end="2026-01-01")) == 1
    # No domain or project filter: given anyway, it is ignored rather than checked.
    assert len(rows("prices", w.member, domain=w.other_domain.pk)) == 2


# -- Member consumption and VM usage ------------------------------------------------------------


def test_member_consumption_sums_the_rated_hours_against_the_budget(ledger):
    w = ledger
    table = {row["username"]: row for row in rows("member-consumption", w.project_admin)}
    # vm-1 (0.19 / h) 10:30–12:06 = 0.095 + 0.19 + 0.019; vm-2 (0.075 / h) 11:40–13:00
    # = 0.025 + 0.075: 0.404 of a budget of 10
    member = table["member"]
    assert member["consumption"] == Decimal("0.4040")
    assert member["budget"] == Decimal("10.0000")
    assert member["budget_used"] == Decimal("0.0404")
    assert member["project"] == "Networks 101" and member["real_name"] == w.member.real_name
    # vm-3 (0.075 / h) 12:00–12:30; no member limit, so no budget and no share.
    assistant = table["project_assistant"]
    assert (assistant["consumption"], assistant["budget"], assistant["budget_used"]) == (
        Decimal("0.0375"),
        None,
        None,
    )
    total = MemberConsumption.objects.aggregate(s=Sum("amount"))["s"]
    assert sum(row["consumption"] for row in table.values()) == total
    # The rated hours are all on the 5th (local dates).
    assert rows("member-consumption", w.platform, start="2026-10-06") == []
    assert len(rows("member-consumption", w.platform, start="2026-10-05", end="2026-10-05")) == 2


def test_member_consumption_scope(ledger):
    w = ledger
    names = lambda user, **p: {r["username"] for r in rows("member-consumption", user, **p)}  # noqa: E731
    assert names(w.platform) == names(finance_user()) == {"member", "project_assistant"}
    assert names(w.domain_admin) == names(w.project_admin) == {"member", "project_assistant"}
    assert names(w.member) == {"member"}  # a plain member sees only their own row
    assert names(w.outsider) == set()
    assert names(w.other_admin) == set()
    assert names(w.platform, domain=w.other_domain.pk) == set()
    assert names(w.platform, project=w.project.pk) == {"member", "project_assistant"}


def test_vm_usage_hours_are_clamped_to_the_period_and_to_now(ledger):
    from compute.models import Flavor, Image, Server

    w = ledger
    # The server that holds vm-1 (written as compute writes it: the holding is its reservation).
    flavor = Flavor.objects.create(
        cloud_id="f-1", name="m1.small", vcpus=2, ram_mib=4096, disk_gib=20
    )
    image = Image.objects.create(cloud_id="i-1", name="ubuntu")
    holding = Holding.objects.get(server_ref="vm-1")
    Server.objects.create(
        project=w.project,
        owner=w.member,
        name="lab-vm",
        flavor=flavor,
        image=image,
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        status="deleted",
        holding=holding,
    )
    day = {
        r["server"]: r for r in rows("vm-usage", w.platform, start="2026-10-05", end="2026-10-05")
    }
    assert day["lab-vm"]["hours"] == Decimal("1.60")  # 10:30–12:06
    assert day["lab-vm"]["start"] == "2026-10-05T10:30:00+08:00"
    assert day["lab-vm"]["end"] == "2026-10-05T12:06:00+08:00"
    assert day["vm-2"]["hours"] == Decimal("12.33")  # 11:40 → midnight, still running
    assert day["vm-2"]["end"] is None
    assert day["vm-3"]["hours"] == Decimal("0.50")
    # From the 6th: only the VM still running, for two whole days.
    later = rows("vm-usage", w.platform, start="2026-10-06", end="2026-10-07")
    assert [(r["server"], r["hours"]) for r in later] == [("vm-2", Decimal("48.00"))]
    # An open period ends now.
    before = timezone.now()
    open_ended = {r["server"]: r["hours"] for r in rows("vm-usage", w.platform)}
    after = timezone.now()
    started = datetime(2026, 10, 5, 11, 40, tzinfo=CST)
    low = Decimal((before - started).total_seconds()) / 3600
    high = Decimal((after - started).total_seconds()) / 3600
    assert low - Decimal("0.01") <= open_ended["vm-2"] <= high + Decimal("0.01")
    next_year = (local_today() + timedelta(days=366)).isoformat()  # a period ending after now
    far = rows("vm-usage", w.platform, start="2026-10-01", end=next_year)
    assert abs(next(r["hours"] for r in far if r["server"] == "vm-2") - open_ended["vm-2"]) < 1
    assert rows("vm-usage", w.platform, end="2026-10-04") == []


def test_vm_usage_scope(ledger):
    w = ledger
    servers = lambda user, **p: sorted(r["server"] for r in rows("vm-usage", user, **p))  # noqa: E731
    every = ["vm-1", "vm-2", "vm-3"]
    assert servers(w.platform) == servers(finance_user()) == every
    assert servers(w.domain_admin) == servers(w.project_assistant) == every
    assert servers(w.member) == ["vm-1", "vm-2"]  # the owner: their own
    assert servers(w.outsider) == servers(w.other_admin) == []
    assert servers(w.platform, domain=w.other_domain.pk) == []
    assert servers(w.domain_admin, project=w.project.pk) == every
    owners = {r["owner"] for r in rows("vm-usage", w.member)}
    assert owners == {"member"}


# -- Finance: revenue and arrears ---------------------------------------------------------------


def platform_income(domain) -> dict[str, Decimal]:
    """The platform wallet's ledger legs, straight from the entries, for one paying domain."""
    platform = Wallet.objects.get(kind="platform")
    legs = Entry.objects.filter(wallet=platform).filter(
        transaction__wallet__in=Wallet.objects.filter(domain=domain)
        | Wallet.objects.filter(project__domain=domain)
    )
    return {
        kind: legs.filter(transaction__kind=kind).aggregate(s=Sum("amount"))["s"]
        for kind in ("resource_charge", "management_fee")
    }


def test_revenue_per_month_and_domain_equals_the_platforms_ledger_legs(ledger):
    w = ledger
    table = {row["domain"]: row for row in rows("revenue", finance_user())}
    assert set(table) == {"North School", "South School"}
    for domain in (w.domain, w.other_domain):
        row, legs = table[domain.name], platform_income(domain)
        assert row["month"] == "2026-10"
        assert row["resource_charges"] == legs["resource_charge"]
        assert row["management_fees"] == legs["management_fee"]
        assert row["total"] == row["resource_charges"] + row["management_fees"]
    # North: its domain allocation 0.2912 + 0.41 + 0.41 (the project pays the domain, not the
    # platform); fees 100 (domain) + 10 (project) + 3 × 1 (members).
    north = table["North School"]
    assert (north["resource_charges"], north["management_fees"]) == (
        Decimal("1.1112"),
        Decimal("113.0000"),
    )
    assert table["South School"]["management_fees"] == Decimal("110.0000")
    # A reversed charge is netted in the month of the hour it reversed.
    charge = Transaction.objects.get(
        kind="resource_charge", wallet=w.domain.wallet, period_start=hour(11)
    )
    services.transaction_reverse(actor=w.platform, tx=charge, reason="outage")
    again = {row["domain"]: row for row in rows("revenue", w.platform)}
    assert again["North School"]["resource_charges"] == Decimal("0.7012")
    assert again["North School"]["total"] == Decimal("113.7012")
    # Filters: the domain, and the period on the charged hour / month.
    only = rows("revenue", w.platform, domain=w.other_domain.pk)
    assert [row["domain"] for row in only] == ["South School"]
    assert rows("revenue", w.platform, start="2026-10-06") == []
    fees_only = {r["domain"]: r for r in rows("revenue", w.platform, end="2026-10-01")}
    assert fees_only["North School"]["resource_charges"] == Decimal("0")
    assert fees_only["North School"]["management_fees"] == Decimal("113.0000")


def test_revenue_months_are_shanghai_months(world):
    """The hour 00:00–01:00 on 1 November (Shanghai) is 16:00 UTC on 31 October: November."""
    w = world
    services.platform_capacity_set(
        actor=w.platform, vcpus=100, ram_gib=400, disk_gib=4000, overcommit="1"
    )
    services.wallet_open(domain=w.domain)
    services.wallet_open(project=w.project)
    Domain.objects.update(created_at=SEPT)
    Project.objects.update(created_at=SEPT)
    Membership.objects.update(created_at=SEPT)
    services.wallet_recharge(actor=w.platform, wallet=w.domain.wallet, amount="1000", method="x")
    services.wallet_recharge(actor=w.platform, wallet=w.project.wallet, amount="1000", method="x")
    allocate(w.platform, datetime(2026, 10, 31, 23, tzinfo=CST), (4, 8, 100), domain=w.domain)
    billing_run(until=datetime(2026, 11, 1, 1, tzinfo=CST))
    table = {row["month"]: row for row in rows("revenue", w.platform)}
    assert list(table) == ["2026-11", "2026-10"]  # newest month first
    assert table["2026-10"]["resource_charges"] == Decimal("0.4100")  # 23:00–24:00
    assert table["2026-11"]["resource_charges"] == Decimal("0.4100")  # 00:00–01:00
    assert (
        table["2026-10"]["management_fees"]
        == table["2026-11"]["management_fees"]
        == Decimal("113.0000")
    )
    november = rows("revenue", w.platform, start="2026-11-01", end="2026-11-30")
    assert [row["month"] for row in november] == ["2026-11"]


def test_arrears_oldest_debt_first_with_its_age(ledger):
    w = ledger
    finance = finance_user()
    debtor = Wallet.objects.get(project=w.other_project)  # never paid: locked, fees unpaid
    assert debtor.locked and debtor.unpaid_since == hour(13)
    # North's project overspends today: in debt, not (yet) locked, no unpaid run.
    services.wallet_adjust(
        actor=w.platform, wallet=w.project.wallet, amount="-1500", reason="correction"
    )
    services.wallet_update(actor=w.platform, wallet=w.project.wallet, billing_admin=w.project_admin)
    with pinned() as now:  # the report reads the clock too: no day may pass in between
        table = rows("arrears", finance)
    assert [row["wallet"] for row in table] == [debtor.pk, w.project.wallet.pk]
    first, second = table
    assert first["age_days"] == (now - hour(13)).days
    assert first["age_days"] >= 1
    assert first["unpaid_since"] == "2026-10-05T13:00:00+08:00"
    assert (first["locked"], first["kind"], first["domain"], first["project"]) == (
        True,
        "Project",
        "South School",
        "Databases",
    )
    assert first["balance"] == debtor.balance < 0
    assert first["available"] == debtor.balance + debtor.credit_limit
    assert second["unpaid_since"] is None and second["age_days"] is None
    assert second["locked"] is False and second["billing_admin"] == "project_admin"
    assert second["balance"] == Wallet.objects.get(pk=w.project.wallet.pk).balance
    # Filters: domain / project; the period selects by the start of the unpaid run.
    assert [r["wallet"] for r in rows("arrears", finance, domain=w.domain.pk)] == [
        w.project.wallet.pk
    ]
    assert [r["wallet"] for r in rows("arrears", finance, project=w.other_project.pk)] == [
        debtor.pk
    ]
    on_the_day = rows("arrears", finance, start="2026-10-05", end="2026-10-05")
    assert [r["wallet"] for r in on_the_day] == [debtor.pk]
    assert rows("arrears", finance, start="2026-10-06", end="2026-10-31") == []


# -- Pending recharge requests ------------------------------------------------------------------


def test_pending_recharge_requests_oldest_first_and_scoped(ledger):
    w = ledger
    north = services.recharge_request_create(
        actor=w.project_admin, wallet=w.project.wallet, amount="50", method="bank", reference="=1+1"
    )
    south = services.recharge_request_create(
        actor=w.other_admin, wallet=w.other_domain.wallet, amount="70", method="cash"
    )
    decided = services.recharge_request_create(
        actor=w.project_admin, wallet=w.project.wallet, amount="5", method="bank"
    )
    services.recharge_request_decide(actor=w.domain_admin, request=decided, approve=False)
    # Filed three days ago (the test dates it back, as a slow mail would).
    RechargeRequest.objects.filter(pk=south.pk).update(
        created_at=timezone.now() - timedelta(days=3, hours=1)
    )
    ids = lambda user, **p: [r["request"] for r in rows("recharge-requests", user, **p)]  # noqa: E731
    assert ids(w.platform) == ids(finance_user()) == [south.pk, north.pk]
    assert ids(w.domain_admin) == ids(w.project_assistant) == [north.pk]
    assert ids(w.other_admin) == [south.pk]
    assert_hidden("recharge-requests", w.member)
    table = {r["request"]: r for r in rows("recharge-requests", w.platform)}
    assert table[south.pk]["waiting_days"] == 3
    assert table[north.pk]["waiting_days"] == 0
    assert table[north.pk]["amount"] == Decimal("50.0000")
    assert table[north.pk]["reference"] == "'=1+1"  # inert in a spreadsheet
    assert table[north.pk]["requested_by"] == "project_admin"
    assert (table[north.pk]["domain"], table[north.pk]["project"]) == (
        "North School",
        "Networks 101",
    )
    assert (table[south.pk]["domain"], table[south.pk]["project"]) == ("South School", None)
    filed_on = north.created_at.astimezone(CST).date()  # today, unless it has just turned
    assert ids(w.platform, start=filed_on.isoformat()) == [north.pk]
    assert ids(w.platform, end=(filed_on - timedelta(days=1)).isoformat()) == [south.pk]
    assert ids(w.platform, domain=w.other_domain.pk) == [south.pk]
    assert ids(w.platform, project=w.project.pk) == [north.pk]


# -- Filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-13-01"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2026-10-05", "end": "2026-10-04"}, "end"),
        ({"start": "0001-01-01"}, "start"),
        ({"end": "9999-12-31"}, "end"),
        ({"domain": "abc"}, "domain"),
        ({"project": "-1"}, "project"),
    ],
)
def test_invalid_filters_are_400_invalid_filter(world, params, field):
    report = get_report(world.platform, "charges")
    with pytest.raises(ServiceError) as caught:
        parse_filters(world.platform, report, params)
    assert (caught.value.code, caught.value.status) == ("invalid_filter", 400)
    assert field in caught.value.fields


def test_a_domain_or_project_out_of_sight_is_an_invalid_filter(world):
    w = world
    report = get_report(w.domain_admin, "charges")
    for params in ({"domain": str(w.other_domain.pk)}, {"project": str(w.other_project.pk)}):
        with pytest.raises(ServiceError) as caught:
            parse_filters(w.domain_admin, report, params)
        assert caught.value.code == "invalid_filter"
    with pytest.raises(ServiceError):
        parse_filters(w.platform, report, {"start": "2010-01-01", "end": "2026-01-01"})
    filters = parse_filters(w.domain_admin, report, {"domain": str(w.domain.pk), "start": ""})
    assert filters == Filters(domain=w.domain)
    assert filters.since is None and filters.until is None
    day = parse_filters(w.platform, report, {"start": "2026-10-05", "end": "2026-10-05"})
    assert (day.since, day.until) == (
        datetime(2026, 10, 5, tzinfo=CST),
        datetime(2026, 10, 6, tzinfo=CST),
    )
    assert day.start == day.end == date(2026, 10, 5)
