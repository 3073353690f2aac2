"""Monthly management fees at 00:00 on the 1st, Asia/Shanghai (SPEC Charging 4).

The tenants are created at the real now (the clock pinned meanwhile, so a month end cannot fall
between them); `first` and `second` are the two month starts that follow, whatever the date."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from billing.charging import billing_run, fee_months_due, ledger_check
from billing.models import LockPeriod, PriceVersion, Transaction, Wallet
from billing.tests import oracle
from billing.tests.oracle import CST, make_domain, make_project
from teachcloud.testing.clock import months_after, pinned
from teachcloud.testing.factories import UserFactory
from tenancy.models import Membership, Project
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def school():
    with pinned():
        staff = oracle.setup_platform()
        domain = make_domain(staff, "north", money="")
        project = make_project(staff, domain, "net101", money="")
        for role in ("admin", "assistant", "member"):
            user = UserFactory(home_domain=domain)
            membership_add(actor=staff, project=project, user=user, role=role)
    return staff, domain, project


@pytest.fixture
def months(school) -> tuple[datetime, datetime]:
    """The first two month starts after the school was created (00:00 on the 1st, Shanghai)."""
    _staff, domain, _project = school
    first, second = months_after(domain.created_at, 2)
    return first, second


def fees() -> dict[tuple[int, datetime], Decimal]:
    return {
        (tx.wallet_id, tx.period_start): -tx.entries.get(wallet_id=tx.wallet_id).amount
        for tx in Transaction.objects.filter(kind="management_fee")
    }


def oracle_fees(month: datetime) -> dict[int, Decimal]:
    _a, prices, _l = oracle.load_inputs()
    domains = [(w.pk, w.domain.created_at) for w in Wallet.objects.filter(kind="domain")]
    projects = [
        (
            w.pk,
            w.project.created_at,
            list(Membership.objects.filter(project=w.project).values_list("created_at", flat=True)),
        )
        for w in Wallet.objects.filter(kind="project").select_related("project")
    ]
    return oracle.expected_fees(domains=domains, projects=projects, prices=prices, month=month)


def test_fees_fall_due_exactly_at_shanghai_midnight_on_the_first(school, months):
    _staff, domain, project = school
    first, _second = months  # e.g. 2026-12-01 00:00 +08:00 (= 2026-11-30 16:00 UTC)
    platform = Wallet.objects.get(kind="platform")
    start_balance = platform.balance

    billing_run(until=first - timedelta(seconds=1))  # e.g. 2026-11-30 23:59:59 +08:00
    assert fees() == {}

    summary = billing_run(until=first)
    # Domain ¥100; project ¥10 + 3 memberships (admin, assistant, member) × ¥1 = ¥13.
    assert fees() == {
        (domain.wallet.pk, first): Decimal("100.0000"),
        (project.wallet.pk, first): Decimal("13.0000"),
    }
    assert summary["fee_months"] == [f"{first:%Y-%m}"] and summary["fee_amount"] == "113.0000"
    assert oracle_fees(first) == {w: a for (w, _m), a in fees().items()}
    platform.refresh_from_db()
    assert platform.balance - start_balance == Decimal("113.0000")
    assert Wallet.objects.get(pk=domain.wallet.pk).balance == Decimal("-100.0000")
    tx = Transaction.objects.get(kind="management_fee", wallet=project.wallet)
    assert tx.period_start == first and tx.period_start.astimezone(CST).hour == 0
    assert ledger_check() == []

    again = billing_run(until=first + timedelta(hours=2))
    assert again["management_fees"] == 0 and len(fees()) == 2


def test_month_of_creation_is_free_and_catch_up_charges_each_month_once(school, months):
    staff, domain, project = school
    first, second = months
    late = make_project(staff, domain, "late", money="")
    # Created at 00:00:00 on the first 1st: that month's fee is free, the next one's is due.
    Project.objects.filter(pk=late.pk).update(created_at=first)
    newcomer = membership_add(actor=staff, project=project, user=UserFactory(home_domain=domain))
    Membership.objects.filter(pk=newcomer.pk).update(created_at=first + timedelta(days=14))

    assert fee_months_due(until=second) == [first, second]
    billing_run(until=second + timedelta(minutes=5))

    got = fees()
    assert (late.wallet.pk, first) not in got
    assert got[(late.wallet.pk, second)] == Decimal("10.0000")
    assert got[(project.wallet.pk, first)] == Decimal("13.0000")
    assert got[(project.wallet.pk, second)] == Decimal("14.0000")  # the newcomer pays from then
    assert got[(domain.wallet.pk, first)] == got[(domain.wallet.pk, second)] == Decimal("100.0000")
    for month in (first, second):
        assert oracle_fees(month) == {w: a for (w, m), a in got.items() if m == month}
    assert ledger_check() == []


def test_price_in_force_at_the_instant_locked_pay_purged_do_not(school, months):
    staff, domain, project = school
    first, _second = months
    with pinned(domain.created_at):  # created with the others, before the month starts
        other = make_domain(staff, "south", money="")
        gone = make_domain(staff, "gone", money="")
    type(gone).objects.filter(pk=gone.pk).update(status="purged")
    LockPeriod.objects.create(wallet=other.wallet, start=first - timedelta(days=3), reason="t")
    PriceVersion.objects.create(
        effective_from=first,
        vcpu_hour=Decimal("0.05"),
        ram_gib_hour=Decimal("0.02"),
        disk_gib_hour=Decimal("0.0005"),
        domain_fee=Decimal("200.0000"),
        project_fee=Decimal("20.0000"),
        user_fee=Decimal("1.5000"),
    )
    billing_run(until=first + timedelta(minutes=1))
    got = fees()
    assert got[(domain.wallet.pk, first)] == Decimal("200.0000")
    assert got[(other.wallet.pk, first)] == Decimal("200.0000")  # locked: fees continue
    assert got[(project.wallet.pk, first)] == Decimal("24.5000")  # 20 + 3 × 1.5
    assert (gone.wallet.pk, first) not in got
    assert len(got) == 3
    assert ledger_check() == []
