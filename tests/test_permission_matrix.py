"""Every API endpoint, for every role, on own and foreign objects → the expected status.

One row per (endpoint, object): `Case(name, method, url, payload, expected)`, where `url` and
`payload` are built from the `world` fixture (teachcloud.testing.factories.make_world) and
`expected` maps each role in ROLES to a status. Each (case, role) pair is its own test with a
fresh world, so mutating cases never see each other's writes.

To cover a new endpoint, append rows to CASES (later issues: lock/unlock, allocations, wallets…).
Build `expected` with `expect(default, **overrides)`: anonymous is 401 unless overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from teachcloud.testing.clock import local_today
from teachcloud.testing.factories import PASSWORD, UserFactory, World, api_token
from tenancy.models import DomainRole, Membership
from tenancy.services import membership_add

API = "/api/v1"

ROLES = [
    "platform",  # platform staff (operator)
    "finance",  # finance staff: no home domain, no roles; reads everything, writes nothing
    "domain_admin",
    "domain_assistant",
    "project_admin",
    "project_assistant",
    "member",
    "other_admin",  # admin of the other domain
    "anonymous",
]


def expect(default: int, **overrides: int) -> dict[str, int]:
    """Expected status per role: `default` for everyone signed in, 401 for anonymous."""
    unknown = set(overrides) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"
    return dict.fromkeys(ROLES, default) | {"anonymous": 401} | overrides


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    url: Callable[[World], str]
    expected: dict[str, int]
    payload: Callable[[World], dict[str, Any]] | None = None


# -- URL and payload builders -----------------------------------------------------------------


def membership_url(username: str) -> Callable[[World], str]:
    def build(w: World) -> str:
        membership = Membership.objects.get(user=getattr(w, username), project=w.project)
        return f"{API}/memberships/{membership.pk}/"

    return build


def foreign_membership_url(w: World) -> str:
    """A member of the other domain's project."""
    membership = membership_add(
        actor=w.platform,
        project=w.other_project,
        user=UserFactory(home_domain=w.other_domain),
        role="member",
    )
    return f"{API}/memberships/{membership.pk}/"


def domain_role_url(username: str) -> Callable[[World], str]:
    def build(w: World) -> str:
        return f"{API}/domain-roles/{DomainRole.objects.get(user=getattr(w, username)).pk}/"

    return build


def new_user_payload(domain_attr: str) -> Callable[[World], dict[str, Any]]:
    def build(w: World) -> dict[str, Any]:
        return {
            "username": "new.user",
            "real_name": "新用户",
            "id_number": "N-1",
            "email": "new.user@example.edu",
            "password": "Sturdy-Pass-91",
            "domain": getattr(w, domain_attr).pk,
        }

    return build


def other_domain_user(w: World) -> int:
    return UserFactory(home_domain=w.other_domain).pk


# Finance staff (tenancy.permissions `roles.finance`) see every domain, project, user,
# membership, wallet, transaction, allocation, server and statement through the scoped selectors,
# but no action lets them change anything: a read is 200 and a write a 403 (visible but
# forbidden), never a 404 and never a 400 for an object they cannot see.
FINANCE_READS = {"finance": 200}
FINANCE_FORBIDDEN = {"finance": 403}

OWN_LISTS = expect(200)
FOREIGN_READ = expect(404, platform=200, other_admin=200, **FINANCE_READS)
FOREIGN_WRITE = expect(404, platform=200, other_admin=200, **FINANCE_FORBIDDEN)

