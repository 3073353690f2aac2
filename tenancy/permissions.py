"""Every "may actor do action on object" of TeachCloud is answered here, and nowhere else.

The portal, the API and the admin all ask `can()` / `require()`. Visibility of lists is the job
of the scoped selectors in `tenancy.selectors`, which use the same role facts (`roles_of`) so
that a foreign object is simply not found (404) while a visible but forbidden action is a 403.

Roles, from strongest to weakest:
- platform staff (operator or superuser) may do everything;
- a domain admin administers the domain and every project in it; a domain assistant does the
  daily work of the domain admin;
- a project admin administers the project; a project assistant does its daily work;
- a member uses the project.
Assistants may not appoint or remove admins or assistants, change the billing admin, set credit
limits, or delete the tenant (SPEC "Tenancy and people" 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _

ADMIN = "admin"
ASSISTANT = "assistant"
MEMBER = "member"


class Action(StrEnum):
    # Domains
    DOMAIN_CREATE = "domain.create"
    DOMAIN_VIEW = "domain.view"
    DOMAIN_EDIT = "domain.edit"
    DOMAIN_DELETE = "domain.delete"
    DOMAIN_MANAGE = "domain.manage"  # daily work: projects, users, rosters, reports, audit
    DOMAIN_APPOINT = "domain.appoint"  # appoint/remove domain admins and assistants
    # Projects
    PROJECT_CREATE = "project.create"  # obj: the domain
    PROJECT_VIEW = "project.view"
    PROJECT_EDIT = "project.edit"
    PROJECT_DELETE = "project.delete"
    PROJECT_MANAGE = "project.manage"  # daily work: members, enrollment, limits, unlock users
    PROJECT_APPOINT = "project.appoint"  # appoint/remove project admins and assistants
    # Users
    USER_CREATE = "user.create"  # obj: the home domain
    USER_VIEW = "user.view"
    USER_EDIT_REAL_NAME = "user.edit_real_name"
    USER_EDIT_EMAIL = "user.edit_email"  # the address is the key to the account
    USER_DEACTIVATE = "user.deactivate"
    # Memberships and roles (obj: the membership / domain role)
    MEMBERSHIP_CHANGE = "membership.change"
    MEMBERSHIP_REMOVE = "membership.remove"
    DOMAIN_ROLE_REMOVE = "domain_role.remove"
    # Audit
    AUDIT_VIEW = "audit.view"  # obj: a domain or project (None: the whole platform)
    # Platform staff accounts and their access (platform staff only)
    PLATFORM_STAFF_MANAGE = "platform.staff_manage"
    # Billing: allocations (obj: the child that receives)
    ALLOCATE_DOMAIN = "billing.allocate_domain"  # obj: domain — platform staff
    ALLOCATE_PROJECT = "billing.allocate_project"  # obj: project — its domain's admins
    SET_MEMBER_LIMIT = "billing.set_member_limit"  # obj: project — its admins and assistants
    REQUEST_ALLOCATION = "billing.request_allocation"  # obj: project — its admins
    REQUEST_LIMIT = "billing.request_limit"  # obj: project — any member
    # Billing: money (obj: the wallet)
    WALLET_VIEW = "billing.wallet_view"
    WALLET_RECHARGE = "billing.wallet_recharge"  # the receiving side records a payment
    WALLET_REQUEST_RECHARGE = "billing.wallet_request_recharge"  # the tenant's admins
    WALLET_SET_CREDIT_LIMIT = "billing.wallet_set_credit_limit"  # tenant admin (≤ ceiling)
    WALLET_SET_CEILING = "billing.wallet_set_ceiling"  # the superior
    WALLET_SET_BILLING_ADMIN = "billing.wallet_set_billing_admin"  # tenant admin or superior
    WALLET_SET_ALERT = "billing.wallet_set_alert"  # tenant admins and assistants
    WALLET_ADJUST = "billing.wallet_adjust"  # platform staff only
    PRICE_EDIT = "billing.price_edit"  # platform staff only
    TENANT_LOCK = "billing.tenant_lock"  # obj: domain or project — the superior
    TENANT_UNLOCK = "billing.tenant_unlock"  # obj: domain or project — its admins or superior
    MEMBER_UNLOCK = "billing.member_unlock"  # obj: membership — project admins/assistants
    # Compute
    SERVER_CREATE = "compute.server_create"  # obj: project — its members (any role)
    SERVER_VIEW = "compute.server_view"  # obj: server — owner, project/domain staff, finance
    SERVER_USE = "compute.server_use"  # obj: server — start, reboot, rename, console: the owner
    SERVER_STOP = "compute.server_stop"  # obj: server — owner, project/domain admins+assistants
    SERVER_DELETE = "compute.server_delete"  # obj: server — as SERVER_STOP
    COMPUTE_OVERVIEW = "compute.overview"  # obj: domain or project — its admins and assistants
    CLOUD_ADMIN = "compute.cloud_admin"  # capacity, catalogue, credentials: platform staff only
    KEYPAIR_MANAGE = "compute.keypair_manage"  # obj: key pair or None — its owner only
    # Reports (obj: None; each report's rows are scoped by the selectors)
    REPORT_OWN = "reports.own"  # every signed-in user: their own consumption, VMs, limits
    REPORT_TENANT = "reports.tenant"  # domain/project admins and assistants, finance, platform
    REPORT_FINANCE = "reports.finance"  # revenue, arrears: finance and platform staff only


@dataclass
class Roles:
    """What one user is, everywhere, computed once per user instance."""

    active: bool = False
    platform: bool = False
    finance: bool = False
    home_domain_id: int | None = None
    domains: dict[int, str] = field(default_factory=dict)  # domain id -> admin|assistant
    projects: dict[int, str] = field(default_factory=dict)  # project id -> admin|assistant|member
    project_domains: dict[int, int] = field(default_factory=dict)  # project id -> domain id

    def domain_role(self, domain_id: int | None) -> str | None:
        return self.domains.get(domain_id) if domain_id is not None else None

    def project_role(self, project_id: int) -> str | None:
        return self.projects.get(project_id)

    def administers_any(self) -> bool:
        return any(r == ADMIN for r in self.domains.values()) or any(
            r == ADMIN for r in self.projects.values()
        )

    def manages_any(self) -> bool:
        return bool(self.domains) or any(r != MEMBER for r in self.projects.values())

    @property
    def managed_domain_ids(self) -> set[int]:
        return set(self.domains)

    @property
    def managed_project_ids(self) -> set[int]:
        return {pid for pid, role in self.projects.items() if role in (ADMIN, ASSISTANT)}


_CACHE_ATTR = "_teachcloud_roles"


def roles_of(user: Any) -> Roles:
    """The user's roles, cached on the user instance (one request = one instance)."""
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    roles = _compute_roles(user)
    if user is not None and getattr(user, "pk", None) is not None:
        setattr(user, _CACHE_ATTR, roles)
    return roles


