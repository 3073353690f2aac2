"""The billing pages of the portal, through the Django test client, for every role: the domain
and project billing pages, recharges and requests, credit, locks, allocations with a live
dry-run quote, member limits and budgets, and the student's own usage."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import charging, enforcement, services
from billing.models import (
    Allocation,
    ComputeRequest,
    Entry,
    Holding,
    Level,
    ProjectDefaults,
    RechargeRequest,
    Transaction,
    Wallet,
)
from tenancy.models import Membership

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def w(world):
    """The world with open wallets (the factories bypass the services that open them), a
    platform capacity and a domain allocation of 10 vCPU / 20 GiB RAM / 100 GiB disk."""
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    services.allocation_set(
        actor=world.platform,
        target=services.target_of(domain=world.domain),
        vcpus=10,
        ram_gib=20,
        disk_gib=100,
    )
    return world


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


def wallet_of(*, domain=None, project=None) -> Wallet:
    return Wallet.objects.get(**({"project": project} if project else {"domain": domain}))


def ledger_state() -> tuple[int, int, int, int]:
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        Allocation.objects.count(),
        RechargeRequest.objects.count(),
    )


# -- Who sees which page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("platform", 200),
        ("domain_admin", 200),
        ("domain_assistant", 200),
        ("project_admin", 403),  # the domain is visible (home domain), its wallet is not theirs
        ("member", 403),
        ("other_admin", 404),  # a foreign domain
    ],
)
def test_domain_billing_page_by_role(w, login, who, status):
    response = login(getattr(w, who)).get(reverse("portal:domain_billing", args=[w.domain.pk]))
    assert response.status_code == status
    if status == 200:
        body = response.content.decode()
        assert "¥0.0000" in body
        assert "10 vCPU · 20 GiB RAM · 100 GiB" in body
        assert response.context["wallet"] == wallet_of(domain=w.domain)


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("platform", 200),
        ("domain_admin", 200),
        ("domain_assistant", 200),
        ("project_admin", 200),
        ("project_assistant", 200),
        ("member", 403),
        ("outsider", 404),
        ("other_admin", 404),
    ],
)
def test_project_billing_page_by_role(w, login, who, status):
    response = login(getattr(w, who)).get(reverse("portal:project_billing", args=[w.project.pk]))
    assert response.status_code == status


def test_billing_tabs_link_the_pages(w, login):
    body = login(w.domain_admin).get(reverse("portal:domain_detail", args=[w.domain.pk]))
    assert reverse("portal:domain_billing", args=[w.domain.pk]) in body.content.decode()
    body = login(w.project_admin).get(reverse("portal:project_detail", args=[w.project.pk]))
    assert reverse("portal:project_billing", args=[w.project.pk]) in body.content.decode()


def test_a_tenant_older_than_billing_gets_its_wallet_on_first_view(world, login):
    assert not Wallet.objects.filter(project=world.project).exists()
    response = login(world.project_admin).get(
        reverse("portal:project_billing", args=[world.project.pk])
    )
    assert response.status_code == 200
    assert Wallet.objects.get(project=world.project).balance == Decimal("0")


def test_foreign_wallets_are_not_found(w, login):
    north = wallet_of(project=w.project)
    client = login(w.other_admin)
    before = ledger_state()
    for name, data in [
        ("portal:billing_recharge_request", {"request-amount": "10", "request-method": "cash"}),
        ("portal:billing_wallet_recharge", {"recharge-amount": "10", "recharge-method": "cash"}),
        ("portal:billing_wallet_credit", {"credit-credit_limit": "10"}),
        ("portal:billing_wallet_unlock", {}),
    ]:
        assert client.post(reverse(name, args=[north.pk]), data).status_code == 404
    assert client.post(reverse("portal:project_billing", args=[w.project.pk])).status_code in (
        404,
        405,
    )
    assert ledger_state() == before


# -- Recharges and recharge requests ----------------------------------------------------------


def test_recharge_request_confirmed_by_the_receiving_side(w, login, client):
    wallet = wallet_of(project=w.project)
    url = reverse("portal:billing_recharge_request", args=[wallet.pk])
    response = login(w.project_admin).post(
        url,
        {"request-amount": "150.50", "request-method": "bank_transfer", "request-reference": "B-1"},
    )
    assert response.status_code == 302
    request = RechargeRequest.objects.get(wallet=wallet)
    assert (request.amount, request.status, request.requested_by) == (
        Decimal("150.5000"),
        "pending",
        w.project_admin,
    )
    wallet.refresh_from_db()
    assert wallet.balance == 0  # nobody credits their own wallet

    # The project admin may not confirm it (not the receiving side).
    decide = reverse("portal:billing_recharge_request_decide", args=[request.pk])
    assert client.post(decide, {"decision": "approve"}).status_code == 403

    # The domain admin (who receives the money) sees it and confirms it.
    page = login(w.domain_admin).get(reverse("portal:project_billing", args=[w.project.pk]))
    assert "150.5000" in page.content.decode()
    assert list(page.context["pending_requests"]) == [request]
    response = client.post(decide, {"decision": "approve"}, follow=True)
    assert "confirmed and credited" in response.content.decode()
    request.refresh_from_db()
    wallet.refresh_from_db()
    assert request.status == "approved"
    assert wallet.balance == Decimal("150.5000")
    entries = list(request.transaction.entries.values_list("wallet_id", "amount"))
    assert sorted(entries, key=str) == sorted(
        [(wallet.pk, Decimal("150.5000")), (None, Decimal("-150.5000"))], key=str
    )


def test_rejected_request_moves_no_money(w, login):
    wallet = wallet_of(project=w.project)
    request = services.recharge_request_create(
        actor=w.project_admin, wallet=wallet, amount="20", method="cash"
    )
    decide = reverse("portal:billing_recharge_request_decide", args=[request.pk])
    login(w.domain_admin).post(decide, {"decision": "reject"})
    request.refresh_from_db()
    wallet.refresh_from_db()
    assert (request.status, wallet.balance, Transaction.objects.count()) == ("denied", 0, 0)


def test_project_admin_may_not_record_a_recharge(w, login):
    wallet = wallet_of(project=w.project)
    page = login(w.project_admin).get(reverse("portal:project_billing", args=[w.project.pk]))
    assert page.context["may"]["recharge"] is False
    assert 'id="recharge-request"' in page.content.decode()
    url = reverse("portal:billing_wallet_recharge", args=[wallet.pk])
    response = login(w.project_admin).post(
        url, {"recharge-amount": "10", "recharge-method": "cash"}
    )
    assert response.status_code == 403
    assert Transaction.objects.count() == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "is not a number"),
        ("-5", "must be positive"),
        ("0", "must not be zero"),
        ("1.23456", "At most 4 decimal places"),
        ("NaN", "is not a number"),
        ("1e12", "is not a number"),  # no exponents
        ("1000000000000", "too large"),
    ],
)
def test_bad_recharge_amounts_show_the_service_message_and_write_nothing(w, login, amount, message):
    wallet = wallet_of(project=w.project)
    before = ledger_state()
    response = login(w.domain_admin).post(
        reverse("portal:billing_wallet_recharge", args=[wallet.pk]),
        {"recharge-amount": amount, "recharge-method": "cash"},
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["recharge_form"].errors["amount"]
    assert ledger_state() == before
    wallet.refresh_from_db()
    assert wallet.balance == 0


def test_domain_admin_records_a_project_recharge(w, login):
    wallet = wallet_of(project=w.project)
    response = login(w.domain_admin).post(
        reverse("portal:billing_wallet_recharge", args=[wallet.pk]),
        {"recharge-amount": "99.99", "recharge-method": "cash", "recharge-reference": "R7"},
        follow=True,
    )
    assert "99.9900" in response.content.decode()
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("99.9900")
    tx = Transaction.objects.get(wallet=wallet)
    assert (tx.kind, tx.method, tx.reference) == ("recharge", "cash", "R7")
    # The recent transactions table shows it.
    assert [e.amount for e in response.context["entries"]] == [Decimal("99.9900")]


# -- Credit and billing admin -----------------------------------------------------------------


def test_credit_limit_above_the_ceiling_is_refused_with_a_message(w, login):
    wallet = wallet_of(project=w.project)
    url = reverse("portal:billing_wallet_credit", args=[wallet.pk])
    # The superior (domain admin) sets the ceiling; the project admin the limit.
    login(w.domain_admin).post(url, {"credit-credit_ceiling": "100"})
    wallet.refresh_from_db()
    assert wallet.credit_ceiling == Decimal("100.0000")

    client = login(w.project_admin)
    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    assert "credit_ceiling" not in page.context["credit_form"].fields
    response = client.post(url, {"credit-credit_limit": "150"})
    assert response.status_code == 200
    assert "The credit limit 150.0000 is above the ceiling 100.0000." in response.content.decode()
    wallet.refresh_from_db()
    assert wallet.credit_limit == 0

    # A ceiling sent by the project admin is simply not a field of their form.
    client.post(url, {"credit-credit_limit": "80", "credit-credit_ceiling": "5000"})
    wallet.refresh_from_db()
    assert (wallet.credit_limit, wallet.credit_ceiling) == (Decimal("80"), Decimal("100"))
    assert wallet.available == Decimal("80.0000")


def test_assistants_may_not_set_credit(w, login):
    wallet = wallet_of(project=w.project)
    response = login(w.project_assistant).post(
        reverse("portal:billing_wallet_credit", args=[wallet.pk]), {"credit-credit_limit": "1"}
    )
    assert response.status_code == 403


def test_billing_admin_switch(w, login):
    wallet = wallet_of(domain=w.domain)
    second = Membership.objects.get(user=w.project_admin).user  # not a domain admin
    url = reverse("portal:billing_wallet_billing_admin", args=[wallet.pk])
    response = login(w.domain_admin).post(url, {"ba-billing_admin": second.pk})
    assert response.status_code == 200  # not among the domain's admins: refused by the form
    assert response.context["billing_admin_form"].errors
    response = login(w.domain_admin).post(url, {"ba-billing_admin": w.domain_admin.pk})
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.billing_admin == w.domain_admin
    assert (
        login(w.domain_assistant).post(url, {"ba-billing_admin": w.domain_admin.pk}).status_code
        == 403
    )


# -- Lock and unlock --------------------------------------------------------------------------


def test_unlock_is_refused_until_available_is_positive_then_restarts_vms(w, login):
    enforcement.tenant_lock(actor=w.domain_admin, project=w.project, reason="Unpaid invoice")
    wallet = wallet_of(project=w.project)
    client = login(w.domain_admin)
    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    body = page.content.decode()
    assert "Unpaid invoice" in body
    assert 'id="unlock"' in body

    url = reverse("portal:billing_wallet_unlock", args=[wallet.pk])
    response = client.post(url, {"unlock-restart_servers": "on"})
    assert response.status_code == 200
    assert "Cannot unlock: the available amount is ¥0.0000" in response.content.decode()
    wallet.refresh_from_db()
    assert wallet.locked

    services.wallet_recharge(actor=w.domain_admin, wallet=wallet, amount="5", method="cash")
    response = client.post(url, {"unlock-restart_servers": "on"})
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert not wallet.locked
    assert ComputeRequest.objects.filter(project=w.project, action="restart").count() == 1


def test_project_admin_cannot_lock_but_domain_admin_can(w, login):
    wallet = wallet_of(project=w.project)
    url = reverse("portal:billing_wallet_lock", args=[wallet.pk])
    assert login(w.project_admin).post(url, {"lock-reason": "x"}).status_code == 403
    response = login(w.domain_admin).post(url, {"lock-reason": ""})
    assert response.status_code == 200 and not Wallet.objects.get(pk=wallet.pk).locked
    assert login(w.domain_admin).post(url, {"lock-reason": "Course paused"}).status_code == 302
    assert Wallet.objects.get(pk=wallet.pk).lock_reason == "Course paused"


# -- Allocations with a live quote ------------------------------------------------------------


def test_allocation_quote_is_a_dry_run_with_the_numbers(w, login):
    client = login(w.domain_admin)
    url = reverse("portal:billing_domain_quote", args=[w.domain.pk])
    before = ledger_state()
    response = client.post(
        url, {"project": w.project.pk, "vcpus": 4, "ram_gib": 8, "disk_gib": 50}, **HTMX
    )
    assert response.status_code == 200
    quote = response.context["quote"]
    # 4 × 0.05 + 8 × 0.02 + 50 × 0.0005 = 0.385 per hour; × 720 hours for 30 days.
    assert quote["hourly_cost"] == Decimal("0.3850")
    assert quote["monthly_cost"] == Decimal("277.2000")
    assert quote["hourly_change"] == Decimal("0.3850")
    body = response.content.decode()
    assert "¥0.3850" in body and "¥277.2000" in body
    assert "4/10 vCPU, 8/20 GiB RAM, 50/100 GiB disk" in body
    assert ledger_state() == before  # nothing written

    # Beyond the domain's allocation: refused with the resource and the numbers.
    response = client.post(
        url, {"project": w.project.pk, "vcpus": 12, "ram_gib": 8, "disk_gib": 50}, **HTMX
    )
    assert response.context["refusal"].code == "domain_allocation_exceeded"
    assert "vCPU: 12 / 10" in response.content.decode()
    assert ledger_state() == before


def test_allocation_form_sets_the_project_allocation(w, login):
    client = login(w.domain_admin)
    page = client.get(reverse("portal:domain_billing", args=[w.domain.pk]))
    quote_url = reverse("portal:billing_domain_quote", args=[w.domain.pk])
    assert f'hx-post="{quote_url}"' in page.content.decode()
    response = client.post(
        reverse("portal:billing_domain_allocation", args=[w.domain.pk]),
        {"project": w.project.pk, "vcpus": 4, "ram_gib": 8, "disk_gib": 50},
    )
    assert response.status_code == 302
    current = Allocation.objects.get(level=Level.PROJECT, project=w.project, end__isnull=True)
    assert (current.vcpus, current.ram_gib, current.disk_gib) == (4, 8, 50)

    # Over the bound: the form shows the refusal, nothing changes.
    response = client.post(
        reverse("portal:billing_domain_allocation", args=[w.domain.pk]),
        {"project": w.project.pk, "vcpus": 4, "ram_gib": 80, "disk_gib": 50},
    )
    assert response.status_code == 200
    assert "RAM (GiB): 80 / 20" in response.content.decode()
    assert Allocation.objects.filter(level=Level.PROJECT, project=w.project).count() == 1


def test_a_domain_admin_may_not_set_the_domains_own_allocation(w, login):
    response = login(w.domain_admin).post(
        reverse("portal:billing_domain_allocation", args=[w.domain.pk]),
        {"project": "", "vcpus": 100, "ram_gib": 8, "disk_gib": 50},
    )
    assert response.status_code == 200
    assert response.context["allocation_form"].errors["project"]
    own = Allocation.objects.get(level=Level.DOMAIN, domain=w.domain, end__isnull=True)
    assert own.vcpus == 10


def test_project_staff_may_not_allocate_to_their_project(w, login):
    client = login(w.project_admin)
    data = {"vcpus": 1, "ram_gib": 1, "disk_gib": 1}
    assert (
        client.post(reverse("portal:billing_project_quote", args=[w.project.pk]), data).status_code
        == 403
    )
    assert (
        client.post(
            reverse("portal:billing_project_allocation", args=[w.project.pk]), data
        ).status_code
        == 403
    )
    assert (
        client.post(reverse("portal:billing_domain_quote", args=[w.domain.pk]), data).status_code
        == 403
    )


# -- Member limits, budgets and consumption ---------------------------------------------------


def rate_member(w, *, hours: int) -> None:
    """The member's VM held 2 vCPU / 4 GiB / 20 GiB for `hours` full hours: 0.19 per hour."""
    now = charging.floor_hour(timezone.now())
    start = now - timedelta(hours=hours)
    Holding.objects.create(
        membership=Membership.objects.get(user=w.member),
        project=w.project,
        user=w.member,
        server_ref="vm-1",
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        start=start,
        end=now,
    )
    for i in range(hours):
        charging.rate_hour(start + timedelta(hours=i))