CASES: list[Case] = [
    # -- auth --
    Case(
        "token wrong password",
        "POST",
        lambda w: f"{API}/auth/token/",
        expect(400, anonymous=400),
        lambda w: {"username": "member", "password": PASSWORD + "x"},
    ),
    Case("token revoke", "DELETE", lambda w: f"{API}/auth/token/", expect(204)),
    Case("token revoke all", "DELETE", lambda w: f"{API}/auth/token/?all=1", expect(204)),
    # -- lists --
    *[
        Case(f"list {name}", "GET", lambda w, n=name: f"{API}/{n}/", OWN_LISTS)
        for name in ("domains", "projects", "users", "memberships", "domain-roles")
    ],
    Case("me", "GET", lambda w: f"{API}/users/me/", OWN_LISTS),
    # -- domains --
    Case(
        "create domain",
        "POST",
        lambda w: f"{API}/domains/",
        expect(403, platform=201),
        lambda w: {"name": "East School", "code": "east"},
    ),
    Case(
        "show own domain",
        "GET",
        lambda w: f"{API}/domains/{w.domain.pk}/",
        expect(200, other_admin=404),
    ),
    Case(
        "show foreign domain",
        "GET",
        lambda w: f"{API}/domains/{w.other_domain.pk}/",
        FOREIGN_READ,
    ),
    Case(
        "rename own domain",
        "PATCH",
        lambda w: f"{API}/domains/{w.domain.pk}/",
        expect(403, platform=200, domain_admin=200, other_admin=404),
        lambda w: {"name": "Renamed"},
    ),
    Case(
        "rename foreign domain",
        "PATCH",
        lambda w: f"{API}/domains/{w.other_domain.pk}/",
        FOREIGN_WRITE,
        lambda w: {"name": "Renamed"},
    ),
    # -- projects --
    Case(
        "create project in own domain",
        "POST",
        lambda w: f"{API}/projects/",
        expect(403, platform=201, domain_admin=201, domain_assistant=201, other_admin=400),
        lambda w: {"domain": w.domain.pk, "name": "New", "code": "new"},
    ),
    Case(
        "create project in foreign domain",
        "POST",
        lambda w: f"{API}/projects/",
        expect(400, platform=201, other_admin=201, **FINANCE_FORBIDDEN),
        lambda w: {"domain": w.other_domain.pk, "name": "New", "code": "new"},
    ),
    Case(
        "show own project",
        "GET",
        lambda w: f"{API}/projects/{w.project.pk}/",
        expect(200, other_admin=404),
    ),
    Case(
        "show foreign project",
        "GET",
        lambda w: f"{API}/projects/{w.other_project.pk}/",
        FOREIGN_READ,
    ),
    Case(
        "edit own project",
        "PATCH",
        lambda w: f"{API}/projects/{w.project.pk}/",
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {"name": "Renamed"},
    ),
    Case(
        "edit foreign project",
        "PATCH",
        lambda w: f"{API}/projects/{w.other_project.pk}/",
        FOREIGN_WRITE,
        lambda w: {"name": "Renamed"},
    ),
    # -- users --
    Case(
        "create user in own domain",
        "POST",
        lambda w: f"{API}/users/",
        expect(201, member=403, other_admin=400, **FINANCE_FORBIDDEN),
        new_user_payload("domain"),
    ),
    Case(
        "create user in foreign domain",
        "POST",
        lambda w: f"{API}/users/",
        expect(400, platform=201, other_admin=201, **FINANCE_FORBIDDEN),
        new_user_payload("other_domain"),
    ),
    Case(
        "show member", "GET", lambda w: f"{API}/users/{w.member.pk}/", expect(200, other_admin=404)
    ),
    Case(
        "show outsider",
        "GET",
        lambda w: f"{API}/users/{w.outsider.pk}/",
        expect(200, member=404, other_admin=404),
    ),
    Case("show foreign user", "GET", lambda w: f"{API}/users/{w.other_admin.pk}/", FOREIGN_READ),
    Case(
        "edit member's real name",
        "PATCH",
        lambda w: f"{API}/users/{w.member.pk}/",
        expect(
            200,
            domain_assistant=403,
            project_assistant=403,
            member=403,
            other_admin=404,
            **FINANCE_FORBIDDEN,
        ),
        lambda w: {"real_name": "改名"},
    ),
    Case(
        "deactivate member",
        "PATCH",
        lambda w: f"{API}/users/{w.member.pk}/",
        expect(403, platform=200, domain_admin=200, other_admin=404),
        lambda w: {"is_active": False},
    ),
    Case(
        "edit foreign user's real name",
        "PATCH",
        lambda w: f"{API}/users/{w.other_admin.pk}/",
        FOREIGN_WRITE,
        lambda w: {"real_name": "改名"},
    ),
    # -- memberships --
    Case(
        "add member to own project",
        "POST",
        lambda w: f"{API}/memberships/",
        expect(201, member=400, other_admin=400, **FINANCE_FORBIDDEN),
        lambda w: {"project": w.project.pk, "user": w.outsider.pk, "role": "member"},
    ),
    Case(
        "appoint admin of own project",
        "POST",
        lambda w: f"{API}/memberships/",
        expect(403, platform=201, domain_admin=201, project_admin=201, member=400, other_admin=400),
        lambda w: {"project": w.project.pk, "user": w.outsider.pk, "role": "admin"},
    ),
    Case(
        "add member to foreign project",
        "POST",
        lambda w: f"{API}/memberships/",
        expect(400, platform=201, other_admin=201, **FINANCE_FORBIDDEN),
        lambda w: {"project": w.other_project.pk, "user": other_domain_user(w), "role": "member"},
    ),
    Case("show membership", "GET", membership_url("member"), expect(200, other_admin=404)),
    Case("show foreign membership", "GET", foreign_membership_url, FOREIGN_READ),
    Case(
        "promote member to assistant",
        "PATCH",
        membership_url("member"),
        expect(403, platform=200, domain_admin=200, project_admin=200, other_admin=404),
        lambda w: {"role": "assistant"},
    ),
    Case(
        "keep member a member",
        "PATCH",
        membership_url("member"),
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {"role": "member"},
    ),
    Case(
        "remove member",
        "DELETE",
        membership_url("member"),
        expect(204, member=403, other_admin=404, **FINANCE_FORBIDDEN),
    ),
    Case(
        "remove project assistant",
        "DELETE",
        membership_url("project_assistant"),
        expect(403, platform=204, domain_admin=204, project_admin=204, member=404, other_admin=404),
    ),
    Case(
        "remove last project admin",
        "DELETE",
        membership_url("project_admin"),
        expect(
            409,
            domain_assistant=403,
            project_assistant=403,
            member=404,
            other_admin=404,
            **FINANCE_FORBIDDEN,
        ),
    ),
    Case(
        "remove foreign member",
        "DELETE",
        foreign_membership_url,
        expect(404, platform=204, other_admin=204, **FINANCE_FORBIDDEN),
    ),
    # -- domain roles --
    Case(
        "appoint domain assistant",
        "POST",
        lambda w: f"{API}/domain-roles/",
        expect(403, platform=201, domain_admin=201, member=400, other_admin=400),
        lambda w: {"domain": w.domain.pk, "user": w.outsider.pk, "role": "assistant"},
    ),
    Case(
        "appoint foreign domain assistant",
        "POST",
        lambda w: f"{API}/domain-roles/",
        expect(400, platform=201, other_admin=201, **FINANCE_FORBIDDEN),
        lambda w: {"domain": w.other_domain.pk, "user": other_domain_user(w), "role": "assistant"},
    ),
    Case(
        "show domain assistant grant",
        "GET",
        domain_role_url("domain_assistant"),
        expect(404, platform=200, domain_admin=200, domain_assistant=200, **FINANCE_READS),
    ),
    Case("show foreign domain grant", "GET", domain_role_url("other_admin"), FOREIGN_READ),
    Case(
        "remove domain assistant",
        "DELETE",
        domain_role_url("domain_assistant"),
        expect(404, platform=204, domain_admin=204, domain_assistant=403, **FINANCE_FORBIDDEN),
    ),
    Case(
        "remove last domain admin",
        "DELETE",
        domain_role_url("domain_admin"),
        expect(404, platform=409, domain_admin=409, domain_assistant=403, **FINANCE_FORBIDDEN),
    ),
    Case(
        "remove last foreign domain admin",
        "DELETE",
        domain_role_url("other_admin"),
        expect(404, platform=409, other_admin=409, **FINANCE_FORBIDDEN),
    ),
]