def forget_roles(user: Any) -> None:
    """Drop the cached roles of this user instance (after a service changed them)."""
    if user is not None and hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def _compute_roles(user: Any) -> Roles:
    from accounts.models import PlatformRole
    from tenancy.models import DomainRole, Membership, TenantStatus

    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Roles()
    now = timezone.now()
    roles = Roles(
        active=True,
        platform=bool(user.is_superuser or user.platform_role == PlatformRole.OPERATOR),
        finance=user.platform_role == PlatformRole.FINANCE,
        home_domain_id=user.home_domain_id,
    )
    for domain_id, role in (
        DomainRole.objects.active(now)
        .filter(user=user)
        .exclude(domain__status=TenantStatus.PURGED)
        .values_list("domain_id", "role")
    ):
        roles.domains[domain_id] = role
    for project_id, domain_id, role in (
        Membership.objects.active(now)
        .filter(user=user)
        .exclude(project__status=TenantStatus.PURGED)
        .values_list("project_id", "project__domain_id", "role")
    ):
        roles.projects[project_id] = role
        roles.project_domains[project_id] = domain_id
    return roles


def _domain_level(roles: Roles, domain_id: int, *, admin_only: bool) -> bool:
    role = roles.domain_role(domain_id)
    return role == ADMIN or (role == ASSISTANT and not admin_only)


