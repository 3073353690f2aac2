"""Member rating stops while the member's project or its domain is locked (SPEC Charging 3, 5):
the SQL engine and the oracle agree on the unlocked seconds only."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.charging import billing_run, ledger_check, rate_hour
from billing.enforcement import tenant_lock, tenant_unlock
from billing.models import Holding, LockPeriod, MemberConsumption, PriceVersion
from billing.services import member_budget_set
from billing.tests import oracle
from billing.tests.oracle import CST, make_domain, make_project
from teachcloud.testing.factories import UserFactory
from tenancy.models import Membership
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db

# Default prices (migration 0002): vCPU 0.05, GiB RAM 0.02, GiB disk 0.0005 per hour, so a VM of
# 2 vCPUs, 4 GiB RAM and 20 GiB disk is rated 0.10 + 0.08 + 0.01 = 0.19 per hour.
VM = (2, 4, 20)


def hour(h: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 10, 5, h, minute, second, tzinfo=CST)


@pytest.fixture
def world():
    staff = oracle.setup_platform()
    domain = make_domain(staff, "north")
    project = make_project(staff, domain, "net101")
    return staff, domain, project


def student_with_vm(
    staff, project, *, start: datetime, end: datetime | None = None, budget: str | None = None
) -> Membership:
    """A member of `project` whose VM holds resources over [start, end), as compute writes it."""
    student = UserFactory(home_domain=project.domain)
    membership = membership_add(actor=staff, project=project, user=student)
    if budget is not None:
        member_budget_set(actor=staff, membership=membership, budget=budget)
    vcpus, ram_gib, disk_gib = VM
    Holding.objects.create(
        membership=membership,
        project=project,
        user=student,
        server_ref=f"vm-{student.pk}",
        vcpus=vcpus,
        ram_gib=ram_gib,
        disk_gib=disk_gib,
        start=start,
        end=end,
    )
    return membership


def rated(membership: Membership) -> dict[datetime, Decimal]:
    return dict(
        MemberConsumption.objects.filter(
            project=membership.project, user=membership.user
        ).values_list("hour", "amount")
    )


def assert_rating_equals_oracle(until: datetime) -> None:
    _allocs, prices, locks = oracle.load_inputs()
    expected = oracle.expected_rating(oracle.load_holdings(), prices, locks, until)
    assert oracle.ledger_rating() == expected


def test_project_lock_part_of_an_hour_is_not_rated(world):
    staff, _domain, project = world
    member = student_with_vm(staff, project, start=hour(10))
    tenant_lock(actor=staff, project=project, reason="unpaid lab fee", now=hour(11, 20))
    tenant_unlock(actor=staff, project=project, now=hour(11, 50))

    billing_run(until=hour(13))

    assert rated(member) == {
        hour(10): Decimal("0.1900"),  # no lock: unchanged
        # 11:00–11:20 and 11:50–12:00 are rated, each part on its own:
        # 1200 s × 0.19 / 3600 = 0.06333… → 0.0633; 600 s → 0.03166… → 0.0317
        hour(11): Decimal("0.0633") + Decimal("0.0317"),
        hour(12): Decimal("0.1900"),
    }
    assert_rating_equals_oracle(hour(13))
    assert ledger_check() == []


def test_domain_lock_stops_the_rating_of_its_projects_members(world):
    staff, domain, project = world
    second = make_project(staff, domain, "net102")
    elsewhere = make_project(staff, make_domain(staff, "south"), "bio101")
    members = [student_with_vm(staff, p, start=hour(10, 30)) for p in (project, second, elsewhere)]
    # Locked from 11:10:07 and still locked when the run comes.
    LockPeriod.objects.create(wallet=domain.wallet, start=hour(11, 10, 7), end=None, reason="x")

    billing_run(until=hour(13))

    for member in members[:2]:
        assert rated(member) == {
            hour(10): Decimal("0.0950"),  # 1800 s × 0.19 / 3600
            hour(11): Decimal("0.0320"),  # 607 s × 0.19 / 3600 = 0.032036…; 12:00 locked
        }
    assert rated(members[2]) == {  # another domain: unchanged
        hour(10): Decimal("0.0950"),
        hour(11): Decimal("0.1900"),
        hour(12): Decimal("0.1900"),
    }
    assert_rating_equals_oracle(hour(13))


def test_a_lock_of_another_project_changes_nothing(world):
    staff, domain, project = world
    member = student_with_vm(staff, project, start=hour(10))
    other = make_project(staff, domain, "net102")
    other_member = student_with_vm(staff, other, start=hour(10))
    LockPeriod.objects.create(wallet=other.wallet, start=hour(10), end=hour(12), reason="x")

    billing_run(until=hour(12))

    assert rated(member) == {hour(10): Decimal("0.1900"), hour(11): Decimal("0.1900")}
    assert rated(other_member) == {}
    assert_rating_equals_oracle(hour(12))


def test_a_member_is_not_back_over_budget_after_the_unlock(world):
    staff, _domain, project = world
    member = student_with_vm(staff, project, start=hour(10), budget="1.00")
    tenant_lock(actor=staff, project=project, reason="semester break", now=hour(11))
    billing_run(until=hour(20))
    tenant_unlock(actor=staff, project=project, now=hour(20))

    billing_run(until=hour(21))

    # 10:00–11:00 and 20:00–21:00 are rated (0.38 of a 1.00 budget), the nine locked hours not.
    assert sum(rated(member).values()) == Decimal("0.3800")
    member.refresh_from_db()
    assert not member.locked


# -- Property: the SQL engine = the oracle, with locks anywhere ---------------------------

BASE = hour(8)
offset = st.integers(0, 6 * 3600)  # seconds after BASE
holding = st.tuples(st.integers(0, 2), offset, st.one_of(st.none(), st.integers(1, 4 * 3600)))
lock = st.tuples(st.integers(0, 3), offset, st.one_of(st.none(), st.integers(1, 3 * 3600)))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    holdings=st.lists(holding, min_size=1, max_size=5),
    locks=st.lists(lock, max_size=4, unique_by=lambda lk: lk[0]),  # one per wallet
    price_at=st.one_of(st.none(), offset),
)
def test_rating_paths_equal_the_oracle(holdings, locks, price_at):
    example = transaction.atomic()  # rolled back per example, as in test_charging_property
    example._from_testcase = True
    with example:
        staff = oracle.setup_platform()
        domain = make_domain(staff, "prop")
        projects = [make_project(staff, domain, f"p{i}") for i in range(2)]
        other = make_project(staff, make_domain(staff, "other"), "q0")
        targets = [*projects, other]
        wallets = [domain.wallet, *(p.wallet for p in targets)]
        for index, start, length in holdings:
            end = None if length is None else BASE + timedelta(seconds=start + length)
            student_with_vm(staff, targets[index], start=BASE + timedelta(seconds=start), end=end)
        for index, start, length in locks:
            end = None if length is None else BASE + timedelta(seconds=start + length)
            LockPeriod.objects.create(
                wallet=wallets[index], start=BASE + timedelta(seconds=start), end=end, reason="p"
            )
        if price_at is not None:
            PriceVersion.objects.create(
                effective_from=BASE + timedelta(seconds=price_at),
                vcpu_hour=Decimal("0.0731"),
                ram_gib_hour=Decimal("0.0170"),
                disk_gib_hour=Decimal("0.0013"),
                domain_fee=Decimal("100"),
                project_fee=Decimal("10"),
                user_fee=Decimal("1"),
            )
        until = BASE + timedelta(hours=11)
        h = BASE
        while h < until:
            rate_hour(h)
            h += timedelta(hours=1)
        assert_rating_equals_oracle(until)
        transaction.set_rollback(True)