# -- billing (allocations, wallets, recharges, transactions, prices, lock/unlock) --------------


def _billing_ready(w: World) -> None:
    """Wallets (the factories bypass the services that open them) and capacity to allocate."""
    from billing.services import platform_capacity_set, wallet_open

    platform_capacity_set(actor=w.platform, vcpus=100, ram_gib=400, disk_gib=4000, overcommit="1")
    for domain in (w.domain, w.other_domain):
        wallet_open(domain=domain)
    for project in (w.project, w.other_project):
        wallet_open(project=project)


def wallet_url(tenant_attr: str | None, suffix: str = "") -> Callable[[World], str]:
    def build(w: World) -> str:
        from billing.models import Wallet

        _billing_ready(w)
        if tenant_attr is None:
            wallet = Wallet.objects.get(kind="platform")
        elif "project" in tenant_attr:
            wallet = Wallet.objects.get(project=getattr(w, tenant_attr))
        else:
            wallet = Wallet.objects.get(domain=getattr(w, tenant_attr))
        return f"{API}/wallets/{wallet.pk}/{suffix}"

    return build


def allocation_payload(target: str) -> Callable[[World], dict[str, Any]]:
    def build(w: World) -> dict[str, Any]:
        from billing.services import allocation_set, target_of

        _billing_ready(w)
        allocation_set(
            actor=w.platform,
            target=target_of(domain=w.domain),
            vcpus=10,
            ram_gib=10,
            disk_gib=10,
        )
        ids = {
            "domain": w.domain.pk,
            "project": w.project.pk,
            "membership": Membership.objects.get(user=w.member, project=w.project).pk,
            "other_project": w.other_project.pk,
        }
        key = "project" if target == "other_project" else target
        return {key: ids[target], "vcpus": 1, "ram_gib": 1, "disk_gib": 1}

    return build


def recharge_request_url(action_name: str, tenant: str = "project") -> Callable[[World], str]:
    """A request filed for the project wallet by the project admin, or (tenant="domain") for the
    domain wallet by the domain admin (platform or finance staff confirm that one)."""

    def build(w: World) -> str:
        from billing.models import Wallet
        from billing.services import recharge_request_create

        _billing_ready(w)
        filer = w.project_admin if tenant == "project" else w.domain_admin
        wallet = Wallet.objects.get(**{tenant: getattr(w, tenant)})
        request = recharge_request_create(actor=filer, wallet=wallet, amount="5", method="bank")
        return f"{API}/recharge-requests/{request.pk}/{action_name}"

    return build