def _project_level(roles: Roles, project: Any, *, admin_only: bool) -> bool:
    if _domain_level(roles, project.domain_id, admin_only=admin_only):
        return True
    role = roles.project_role(project.pk)
    return role == ADMIN or (role == ASSISTANT and not admin_only)


def _may_manage_user(roles: Roles, target: Any, *, admin_only: bool = False) -> bool:
    """Admins (and, unless admin_only, assistants) of the user's home domain or of a project
    the user is in."""
    if target.home_domain_id is not None and _domain_level(
        roles, target.home_domain_id, admin_only=admin_only
    ):
        return True
    wanted = {ADMIN} if admin_only else {ADMIN, ASSISTANT}
    projects = {pid for pid, role in roles.projects.items() if role in wanted}
    domains = {did for did, role in roles.domains.items() if role in wanted}
    if not projects and not domains:
        return False
    from tenancy.models import Membership

    rows = Membership.objects.filter(user=target).values_list("project_id", "project__domain_id")
    return any(pid in projects or did in domains for pid, did in rows)


def _exclusively_theirs(roles: Roles, target: Any) -> bool:
    """Is every project of `target` one the actor administers, with no domain role besides?"""
    from tenancy.models import DomainRole, Membership

    administered = {pid for pid, role in roles.projects.items() if role == ADMIN}
    projects = set(Membership.objects.filter(user=target).values_list("project_id", flat=True))
    if not projects or not projects <= administered:
        return False
    return not DomainRole.objects.filter(user=target).exists()


def _outranks(roles: Roles, target: Any) -> bool:
    """Does the actor stand above every role the target holds? Changing a user's email is how
    an account is taken over (a password reset goes to the new address), so an admin changes
    the identity of, or deactivates, only users below them: never platform staff, never a peer
    (another admin of the same level), never someone who holds a role the actor does not
    command. A domain admin commands the domain's assistants and every project role in the
    domain; a project admin commands the project's assistants; members rank below everyone.
    Inactive roles do not count; an inactive user's active roles do."""
    from tenancy.models import DomainRole, Membership

    if target.is_superuser or target.is_staff or target.platform_role:
        return False
    now = timezone.now()
    for domain_id, role in (
        DomainRole.objects.active(now).filter(user=target).values_list("domain_id", "role")
    ):
        if not (role == ASSISTANT and roles.domain_role(domain_id) == ADMIN):
            return False
    for project_id, domain_id, role in (
        Membership.objects.active(now)
        .filter(user=target)
        .exclude(role=MEMBER)
        .values_list("project_id", "project__domain_id", "role")
    ):
        if roles.domain_role(domain_id) == ADMIN:
            continue
        if role == ASSISTANT and roles.project_role(project_id) == ADMIN:
            continue
        return False
    return True


