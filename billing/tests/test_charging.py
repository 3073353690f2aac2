"""Hourly resource charges: exact amounts against hand-computed Decimals and the oracle."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from billing.charging import billing_run, charge_hours_due, ledger_check
from billing.models import ChargeLine, LockPeriod, PriceVersion, Transaction, Wallet
from billing.tests import oracle
from billing.tests.oracle import CST, allocate, make_domain, make_project

pytestmark = pytest.mark.django_db

# Default prices (migration 0002): vCPU 0.05, GiB RAM 0.02, GiB disk 0.0005 per hour.
T0 = datetime(2026, 10, 5, 10, 17, 23, tzinfo=CST)
H10 = datetime(2026, 10, 5, 10, tzinfo=CST)


def hour(h: int, day: int = 5) -> datetime:
    return datetime(2026, 10, day, h, tzinfo=CST)


@pytest.fixture
def tenants():
    staff = oracle.setup_platform()
    domain = make_domain(staff, "north")
    project = make_project(staff, domain, "net101")
    return staff, domain, project


def charges_of(wallet: Wallet) -> dict[datetime, Decimal]:
    out = {}
    for tx in Transaction.objects.filter(wallet=wallet, kind="resource_charge"):
        out[tx.period_start] = -tx.entries.get(wallet=wallet).amount
    return out


def assert_ledger_equals_oracle(until: datetime) -> None:
    allocs, prices, locks = oracle.load_inputs()
    expected = oracle.expected_charges(allocs, prices, locks, until)
    assert oracle.ledger_charges() == expected
    assert ledger_check() == []


def test_prorated_first_hour_exact(tenants):
    staff, domain, project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)  # 0.20 + 0.16 + 0.05 = 0.41 / h
    allocate(staff, T0, (2, 4, 50), project=project)  # 0.10 + 0.08 + 0.025 = 0.205 / h
    before = {w.pk: w.balance for w in Wallet.objects.all()}

    summary = billing_run(until=hour(12))

    # 10:17:23 → 11:00 is 2,557 s: 2557 × 0.41 / 3600 = 0.29121388… → 0.2912
    dw, pw = domain.wallet, project.wallet
    assert charges_of(dw) == {hour(10): Decimal("0.2912"), hour(11): Decimal("0.4100")}
    # 2557 × 0.205 / 3600 = 0.14560694… → 0.1456
    assert charges_of(pw) == {hour(10): Decimal("0.1456"), hour(11): Decimal("0.2050")}
    platform = Wallet.objects.get(kind="platform")
    after = {w.pk: w.balance for w in Wallet.objects.all()}
    assert after[platform.pk] - before[platform.pk] == Decimal("0.7012")
    assert after[dw.pk] - before[dw.pk] == Decimal("-0.7012") + Decimal("0.3506")
    assert after[pw.pk] - before[pw.pk] == Decimal("-0.3506")
    assert summary["hours"] == 2 and summary["resource_charges"] == 4
    assert summary["resource_amount"] == "1.0518"
    line = ChargeLine.objects.get(transaction__wallet=dw, transaction__period_start=hour(10))
    assert (line.start, line.end, line.vcpus, line.amount) == (T0, hour(11), 4, Decimal("0.2912"))
    assert_ledger_equals_oracle(hour(12))
    # The oracle agrees with a second-by-second count of the same hour.
    allocs, prices, locks = oracle.load_inputs()
    mine = [a for a in allocs if a.payer == dw.pk]
    assert oracle.brute_force_hour(mine, prices, locks, hour(10)) == Decimal("0.2912")


def test_mid_hour_allocation_and_price_change(tenants):
    staff, domain, _project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, hour(11) + timedelta(minutes=30), (8, 16, 200), domain=domain)  # 0.82 / h
    # Prices double from 12:45 (the service refuses the past; the test writes history).
    PriceVersion.objects.create(
        effective_from=hour(12) + timedelta(minutes=45),
        vcpu_hour=Decimal("0.1000"),
        ram_gib_hour=Decimal("0.0400"),
        disk_gib_hour=Decimal("0.0010"),
        domain_fee=Decimal("100"),
        project_fee=Decimal("10"),
        user_fee=Decimal("1"),
    )
    billing_run(until=hour(13))

    dw = domain.wallet
    # 11:00–11:30 at 0.41 = 0.2050, 11:30–12:00 at 0.82 = 0.4100
    # 12:00–12:45 at 0.82 = 0.6150, 12:45–13:00 at 1.64 = 0.4100
    assert charges_of(dw) == {
        hour(10): Decimal("0.2912"),
        hour(11): Decimal("0.6150"),
        hour(12): Decimal("1.0250"),
    }
    lines = ChargeLine.objects.filter(transaction__wallet=dw, transaction__period_start=hour(12))
    assert [(cl.start, cl.end, cl.amount) for cl in lines] == [
        (hour(12), hour(12) + timedelta(minutes=45), Decimal("0.6150")),
        (hour(12) + timedelta(minutes=45), hour(13), Decimal("0.4100")),
    ]
    assert lines[0].price_id != lines[1].price_id
    assert_ledger_equals_oracle(hour(13))
    allocs, prices, locks = oracle.load_inputs()
    mine = [a for a in allocs if a.payer == dw.pk]
    for h in (hour(11), hour(12)):
        assert oracle.brute_force_hour(mine, prices, locks, h) == charges_of(dw)[h]


def test_domain_lock_stops_domain_and_project_charges(tenants):
    staff, domain, project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, T0, (2, 4, 50), project=project)
    LockPeriod.objects.create(
        wallet=domain.wallet,
        start=hour(13) + timedelta(minutes=20),
        end=hour(14) + timedelta(minutes=10),
        reason="test",
    )
    billing_run(until=hour(16))

    d, p = charges_of(domain.wallet), charges_of(project.wallet)
    assert d[hour(13)] == Decimal("0.1367")  # 1200 s × 0.41 / 3600 = 0.13666…
    assert d[hour(14)] == Decimal("0.3417")  # 3000 s × 0.41 / 3600 = 0.34166…
    assert p[hour(13)] == Decimal("0.0683")  # 1200 s × 0.205 / 3600 = 0.068333…
    assert d[hour(15)] == Decimal("0.4100")
    assert_ledger_equals_oracle(hour(16))


def test_lock_inside_an_hour_splits_the_line_and_whole_locked_hours_are_free(tenants):
    staff, domain, _project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    LockPeriod.objects.create(
        wallet=domain.wallet,
        start=hour(11) + timedelta(minutes=10),
        end=hour(11) + timedelta(minutes=20),
        reason="short",
    )
    LockPeriod.objects.create(wallet=domain.wallet, start=hour(12), end=hour(14), reason="long")
    billing_run(until=hour(15))

    d = charges_of(domain.wallet)
    assert hour(12) not in d and hour(13) not in d  # zero hours: no transaction
    assert d[hour(11)] == Decimal("0.0683") + Decimal("0.2733")  # 600 s + 2400 s, two lines
    assert ChargeLine.objects.filter(transaction__period_start=hour(11)).count() == 2
    assert d[hour(14)] == Decimal("0.4100")
    assert_ledger_equals_oracle(hour(15))


def test_catch_up_thirty_hours_in_one_run_and_rerun_changes_nothing(tenants):
    staff, domain, project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, T0 + timedelta(hours=5), (1, 2, 10), project=project)
    until = datetime(2026, 10, 6, 16, 0, tzinfo=CST)  # 10:00 day 1 … 15:00 day 2: 30 hours

    summary = billing_run(until=until)

    d = charges_of(domain.wallet)
    assert len(d) == 30 and summary["hours"] == 30
    assert sum(d.values()) == Decimal("0.2912") + 29 * Decimal("0.4100")  # 12.1812
    assert_ledger_equals_oracle(until)
    snapshot = oracle.ledger_snapshot()
    again = billing_run(until=until)
    assert again["resource_charges"] == 0
    assert oracle.ledger_snapshot() == snapshot


def test_incomplete_hour_waits_and_later_runs_continue(tenants):
    staff, domain, _project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    billing_run(until=hour(11) + timedelta(minutes=59))
    assert list(charges_of(domain.wallet)) == [hour(10)]
    assert [h.astimezone(CST).hour for h in charge_hours_due(until=hour(14))] == [11, 12, 13]
    billing_run(until=hour(14))
    assert len(charges_of(domain.wallet)) == 4
    assert_ledger_equals_oracle(hour(14))


def test_ended_allocation_stops_charges(tenants):
    staff, domain, project = tenants
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, T0, (2, 4, 50), project=project)
    allocate(staff, hour(12) + timedelta(minutes=15), (0, 0, 0), project=project)
    billing_run(until=hour(15))
    p = charges_of(project.wallet)
    assert p[hour(12)] == Decimal("0.0513")  # 900 s × 0.205 / 3600 = 0.05125 → 0.0513 (half up)
    assert max(p) == hour(12)
    assert_ledger_equals_oracle(hour(15))