def project_transaction_url(w: World) -> str:
    from billing.models import Wallet
    from billing.services import wallet_recharge

    _billing_ready(w)
    tx = wallet_recharge(
        actor=w.platform, wallet=Wallet.objects.get(project=w.project), amount="5", method="x"
    )
    return f"{API}/transactions/{tx.pk}/"


def locked_member_unlock_url(w: World) -> str:
    membership = Membership.objects.get(user=w.member, project=w.project)
    Membership.objects.filter(pk=membership.pk).update(locked=True)  # as a budget lock leaves it
    return f"{API}/memberships/{membership.pk}/unlock/"


def paid_up_locked_project_unlock_url(w: World) -> str:
    """The project was locked automatically (available < 0), then recharged."""
    from django.utils import timezone

    from billing.enforcement import enforce
    from billing.models import Wallet
    from billing.services import wallet_adjust, wallet_recharge

    _billing_ready(w)
    wallet = Wallet.objects.get(project=w.project)
    wallet_adjust(actor=w.platform, wallet=wallet, amount="-2", reason="fee")
    enforce(now=timezone.now())
    assert Wallet.objects.get(pk=wallet.pk).locked
    wallet_recharge(actor=w.platform, wallet=wallet, amount="5", method="x")
    return f"{API}/projects/{w.project.pk}/unlock/"


def future_price(w: World) -> dict[str, Any]:
    from datetime import timedelta

    from django.utils import timezone

    return {
        "effective_from": (timezone.now() + timedelta(days=1)).isoformat(),
        "vcpu_hour": "0.06",
        "ram_gib_hour": "0.02",
        "disk_gib_hour": "0.0005",
        "domain_fee": "100",
        "project_fee": "10",
        "user_fee": "1",
    }


DOMAIN_STAFF = {"platform": 200, "domain_admin": 200, "domain_assistant": 200}
PROJECT_STAFF = {**DOMAIN_STAFF, "project_admin": 200, "project_assistant": 200}