def test_member_limits_table_with_consumption_bars(w, login):
    rate_member(w, hours=10)  # ¥1.90
    membership = Membership.objects.get(user=w.member)
    client = login(w.project_assistant)
    response = client.post(
        reverse("portal:billing_member_limit", args=[membership.pk]),
        {
            f"m{membership.pk}-vcpus": 2,
            f"m{membership.pk}-ram_gib": 4,
            f"m{membership.pk}-disk_gib": 20,
            f"m{membership.pk}-budget": "2.50",
        },
    )
    assert response.status_code == 302
    limit = Allocation.objects.get(level=Level.MEMBER, user=w.member, end__isnull=True)
    assert (limit.vcpus, limit.budget) == (2, Decimal("2.5000"))

    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    row = next(r for r in page.context["member_rows"] if r["membership"] == membership)
    assert row["consumption"] == Decimal("1.9000")
    assert row["percent"] == Decimal("76.0")
    assert row["colour"] == "info"
    body = page.content.decode()
    assert 'class="progress-bar bg-info bar-w-76"' in body

    # 90 % and beyond is red.
    services.allocation_set(
        actor=w.project_admin,
        target=services.target_of(membership=membership),
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        budget="2",
    )
    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    row = next(r for r in page.context["member_rows"] if r["membership"] == membership)
    assert (row["percent"], row["colour"], row["bar"]) == (Decimal("95.0"), "danger", 95)


