"""billing.services: prices, wallets, recharges and requests, credit, adjustments and reversals,
allocations with every bound and their dry-run quotes. Real PostgreSQL, no mocks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.utils import timezone

from billing import services
from billing.models import (
    Allocation,
    Entry,
    Holding,
    PriceVersion,
    RechargeRequest,
    Transaction,
    Wallet,
)
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.factories import ProjectFactory
from tenancy.models import AuditEvent, Domain, Membership


@pytest.fixture
def w(world):
    services.platform_capacity_set(
        actor=world.platform, vcpus=200, ram_gib=800, disk_gib=10_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world


def wallet(tenant) -> Wallet:
    if isinstance(tenant, Domain):
        return Wallet.objects.get(domain=tenant)
    return Wallet.objects.get(project=tenant)


def platform_wallet() -> Wallet:
    return Wallet.objects.get(kind="platform")


def member_of(w, user=None) -> Membership:
    return Membership.objects.get(project=w.project, user=user or w.member)


def set_alloc(actor, vcpus, ram, disk, budget=None, **target):
    return services.allocation_set(
        actor=actor,
        target=services.target_of(**target),
        vcpus=vcpus,
        ram_gib=ram,
        disk_gib=disk,
        budget=budget,
    )


def ledger_state():
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        list(Wallet.objects.order_by("pk").values_list("pk", "balance")),
    )


# -- Prices -----------------------------------------------------------------------------------


def price_kwargs(**overrides):
    return {
        "effective_from": timezone.now() + timedelta(days=1),
        "vcpu_hour": "0.06",
        "ram_gib_hour": "0.03",
        "disk_gib_hour": "0.001",
        "domain_fee": "120",
        "project_fee": "12",
        "user_fee": "1.5",
        **overrides,
    }


def test_a_price_version_takes_effect_only_in_the_future(w):
    version = services.price_version_create(actor=w.platform, **price_kwargs())
    assert (version.vcpu_hour, version.user_fee) == (Decimal("0.0600"), Decimal("1.5000"))
    # In force now: still the default plan; from effective_from: the new one.
    assert services.price_at(timezone.now()).vcpu_hour == Decimal("0.0500")
    assert services.price_at(version.effective_from) == version
    assert services.price_at(version.effective_from - timedelta(microseconds=1)) != version

    with pytest.raises(ServiceError) as caught:
        services.price_version_create(
            actor=w.platform, **price_kwargs(effective_from=timezone.now() - timedelta(seconds=1))
        )
    assert caught.value.code == "price_in_past"
    with pytest.raises(Conflict) as caught:
        services.price_version_create(
            actor=w.platform, **price_kwargs(effective_from=version.effective_from)
        )
    assert caught.value.code == "price_exists"
    with pytest.raises(PermissionDenied):
        services.price_version_create(actor=w.domain_admin, **price_kwargs())
    assert PriceVersion.objects.count() == 2


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("vcpu_hour", "-0.01", "amount_not_positive"),
        ("ram_gib_hour", 0.03, "invalid_amount"),
        ("disk_gib_hour", "0.00001", "amount_too_precise"),
        ("domain_fee", "NaN", "invalid_amount"),
        ("user_fee", "1e10", "invalid_amount"),  # no exponents
        ("user_fee", "10000000000", "amount_too_large"),
    ],
)
def test_bad_prices_write_nothing(w, field, value, code):
    with pytest.raises(ServiceError) as caught:
        services.price_version_create(actor=w.platform, **price_kwargs(**{field: value}))
    assert caught.value.code == code
    assert list(caught.value.fields) == [field]
    assert PriceVersion.objects.count() == 1


def test_a_zero_rate_is_allowed(w):
    version = services.price_version_create(actor=w.platform, **price_kwargs(disk_gib_hour="0"))
    assert version.disk_gib_hour == 0


# -- Recharges --------------------------------------------------------------------------------


def test_recharge_posts_a_balanced_transaction(w):
    tx = services.wallet_recharge(
        actor=w.platform,
        wallet=wallet(w.domain),
        amount="1234.5",
        method=" bank ",
        reference="BOC-77",
        payer="North School bursar",
    )
    entries = list(tx.entries.order_by("id").values_list("wallet_id", "amount"))
    assert entries == [(wallet(w.domain).pk, Decimal("1234.5000")), (None, Decimal("-1234.5000"))]
    assert (tx.kind, tx.method, tx.reference, tx.payer, tx.created_by) == (
        "recharge",
        "bank",
        "BOC-77",
        "North School bursar",
        w.platform,
    )
    assert wallet(w.domain).balance == Decimal("1234.5000")
    assert AuditEvent.objects.filter(action="wallet.recharge").count() == 1


def test_whoever_receives_the_money_records_it(w):
    # Domain wallets: platform staff. Project wallets: the domain's admins (or platform staff).
    services.wallet_recharge(
        actor=w.domain_admin, wallet=wallet(w.project), amount="10", method="x"
    )
    services.wallet_recharge(actor=w.platform, wallet=wallet(w.project), amount="5", method="x")
    assert wallet(w.project).balance == Decimal("15.0000")
    # Nobody credits their own wallet.
    for actor, tenant in [
        (w.domain_admin, w.domain),
        (w.domain_assistant, w.domain),
        (w.project_admin, w.project),
        (w.project_assistant, w.project),
        (w.domain_assistant, w.project),  # assistants do not receive money
        (w.member, w.project),
        (w.other_admin, w.project),
    ]:
        with pytest.raises(PermissionDenied):
            services.wallet_recharge(actor=actor, wallet=wallet(tenant), amount="1", method="x")
    assert wallet(w.domain).balance == 0
    assert wallet(w.project).balance == Decimal("15.0000")


def test_the_platform_wallet_is_not_recharged(w):
    with pytest.raises(ServiceError) as caught:
        services.wallet_recharge(actor=w.platform, wallet=platform_wallet(), amount="1", method="x")
    assert caught.value.code == "platform_wallet"
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("-1", "amount_not_positive"),
        (-1, "amount_not_positive"),
        ("0", "amount_zero"),
        (0, "amount_zero"),
        ("-0.0", "amount_zero"),
        ("twelve", "invalid_amount"),
        ("12,50", "invalid_amount"),
        ("", "invalid_amount"),
        (None, "invalid_amount"),
        ("NaN", "invalid_amount"),
        ("sNaN", "invalid_amount"),
        ("Infinity", "invalid_amount"),
        ("-inf", "invalid_amount"),
        (12.5, "invalid_amount"),  # a float never enters
        (True, "invalid_amount"),
        ("0.00001", "amount_too_precise"),
        ("12.34567", "amount_too_precise"),
        ("1000000000.0001", "amount_too_large"),
        ("1e30", "invalid_amount"),
        ("9" * 400, "amount_too_large"),
        # Strictly ASCII digits, one point, an optional minus (issue 12.9):
        ("1e3", "invalid_amount"),
        ("1e1000000", "invalid_amount"),
        ("1E2", "invalid_amount"),
        ("+5", "invalid_amount"),
        ("1_000", "invalid_amount"),
        ("١٢٣", "invalid_amount"),  # Arabic-Indic digits
        ("１２３", "invalid_amount"),  # full-width digits
        ("1.2.3", "invalid_amount"),
        (".5", "invalid_amount"),
        ("5.", "invalid_amount"),
        ("- 5", "invalid_amount"),
    ],
)
def test_bad_amounts_are_clear_errors_and_nothing_is_written(w, amount, code):
    before, audits = ledger_state(), AuditEvent.objects.count()
    with pytest.raises(ServiceError) as caught:
        services.wallet_recharge(
            actor=w.platform, wallet=wallet(w.domain), amount=amount, method="bank"
        )
    assert caught.value.code == code
    assert caught.value.status == 400
    assert caught.value.detail
    assert list(caught.value.fields) == ["amount"]
    assert ledger_state() == before
    assert AuditEvent.objects.count() == audits


@pytest.mark.parametrize(
    ("amount", "stored"),
    [("0.0001", "0.0001"), (" 7 ", "7.0000"), (5, "5.0000"), (Decimal("2.50"), "2.5000")],
)
def test_good_amounts(w, amount, stored):
    services.wallet_recharge(actor=w.platform, wallet=wallet(w.domain), amount=amount, method="b")
    assert wallet(w.domain).balance == Decimal(stored)


def test_a_recharge_needs_a_method(w):
    with pytest.raises(ServiceError) as caught:
        services.wallet_recharge(actor=w.platform, wallet=wallet(w.domain), amount="1", method=" ")
    assert caught.value.code == "method_required"
    assert not Transaction.objects.exists()


def test_recharge_request_is_confirmed_by_the_receiving_side(w):
    request = services.recharge_request_create(
        actor=w.domain_admin, wallet=wallet(w.domain), amount="300", method="bank", reference="R1"
    )
    assert (request.status, wallet(w.domain).balance) == ("pending", 0)
    with pytest.raises(PermissionDenied):  # the tenant does not confirm its own payment
        services.recharge_request_decide(actor=w.domain_admin, request=request, approve=True)
    decided = services.recharge_request_decide(actor=w.platform, request=request, approve=True)
    assert (decided.status, decided.decided_by) == ("approved", w.platform)
    assert decided.transaction.entries.aggregate(total=Sum("amount"))["total"] == 0
    assert (decided.transaction.payer, decided.transaction.reference) == (str(w.domain_admin), "R1")
    assert wallet(w.domain).balance == Decimal("300.0000")
    with pytest.raises(Conflict) as caught:
        services.recharge_request_decide(actor=w.platform, request=request, approve=False)
    assert caught.value.code == "already_decided"
    assert Transaction.objects.count() == 1


def test_nobody_confirms_their_own_request_and_a_rejection_moves_nothing(w):
    own = services.recharge_request_create(
        actor=w.domain_admin, wallet=wallet(w.project), amount="40", method="cash"
    )
    with pytest.raises(ServiceError) as caught:
        services.recharge_request_decide(actor=w.domain_admin, request=own, approve=True)
    assert (caught.value.code, caught.value.status) == ("own_request", 403)
    own.refresh_from_db()
    assert own.status == "pending"
    denied = services.recharge_request_decide(actor=w.platform, request=own, approve=False)
    assert (denied.status, denied.transaction) == ("denied", None)
    assert not Transaction.objects.exists()


def test_recharge_request_rules(w):
    with pytest.raises(PermissionDenied):
        services.recharge_request_create(
            actor=w.member, wallet=wallet(w.project), amount="1", method="x"
        )
    with pytest.raises(PermissionDenied):
        services.recharge_request_create(
            actor=w.other_admin, wallet=wallet(w.domain), amount="1", method="x"
        )
    with pytest.raises(ServiceError) as caught:
        services.recharge_request_create(
            actor=w.project_admin, wallet=wallet(w.project), amount="NaN", method="x"
        )
    assert caught.value.code == "invalid_amount"
    with pytest.raises(ServiceError) as caught:
        services.recharge_request_create(
            actor=w.project_admin, wallet=wallet(w.project), amount="1", method=""
        )
    assert caught.value.code == "method_required"
    assert not RechargeRequest.objects.exists()


# -- Credit, billing admin, alert threshold ---------------------------------------------------


def test_credit_limit_up_to_the_ceiling(w):
    domain_wallet = wallet(w.domain)
    services.wallet_update(actor=w.platform, wallet=domain_wallet, credit_ceiling="500")
    updated = services.wallet_update(actor=w.domain_admin, wallet=domain_wallet, credit_limit="500")
    assert (updated.credit_limit, updated.available) == (Decimal("500.0000"), Decimal("500.0000"))

    with pytest.raises(ServiceError) as caught:
        services.wallet_update(actor=w.domain_admin, wallet=domain_wallet, credit_limit="500.01")
    assert caught.value.code == "credit_above_ceiling"
    assert "500.0100" in caught.value.detail and "500.0000" in caught.value.detail
    # Lowering the ceiling under the limit in force is refused too.
    with pytest.raises(ServiceError) as caught:
        services.wallet_update(actor=w.platform, wallet=domain_wallet, credit_ceiling="100")
    assert caught.value.code == "credit_above_ceiling"
    domain_wallet.refresh_from_db()
    assert (domain_wallet.credit_limit, domain_wallet.credit_ceiling) == (
        Decimal("500.0000"),
        Decimal("500.0000"),
    )


def test_who_sets_credit(w):
    with pytest.raises(PermissionDenied):  # the ceiling is the superior's
        services.wallet_update(actor=w.domain_admin, wallet=wallet(w.domain), credit_ceiling="9")
    with pytest.raises(PermissionDenied):  # assistants do not set credit limits
        services.wallet_update(actor=w.domain_assistant, wallet=wallet(w.domain), credit_limit="0")
    with pytest.raises(PermissionDenied):
        services.wallet_update(actor=w.project_admin, wallet=wallet(w.project), credit_ceiling="9")
    services.wallet_update(actor=w.domain_admin, wallet=wallet(w.project), credit_ceiling="9")
    services.wallet_update(actor=w.project_admin, wallet=wallet(w.project), credit_limit="9")
    assert wallet(w.project).available == Decimal("9.0000")
    with pytest.raises(ServiceError) as caught:
        services.wallet_update(actor=w.platform, wallet=wallet(w.project), credit_ceiling="-1")
    assert caught.value.code == "amount_not_positive"


def test_the_billing_admin_must_be_an_admin_of_the_tenant(w):
    updated = services.wallet_update(
        actor=w.domain_admin, wallet=wallet(w.domain), billing_admin=w.domain_admin
    )
    assert updated.billing_admin == w.domain_admin
    for user in (w.domain_assistant, w.project_admin, w.other_admin, w.member):
        with pytest.raises(ServiceError) as caught:
            services.wallet_update(actor=w.platform, wallet=wallet(w.domain), billing_admin=user)
        assert caught.value.code == "not_an_admin"
    services.wallet_update(
        actor=w.platform, wallet=wallet(w.project), billing_admin=w.project_admin
    )
    with pytest.raises(ServiceError):
        services.wallet_update(
            actor=w.platform, wallet=wallet(w.project), billing_admin=w.project_assistant
        )
    with pytest.raises(PermissionDenied):  # assistants do not change the billing admin
        services.wallet_update(
            actor=w.project_assistant, wallet=wallet(w.project), billing_admin=w.project_admin
        )
    assert wallet(w.domain).billing_admin == w.domain_admin
    assert wallet(w.project).billing_admin == w.project_admin


def test_alert_threshold_set_and_cleared(w):
    services.wallet_update(actor=w.project_assistant, wallet=wallet(w.project), alert_threshold="8")
    assert wallet(w.project).alert_threshold == Decimal("8.0000")
    services.wallet_update(
        actor=w.project_admin, wallet=wallet(w.project), clear_alert_threshold=True
    )
    assert wallet(w.project).alert_threshold is None
    with pytest.raises(PermissionDenied):
        services.wallet_update(actor=w.member, wallet=wallet(w.project), alert_threshold="8")


# -- Adjustments and reversals ----------------------------------------------------------------


def test_adjust_and_reverse(w):
    services.wallet_recharge(actor=w.platform, wallet=wallet(w.project), amount="50", method="x")
    adjustment = services.wallet_adjust(
        actor=w.platform, wallet=wallet(w.project), amount="-12.3456", reason="double charge"
    )
    assert (adjustment.kind, adjustment.reason, adjustment.created_by) == (
        "adjustment",
        "double charge",
        w.platform,
    )
    assert wallet(w.project).balance == Decimal("37.6544")
    assert platform_wallet().balance == Decimal("12.3456")
    assert adjustment.entries.aggregate(total=Sum("amount"))["total"] == 0

    original_entries = list(Entry.objects.order_by("id").values_list("id", "wallet_id", "amount"))
    reversal = services.transaction_reverse(actor=w.platform, tx=adjustment, reason="mistake")
    assert reversal.reverses == adjustment
    assert sorted(reversal.entries.values_list("wallet_id", "amount")) == sorted(
        [(wallet(w.project).pk, Decimal("12.3456")), (platform_wallet().pk, Decimal("-12.3456"))]
    )
    # Entries are never edited: the old ones are untouched, corrections are new rows.
    assert (
        list(
            Entry.objects.filter(id__in=[e[0] for e in original_entries])
            .order_by("id")
            .values_list("id", "wallet_id", "amount")
        )
        == original_entries
    )
    assert wallet(w.project).balance == Decimal("50.0000")
    assert platform_wallet().balance == 0

    with pytest.raises(Conflict) as caught:
        services.transaction_reverse(actor=w.platform, tx=adjustment, reason="again")
    assert caught.value.code == "already_reversed"
    with pytest.raises(Conflict) as caught:
        services.transaction_reverse(actor=w.platform, tx=reversal, reason="undo undo")
    assert caught.value.code == "is_reversal"


def test_adjustments_need_staff_a_reason_and_a_sane_amount(w):
    before = ledger_state()
    with pytest.raises(PermissionDenied):
        services.wallet_adjust(
            actor=w.domain_admin, wallet=wallet(w.project), amount="5", reason="r"
        )
    with pytest.raises(ServiceError) as caught:
        services.wallet_adjust(actor=w.platform, wallet=wallet(w.project), amount="5", reason=" ")
    assert caught.value.code == "reason_required"
    for amount, code in [
        ("0", "amount_zero"),
        ("Infinity", "invalid_amount"),
        ("-10000000000", "amount_too_large"),
        ("0.00005", "amount_too_precise"),
    ]:
        with pytest.raises(ServiceError) as caught:
            services.wallet_adjust(
                actor=w.platform, wallet=wallet(w.project), amount=amount, reason="r"
            )
        assert caught.value.code == code
    tx = services.wallet_recharge(actor=w.platform, wallet=wallet(w.domain), amount="1", method="x")
    with pytest.raises(ServiceError) as caught:
        services.transaction_reverse(actor=w.platform, tx=tx, reason="")
    assert caught.value.code == "reason_required"
    with pytest.raises(PermissionDenied):
        services.transaction_reverse(actor=w.domain_admin, tx=tx, reason="no")
    assert ledger_state()[0] == before[0] + 1


# -- Allocations ------------------------------------------------------------------------------


def test_intervals_are_never_edited_in_place(w):
    first = set_alloc(w.platform, 10, 20, 100, domain=w.domain)
    second = set_alloc(w.platform, 12, 20, 100, domain=w.domain)
    third = set_alloc(w.platform, 12, 30, 100, domain=w.domain)
    rows = list(
        Allocation.objects.filter(domain=w.domain)
        .order_by("start")
        .values_list("pk", "vcpus", "ram_gib", "start", "end")
    )
    assert [(pk, vcpus, ram) for pk, vcpus, ram, _s, _e in rows] == [
        (first.pk, 10, 20),
        (second.pk, 12, 20),
        (third.pk, 12, 30),
    ]
    # Each interval ends exactly where the next starts; only the last is open.
    assert rows[0][4] == rows[1][3] and rows[1][4] == rows[2][3] and rows[2][4] is None
    # The allocation held at a past instant can be read back.
    instant = rows[1][3] + (rows[1][4] - rows[1][3]) / 2
    held = Allocation.objects.filter(domain=w.domain, start__lte=instant).exclude(end__lte=instant)
    assert [a.vcpus for a in held] == [12]


def test_all_zero_ends_the_allocation_and_unchanged_is_a_no_op(w):
    current = set_alloc(w.platform, 10, 20, 100, domain=w.domain)
    assert set_alloc(w.platform, 10, 20, 100, domain=w.domain) == current
    assert Allocation.objects.count() == 1
    assert set_alloc(w.platform, 0, 0, 0, domain=w.domain) is None
    current.refresh_from_db()
    assert current.end is not None
    assert services.current_allocation(services.target_of(domain=w.domain)) is None
    # All zero where nothing is allocated: a no-op, nothing written.
    count, audits = Allocation.objects.count(), AuditEvent.objects.count()
    assert set_alloc(w.platform, 0, 0, 0, domain=w.other_domain) is None
    assert set_alloc(w.platform, 0, 0, 0, domain=w.domain) is None
    assert (Allocation.objects.count(), AuditEvent.objects.count()) == (count, audits)


def test_platform_capacity_times_overcommit(w):
    services.platform_capacity_set(
        actor=w.platform, vcpus=100, ram_gib=800, disk_gib=10_000, overcommit="1.5"
    )
    set_alloc(w.platform, 100, 1, 1, domain=w.domain)
    before = Allocation.objects.count()
    with pytest.raises(Conflict) as caught:
        set_alloc(w.platform, 51, 1, 1, domain=w.other_domain)
    assert caught.value.code == "capacity_exceeded"
    assert "vCPU: 151 / 150" in caught.value.detail
    assert caught.value.fields == {"vcpus": ["151 > 150"]}
    set_alloc(w.platform, 50, 1, 1, domain=w.other_domain)
    assert Allocation.objects.count() == before + 1


def test_children_stay_within_the_parent(w):
    set_alloc(w.platform, 20, 40, 400, domain=w.domain)
    set_alloc(w.domain_admin, 15, 30, 300, project=w.project)
    second = ProjectFactory(domain=w.domain)
    with pytest.raises(Conflict) as caught:
        set_alloc(w.domain_admin, 6, 11, 50, project=second)
    assert caught.value.code == "domain_allocation_exceeded"
    assert "vCPU: 21 / 20" in caught.value.detail
    assert "RAM (GiB): 41 / 40" in caught.value.detail
    assert set(caught.value.fields) == {"vcpus", "ram_gib"}
    set_alloc(w.domain_admin, 5, 10, 100, project=second)
    # Changing a project counts its siblings, not its own current allocation.
    set_alloc(w.domain_admin, 15, 30, 300, project=w.project)

    with pytest.raises(Conflict) as caught:
        set_alloc(w.platform, 19, 40, 400, domain=w.domain)
    assert caught.value.code == "below_suballocated"
    assert "vCPU: 19 / 20" in caught.value.detail


def test_lowering_below_what_vms_hold_is_refused(w):
    set_alloc(w.platform, 20, 40, 400, domain=w.domain)
    set_alloc(w.domain_admin, 10, 20, 200, project=w.project)
    membership = member_of(w)
    set_alloc(w.project_admin, 4, 8, 80, membership=membership)
    Holding.objects.create(
        membership=membership,
        project=w.project,
        user=w.member,
        server_ref="vm-1",
        vcpus=4,
        ram_gib=8,
        disk_gib=40,
        start=timezone.now() - timedelta(hours=1),
    )
    with pytest.raises(Conflict) as caught:
        set_alloc(w.domain_admin, 3, 20, 200, project=w.project)
    assert (caught.value.code, caught.value.fields) == ("below_held", {"vcpus": ["3 < 4"]})
    assert "vCPU: 3 / 4" in caught.value.detail
    with pytest.raises(Conflict) as caught:
        set_alloc(w.project_admin, 4, 6, 80, membership=membership)
    assert caught.value.code == "below_held"
    assert "RAM (GiB): 6 / 8" in caught.value.detail
    # Member limits are caps: together they may exceed the project allocation.
    set_alloc(w.project_admin, 10, 20, 200, membership=member_of(w, w.project_assistant))
    assert Allocation.objects.filter(level="member", end__isnull=True).count() == 2


def test_dry_run_quotes_and_writes_nothing(w):
    set_alloc(w.platform, 20, 40, 400, domain=w.domain)
    set_alloc(w.domain_admin, 2, 4, 40, project=w.project)
    before = list(Allocation.objects.order_by("pk").values_list("pk", "vcpus", "end"))
    audits = AuditEvent.objects.count()
    quote = services.allocation_quote(
        actor=w.domain_admin,
        target=services.target_of(project=w.project),
        vcpus=8,
        ram_gib=16,
        disk_gib=200,
    )
    # 8×0.05 + 16×0.02 + 200×0.0005 = 0.82 per hour; current 2×0.05 + 4×0.02 + 40×0.0005 = 0.2.
    assert quote["hourly_cost"] == Decimal("0.8200")
    assert quote["monthly_cost"] == Decimal("590.4000")  # × 720 hours
    assert quote["hourly_change"] == Decimal("0.6200")
    assert quote["charged"] is True
    assert quote["totals"] == {
        "domain_allocated": {"vcpus": 8, "ram_gib": 16, "disk_gib": 200},
        "domain_allocation": {"vcpus": 20, "ram_gib": 40, "disk_gib": 400},
    }
    assert list(Allocation.objects.order_by("pk").values_list("pk", "vcpus", "end")) == before
    assert AuditEvent.objects.count() == audits

    with pytest.raises(Conflict) as caught:  # the quote runs every bound
        services.allocation_quote(
            actor=w.domain_admin,
            target=services.target_of(project=w.project),
            vcpus=21,
            ram_gib=1,
            disk_gib=1,
        )
    assert caught.value.code == "domain_allocation_exceeded"
    with pytest.raises(PermissionDenied):
        services.allocation_quote(
            actor=w.project_admin,
            target=services.target_of(project=w.project),
            vcpus=1,
            ram_gib=1,
            disk_gib=1,
        )
    assert list(Allocation.objects.order_by("pk").values_list("pk", "vcpus", "end")) == before


@pytest.mark.parametrize(
    ("actor", "target"),
    [
        ("domain_admin", "domain"),
        ("domain_assistant", "project"),
        ("project_admin", "project"),
        ("member", "membership"),
        ("other_admin", "project"),
    ],
)
def test_who_may_allocate(w, actor, target):
    set_alloc(w.platform, 20, 40, 400, domain=w.domain)
    targets = {"domain": w.domain, "project": w.project, "membership": member_of(w)}
    with pytest.raises(PermissionDenied):
        set_alloc(getattr(w, actor), 1, 1, 1, **{target: targets[target]})
    assert Allocation.objects.count() == 1


@pytest.mark.parametrize(
    ("quantities", "field"),
    [
        ((-1, 1, 1), "vcpus"),
        ((1, "2", 1), "ram_gib"),
        ((1, 1, 2.0), "disk_gib"),
        ((True, 1, 1), "vcpus"),
        ((10**7, 1, 1), "vcpus"),
    ],
)
def test_quantities_are_whole_and_bounded(w, quantities, field):
    with pytest.raises(ServiceError) as caught:
        set_alloc(w.platform, *quantities, domain=w.domain)
    assert caught.value.code == "invalid_quantity"
    assert list(caught.value.fields) == [field]
    assert not Allocation.objects.exists()


def test_budgets_are_for_members_only_and_must_be_sane(w):
    set_alloc(w.platform, 20, 40, 400, domain=w.domain)
    with pytest.raises(ServiceError) as caught:
        set_alloc(w.domain_admin, 1, 1, 1, budget="5", project=w.project)
    assert caught.value.code == "budget_not_member"
    for budget, code in [("-5", "amount_not_positive"), ("5.00001", "amount_too_precise")]:
        with pytest.raises(ServiceError) as caught:
            set_alloc(w.project_admin, 1, 1, 1, budget=budget, membership=member_of(w))
        assert caught.value.code == code
    limit = set_alloc(w.project_admin, 1, 1, 1, budget="0", membership=member_of(w))
    assert limit.budget == Decimal("0.0000")
    assert Allocation.objects.filter(level="member").count() == 1


def test_exactly_one_target(w):
    for given in ({}, {"domain": w.domain, "project": w.project}):
        with pytest.raises(ServiceError) as caught:
            services.target_of(**given)
        assert caught.value.code == "one_target"


def test_new_members_get_the_project_default_limit(w):
    from teachcloud.testing.factories import UserFactory
    from tenancy.services import membership_add

    services.project_defaults_set(
        actor=w.project_admin, project=w.project, vcpus=2, ram_gib=4, disk_gib=20, budget="15"
    )
    user = UserFactory(home_domain=w.domain)
    membership = membership_add(actor=w.project_admin, project=w.project, user=user, role="member")
    limit = services.current_allocation(services.target_of(membership=membership))
    assert (limit.vcpus, limit.ram_gib, limit.disk_gib, limit.budget) == (
        2,
        4,
        20,
        Decimal("15.0000"),
    )