CASES += [
    *[
        Case(f"list {name}", "GET", lambda w, n=name: f"{API}/{n}/", OWN_LISTS)
        for name in (
            "allocations",
            "wallets",
            "recharge-requests",
            "transactions",
            "prices",
            "notifications",
        )
    ],
    # -- allocations --
    Case(
        "allocate to own domain",
        "POST",
        lambda w: f"{API}/allocations/",
        expect(403, platform=201, other_admin=400),
        allocation_payload("domain"),
    ),
    Case(
        "allocate to own project",
        "POST",
        lambda w: f"{API}/allocations/",
        expect(403, platform=201, domain_admin=201, other_admin=400),
        allocation_payload("project"),
    ),
    Case(
        "quote own project allocation",
        "POST",
        lambda w: f"{API}/allocations/?dry_run=1",
        expect(403, platform=200, domain_admin=200, other_admin=400),
        allocation_payload("project"),
    ),
    Case(
        "allocate to foreign project",
        "POST",
        lambda w: f"{API}/allocations/",
        # visible to them, but nothing to give; finance sees the project but may not allocate
        expect(400, platform=409, other_admin=409, **FINANCE_FORBIDDEN),
        allocation_payload("other_project"),
    ),
    Case(
        "set member limit",
        "POST",
        lambda w: f"{API}/allocations/",
        expect(201, member=403, other_admin=400, **FINANCE_FORBIDDEN),
        allocation_payload("membership"),
    ),
    # -- wallets --
    Case(
        "show own domain wallet",
        "GET",
        wallet_url("domain"),
        expect(404, **DOMAIN_STAFF, **FINANCE_READS),
    ),
    Case(
        "show own project wallet",
        "GET",
        wallet_url("project"),
        expect(404, **PROJECT_STAFF, **FINANCE_READS),
    ),
    Case("show foreign project wallet", "GET", wallet_url("other_project"), FOREIGN_READ),
    Case(
        "show platform wallet",
        "GET",
        wallet_url(None),
        expect(404, platform=200, **FINANCE_READS),  # WALLET_VIEW of the platform wallet
    ),
    Case(
        "set domain credit ceiling",
        "PATCH",
        wallet_url("domain"),
        expect(404, platform=200, domain_admin=403, domain_assistant=403, **FINANCE_FORBIDDEN),
        lambda w: {"credit_ceiling": "10"},
    ),
    Case(
        "set project credit limit",
        "PATCH",
        wallet_url("project"),
        expect(
            404,
            platform=200,
            domain_admin=200,
            domain_assistant=403,
            project_admin=200,
            project_assistant=403,
            **FINANCE_FORBIDDEN,
        ),
        lambda w: {"credit_limit": "0"},
    ),
    Case(
        "set project alert threshold",
        "PATCH",
        wallet_url("project"),
        expect(404, **PROJECT_STAFF, **FINANCE_FORBIDDEN),
        lambda w: {"alert_threshold": "3"},
    ),
    Case(
        "recharge own domain wallet",
        "POST",
        wallet_url("domain", "recharges/"),
        # SPEC Money 5: platform staff (finance) record what domains pay in.
        expect(404, platform=201, finance=201, domain_admin=403, domain_assistant=403),
        lambda w: {"amount": "5", "method": "bank"},
    ),
    Case(
        "recharge own project wallet",
        "POST",
        wallet_url("project", "recharges/"),
        expect(
            404,
            platform=201,
            domain_admin=201,
            domain_assistant=403,
            project_admin=403,
            project_assistant=403,
            **FINANCE_FORBIDDEN,
        ),
        lambda w: {"amount": "5", "method": "bank"},
    ),
    Case(
        "list own project wallet recharges",
        "GET",
        wallet_url("project", "recharges/"),
        expect(404, **PROJECT_STAFF, **FINANCE_READS),
    ),
    Case(
        "request recharge of own project wallet",
        "POST",
        wallet_url("project", "recharge-requests/"),
        expect(
            404,
            platform=201,
            domain_admin=201,
            domain_assistant=201,
            project_admin=201,
            project_assistant=201,
            **FINANCE_FORBIDDEN,
        ),
        lambda w: {"amount": "5", "method": "bank"},
    ),
    Case(
        "request recharge of foreign domain wallet",
        "POST",
        wallet_url("other_domain", "recharge-requests/"),
        expect(404, platform=201, other_admin=201, **FINANCE_FORBIDDEN),
        lambda w: {"amount": "5", "method": "bank"},
    ),
    Case(
        "approve project recharge request",
        "POST",
        recharge_request_url("approve/"),
        expect(
            404,
            platform=200,
            domain_admin=200,
            domain_assistant=403,
            project_admin=403,
            project_assistant=403,
            **FINANCE_FORBIDDEN,
        ),
    ),
    Case(
        "reject project recharge request",
        "POST",
        recharge_request_url("reject/"),
        expect(
            404,
            platform=200,
            domain_admin=200,
            domain_assistant=403,
            project_admin=403,
            project_assistant=403,
            **FINANCE_FORBIDDEN,
        ),
    ),
    *[
        Case(
            f"{verb} domain recharge request",
            "POST",
            recharge_request_url(f"{verb}/", tenant="domain"),
            # The receiving side (platform and finance staff) decides; the domain's own staff
            # see it (403), nobody else does (404).
            expect(404, platform=200, finance=200, domain_admin=403, domain_assistant=403),
        )
        for verb in ("approve", "reject")
    ],
    Case(
        "show project transaction",
        "GET",
        project_transaction_url,
        expect(404, **PROJECT_STAFF, **FINANCE_READS),
    ),
    # -- prices --
    Case(
        "create price version",
        "POST",
        lambda w: f"{API}/prices/",
        expect(403, platform=201),
        future_price,
    ),
    # -- lock and unlock --
    Case(
        "lock own domain",
        "POST",
        lambda w: f"{API}/domains/{w.domain.pk}/lock/",
        expect(403, platform=200, other_admin=404),
        lambda w: {"reason": "audit"},
    ),
    Case(
        "lock own project",
        "POST",
        lambda w: f"{API}/projects/{w.project.pk}/lock/",
        expect(403, platform=200, domain_admin=200, other_admin=404),
        lambda w: {"reason": "audit"},
    ),
    Case(
        "unlock paid-up project",
        "POST",
        paid_up_locked_project_unlock_url,
        expect(403, platform=200, domain_admin=200, project_admin=200, other_admin=404),
        lambda w: {"restart_servers": False},
    ),
    Case(
        "unlock locked member",
        "POST",
        locked_member_unlock_url,
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {},
    ),
]


# -- allocation requests (SPEC Allocations 6) --


def _allocation_request(w: World, level: str) -> Any:
    """A pending request: the project admin asks for 5/5/5, or the member for 2/2/2."""
    from billing.requests import allocation_request_create
    from billing.services import allocation_set, target_of

    _billing_ready(w)
    allocation_set(
        actor=w.platform, target=target_of(domain=w.domain), vcpus=10, ram_gib=10, disk_gib=10
    )
    if level == "project":
        return allocation_request_create(
            actor=w.project_admin,
            project=w.project,
            vcpus=5,
            ram_gib=5,
            disk_gib=5,
            justification="a new lab",
        )
    return allocation_request_create(
        actor=w.member,
        membership=Membership.objects.get(user=w.member, project=w.project),
        vcpus=2,
        ram_gib=2,
        disk_gib=2,
        justification="a bigger VM",
    )


def allocation_request_url(level: str, suffix: str = "") -> Callable[[World], str]:
    def build(w: World) -> str:
        return f"{API}/allocation-requests/{_allocation_request(w, level).pk}/{suffix}"

    return build


