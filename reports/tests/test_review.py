"""Review of the report code: regressions for the bugs found (each test failed before its fix)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.ledger import platform_wallet, post
from billing.models import TransactionKind, Wallet
from reports import charts
from reports.tests.test_charts import School

pytestmark = pytest.mark.django_db


@pytest.fixture
def school() -> School:
    return School()


def test_platform_spending_by_domain_includes_the_fees_its_projects_paid(school):
    """Project wallets pay their management fees to the platform directly (SPEC Money 3): the
    platform's "paid to the platform by domain" counts them for the project's domain, so the
    split sums to the platform's revenue over the same days (as the revenue report does)."""
    platform = platform_wallet()
    fee = Decimal("10.0000")
    post(
        kind=TransactionKind.MANAGEMENT_FEE,
        wallet=school.pw,
        legs=[(school.pw, -fee), (platform, fee)],
        period_start=school.now - timedelta(days=2),
    )
    chart = charts.spending_by_child(platform=True, now=school.now)
    by_name = {r["name"]: Decimal(r["amount"]) for r in chart["rows"]}
    paid_by_domain = -sum(
        e.amount
        for e in school.dw.entries.select_related("transaction")
        if e.transaction.wallet_id == school.dw.pk
        and e.transaction.kind in (TransactionKind.RESOURCE_CHARGE, TransactionKind.MANAGEMENT_FEE)
    )
    assert by_name[school.domain.name] == paid_by_domain + fee
    revenue = charts.wallet_history(wallet=Wallet.objects.get(pk=platform.pk), now=school.now)
    assert sum(Decimal(d["income"]) for d in revenue["days"]) == Decimal(chart["total"])


def test_recharge_method_typed_by_a_person_cannot_start_a_formula_in_exports(world):
    """The recharge method is free text (like the reference and the payer): the recharges report
    makes it inert for spreadsheets, as the recharge-requests report already does."""
    from billing import services
    from reports.catalog import get_report, parse_filters

    services.wallet_open(domain=world.domain)
    services.wallet_recharge(
        actor=world.platform,
        wallet=world.domain.wallet,
        amount="5",
        method="=HYPERLINK(1)",
        reference="=ref",
    )
    report = get_report(world.platform, "recharges")
    filters = parse_filters(world.platform, report, {})
    (row,) = [
        dict(zip(report.keys, cells, strict=True)) for cells in report.rows(world.platform, filters)
    ]
    assert row["reference"] == "'=ref"
    assert row["method"] == "'=HYPERLINK(1)"


def test_a_reversed_recharge_names_its_reversal(world):
    """A reversed recharge keeps its row (the reversal is an adjustment, as on the statements),
    and says which transaction reversed it, so a reader does not count the money as received."""
    from billing import services
    from reports.catalog import get_report, parse_filters

    wallet = services.wallet_open(domain=world.domain)
    kept = services.wallet_recharge(actor=world.platform, wallet=wallet, amount="5", method="bank")
    wrong = services.wallet_recharge(actor=world.platform, wallet=wallet, amount="7", method="bank")
    reversal = services.transaction_reverse(actor=world.platform, tx=wrong, reason="typo")
    report = get_report(world.platform, "recharges")
    rows = {
        row["transaction"]: row
        for row in (
            dict(zip(report.keys, cells, strict=True))
            for cells in report.rows(world.platform, parse_filters(world.platform, report, {}))
        )
    }
    assert set(rows) == {kept.pk, wrong.pk}
    assert rows[wrong.pk]["reversed_by"] == reversal.pk
    assert rows[kept.pk]["reversed_by"] is None


def test_a_reversed_charge_names_its_reversal(world):
    """Like recharges: a reversed hourly charge keeps its lines and says which transaction
    reversed it (the charges report had no such column)."""
    from billing import services
    from billing.charging import billing_run
    from billing.models import Transaction
    from billing.tests.oracle import allocate
    from reports.catalog import get_report, parse_filters
    from reports.tests.test_reports import hour

    services.wallet_recharge(
        actor=world.platform,
        wallet=services.wallet_open(domain=world.domain),
        amount="99",
        method="bank",
    )
    services.platform_capacity_set(
        actor=world.platform, vcpus=10, ram_gib=10, disk_gib=10, overcommit="1"
    )
    allocate(world.platform, hour(10), (1, 1, 1), domain=world.domain)
    billing_run(until=hour(12))
    first, second = Transaction.objects.filter(kind=TransactionKind.RESOURCE_CHARGE).order_by(
        "period_start"
    )
    reversal = services.transaction_reverse(actor=world.platform, tx=first, reason="outage")
    report = get_report(world.platform, "charges")
    rows = [
        dict(zip(report.keys, cells, strict=True))
        for cells in report.rows(world.platform, parse_filters(world.platform, report, {}))
    ]
    assert {row["transaction"]: row["reversed_by"] for row in rows} == {
        first.pk: reversal.pk,
        second.pk: None,
    }
