"""The billing API under /api/v1/: allocations, wallets, recharges and requests, transactions,
prices, notifications, and lock/unlock of tenants and members."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from billing import services
from billing.models import (
    Allocation,
    Entry,
    Notification,
    PriceVersion,
    RechargeRequest,
    Transaction,
    Wallet,
)
from teachcloud.testing.factories import ProjectFactory, UserFactory, api_token
from tenancy.models import Membership
from tenancy.services import membership_add

API = "/api/v1"


def client_for(user=None) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def wallet(tenant) -> Wallet:
    from tenancy.models import Domain

    if isinstance(tenant, Domain):
        return Wallet.objects.get(domain=tenant)
    return Wallet.objects.get(project=tenant)


def allocate_domain(w, vcpus=100, ram=400, disk=2000):
    return services.allocation_set(
        actor=w.platform,
        target=services.target_of(domain=w.domain),
        vcpus=vcpus,
        ram_gib=ram,
        disk_gib=disk,
    )


def allocate_project(w, vcpus=10, ram=20, disk=100):
    return services.allocation_set(
        actor=w.domain_admin,
        target=services.target_of(project=w.project),
        vcpus=vcpus,
        ram_gib=ram,
        disk_gib=disk,
    )


def member_of(w, user=None) -> Membership:
    return Membership.objects.get(project=w.project, user=user or w.member)


def recharge(w, tenant, amount="100.00"):
    return services.wallet_recharge(
        actor=w.platform, wallet=wallet(tenant), amount=amount, method="bank"
    )


# -- Allocations ------------------------------------------------------------------------------


def test_allocations_down_the_tree(w):
    response = client_for(w.platform).post(
        f"{API}/allocations/",
        {"domain": w.domain.pk, "vcpus": 100, "ram_gib": 400, "disk_gib": 2000},
        format="json",
    )
    assert response.status_code == 201, response.content
    domain_alloc = Allocation.objects.get(level="domain", domain=w.domain)
    body = response.json()
    assert body == {
        "id": domain_alloc.pk,
        "level": "domain",
        "domain": w.domain.pk,
        "project": None,
        "membership": None,
        "user": None,
        "vcpus": 100,
        "ram_gib": 400,
        "disk_gib": 2000,
        "budget": None,
        "start": body["start"],
        "end": None,
    }
    assert body["start"].endswith("+08:00")

    response = client_for(w.domain_admin).post(
        f"{API}/allocations/",
        {"project": w.project.pk, "vcpus": 10, "ram_gib": 20, "disk_gib": 100},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert (response.json()["level"], response.json()["project"]) == ("project", w.project.pk)

    membership = member_of(w)
    response = client_for(w.project_assistant).post(
        f"{API}/allocations/",
        {"membership": membership.pk, "vcpus": 2, "ram_gib": 4, "disk_gib": 40, "budget": "50.5"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["level"], body["membership"], body["user"]) == (
        "member",
        membership.pk,
        w.member.pk,
    )
    assert body["budget"] == "50.5000"


def test_a_change_ends_the_interval_and_opens_a_new_one(w):
    first = allocate_domain(w)
    client = client_for(w.platform)
    response = client.post(
        f"{API}/allocations/",
        {"domain": w.domain.pk, "vcpus": 120, "ram_gib": 400, "disk_gib": 2000},
        format="json",
    )
    assert response.status_code == 201
    first.refresh_from_db()
    assert first.end is not None
    assert first.vcpus == 100  # never edited in place
    history = client.get(f"{API}/allocations/", {"domain": w.domain.pk}).json()["results"]
    assert [(row["vcpus"], row["end"] is None) for row in history] == [(120, True), (100, False)]
    assert history[1]["end"] == history[0]["start"]


def test_same_values_answer_200_and_all_zero_ends_the_allocation(w):
    current = allocate_domain(w)
    client = client_for(w.platform)
    payload = {"domain": w.domain.pk, "vcpus": 100, "ram_gib": 400, "disk_gib": 2000}
    response = client.post(f"{API}/allocations/", payload, format="json")
    assert response.status_code == 200
    assert response.json()["id"] == current.pk
    assert Allocation.objects.count() == 1

    zero = {"domain": w.domain.pk, "vcpus": 0, "ram_gib": 0, "disk_gib": 0}
    response = client.post(f"{API}/allocations/", zero, format="json")
    assert response.status_code == 204
    assert response.content == b""
    current.refresh_from_db()
    assert current.end is not None
    assert not Allocation.objects.filter(end__isnull=True).exists()
    # Again (nothing allocated any more): still 204, nothing written.
    response = client.post(f"{API}/allocations/", zero, format="json")
    assert response.status_code == 204
    assert Allocation.objects.count() == 1


def test_dry_run_quotes_and_writes_nothing(w):
    allocate_domain(w)
    allocate_project(w, vcpus=4, ram=8, disk=50)
    before = list(Allocation.objects.values_list("pk", "end"))
    response = client_for(w.domain_admin).post(
        f"{API}/allocations/?dry_run=1",
        {"project": w.project.pk, "vcpus": 10, "ram_gib": 20, "disk_gib": 100},
        format="json",
    )
    assert response.status_code == 200, response.content
    # Default prices: 0.05 per vCPU-hour, 0.02 per GiB-RAM-hour, 0.0005 per GiB-disk-hour.
    # New: 10×0.05 + 20×0.02 + 100×0.0005 = 0.95; current: 4×0.05 + 8×0.02 + 50×0.0005 = 0.385.
    assert response.json() == {
        "hourly_cost": "0.9500",
        "monthly_cost": "684.0000",
        "hourly_change": "0.5650",
        "charged": True,
        "price_version": PriceVersion.objects.get().pk,
        "vcpus": 10,
        "ram_gib": 20,
        "disk_gib": 100,
        "totals": {
            "domain_allocated": {"vcpus": 10, "ram_gib": 20, "disk_gib": 100},
            "domain_allocation": {"vcpus": 100, "ram_gib": 400, "disk_gib": 2000},
        },
    }
    assert list(Allocation.objects.values_list("pk", "end")) == before


def test_dry_run_runs_the_bounds_and_a_member_quote_is_not_charged(w):
    allocate_domain(w)
    allocate_project(w)
    client = client_for(w.domain_admin)
    response = client.post(
        f"{API}/allocations/?dry_run=1",
        {"project": w.project.pk, "vcpus": 101, "ram_gib": 20, "disk_gib": 100},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "domain_allocation_exceeded"
    assert "101 / 100" in response.json()["detail"]

    response = client_for(w.project_admin).post(
        f"{API}/allocations/?dry_run=1",
        {"membership": member_of(w).pk, "vcpus": 2, "ram_gib": 4, "disk_gib": 40},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["charged"] is False
    assert response.json()["hourly_cost"] == "0.2000"  # 2×0.05 + 4×0.02 + 40×0.0005, rated
    assert not Allocation.objects.filter(level="member").exists()


def test_bounds_are_refused_with_the_numbers_and_nothing_written(w):
    allocate_domain(w, vcpus=100, ram=400, disk=2000)
    allocate_project(w, vcpus=60, ram=20, disk=100)
    count = Allocation.objects.count()
    response = client_for(w.domain_admin).post(
        f"{API}/allocations/",
        {"project": ProjectFactory(domain=w.domain).pk, "vcpus": 50, "ram_gib": 1, "disk_gib": 1},
        format="json",
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "domain_allocation_exceeded"
    assert "vCPU: 110 / 100" in body["detail"]
    assert body["fields"] == {"vcpus": ["110 > 100"]}

    response = client_for(w.platform).post(
        f"{API}/allocations/",
        {"domain": w.domain.pk, "vcpus": 59, "ram_gib": 400, "disk_gib": 2000},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "below_suballocated"
    assert "vCPU: 59 / 60" in response.json()["detail"]
    assert Allocation.objects.count() == count


def test_a_members_budget_is_kept_when_left_out_and_cleared_with_null(w):
    membership = member_of(w)
    client = client_for(w.project_admin)
    payload = {"membership": membership.pk, "vcpus": 2, "ram_gib": 4, "disk_gib": 40}
    assert (
        client.post(
            f"{API}/allocations/", {**payload, "budget": "30.00"}, format="json"
        ).status_code
        == 201
    )
    response = client.post(f"{API}/allocations/", {**payload, "vcpus": 4}, format="json")
    assert response.status_code == 201
    assert response.json()["budget"] == "30.0000"
    response = client.post(f"{API}/allocations/", {**payload, "budget": None}, format="json")
    assert response.status_code == 201
    assert response.json()["budget"] is None


@pytest.mark.parametrize(
    ("role", "target", "expected"),
    [
        ("domain_admin", "domain", 403),  # only platform staff allocate to domains
        ("domain_assistant", "project", 403),  # assistants do not allocate to projects
        ("project_admin", "project", 403),
        ("member", "membership", 403),  # nobody sets their own limit
        ("other_admin", "project", 400),  # foreign: not found
        ("other_admin", "membership", 400),
    ],
)
def test_who_may_allocate(w, role, target, expected):
    allocate_domain(w)
    ids_by_target = {
        "domain": w.domain.pk,
        "project": w.project.pk,
        "membership": member_of(w).pk,
    }
    payload = {target: ids_by_target[target], "vcpus": 1, "ram_gib": 1, "disk_gib": 1}
    response = client_for(getattr(w, role)).post(f"{API}/allocations/", payload, format="json")
    assert response.status_code == expected, response.content
    if expected == 400:
        assert list(response.json()["fields"]) == [target]
        assert "not found" in response.json()["fields"][target][0]
    assert Allocation.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "code", "fields"),
    [
        ({"vcpus": "4"}, "invalid", {"vcpus"}),
        ({"vcpus": 4.0}, "invalid", {"vcpus"}),
        ({"vcpus": True}, "invalid", {"vcpus"}),
        ({"vcpus": -1}, "invalid", {"vcpus"}),
        ({"vcpus": 10**7}, "invalid", {"vcpus"}),
        ({"vcpus": 2**70}, "invalid", {"vcpus"}),
        ({"vcpus": None}, "invalid", {"vcpus"}),
        ({"budget": 12.5}, "invalid", {"budget"}),
        ({"budget": "NaN"}, "invalid_amount", {"budget"}),
        ({"budget": "-1"}, "amount_not_positive", {"budget"}),
        ({"budget": "1.00001"}, "amount_too_precise", {"budget"}),
        ({"membership": "MEMBERSHIP"}, "invalid", {"membership"}),
        ({"project": "PROJECT"}, "one_target", None),
        ({"membership": None}, "one_target", None),
    ],
)
def test_allocation_input_is_strict(w, payload, code, fields):
    membership = member_of(w)
    base = {"membership": membership.pk, "vcpus": 2, "ram_gib": 4, "disk_gib": 40}
    body = {**base, **payload}
    if body.get("membership") == "MEMBERSHIP":
        body["membership"] = str(membership.pk)  # an id in quotes is not an id
    if body.get("project") == "PROJECT":
        body["project"] = w.project.pk  # two targets
    response = client_for(w.project_admin).post(f"{API}/allocations/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    if fields is not None:
        assert set(response.json()["fields"]) == fields
    assert not Allocation.objects.exists()


def test_allocation_lists_are_scoped(w):
    domain_alloc = allocate_domain(w)
    project_alloc = allocate_project(w)
    member_limit = services.allocation_set(
        actor=w.project_admin,
        target=services.target_of(membership=member_of(w)),
        vcpus=2,
        ram_gib=4,
        disk_gib=40,
    )
    assistant_limit = services.allocation_set(
        actor=w.project_admin,
        target=services.target_of(membership=member_of(w, w.project_assistant)),
        vcpus=1,
        ram_gib=1,
        disk_gib=1,
    )
    foreign = services.allocation_set(
        actor=w.platform,
        target=services.target_of(domain=w.other_domain),
        vcpus=1,
        ram_gib=1,
        disk_gib=1,
    )
    everything = {domain_alloc.pk, project_alloc.pk, member_limit.pk, assistant_limit.pk}

    def seen(role, **params):
        return set(ids(client_for(getattr(w, role)).get(f"{API}/allocations/", params)))

    assert seen("platform") == everything | {foreign.pk}
    assert seen("domain_admin") == everything
    assert seen("domain_assistant") == everything
    assert seen("project_admin") == everything - {domain_alloc.pk}
    assert seen("member") == {member_limit.pk}
    assert seen("other_admin") == {foreign.pk}
    assert seen("platform", domain=w.other_domain.pk) == {foreign.pk}
    assert seen("domain_admin", project=w.project.pk) == everything - {domain_alloc.pk}
    assert seen("domain_admin", membership=member_of(w).pk) == {member_limit.pk}
    client = client_for(w.other_admin)
    assert client.get(f"{API}/allocations/{domain_alloc.pk}/").status_code == 404
    response = client_for(w.member).get(f"{API}/allocations/{member_limit.pk}/")
    assert response.json()["vcpus"] == 2


@pytest.mark.parametrize(
    "params",
    [{"domain": "x"}, {"project": "-1"}, {"membership": "1.5"}, {"domain": str(2**64)}],
)
def test_allocation_filters_are_checked(w, params):
    response = client_for(w.platform).get(f"{API}/allocations/", params)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == list(params)


# -- Wallets ----------------------------------------------------------------------------------


def test_wallet_lists_are_scoped(w):
    platform_wallet = Wallet.objects.get(kind="platform")
    domain_wallet, project_wallet = wallet(w.domain), wallet(w.project)
    other_domain, other_project = wallet(w.other_domain), wallet(w.other_project)

    def seen(role, **params):
        return set(ids(client_for(getattr(w, role)).get(f"{API}/wallets/", params)))

    assert seen("platform") == {
        platform_wallet.pk,
        domain_wallet.pk,
        project_wallet.pk,
        other_domain.pk,
        other_project.pk,
    }
    assert seen("domain_admin") == {domain_wallet.pk, project_wallet.pk}
    assert seen("domain_assistant") == {domain_wallet.pk, project_wallet.pk}
    assert seen("project_admin") == {project_wallet.pk}
    assert seen("project_assistant") == {project_wallet.pk}
    assert seen("member") == set()
    assert seen("other_admin") == {other_domain.pk, other_project.pk}
    assert seen("platform", domain=w.domain.pk) == {domain_wallet.pk, project_wallet.pk}
    assert seen("platform", project=w.other_project.pk) == {other_project.pk}

    rows = {
        row["id"]: row for row in client_for(w.platform).get(f"{API}/wallets/").json()["results"]
    }
    assert (rows[platform_wallet.pk]["domain"], rows[platform_wallet.pk]["project"]) == (
        None,
        None,
    )
    assert (rows[project_wallet.pk]["domain"], rows[project_wallet.pk]["project"]) == (
        w.domain.pk,
        w.project.pk,
    )


def test_wallet_detail_shows_money_as_decimal_strings(w):
    recharge(w, w.domain, "1000.5")
    services.wallet_update(actor=w.platform, wallet=wallet(w.domain), credit_ceiling="300")
    services.wallet_update(actor=w.domain_admin, wallet=wallet(w.domain), credit_limit="200")
    response = client_for(w.domain_assistant).get(f"{API}/wallets/{wallet(w.domain).pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": wallet(w.domain).pk,
        "kind": "domain",
        "domain": w.domain.pk,
        "project": None,
        "balance": "1000.5000",
        "credit_limit": "200.0000",
        "credit_ceiling": "300.0000",
        "available": "1200.5000",
        "locked": False,
        "locked_at": None,
        "lock_reason": "",
        "billing_admin": None,
        "alert_threshold": None,
    }
    assert client_for(w.member).get(f"{API}/wallets/{wallet(w.domain).pk}/").status_code == 404
    assert client_for(w.other_admin).get(f"{API}/wallets/{wallet(w.project).pk}/").status_code == (
        404
    )


def test_credit_limit_and_ceiling(w):
    project_wallet = wallet(w.project)
    url = f"{API}/wallets/{project_wallet.pk}/"
    # The project's admin may not set the ceiling; the domain admin (the superior) may.
    response = client_for(w.project_admin).patch(url, {"credit_ceiling": "50"}, format="json")
    assert response.status_code == 403
    response = client_for(w.domain_admin).patch(url, {"credit_ceiling": "50"}, format="json")
    assert response.status_code == 200
    assert response.json()["credit_ceiling"] == "50.0000"
    # Above the ceiling: refused with both numbers, nothing written.
    response = client_for(w.project_admin).patch(url, {"credit_limit": "50.0001"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "credit_above_ceiling"
    assert "50.0001" in body["detail"] and "50.0000" in body["detail"]
    assert list(body["fields"]) == ["credit_limit"]
    project_wallet.refresh_from_db()
    assert project_wallet.credit_limit == 0
    response = client_for(w.project_admin).patch(url, {"credit_limit": "50"}, format="json")
    assert response.status_code == 200
    assert (response.json()["credit_limit"], response.json()["available"]) == (
        "50.0000",
        "50.0000",
    )
    # Assistants do not set credit limits.
    response = client_for(w.project_assistant).patch(url, {"credit_limit": "1"}, format="json")
    assert response.status_code == 403
    # A JSON number for money is refused.
    response = client_for(w.project_admin).patch(url, {"credit_limit": 10}, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["credit_limit"]


def test_billing_admin_and_alert_threshold(w):
    url = f"{API}/wallets/{wallet(w.domain).pk}/"
    client = client_for(w.domain_admin)
    response = client.patch(url, {"billing_admin": w.domain_admin.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["billing_admin"] == w.domain_admin.pk
    response = client.patch(url, {"billing_admin": w.domain_assistant.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "not_an_admin"
    response = client.patch(url, {"billing_admin": w.other_admin.pk}, format="json")
    assert response.status_code == 400
    assert "not found" in response.json()["fields"]["billing_admin"][0]
    response = client_for(w.domain_assistant).patch(
        url, {"billing_admin": w.domain_admin.pk}, format="json"
    )
    assert response.status_code == 403

    response = client_for(w.domain_assistant).patch(url, {"alert_threshold": "25.5"}, format="json")
    assert response.status_code == 200
    assert response.json()["alert_threshold"] == "25.5000"
    response = client.patch(url, {"alert_threshold": None}, format="json")
    assert response.status_code == 200
    assert response.json()["alert_threshold"] is None
    wallet_row = wallet(w.domain)
    assert (wallet_row.billing_admin_id, wallet_row.alert_threshold) == (w.domain_admin.pk, None)


def test_platform_wallet_is_staff_only(w):
    platform_wallet = Wallet.objects.get(kind="platform")
    url = f"{API}/wallets/{platform_wallet.pk}/"
    assert client_for(w.domain_admin).get(url).status_code == 404
    response = client_for(w.platform).get(url)
    assert (response.json()["kind"], response.json()["domain"]) == ("platform", None)
    response = client_for(w.platform).post(
        f"{API}/wallets/{platform_wallet.pk}/recharges/",
        {"amount": "5", "method": "bank"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "platform_wallet"


# -- Recharges --------------------------------------------------------------------------------


def test_the_receiving_side_records_recharges(w):
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    response = client_for(w.platform).post(
        url,
        {"amount": "1000.50", "method": "bank transfer", "reference": "BOC-1", "payer": "Bursar"},
        format="json",
    )
    assert response.status_code == 201, response.content
    tx = Transaction.objects.get()
    assert response.json() == {
        "id": tx.pk,
        "kind": "recharge",
        "wallet": wallet(w.domain).pk,
        "created_at": response.json()["created_at"],
        "period_start": None,
        "entries": [
            {"wallet": wallet(w.domain).pk, "amount": "1000.5000"},
            {"wallet": None, "amount": "-1000.5000"},
        ],
        "memo": "Recharge",
        "payer": "Bursar",
        "method": "bank transfer",
        "reference": "BOC-1",
        "reason": "",
        "reverses": None,
    }
    assert wallet(w.domain).balance == Decimal("1000.5000")
    listed = client_for(w.domain_assistant).get(url).json()
    assert (listed["count"], listed["results"][0]["id"]) == (1, tx.pk)

    # Nobody credits their own wallet: the domain's admins may not recharge the domain wallet…
    response = client_for(w.domain_admin).post(url, {"amount": "1", "method": "x"}, format="json")
    assert response.status_code == 403
    # …but they receive the money of their projects.
    project_url = f"{API}/wallets/{wallet(w.project).pk}/recharges/"
    response = client_for(w.domain_admin).post(
        project_url, {"amount": "20", "method": "cash"}, format="json"
    )
    assert response.status_code == 201
    response = client_for(w.project_admin).post(
        project_url, {"amount": "20", "method": "cash"}, format="json"
    )
    assert response.status_code == 403
    assert client_for(w.member).get(project_url).status_code == 404
    assert client_for(w.other_admin).post(project_url, {}, format="json").status_code == 404
    assert wallet(w.project).balance == Decimal("20.0000")


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("-5", "amount_not_positive"),
        ("0", "amount_zero"),
        ("0.0000", "amount_zero"),
        ("abc", "invalid_amount"),
        ("", "invalid"),  # blank
        ("NaN", "invalid_amount"),
        ("Infinity", "invalid_amount"),
        ("-Infinity", "invalid_amount"),
        ("1.23456", "amount_too_precise"),
        ("1000000000000", "amount_too_large"),
        ("1e12", "invalid_amount"),
        ("9" * 60, "amount_too_large"),
        ("1" * 65, "invalid"),  # longer than any amount
        (12.5, "invalid"),  # a JSON number: floats never enter
        (12, "invalid"),
        (True, "invalid"),
        (None, "invalid"),
        (["1"], "invalid"),
    ],
)
def test_bad_recharge_amounts_are_clear_errors_and_write_nothing(w, amount, code):
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    response = client_for(w.platform).post(url, {"amount": amount, "method": "bank"}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code
    assert body["detail"]
    assert list(body["fields"]) == ["amount"]
    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()
    assert wallet(w.domain).balance == 0


def test_recharge_needs_a_method(w):
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    response = client_for(w.platform).post(url, {"amount": "5", "method": "  "}, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["method"]
    assert not Transaction.objects.exists()


def test_recharge_requests_are_decided_by_the_receiving_side(w):
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharge-requests/"
    response = client_for(w.domain_admin).post(
        url, {"amount": "500", "method": "bank", "reference": "R-9"}, format="json"
    )
    assert response.status_code == 201, response.content
    request = RechargeRequest.objects.get()
    body = response.json()
    assert (body["id"], body["status"], body["amount"], body["transaction"]) == (
        request.pk,
        "pending",
        "500.0000",
        None,
    )
    assert body["requested_by"] == w.domain_admin.pk
    assert wallet(w.domain).balance == 0

    decide = f"{API}/recharge-requests/{request.pk}/"
    assert client_for(w.domain_admin).post(f"{decide}approve/").status_code == 403
    assert client_for(w.other_admin).post(f"{decide}approve/").status_code == 404
    assert client_for(w.member).get(url).status_code == 404
    response = client_for(w.platform).post(f"{decide}approve/")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["decided_by"] == w.platform.pk
    tx = Transaction.objects.get(kind="recharge")
    assert response.json()["transaction"] == tx.pk
    assert (tx.method, tx.reference) == ("bank", "R-9")
    assert wallet(w.domain).balance == Decimal("500.0000")
    response = client_for(w.platform).post(f"{decide}reject/")
    assert response.status_code == 409
    assert response.json()["code"] == "already_decided"

    listed = client_for(w.domain_assistant).get(url).json()
    assert [row["status"] for row in listed["results"]] == ["approved"]
    everything = client_for(w.platform).get(f"{API}/recharge-requests/", {"status": "approved"})
    assert ids(everything) == [request.pk]


def test_a_rejected_request_moves_no_money_and_nobody_confirms_their_own(w):
    url = f"{API}/wallets/{wallet(w.project).pk}/recharge-requests/"
    response = client_for(w.domain_admin).post(url, {"amount": "9", "method": "x"}, format="json")
    assert response.status_code == 201
    own = response.json()["id"]
    response = client_for(w.domain_admin).post(f"{API}/recharge-requests/{own}/approve/")
    assert response.status_code == 403
    assert response.json()["code"] == "own_request"

    response = client_for(w.project_admin).post(url, {"amount": "7", "method": "x"}, format="json")
    theirs = response.json()["id"]
    response = client_for(w.domain_admin).post(f"{API}/recharge-requests/{theirs}/reject/")
    assert response.status_code == 200
    assert response.json()["status"] == "denied"
    assert not Transaction.objects.exists()
    response = client_for(w.member).post(url, {"amount": "7", "method": "x"}, format="json")
    assert response.status_code == 404
    response = client_for(w.project_admin).post(url, {"amount": 7, "method": "x"}, format="json")
    assert response.status_code == 400
    assert RechargeRequest.objects.count() == 2


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "99999999999999999999999"])
def test_odd_wallet_ids_are_json_404(w, bad):
    client = client_for(w.platform)
    for url in (
        f"{API}/wallets/{bad}/",
        f"{API}/wallets/{bad}/recharges/",
        f"{API}/wallets/{bad}/recharge-requests/",
        f"{API}/recharge-requests/{bad}/approve/",
        f"{API}/domains/{bad}/unlock/",
        f"{API}/memberships/{bad}/unlock/",
    ):
        send = client.get if "approve" not in url and "unlock" not in url else client.post
        response = send(url)
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"


# -- Transactions -----------------------------------------------------------------------------


def test_transactions_are_scoped_and_filtered(w):
    domain_tx = recharge(w, w.domain, "100")
    project_tx = services.wallet_recharge(
        actor=w.domain_admin, wallet=wallet(w.project), amount="10", method="cash"
    )
    foreign_tx = recharge(w, w.other_domain, "3")
    adjustment = services.wallet_adjust(
        actor=w.platform, wallet=wallet(w.project), amount="-2.5", reason="typo"
    )

    def seen(role, **params):
        return ids(client_for(getattr(w, role)).get(f"{API}/transactions/", params))

    assert seen("platform") == [adjustment.pk, foreign_tx.pk, project_tx.pk, domain_tx.pk]
    assert seen("domain_admin") == [adjustment.pk, project_tx.pk, domain_tx.pk]
    assert seen("project_assistant") == [adjustment.pk, project_tx.pk]
    assert seen("member") == []
    assert seen("other_admin") == [foreign_tx.pk]
    assert seen("domain_admin", kind="recharge") == [project_tx.pk, domain_tx.pk]
    assert seen("domain_admin", wallet=wallet(w.project).pk) == [adjustment.pk, project_tx.pk]
    platform_wallet = Wallet.objects.get(kind="platform")
    assert seen("platform", wallet=platform_wallet.pk) == [adjustment.pk]
    # The adjustment's other leg is the platform wallet; a domain admin sees its id, nothing more.
    row = client_for(w.project_admin).get(f"{API}/transactions/{adjustment.pk}/").json()
    assert row["entries"] == [
        {"wallet": wallet(w.project).pk, "amount": "-2.5000"},
        {"wallet": platform_wallet.pk, "amount": "2.5000"},
    ]
    assert (row["kind"], row["reason"]) == ("adjustment", "typo")
    assert client_for(w.project_admin).get(f"{API}/transactions/{domain_tx.pk}/").status_code == (
        404
    )

    later = timezone.now() + timedelta(hours=1)
    Transaction.objects.filter(pk=foreign_tx.pk).update(created_at=later)
    start = (later - timedelta(minutes=1)).isoformat()
    assert seen("platform", start=start) == [foreign_tx.pk]
    assert foreign_tx.pk not in seen("platform", end=start)


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "gift"},
        {"start": "yesterday"},
        {"end": "2026-13-01T00:00:00+08:00"},
        {"start": "9999-12-31T23:59:59-12:00"},
        {"wallet": "0"},
    ],
)
def test_transaction_filters_are_checked(w, params):
    response = client_for(w.platform).get(f"{API}/transactions/", params)
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == list(params)


# -- Prices -----------------------------------------------------------------------------------


def price_payload(**overrides):
    return {
        "effective_from": (timezone.now() + timedelta(days=3)).isoformat(),
        "vcpu_hour": "0.06",
        "ram_gib_hour": "0.025",
        "disk_gib_hour": "0.0005",
        "domain_fee": "100",
        "project_fee": "10",
        "user_fee": "1",
        **overrides,
    }


def test_every_user_reads_the_price_plan(w):
    response = client_for(w.member).get(f"{API}/prices/")
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert {k: row[k] for k in ("vcpu_hour", "ram_gib_hour", "disk_gib_hour")} == {
        "vcpu_hour": "0.0500",
        "ram_gib_hour": "0.0200",
        "disk_gib_hour": "0.0005",
    }
    assert (row["domain_fee"], row["project_fee"], row["user_fee"]) == (
        "100.0000",
        "10.0000",
        "1.0000",
    )
    assert client_for().get(f"{API}/prices/").status_code == 401


def test_platform_staff_add_a_future_price_version(w):
    response = client_for(w.platform).post(f"{API}/prices/", price_payload(), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["vcpu_hour"] == "0.0600"
    listed = client_for(w.member).get(f"{API}/prices/").json()["results"]
    assert [row["vcpu_hour"] for row in listed] == ["0.0600", "0.0500"]  # newest first

    past = price_payload(effective_from=(timezone.now() - timedelta(minutes=1)).isoformat())
    response = client_for(w.platform).post(f"{API}/prices/", past, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "price_in_past"
    assert list(response.json()["fields"]) == ["effective_from"]
    response = client_for(w.domain_admin).post(f"{API}/prices/", price_payload(), format="json")
    assert response.status_code == 403
    assert PriceVersion.objects.count() == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"vcpu_hour": 0.06}, "vcpu_hour"),
        ({"ram_gib_hour": "-0.01"}, "ram_gib_hour"),
        ({"disk_gib_hour": "0.00001"}, "disk_gib_hour"),
        ({"user_fee": "Infinity"}, "user_fee"),
        ({"effective_from": "soon"}, "effective_from"),
        ({"effective_from": 1767225600}, "effective_from"),
    ],
)
def test_bad_prices_are_refused(w, overrides, field):
    response = client_for(w.platform).post(
        f"{API}/prices/", price_payload(**overrides), format="json"
    )
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == [field]
    assert PriceVersion.objects.count() == 1


# -- Notifications ----------------------------------------------------------------------------


def notify(user, subject, minutes_ago=0):
    return Notification.objects.create(
        event="low_balance",
        channel="email",
        recipient=user,
        address=user.email,
        subject=subject,
        body="…",
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_notifications_are_the_callers_own_newest_first(w):
    older = notify(w.domain_admin, "older", minutes_ago=5)
    newer = notify(w.domain_admin, "newer")
    notify(w.member, "not yours")
    response = client_for(w.domain_admin).get(f"{API}/notifications/")
    assert ids(response) == [newer.pk, older.pk]
    assert response.json()["results"][0]["subject"] == "newer"
    assert ids(client_for(w.platform).get(f"{API}/notifications/")) == []


# -- Query counts -----------------------------------------------------------------------------


def _add_allocations(w, n):
    for i in range(n):
        services.allocation_set(
            actor=w.platform,
            target=services.target_of(domain=w.domain),
            vcpus=1 + i,
            ram_gib=1,
            disk_gib=1,
        )


def _add_member_limits(w, n):
    for user in UserFactory.create_batch(n, home_domain=w.domain):
        membership = membership_add(actor=w.platform, project=w.project, user=user, role="member")
        services.allocation_set(
            actor=w.project_admin,
            target=services.target_of(membership=membership),
            vcpus=1,
            ram_gib=1,
            disk_gib=1,
            budget="5",
        )


def _add_wallets(w, n):
    for project in ProjectFactory.create_batch(n, domain=w.domain):
        services.wallet_open(project=project)


def _add_transactions(w, n):
    for _i in range(n):
        services.wallet_recharge(
            actor=w.domain_admin, wallet=wallet(w.project), amount="1", method="cash"
        )


def _add_requests(w, n):
    for _i in range(n):
        services.recharge_request_create(
            actor=w.project_admin, wallet=wallet(w.project), amount="1", method="cash"
        )


def _add_prices(w, n):
    start = timezone.now() + timedelta(days=1)
    for i in range(n):
        PriceVersion.objects.create(
            effective_from=start + timedelta(hours=i + 10 * n),
            vcpu_hour="0.05",
            ram_gib_hour="0.02",
            disk_gib_hour="0.0005",
            domain_fee="100",
            project_fee="10",
            user_fee="1",
        )


def _add_notifications(w, n):
    for i in range(n):
        notify(w.project_admin, f"n{i}")


@pytest.mark.parametrize(
    ("url", "viewer", "add_rows"),
    [
        ("allocations", "platform", _add_allocations),
        ("allocations", "project_assistant", _add_member_limits),
        ("wallets", "domain_admin", _add_wallets),
        ("transactions", "project_admin", _add_transactions),
        ("transactions", "platform", _add_transactions),
        ("recharge-requests", "domain_admin", _add_requests),
        ("prices", "member", _add_prices),
        ("notifications", "project_admin", _add_notifications),
        ("WALLET/recharges", "domain_admin", _add_transactions),
        ("WALLET/recharge-requests", "project_admin", _add_requests),
    ],
)
def test_list_query_count_does_not_grow_with_rows(
    w, django_assert_max_num_queries, url, viewer, add_rows
):
    url = url.replace("WALLET", f"wallets/{wallet(w.project).pk}")
    client = client_for(getattr(w, viewer))
    add_rows(w, 5)
    with CaptureQueriesContext(connection) as small:
        first = client.get(f"{API}/{url}/", {"size": 100})
    assert first.status_code == 200
    assert first.json()["count"] >= 5
    add_rows(w, 45)
    with django_assert_max_num_queries(len(small.captured_queries)):
        second = client.get(f"{API}/{url}/", {"size": 100})
    assert second.status_code == 200
    assert second.json()["count"] >= first.json()["count"] + 45


def test_lists_paginate(w):
    _add_transactions(w, 3)
    response = client_for(w.domain_admin).get(f"{API}/transactions/", {"size": 2, "page": 2})
    body = response.json()
    assert (body["count"], len(body["results"]), body["next"]) == (3, 1, None)
    assert body["previous"]


# -- Lock and unlock --------------------------------------------------------------------------
# billing.enforcement.tenant_lock / tenant_unlock / member_unlock (the agreed interface).


def test_domain_lock_and_unlock_needs_a_payable_wallet(w):
    response = client_for(w.domain_admin).post(f"{API}/domains/{w.domain.pk}/lock/")
    assert response.status_code == 403
    assert client_for(w.other_admin).post(f"{API}/domains/{w.domain.pk}/lock/").status_code == 404
    response = client_for(w.platform).post(
        f"{API}/domains/{w.domain.pk}/lock/", {"reason": "audit"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["locked"]) == (wallet(w.domain).pk, True)
    response = client_for(w.platform).post(f"{API}/domains/{w.domain.pk}/lock/")
    assert (response.status_code, response.json()["code"]) == (409, "locked")

    url = f"{API}/domains/{w.domain.pk}/unlock/"
    # Locked by a superior: only a superior lifts it.
    assert client_for(w.domain_admin).post(url).status_code == 403
    # available = 0: unlock refused with the reason, the wallet stays locked.
    response = client_for(w.platform).post(url, {"restart_servers": True}, format="json")
    assert response.status_code in (400, 409)
    assert response.json()["code"] == "not_payable"
    assert "0.0000" in response.json()["detail"]
    assert wallet(w.domain).locked

    recharge(w, w.domain, "10")
    assert client_for(w.other_admin).post(url).status_code == 404
    response = client_for(w.platform).post(url, {"restart_servers": True}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["locked"], response.json()["available"]) == (False, "10.0000")
    assert not wallet(w.domain).locked
    response = client_for(w.platform).post(url)
    assert (response.status_code, response.json()["code"]) == (409, "not_locked")


def test_an_automatic_lock_is_lifted_by_the_tenants_admin_once_payable(w):
    from billing import enforcement

    services.wallet_adjust(actor=w.platform, wallet=wallet(w.project), amount="-2", reason="fee")
    enforcement.enforce(now=timezone.now())  # available -2 → locked
    assert wallet(w.project).locked
    url = f"{API}/projects/{w.project.pk}/unlock/"
    response = client_for(w.project_admin).post(url, {}, format="json")
    assert response.status_code in (400, 409)
    assert response.json()["code"] == "not_payable"
    assert client_for(w.project_assistant).post(url).status_code == 403
    assert client_for(w.member).post(url).status_code == 403
    assert client_for(w.other_admin).post(url).status_code == 404
    services.wallet_update(actor=w.domain_admin, wallet=wallet(w.project), credit_ceiling="2")
    services.wallet_update(actor=w.project_admin, wallet=wallet(w.project), credit_limit="2")
    response = client_for(w.project_admin).post(url, {}, format="json")
    assert response.json()["code"] == "not_payable"  # -2 + 2 = 0 is still not payable
    services.wallet_update(actor=w.domain_admin, wallet=wallet(w.project), credit_ceiling="5")
    services.wallet_update(actor=w.project_admin, wallet=wallet(w.project), credit_limit="5")
    response = client_for(w.project_admin).post(url, {}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["locked"], response.json()["available"]) == (False, "3.0000")
    assert not wallet(w.project).locked


def test_project_lock_by_the_domain_admin(w):
    url = f"{API}/projects/{w.project.pk}/"
    assert client_for(w.project_admin).post(f"{url}lock/").status_code == 403
    assert client_for(w.domain_assistant).post(f"{url}lock/").status_code == 403
    response = client_for(w.domain_admin).post(f"{url}lock/", {}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["locked"]) == (wallet(w.project).pk, True)
    assert client_for(w.project_admin).post(f"{url}unlock/").status_code == 403
    services.wallet_recharge(
        actor=w.domain_admin, wallet=wallet(w.project), amount="3", method="cash"
    )
    response = client_for(w.domain_admin).post(f"{url}unlock/", {}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["locked"], response.json()["balance"]) == (False, "3.0000")


@pytest.mark.parametrize("payload", [{"restart_servers": "yes"}, {"restart_servers": 1}])
def test_unlock_input_is_strict(w, payload):
    response = client_for(w.domain_admin).post(
        f"{API}/domains/{w.domain.pk}/unlock/", payload, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["restart_servers"]


def test_member_unlock_with_a_new_budget(w):
    membership = member_of(w)
    Membership.objects.filter(pk=membership.pk).update(locked=True)  # as a budget lock leaves it
    url = f"{API}/memberships/{membership.pk}/unlock/"
    assert client_for(w.member).post(url).status_code == 403
    assert client_for(w.other_admin).post(url).status_code == 404
    response = client_for(w.project_assistant).post(url, {"budget": 25}, format="json")
    assert response.status_code == 400
    response = client_for(w.project_assistant).post(url, {"budget": "25"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["locked"]) == (membership.pk, False)
    assert response.json()["consumption"] == "0.0000"
    current = services.current_allocation(services.target_of(membership=membership))
    assert current is not None and current.budget == Decimal("25.0000")


@pytest.mark.parametrize(
    ("query", "body_extra", "code"),
    [
        ("", {"dry_run": True}, "unknown_field"),  # an option in the body is not an option
        ("?dryrun=1", {}, "unknown_parameter"),
        ("?DRY_RUN=1", {}, "unknown_parameter"),
        ("?dry_run=1&dry_run=0", {}, "repeated_parameter"),
        ("?dry_run=true", {}, "invalid"),  # one documented way: ?dry_run=1
        ("?dry_run=0", {}, "invalid"),
    ],
)
def test_a_lost_dry_run_is_a_400_and_writes_nothing(w, query, body_extra, code):
    from billing.models import Allocation

    before = Allocation.objects.count()
    body = {"domain": w.domain.pk, "vcpus": 4, "ram_gib": 8, "disk_gib": 50, **body_extra}
    answer = client_for(w.platform).post(f"{API}/allocations/{query}", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] == code
    assert Allocation.objects.count() == before


def test_every_write_refuses_unknown_query_parameters_and_body_fields(w):
    api = client_for(w.platform)
    answer = api.post(f"{API}/domains/?force=1", {"name": "N", "code": "n1"}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "unknown_parameter"
    answer = api.post(f"{API}/domains/", {"name": "N", "code": "n1", "owner": 1}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "unknown_field"
    assert answer.json()["fields"] == {"owner": ["This field is not accepted here."]}
    # Reads keep their filters; a repeated filter is ambiguous.
    answer = api.get(f"{API}/projects/?domain={w.domain.pk}&domain={w.other_domain.pk}")
    assert answer.status_code == 400 and answer.json()["code"] == "repeated_parameter"