def allocation_request_payload(target: str) -> Callable[[World], dict[str, Any]]:
    def build(w: World) -> dict[str, Any]:
        key = "project" if target == "project" else "membership"
        pk = (
            w.project.pk
            if target == "project"
            else Membership.objects.get(user=w.member, project=w.project).pk
        )
        return {key: pk, "vcpus": 1, "ram_gib": 1, "disk_gib": 1, "justification": "more"}

    return build


CASES += [
    Case(
        "list allocation requests",
        "GET",
        lambda w: f"{API}/allocation-requests/",
        expect(200),
    ),
    Case(
        "request larger project allocation",
        "POST",
        lambda w: f"{API}/allocation-requests/",
        expect(403, platform=201, project_admin=201, other_admin=400),
        allocation_request_payload("project"),
    ),
    Case(
        "request larger member limit",
        "POST",
        lambda w: f"{API}/allocation-requests/",
        expect(403, member=201, other_admin=400),
        allocation_request_payload("membership"),
    ),
    Case(
        "show project allocation request",
        "GET",
        allocation_request_url("project"),
        expect(404, platform=200, domain_admin=200, project_admin=200, **FINANCE_READS),
    ),
    Case(
        "approve project allocation request",
        "POST",
        allocation_request_url("project", "approve/"),
        expect(404, platform=200, domain_admin=200, project_admin=403, **FINANCE_FORBIDDEN),
        lambda w: {"note": "ok"},
    ),
    Case(
        "reject project allocation request",
        "POST",
        allocation_request_url("project", "reject/"),
        expect(404, platform=200, domain_admin=200, project_admin=403, **FINANCE_FORBIDDEN),
        lambda w: {},
    ),
    Case(
        "approve member limit request",
        "POST",
        allocation_request_url("member", "approve/"),
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {},
    ),
    Case(
        "reject member limit request",
        "POST",
        allocation_request_url("member", "reject/"),
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {"note": "no"},
    ),
]


# -- compute (flavors, images, servers and their actions, overview, room) --


def _compute_ready(w: World) -> None:
    """The cloud's catalogue mirrored, allocations down to a limit for the member (4 vCPU,
    16 GiB RAM, 200 GiB disk) and for the other domain's new member."""
    from billing.services import allocation_set, target_of
    from compute.tests.support import mirror_catalogue

    if getattr(w, "_compute_ready", False):
        return
    mirror_catalogue()
    _billing_ready(w)
    for domain, project in ((w.domain, w.project), (w.other_domain, w.other_project)):
        allocation_set(
            actor=w.platform, target=target_of(domain=domain), vcpus=16, ram_gib=64, disk_gib=800
        )
        allocation_set(
            actor=w.platform, target=target_of(project=project), vcpus=8, ram_gib=32, disk_gib=400
        )
    allocation_set(
        actor=w.platform,
        target=target_of(membership=Membership.objects.get(user=w.member, project=w.project)),
        vcpus=4,
        ram_gib=16,
        disk_gib=200,
    )
    w._compute_ready = True  # type: ignore[attr-defined]


def _server(w: World, *, foreign: bool = False, state: str = "active") -> Any:
    """A server of the member (or of a member of the other domain's project), built in the
    development cloud and brought to `state` (active, stopped)."""
    from billing.services import allocation_set, target_of
    from compute import services
    from compute.models import Flavor, Image

    _compute_ready(w)
    owner, project = w.member, w.project
    if foreign:
        owner = UserFactory(home_domain=w.other_domain)
        membership = membership_add(
            actor=w.platform, project=w.other_project, user=owner, role="member"
        )
        allocation_set(
            actor=w.platform,
            target=target_of(membership=membership),
            vcpus=4,
            ram_gib=16,
            disk_gib=200,
        )
        project = w.other_project
    server = services.server_create(
        actor=owner,
        project=project,
        name="lab-vm",
        flavor=Flavor.objects.get(name="m1.small"),
        image=Image.objects.get(name="cirros-0.6"),
    )
    server = services.server_build(server_id=server.pk)
    assert server is not None and server.status == "active", server and server.fault
    if state == "stopped":
        services.server_stop(actor=owner, server=server)
        server = services.server_action(server_id=server.pk, action="stop")
        assert server is not None and server.status == "stopped", server and server.fault
    return server


def server_url(suffix: str = "", **kwargs: Any) -> Callable[[World], str]:
    def build(w: World) -> str:
        return f"{API}/servers/{_server(w, **kwargs).pk}/{suffix}"

    return build


def server_payload(project_attr: str) -> Callable[[World], dict[str, Any]]:
    def build(w: World) -> dict[str, Any]:
        from compute.models import Flavor, Image

        _compute_ready(w)
        return {
            "project": getattr(w, project_attr).pk,
            "name": "new-vm",
            "flavor": Flavor.objects.get(name="m1.tiny").pk,
            "image": Image.objects.get(name="cirros-0.6").pk,
        }

    return build