def can(actor: Any, action: Action | str, obj: Any = None) -> bool:
    """May `actor` do `action` on `obj`? The one place every permission is decided."""
    roles = roles_of(actor)
    if not roles.active:
        return False
    action = Action(action)
    if roles.platform:
        return True

    match action:
        case Action.DOMAIN_CREATE | Action.DOMAIN_DELETE:
            return False
        case Action.DOMAIN_VIEW:
            return (
                roles.finance
                or obj.pk in roles.domains
                or obj.pk == roles.home_domain_id
                or obj.pk in roles.project_domains.values()
            )
        case Action.DOMAIN_EDIT | Action.DOMAIN_APPOINT:
            return _domain_level(roles, obj.pk, admin_only=True)
        case Action.DOMAIN_MANAGE | Action.PROJECT_CREATE:
            return _domain_level(roles, obj.pk, admin_only=False)
        case Action.PROJECT_VIEW:
            return roles.finance or obj.domain_id in roles.domains or obj.pk in roles.projects
        case Action.PROJECT_EDIT | Action.PROJECT_MANAGE:
            return _project_level(roles, obj, admin_only=False)
        case Action.PROJECT_APPOINT:
            return _project_level(roles, obj, admin_only=True)
        case Action.PROJECT_DELETE:
            return _domain_level(roles, obj.domain_id, admin_only=True)
        case Action.USER_CREATE:
            # obj: the home domain of the new user.
            return _domain_level(roles, obj.pk, admin_only=False) or any(
                roles.project_domains.get(pid) == obj.pk for pid in roles.managed_project_ids
            )
        case Action.USER_VIEW:
            return obj.pk == actor.pk or roles.finance or _may_manage_user(roles, obj)
        case Action.USER_EDIT_REAL_NAME:
            # "Real-name fields are changed only by admins" (SPEC Tenancy and people 2), and
            # only of users below them (the email is the key to the account).
            return _may_manage_user(roles, obj, admin_only=True) and (
                obj.pk == actor.pk or _outranks(roles, obj)
            )
        case Action.USER_EDIT_EMAIL:
            # A password reset goes to the address, so changing it hands the account over: only
            # the home domain's admins; a project admin only for an account nobody has used
            # yet (never signed in: a typo in a roster) that is exclusively theirs (in no
            # project but theirs, no domain role) — never for a school's student they added.
            if not can(actor, Action.USER_EDIT_REAL_NAME, obj):
                return False
            home = obj.home_domain_id
            if home is not None and _domain_level(roles, home, admin_only=True):
                return True
            return obj.pk == actor.pk or (
                obj.last_login is None and _exclusively_theirs(roles, obj)
            )
        case Action.USER_DEACTIVATE:
            return (
                obj.home_domain_id is not None
                and _domain_level(roles, obj.home_domain_id, admin_only=True)
                and (obj.pk == actor.pk or _outranks(roles, obj))  # self: a clear 400 later
            )
        case Action.MEMBERSHIP_CHANGE | Action.MEMBERSHIP_REMOVE:
            # Touching an admin or assistant is an appointment; touching a member is daily work.
            admin_only = obj.role in (ADMIN, ASSISTANT)
            return _project_level(roles, obj.project, admin_only=admin_only)
        case Action.DOMAIN_ROLE_REMOVE:
            return _domain_level(roles, obj.domain_id, admin_only=True)
        case Action.AUDIT_VIEW:
            if obj is None:
                return False
            if hasattr(obj, "domain_id"):
                return _project_level(roles, obj, admin_only=False)
            return _domain_level(roles, obj.pk, admin_only=False)
        case Action.ALLOCATE_DOMAIN | Action.WALLET_ADJUST | Action.PRICE_EDIT:
            return False
        case Action.ALLOCATE_PROJECT:
            return _domain_level(roles, obj.domain_id, admin_only=True)
        case Action.SET_MEMBER_LIMIT:
            return _project_level(roles, obj, admin_only=False)
        case Action.REQUEST_ALLOCATION:
            return roles.project_role(obj.pk) == ADMIN
        case Action.REQUEST_LIMIT:
            return obj.pk in roles.projects
        case Action.TENANT_LOCK:
            # A project may be locked by its domain's admins; a domain only by platform staff.
            return hasattr(obj, "domain_id") and _domain_level(
                roles, obj.domain_id, admin_only=True
            )
        case Action.TENANT_UNLOCK:
            if hasattr(obj, "domain_id"):
                return _project_level(roles, obj, admin_only=True)
            return _domain_level(roles, obj.pk, admin_only=True)
        case Action.MEMBER_UNLOCK:
            return _project_level(roles, obj.project, admin_only=False)
        case Action.SERVER_CREATE:
            return obj.pk in roles.projects
        case Action.SERVER_VIEW:
            return (
                obj.owner_id == actor.pk
                or roles.finance
                or _project_level(roles, obj.project, admin_only=False)
            )
        case Action.SERVER_USE:
            return obj.owner_id == actor.pk
        case Action.SERVER_STOP | Action.SERVER_DELETE:
            return obj.owner_id == actor.pk or _project_level(roles, obj.project, admin_only=False)
        case Action.COMPUTE_OVERVIEW:
            if hasattr(obj, "domain_id"):
                return _project_level(roles, obj, admin_only=False)
            return _domain_level(roles, obj.pk, admin_only=False)
        case Action.CLOUD_ADMIN:
            return False
        case Action.KEYPAIR_MANAGE:
            # Any active user registers keys; a key is used and deleted by its owner
            # (platform staff pass above, but compute.selectors.keypairs_of never shows
            # them anybody else's key).
            return obj is None or obj.user_id == actor.pk
        case Action.REPORT_OWN:
            return True
        case Action.REPORT_TENANT:
            return roles.finance or roles.manages_any()
        case Action.REPORT_FINANCE:
            return roles.finance
        case _ if action.value.startswith("billing.wallet"):
            return _wallet_action(roles, action, obj)
    return False


