"""The Django admin of billing: changelists for platform (and finance) staff without N+1, wallet
recharge/adjust/lock/unlock through services, a read-only ledger with reversals, price plan
versions only for the future, allocations set (and quoted) through allocation_set."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import PlatformRole
from billing import enforcement, services
from billing.models import (
    Allocation,
    Entry,
    Level,
    PlatformCapacity,
    PriceVersion,
    RechargeRequest,
    Transaction,
    Wallet,
    Webhook,
)
from teachcloud.testing.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

MODELS = [
    "priceversion",
    "platformcapacity",
    "wallet",
    "transaction",
    "entry",
    "chargeline",
    "memberconsumption",
    "allocation",
    "allocationrequest",
    "rechargerequest",
    "lockperiod",
    "computerequest",
    "notification",
    "webhook",
]


@pytest.fixture
def w(world):
    services.platform_capacity_set(
        actor=world.platform, vcpus=100, ram_gib=400, disk_gib=10_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world


@pytest.fixture
def staff(client, w):
    client.force_login(w.platform)
    return client


def wallet_of(*, domain=None, project=None) -> Wallet:
    return Wallet.objects.get(**({"project": project} if project else {"domain": domain}))


def balanced(tx: Transaction) -> bool:
    return tx.entries.aggregate(s=Sum("amount"))["s"] == 0


def money_state() -> tuple[int, int, list[Decimal]]:
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        list(Wallet.objects.order_by("pk").values_list("balance", flat=True)),
    )


@pytest.mark.parametrize("model", MODELS)
def test_changelists_load_with_search_for_platform_staff(staff, model):
    url = reverse(f"admin:billing_{model}_changelist")
    assert staff.get(url).status_code == 200
    assert staff.get(url, {"q": "north"}).status_code == 200


def test_changelist_filters(staff, w):
    services.wallet_recharge(
        actor=w.platform, wallet=wallet_of(domain=w.domain), amount="10", method="cash"
    )
    url = reverse("admin:billing_wallet_changelist")
    response = staff.get(url, {"kind__exact": "domain", "locked": "no"})
    assert {row.kind for row in response.context["cl"].result_list} == {"domain"}
    response = staff.get(
        reverse("admin:billing_transaction_changelist"), {"kind__exact": "recharge"}
    )
    assert response.context["cl"].result_count == 1
    response = staff.get(reverse("admin:billing_allocation_changelist"), {"current": "yes"})
    assert response.status_code == 200


def test_wallet_and_ledger_lists_make_no_extra_query_per_row(staff, w):
    def count(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff.get(url).status_code == 200
        return len(queries)

    for project in (w.project, w.other_project):
        services.wallet_recharge(
            actor=w.platform, wallet=wallet_of(project=project), amount="1", method="cash"
        )
    urls = [
        reverse("admin:billing_wallet_changelist"),
        reverse("admin:billing_transaction_changelist"),
        reverse("admin:billing_entry_changelist"),
        reverse("admin:billing_rechargerequest_changelist"),
    ]
    before = [count(url) for url in urls]
    for i in range(5):
        project = ProjectFactory(domain=w.domain, code=f"extra{i}")
        wallet = services.wallet_open(project=project)
        services.wallet_recharge(actor=w.platform, wallet=wallet, amount="2", method="cash")
        services.recharge_request_create(
            actor=w.domain_admin, wallet=wallet, amount="3", method="cash"
        )
    assert [count(url) for url in urls] == before


def test_finance_staff_view_but_do_not_move_money(client, w):
    finance = UserFactory(home_domain=None, platform_role=PlatformRole.FINANCE, is_staff=True)
    client.force_login(finance)
    wallet = wallet_of(domain=w.domain)
    assert client.get(reverse("admin:billing_wallet_changelist")).status_code == 200
    assert client.get(reverse("admin:billing_transaction_changelist")).status_code == 200
    response = client.post(
        reverse("admin:billing_wallet_recharge", args=[wallet.pk]),
        {"amount": "10", "method": "cash"},
    )
    assert response.status_code == 403
    assert Transaction.objects.count() == 0


def test_tenant_admins_do_not_get_the_billing_admin(client, w):
    client.force_login(w.domain_admin)
    assert client.get(reverse("admin:billing_wallet_changelist")).status_code in (302, 403)


# -- Wallet actions -----------------------------------------------------------------------------


def test_wallet_recharge_writes_a_balanced_transaction(staff, w):
    wallet = wallet_of(domain=w.domain)
    response = staff.post(
        reverse("admin:billing_wallet_recharge", args=[wallet.pk]),
        {"amount": "500.25", "method": "bank_transfer", "reference": "BANK-77", "payer": "北校"},
    )
    assert response.status_code == 302
    tx = Transaction.objects.get(wallet=wallet)
    assert (tx.kind, tx.reference, tx.payer, tx.created_by) == (
        "recharge",
        "BANK-77",
        "北校",
        w.platform,
    )
    assert balanced(tx)
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("500.2500")


@pytest.mark.parametrize("amount", ["-1", "0", "abc", "1.00001", "Infinity"])
def test_wallet_recharge_refuses_bad_amounts(staff, w, amount):
    wallet = wallet_of(domain=w.domain)
    before = money_state()
    response = staff.post(
        reverse("admin:billing_wallet_recharge", args=[wallet.pk]),
        {"amount": amount, "method": "cash"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert money_state() == before


def test_wallet_adjust_needs_a_reason_and_balances_against_the_platform(staff, w):
    wallet = wallet_of(project=w.project)
    url = reverse("admin:billing_wallet_adjust", args=[wallet.pk])
    before = money_state()
    response = staff.post(url, {"amount": "-25.5", "reason": ""})
    assert response.status_code == 200 and response.context["form"].errors["reason"]
    assert money_state() == before

    assert staff.post(url, {"amount": "-25.5", "reason": "Double-counted hour"}).status_code == 302
    tx = Transaction.objects.get(kind="adjustment")
    assert balanced(tx) and tx.reason == "Double-counted hour"
    wallet.refresh_from_db()
    platform = Wallet.objects.get(kind="platform")
    assert wallet.balance == Decimal("-25.5000")
    assert platform.balance == Decimal("25.5000")


def test_wallet_lock_and_unlock_from_the_admin(staff, w):
    wallet = wallet_of(domain=w.domain)
    lock = reverse("admin:billing_wallet_lock", args=[wallet.pk])
    unlock = reverse("admin:billing_wallet_unlock", args=[wallet.pk])
    assert staff.post(lock, {"reason": "Contract ended"}).status_code == 302
    wallet.refresh_from_db()
    assert wallet.locked and wallet.lock_reason == "Contract ended"

    response = staff.post(unlock, {})
    assert response.status_code == 200
    assert "Cannot unlock" in response.content.decode()

    services.wallet_recharge(actor=w.platform, wallet=wallet, amount="1", method="cash")
    assert staff.post(unlock, {}).status_code == 302
    wallet.refresh_from_db()
    assert not wallet.locked


def test_changelist_action_opens_the_form_for_one_wallet(staff, w):
    wallet = wallet_of(domain=w.domain)
    response = staff.post(
        reverse("admin:billing_wallet_changelist"),
        {"action": "recharge_action", "_selected_action": [wallet.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:billing_wallet_recharge", args=[wallet.pk])


def test_credit_ceiling_through_the_change_form(staff, w):
    wallet = wallet_of(domain=w.domain)
    url = reverse("admin:billing_wallet_change", args=[wallet.pk])
    data = {
        "credit_limit": "0",
        "credit_ceiling": "1000",
        "alert_threshold": "",
        "billing_admin": "",
    }
    assert staff.post(url, data).status_code == 302
    wallet.refresh_from_db()
    assert wallet.credit_ceiling == Decimal("1000.0000")
    # A limit above the ceiling is refused on the form; nothing changes.
    response = staff.post(url, {**data, "credit_limit": "2000"})
    assert response.status_code == 200
    assert "above the ceiling" in response.content.decode()
    wallet.refresh_from_db()
    assert wallet.credit_limit == 0


# -- The ledger is read-only --------------------------------------------------------------------


def test_ledger_is_never_editable(staff, w):
    wallet = wallet_of(domain=w.domain)
    tx = services.wallet_recharge(actor=w.platform, wallet=wallet, amount="10", method="cash")
    entry = tx.entries.first()
    page = staff.get(reverse("admin:billing_transaction_change", args=[tx.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert (
        staff.post(
            reverse("admin:billing_transaction_change", args=[tx.pk]), {"memo": "x"}
        ).status_code
        == 403
    )
    assert staff.get(reverse("admin:billing_transaction_add")).status_code == 403
    assert staff.post(reverse("admin:billing_transaction_delete", args=[tx.pk])).status_code == 403
    assert (
        staff.post(
            reverse("admin:billing_entry_change", args=[entry.pk]), {"amount": "99"}
        ).status_code
        == 403
    )
    assert staff.post(reverse("admin:billing_entry_delete", args=[entry.pk])).status_code == 403
    entry.refresh_from_db()
    assert entry.amount == Decimal("10.0000")


def test_reverse_a_transaction_with_a_reason(staff, w):
    wallet = wallet_of(domain=w.domain)
    tx = services.wallet_recharge(actor=w.platform, wallet=wallet, amount="10", method="cash")
    page = staff.get(reverse("admin:billing_transaction_change", args=[tx.pk]))
    url = reverse("admin:billing_transaction_reverse", args=[tx.pk])
    assert url in page.content.decode()
    assert staff.post(url, {"reason": ""}).status_code == 200
    assert staff.post(url, {"reason": "Cheque bounced"}).status_code == 302
    reversal = Transaction.objects.get(reverses=tx)
    assert balanced(reversal) and reversal.reason == "Cheque bounced"
    wallet.refresh_from_db()
    assert wallet.balance == 0
    # Twice is refused with the service's message.
    response = staff.post(url, {"reason": "again"})
    assert "already been reversed" in response.content.decode()
    assert Transaction.objects.filter(reverses=tx).count() == 1


# -- Prices, capacity, allocations, requests, webhooks -----------------------------------------


def test_price_version_only_in_the_future_and_never_changed(staff, w):
    url = reverse("admin:billing_priceversion_add")
    future = timezone.localtime() + timedelta(days=10)
    rates = {
        "vcpu_hour": "0.06",
        "ram_gib_hour": "0.02",
        "disk_gib_hour": "0.0005",
        "domain_fee": "100",
        "project_fee": "10",
        "user_fee": "1",
    }
    past = timezone.localtime() - timedelta(days=1)
    response = staff.post(
        url,
        {"effective_from_0": past.strftime("%Y-%m-%d"), "effective_from_1": "00:00:00", **rates},
    )
    assert response.status_code == 200
    assert "only take effect in the future" in response.content.decode()
    count = PriceVersion.objects.count()

    response = staff.post(
        url,
        {"effective_from_0": future.strftime("%Y-%m-%d"), "effective_from_1": "00:00:00", **rates},
    )
    assert response.status_code == 302
    version = PriceVersion.objects.latest("effective_from")
    assert PriceVersion.objects.count() == count + 1
    assert (version.vcpu_hour, version.created_by) == (Decimal("0.0600"), w.platform)

    changelist = staff.get(reverse("admin:billing_priceversion_changelist")).content.decode()
    assert "future" in changelist and "in force" in changelist
    change = reverse("admin:billing_priceversion_change", args=[version.pk])
    assert staff.post(change, {**rates, "vcpu_hour": "9"}).status_code == 403
    assert (
        staff.post(reverse("admin:billing_priceversion_delete", args=[version.pk])).status_code
        == 403
    )


def test_platform_capacity_through_its_service(staff, w):
    capacity = PlatformCapacity.objects.get(pk=1)
    url = reverse("admin:billing_platformcapacity_change", args=[capacity.pk])
    data = {"vcpus": 200, "ram_gib": 800, "disk_gib": 20000, "overcommit": "1.5"}
    assert staff.post(url, data).status_code == 302
    capacity.refresh_from_db()
    assert (capacity.vcpus, capacity.overcommit) == (200, Decimal("1.50"))


def test_allocation_add_quotes_then_sets(staff, w):
    url = reverse("admin:billing_allocation_add")
    data = {"domain": w.domain.pk, "project": "", "vcpus": 10, "ram_gib": 20, "disk_gib": 100}
    response = staff.post(url, {**data, "_quote": "1"})
    assert response.status_code == 200
    assert response.context["quote"]["hourly_cost"] == Decimal("0.9500")
    assert "¥684.0000 per 30 days" in response.content.decode()
    assert not Allocation.objects.exists()

    assert staff.post(url, data).status_code == 302
    current = Allocation.objects.get(level=Level.DOMAIN, domain=w.domain, end__isnull=True)
    assert (current.vcpus, current.created_by) == (10, w.platform)
    # Over the platform capacity: refused with the numbers, nothing written.
    response = staff.post(url, {**data, "vcpus": 101})
    assert "vCPU: 101 / 100" in response.content.decode()
    assert Allocation.objects.count() == 1
    # History is read-only.
    change = reverse("admin:billing_allocation_change", args=[current.pk])
    assert staff.post(change, {"vcpus": 1}).status_code == 403


def test_recharge_requests_approved_from_the_admin(staff, w):
    wallet = wallet_of(domain=w.domain)
    request = services.recharge_request_create(
        actor=w.domain_admin, wallet=wallet, amount="300", method="bank_transfer"
    )
    response = staff.post(
        reverse("admin:billing_rechargerequest_changelist"),
        {"action": "approve", "_selected_action": [request.pk]},
    )
    assert response.status_code == 302
    request.refresh_from_db()
    wallet.refresh_from_db()
    assert request.status == "approved" and balanced(request.transaction)
    assert wallet.balance == Decimal("300.0000")
    assert RechargeRequest.objects.filter(status="pending").count() == 0


def test_webhook_editable_through_a_service(staff, w):
    url = reverse("admin:billing_webhook_add")
    response = staff.post(
        url,
        {
            "domain": w.domain.pk,
            "url": "https://hooks.example/x",
            "format": "feishu",
            "active": "on",
        },
    )
    assert response.status_code == 302
    hook = Webhook.objects.get(domain=w.domain)
    assert (hook.url, hook.format) == ("https://hooks.example/x", "feishu")
    response = staff.post(
        url, {"domain": w.domain.pk, "project": w.project.pk, "url": "https://a.b/"}
    )
    assert response.status_code == 200
    assert Webhook.objects.count() == 1


def test_lock_periods_and_compute_requests_are_listed(staff, w):
    enforcement.tenant_lock(actor=w.platform, domain=w.domain, reason="Audit")
    body = staff.get(reverse("admin:billing_lockperiod_changelist")).content.decode()
    assert "Audit" in body
    body = staff.get(reverse("admin:billing_computerequest_changelist")).content.decode()
    assert "Audit" in body


def test_wallet_page_links_to_its_transactions(staff, w):
    north, south = wallet_of(domain=w.domain), wallet_of(domain=w.other_domain)
    mine = services.wallet_recharge(actor=w.platform, wallet=north, amount="7", method="cash")
    services.wallet_recharge(actor=w.platform, wallet=south, amount="8", method="cash")
    page = staff.get(reverse("admin:billing_wallet_change", args=[north.pk])).content.decode()
    link = f"?entries__wallet__id__exact={north.pk}"
    assert link in page
    response = staff.get(reverse("admin:billing_transaction_changelist") + link)
    assert list(response.context["cl"].result_list) == [mine]