def compute_list_url(path: str) -> Callable[[World], str]:
    def build(w: World) -> str:
        _compute_ready(w)
        return f"{API}/{path}"

    return build


SERVER_STAFF = {
    "platform": 202,
    "domain_admin": 202,
    "domain_assistant": 202,
    "project_admin": 202,
    "project_assistant": 202,
    "member": 202,
}

COMPUTE_CASES = [
    *[
        Case(f"list {name}", "GET", compute_list_url(f"{name}/"), OWN_LISTS)
        for name in ("flavors", "images", "servers")
    ],
    *[
        Case(
            f"list {name} of own project",
            "GET",
            lambda w, n=name: compute_list_url(f"{n}/?project={w.project.pk}")(w),
            expect(200, other_admin=400),
        )
        for name in ("flavors", "images")
    ],
    Case(
        "create server in own project",
        "POST",
        lambda w: f"{API}/servers/",
        # Platform and domain staff are not members (403); the project's admin and assistant
        # are, but have no limit yet (409 no_limit); the other domain cannot see the project.
        expect(403, project_admin=409, project_assistant=409, member=202, other_admin=400),
        server_payload("project"),
    ),
    Case(
        "create server in foreign project",
        "POST",
        lambda w: f"{API}/servers/",
        expect(400, platform=403, other_admin=403, **FINANCE_FORBIDDEN),
        server_payload("other_project"),
    ),
    Case("show member's server", "GET", server_url(), expect(200, other_admin=404)),
    Case("show foreign server", "GET", server_url(foreign=True), FOREIGN_READ),
    Case(
        "rename member's server",
        "PATCH",
        server_url(),
        expect(403, platform=200, member=200, other_admin=404),
        lambda w: {"name": "renamed"},
    ),
    Case(
        "stop member's server",
        "POST",
        server_url("stop/"),
        expect(404, **SERVER_STAFF, **FINANCE_FORBIDDEN),
    ),
    Case(
        "stop foreign server",
        "POST",
        server_url("stop/", foreign=True),
        expect(404, platform=202, other_admin=202, **FINANCE_FORBIDDEN),
    ),
    Case(
        "start member's server",
        "POST",
        server_url("start/", state="stopped"),
        expect(403, platform=202, member=202, other_admin=404),
    ),
    Case(
        "reboot member's server",
        "POST",
        server_url("reboot/"),
        expect(403, platform=202, member=202, other_admin=404),
        lambda w: {"hard": False},
    ),
    Case(
        "console of member's server",
        "GET",
        server_url("console/"),
        expect(403, platform=200, member=200, other_admin=404),
    ),
    Case(
        "delete member's server",
        "DELETE",
        server_url(),
        expect(404, **SERVER_STAFF, **FINANCE_FORBIDDEN),
    ),
    Case(
        "delete foreign server",
        "DELETE",
        server_url(foreign=True),
        expect(404, platform=202, other_admin=202, **FINANCE_FORBIDDEN),
    ),
    Case(
        "compute overview of own domain",
        "GET",
        lambda w: f"{API}/compute/overview/?domain={w.domain.pk}",
        # COMPUTE_OVERVIEW is the domain staff's capacity view: finance is not granted it (403).
        expect(403, platform=200, domain_admin=200, domain_assistant=200, other_admin=400),
    ),
    Case(
        "compute overview of foreign domain",
        "GET",
        lambda w: f"{API}/compute/overview/?domain={w.other_domain.pk}",
        expect(400, platform=200, other_admin=200, **FINANCE_FORBIDDEN),
    ),
    Case(
        "set own project's course end date",
        "PATCH",
        lambda w: f"{API}/projects/{w.project.pk}/",
        expect(200, member=403, other_admin=404, **FINANCE_FORBIDDEN),
        lambda w: {"end_date": (local_today() + timedelta(days=365)).isoformat()},  # future
    ),
    Case(
        "room in own project",
        "GET",
        lambda w: compute_list_url(f"compute/room/?project={w.project.pk}")(w),
        # A member's own room (SERVER_CREATE): finance is no member of the project.
        expect(200, domain_admin=403, domain_assistant=403, other_admin=400, **FINANCE_FORBIDDEN),
    ),
]
CASES += COMPUTE_CASES
COMPUTE_CASE_NAMES = {case.name for case in COMPUTE_CASES}


# -- compute: SSH key pairs (each user's own; nobody else, platform staff included, sees one) --

KEYPAIR_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS me@laptop"
)


def member_keypair_url(w: World) -> str:
    from compute.keypairs import keypair_create

    keypair = keypair_create(actor=w.member, name="laptop", public_key=KEYPAIR_PUBLIC)
    return f"{API}/keypairs/{keypair.pk}/"