def _wallet_action(roles: Roles, action: Action, wallet: Any) -> bool:
    """Money rules of SPEC Money 4–5 for one wallet (the platform wallet is staff-only)."""
    if wallet.project_id is not None:
        project = wallet.project
        tenant_admin = _project_level(roles, project, admin_only=True)
        tenant_staff = _project_level(roles, project, admin_only=False)
        superior = _domain_level(roles, project.domain_id, admin_only=True)
    elif wallet.domain_id is not None:
        tenant_admin = _domain_level(roles, wallet.domain_id, admin_only=True)
        tenant_staff = _domain_level(roles, wallet.domain_id, admin_only=False)
        superior = False  # platform staff, already allowed
    else:
        return roles.finance and action == Action.WALLET_VIEW
    match action:
        case Action.WALLET_VIEW:
            return roles.finance or tenant_staff
        case Action.WALLET_RECHARGE:
            # Whoever receives the money records it: platform staff and finance staff for domain
            # wallets (SPEC Money 5; finance gets this write and no other), the domain's admins
            # for project wallets —
            # but nobody credits their own wallet (SPEC Money 5): not a domain admin who also
            # runs that project (they file a request another admin or platform staff confirms).
            if wallet.project_id is None:
                return roles.finance
            own = roles.project_role(wallet.project_id) in (ADMIN, ASSISTANT)
            return superior and not own
        case Action.WALLET_REQUEST_RECHARGE:
            return tenant_staff
        case Action.WALLET_SET_CREDIT_LIMIT | Action.WALLET_SET_BILLING_ADMIN:
            return tenant_admin or superior
        case Action.WALLET_SET_CEILING:
            return superior
        case Action.WALLET_SET_ALERT:
            return tenant_staff
    return False


def require(actor: Any, action: Action | str, obj: Any = None) -> None:
    """Raise PermissionDenied unless `can(actor, action, obj)`."""
    if not can(actor, action, obj):
        raise PermissionDenied(_("You do not have permission to do this."))


def membership_role_action(role: str) -> Action:
    """Adding a member is daily work; adding an admin or assistant is an appointment."""
    return Action.PROJECT_APPOINT if role in (ADMIN, ASSISTANT) else Action.PROJECT_MANAGE


def requires_mfa(user: Any) -> bool:
    """Platform staff and domain/project admins must use MFA (configurable by a setting)."""
    from django.conf import settings

    if not settings.TEACHCLOUD_MFA_ENFORCED:
        return False
    roles = roles_of(user)
    if not roles.active:
        return False
    wanted = set(settings.TEACHCLOUD_MFA_REQUIRED_ROLES)
    if "platform" in wanted and (roles.platform or roles.finance or user.is_staff):
        return True
    if "domain_admin" in wanted and any(r == ADMIN for r in roles.domains.values()):
        return True
    if "domain_assistant" in wanted and any(r == ASSISTANT for r in roles.domains.values()):
        return True
    if "project_admin" in wanted and any(r == ADMIN for r in roles.projects.values()):
        return True
    return "project_assistant" in wanted and any(r == ASSISTANT for r in roles.projects.values())