def test_bad_member_limit_shows_the_error_and_writes_nothing(w, login):
    membership = Membership.objects.get(user=w.member)
    before = ledger_state()
    response = login(w.project_admin).post(
        reverse("portal:billing_member_limit", args=[membership.pk]),
        {
            f"m{membership.pk}-vcpus": 2,
            f"m{membership.pk}-ram_gib": 4,
            f"m{membership.pk}-disk_gib": 20,
            f"m{membership.pk}-budget": "-3",
        },
    )
    assert response.status_code == 200
    assert "The amount must be positive." in response.content.decode()
    assert ledger_state() == before


def test_members_may_not_set_limits(w, login):
    membership = Membership.objects.get(user=w.member)
    response = login(w.member).post(
        reverse("portal:billing_member_limit", args=[membership.pk]),
        {
            f"m{membership.pk}-vcpus": 99,
            f"m{membership.pk}-ram_gib": 4,
            f"m{membership.pk}-disk_gib": 20,
        },
    )
    assert response.status_code == 403


def test_project_default_member_limit(w, login):
    response = login(w.project_admin).post(
        reverse("portal:billing_project_defaults", args=[w.project.pk]),
        {
            "defaults-vcpus": 1,
            "defaults-ram_gib": 2,
            "defaults-disk_gib": 10,
            "defaults-budget": "30",
        },
    )
    assert response.status_code == 302
    defaults = ProjectDefaults.objects.get(project=w.project)
    assert (defaults.vcpus, defaults.ram_gib, defaults.disk_gib, defaults.budget) == (
        1,
        2,
        10,
        Decimal("30.0000"),
    )