CASES += [
    Case("list keypairs", "GET", lambda w: f"{API}/keypairs/", OWN_LISTS),
    Case(
        "create keypair",
        "POST",
        lambda w: f"{API}/keypairs/",
        expect(201),
        lambda w: {"name": "laptop", "public_key": KEYPAIR_PUBLIC},
    ),
    Case("show member's keypair", "GET", member_keypair_url, expect(404, member=200)),
    Case("delete member's keypair", "DELETE", member_keypair_url, expect(404, member=204)),
]


# -- reports: monthly statements (scoped like wallets) ---------------------------------------


def statement_url(tenant_attr: str, suffix: str = "") -> Callable[[World], str]:
    """A statement of last month for the tenant's wallet (issued even though it is idle)."""

    def build(w: World) -> str:
        from django.utils import timezone

        from billing.models import Wallet
        from reports.statements import previous_month, statement_issue

        _billing_ready(w)
        tenant = getattr(w, tenant_attr)
        wallet = Wallet.objects.get(**{"project" if "project" in tenant_attr else "domain": tenant})
        now = timezone.now()
        statement = statement_issue(wallet=wallet, month=previous_month(now), now=now, force=True)
        return f"{API}/statements/{statement.pk}/{suffix}"

    return build


CASES += [
    Case("list statements", "GET", lambda w: f"{API}/statements/", OWN_LISTS),
    Case(
        "show own domain statement",
        "GET",
        statement_url("domain"),
        expect(404, **DOMAIN_STAFF, **FINANCE_READS),
    ),
    Case(
        "show own project statement",
        "GET",
        statement_url("project"),
        expect(404, **PROJECT_STAFF, **FINANCE_READS),
    ),
    Case("show foreign statement", "GET", statement_url("other_project"), FOREIGN_READ),
    Case(
        "own domain statement pdf",
        "GET",
        statement_url("domain", "pdf/"),
        expect(404, **DOMAIN_STAFF, **FINANCE_READS),
    ),
    Case(
        "own project statement pdf",
        "GET",
        statement_url("project", "pdf/"),
        expect(404, **PROJECT_STAFF, **FINANCE_READS),
    ),
    Case("foreign statement pdf", "GET", statement_url("other_project", "pdf/"), FOREIGN_READ),
]


# -- reports: the catalogue and each report's rows (REPORT_OWN / _TENANT / _FINANCE) ----------

TENANT_STAFF = {**PROJECT_STAFF, "other_admin": 200}
FINANCE_STAFF = {"platform": 200, **FINANCE_READS}  # REPORT_FINANCE

CASES += [
    Case("list reports", "GET", lambda w: f"{API}/reports/", OWN_LISTS),
    Case(
        "report revenue", "GET", lambda w: f"{API}/reports/revenue/", expect(404, **FINANCE_STAFF)
    ),
    Case(
        "report arrears", "GET", lambda w: f"{API}/reports/arrears/", expect(404, **FINANCE_STAFF)
    ),
    Case(
        "report charges",
        "GET",
        lambda w: f"{API}/reports/charges/",
        expect(404, **TENANT_STAFF, **FINANCE_READS),
    ),
    Case(
        "report charges csv",
        "GET",
        lambda w: f"{API}/reports/charges/?export=csv",
        expect(404, **TENANT_STAFF, **FINANCE_READS),
    ),
    Case(
        "report charges of the other domain",
        "GET",
        lambda w: f"{API}/reports/charges/?domain={w.other_domain.pk}",
        expect(
            404,
            platform=200,
            other_admin=200,
            domain_admin=400,
            domain_assistant=400,
            project_admin=400,
            project_assistant=400,
            **FINANCE_READS,
        ),
    ),
    Case("report vm-usage", "GET", lambda w: f"{API}/reports/vm-usage/", OWN_LISTS),
    Case("report unknown", "GET", lambda w: f"{API}/reports/nope/", expect(404)),
]


@pytest.fixture
def compute_settings(settings: Any) -> Any:
    """Compute cases: short waits for the cloud's state changes."""
    from compute.tests.support import FAST

    for name, value in FAST.items():
        setattr(settings, name, value)
    return settings


def client_for(user: Any) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def test_every_case_names_every_role_once():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert list(case.expected) == ROLES, case.name


@pytest.mark.parametrize(
    ("case", "role"),
    [pytest.param(case, role, id=f"{case.name}|{role}") for case in CASES for role in ROLES],
)
def test_permission_matrix(request, world: World, case: Case, role: str) -> None:
    if case.name in COMPUTE_CASE_NAMES:
        request.getfixturevalue("compute_settings")
    actor = None if role == "anonymous" else getattr(world, role)
    url = case.url(world)
    payload = case.payload(world) if case.payload else None
    send = getattr(client_for(actor), case.method.lower())
    response = send(url, payload, format="json")
    expected = case.expected[role]
    assert response.status_code == expected, (
        f"{case.method} {url} as {role}: {response.status_code} {response.content[:300]!r}"
    )
    if expected >= 400:
        assert response.json()["code"], response.content
