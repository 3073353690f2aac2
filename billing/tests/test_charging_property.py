"""Property: whatever sequence of allocation changes, price versions, recharges and runs, the
ledger equals the oracle after every run and every invariant of billing_check holds."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.charging import billing_run, ledger_check
from billing.models import PriceVersion, Transaction, Wallet
from billing.services import wallet_recharge
from billing.tests import oracle
from billing.tests.oracle import CST, allocate, make_domain, make_project

BASE = datetime(2026, 10, 5, 8, 0, 0, tzinfo=CST)
FUNDS = Decimal("1000")

rate = st.decimals(min_value=0, max_value=Decimal("0.2"), places=4)
domain_q = st.tuples(st.integers(20, 40), st.integers(40, 80), st.integers(200, 400))
project_q = st.tuples(st.integers(0, 10), st.integers(0, 20), st.integers(0, 100))
step = st.one_of(
    st.tuples(st.just("alloc_domain"), domain_q),
    st.tuples(st.just("alloc_project"), st.tuples(st.integers(0, 1), project_q)),
    st.tuples(st.just("price"), st.tuples(rate, rate, rate)),
    st.tuples(st.just("recharge"), st.tuples(st.integers(0, 2), st.integers(1, 500))),
    st.tuples(st.just("run"), st.just(None)),
)
# Gaps between events: anything from one second to five hours.
events = st.lists(st.tuples(st.integers(1, 5 * 3600), step), min_size=1, max_size=12)


def expected_balances(until: datetime, paid_in: dict[int, Decimal]) -> dict[int, Decimal]:
    allocs, prices, locks = oracle.load_inputs()
    payee = {a.payer: a.payee for a in allocs}
    balances: dict[int, Decimal] = defaultdict(Decimal)
    for wallet, amount in paid_in.items():
        balances[wallet] += amount
    for (payer, _hour), (total, _lines) in oracle.expected_charges(
        allocs, prices, locks, until
    ).items():
        balances[payer] -= total
        balances[payee[payer]] += total
    return balances


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=domain_q, steps=events)
def test_ledger_equals_oracle_after_every_run(first, steps):
    # Each example in its own rolled-back block; marked like TestCase's so that the durable
    # services may run inside it (Django's own mechanism for tests).
    example = transaction.atomic()
    example._from_testcase = True
    with example:
        staff = oracle.setup_platform()
        domain = make_domain(staff, "prop", money=str(FUNDS))
        projects = [make_project(staff, domain, f"p{i}", money=str(FUNDS)) for i in range(2)]
        wallets = [domain.wallet, *(p.wallet for p in projects)]
        paid_in = {w.pk: FUNDS for w in wallets}
        platform = Wallet.objects.get(kind="platform")
        paid_in[platform.pk] = platform.balance
        start = BASE + timedelta(minutes=17, seconds=23)
        allocate(staff, start, first, domain=domain)
        now = start
        for gap, (kind, arg) in [*steps, (3600, ("run", None))]:
            now += timedelta(seconds=gap)
            if kind == "alloc_domain":
                allocate(staff, now, arg, domain=domain)
            elif kind == "alloc_project":
                index, quantities = arg
                allocate(staff, now, quantities, project=projects[index])
            elif kind == "price":
                vcpu, ram, disk = arg
                PriceVersion.objects.create(
                    effective_from=now,
                    vcpu_hour=vcpu,
                    ram_gib_hour=ram,
                    disk_gib_hour=disk,
                    domain_fee=Decimal("100"),
                    project_fee=Decimal("10"),
                    user_fee=Decimal("1"),
                )
            elif kind == "recharge":
                index, amount = arg
                wallet_recharge(
                    actor=staff, wallet=wallets[index], amount=str(amount), method="bank"
                )
                paid_in[wallets[index].pk] += amount
            else:
                billing_run(until=now)
                allocs, prices, locks = oracle.load_inputs()
                assert oracle.ledger_charges() == oracle.expected_charges(
                    allocs, prices, locks, now
                )
                assert ledger_check() == []
                balances = dict(Wallet.objects.values_list("id", "balance"))
                for wallet_id, amount in expected_balances(now, paid_in).items():
                    assert balances[wallet_id] == amount
        assert Transaction.objects.filter(kind="management_fee").count() == 0
        transaction.set_rollback(True)