def test_project_admin_unlocks_a_member_and_raises_the_budget(w, login):
    rate_member(w, hours=10)  # ¥1.90
    membership = Membership.objects.get(user=w.member)
    services.allocation_set(
        actor=w.project_admin,
        target=services.target_of(membership=membership),
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        budget="1.5",
    )
    enforcement.enforce(now=timezone.now())
    membership.refresh_from_db()
    assert membership.locked
    client = login(w.project_admin)
    url = reverse("portal:billing_member_unlock", args=[membership.pk])
    response = client.post(url, {"budget": ""}, follow=True)
    assert "Cannot unlock" in response.content.decode()
    membership.refresh_from_db()
    assert membership.locked
    client.post(url, {"budget": "5"})
    membership.refresh_from_db()
    assert not membership.locked


# -- The student's own usage ------------------------------------------------------------------


def test_student_sees_limit_budget_and_consumption(w, login):
    rate_member(w, hours=4)  # ¥0.76
    membership = Membership.objects.get(user=w.member)
    services.allocation_set(
        actor=w.project_admin,
        target=services.target_of(membership=membership),
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        budget="10",
    )
    client = login(w.member)
    body = client.get(reverse("portal:dashboard")).content.decode()
    assert "2 vCPU · 4 GiB RAM · 20 GiB" in body
    assert "¥0.7600" in body and "¥10.0000" in body
    assert "7.6 % of the budget used" in body

    page = client.get(reverse("portal:project_detail", args=[w.project.pk]))
    assert "¥0.7600" in page.content.decode()
    usage = client.get(reverse("portal:my_usage"))
    assert [r["consumption"] for r in usage.context["usage_rows"]] == [Decimal("0.7600")]
