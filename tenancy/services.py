"""Writes of the tenancy app: domains, projects, appointments, memberships.

Each top-level service checks permission, validates, writes the change and its audit event in one
transaction, and never does network I/O inside it.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record, snapshot
from tenancy.models import (
    Domain,
    DomainRole,
    DomainRoleKind,
    Membership,
    Project,
    ProjectRole,
    TenantStatus,
)
from tenancy.permissions import Action, forget_roles, membership_role_action, require

DOMAIN_FIELDS = ["name", "code", "status"]
PROJECT_FIELDS = ["name", "code", "description", "status"]
GRANT_FIELDS = ["role", "expires_at"]
#: "Leave this field as it is" for optional arguments where None means "clear".
KEEP: Any = object()


def _check_expiry(role: str, expires_at: datetime | None) -> None:
    if expires_at is None:
        return
    if role != "assistant":
        raise ServiceError(
            _("Only assistant appointments can have an end date."),
            code="expiry_not_allowed",
            fields={"expires_at": [_("Only assistants can be appointed until a date.")]},
        )
    if expires_at <= timezone.now():
        raise ServiceError(
            _("The end date of an appointment must be in the future."),
            code="expiry_in_past",
            fields={"expires_at": [_("Must be in the future.")]},
        )


def _clean_code(code: str) -> str:
    """A tenant code: a lower-case ASCII slug (letters, digits, - and _), at most 64 long."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_slug

    code = code.strip().lower()
    try:
        if not code or len(code) > 64:
            raise ValidationError("bad length")
        validate_slug(code)
    except ValidationError as exc:
        raise ServiceError(
            _("Use 1 to 64 letters, digits, hyphens or underscores for the code."),
            code="invalid_code",
            fields={"code": [_("Enter a valid code.")]},
        ) from exc
    return code


def _check_appointee(*, actor: Any, user: User, domain: Domain, role: str) -> None:
    """Who may be appointed where (SPEC "Tenancy and people" 1 and 3).

    Members and assistants come from the tenant's own domain. An admin may also be a user of the
    appointing admin's own home domain. Platform staff may appoint any active user as admin.
    """
    if not user.is_active:
        raise ServiceError(_("This user account is not active."), code="user_inactive")
    if user.home_domain_id == domain.pk:
        return
    if role == "admin":
        if getattr(actor, "is_platform_staff", False):
            return
        if actor.home_domain_id is not None and user.home_domain_id == actor.home_domain_id:
            return
    raise ServiceError(
        _("%(user)s does not belong to the domain %(domain)s.")
        % {"user": user, "domain": domain.name},
        code="user_not_in_domain",
    )


def tenant_writable(
    *, domain: Domain | None = None, project: Project | None = None, locked_ok: bool = False
) -> None:
    """Refuse a write to a locked or purged tenant (SPEC "Locking, credit, purge" 1: nothing can
    be created there and the portal is read-only for it, except recharge). A project is also
    refused when its domain is locked. The status is read from the database, not from the
    caller's (possibly older) object.

    Called by every service that creates something in a tenant or changes a project (projects,
    members, users, enrollment codes and approvals, roster imports). Left open on purpose:
    billing's recharge, credit limit and unlock (Locking 2); removing members and deactivating
    enrollment codes, which only reduce what the tenant holds and pays; appointing admins (also
    a newcomer as a project's admin, one more monthly fee) and role changes, so that a tenant
    whose admins left can still get one who recharges and unlocks it.
    """
    if project is not None:
        row = (
            Project.objects.filter(pk=project.pk)
            .values("name", "status", "domain__name", "domain__status")
            .get()
        )
        tenants = [
            ("domain", row["domain__name"], row["domain__status"]),
            ("project", row["name"], row["status"]),
        ]
    elif domain is not None:
        row = Domain.objects.filter(pk=domain.pk).values("name", "status").get()
        tenants = [("domain", row["name"], row["status"])]
    else:
        raise ValueError("tenant_writable needs a domain or a project")
    for kind, name, status in tenants:
        if status == TenantStatus.LOCKED and not locked_ok:
            message = (
                _(
                    "The school %(name)s is locked: nothing can be created or changed there "
                    "until its admin unlocks it."
                )
                if kind == "domain"
                else _(
                    "The project %(name)s is locked: nothing can be created or changed there "
                    "until its admin unlocks it."
                )
            )
            raise Conflict(message % {"name": name}, code="tenant_locked")
        if status == TenantStatus.PURGED:
            message = (
                _("The school %(name)s has been closed.")
                if kind == "domain"
                else _("The project %(name)s has been closed.")
            )
            raise Conflict(message % {"name": name}, code="tenant_purged")


# -- Domains ----------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def domain_create(*, actor: Any, name: str, code: str, admin: User | None = None) -> Domain:
    require(actor, Action.DOMAIN_CREATE)
    return _domain_create(actor=actor, name=name, code=code, admin=admin)


def _domain_create(*, actor: Any, name: str, code: str, admin: User | None) -> Domain:
    name = name.strip()
    if not name:
        raise ServiceError(
            _("A domain needs a name."),
            code="name_required",
            fields={"name": [_("This field is required.")]},
        )
    code = _clean_code(code)
    if Domain.objects.filter(code=code).exists():
        raise _domain_code_taken(code)
    try:
        with transaction.atomic():
            domain = Domain.objects.create(name=name, code=code, created_by=_real(actor))
    except IntegrityError as exc:  # a concurrent create with the same code
        raise _domain_code_taken(code) from exc
    _billing().wallet_open(domain=domain)
    audit_record(
        actor=actor,
        action="domain.create",
        target=domain,
        domain=domain,
        after=snapshot(domain, DOMAIN_FIELDS),
    )
    _cloud_tenant_ensure_on_commit(domain_id=domain.pk)
    if admin is not None:
        _domain_role_set(actor=actor, domain=domain, user=admin, role="admin", expires_at=None)
    return domain


def _domain_code_taken(code: str) -> Conflict:
    return Conflict(
        _("A domain with the code %(code)s already exists.") % {"code": code},
        code="code_taken",
        fields={"code": [_("This code is already used.")]},
    )


@transaction.atomic(durable=True)
def domain_create_with_admin(
    *,
    actor: Any,
    name: str,
    code: str,
    admin_username: str,
    admin_real_name: str,
    admin_email: str,
    admin_id_number: str,
    admin_password: str | None = None,
) -> Domain:
    """Platform staff open a school together with its first admin (a new user of the domain)."""
    from accounts.services import _user_create

    require(actor, Action.DOMAIN_CREATE)
    domain = _domain_create(actor=actor, name=name, code=code, admin=None)
    admin = _user_create(
        actor=actor,
        domain=domain,
        username=admin_username,
        real_name=admin_real_name,
        id_number=admin_id_number,
        email=admin_email,
        password=admin_password,
    )
    _domain_role_set(actor=actor, domain=domain, user=admin, role="admin", expires_at=None)
    return domain


@transaction.atomic(durable=True)
def domain_update(*, actor: Any, domain: Domain, name: str | None = None) -> Domain:
    require(actor, Action.DOMAIN_EDIT, domain)
    domain = Domain.objects.select_for_update().get(pk=domain.pk)
    before = snapshot(domain, DOMAIN_FIELDS)
    if name is not None:
        if not name.strip():
            raise ServiceError(
                _("A domain needs a name."),
                code="name_required",
                fields={"name": [_("This field is required.")]},
            )
        domain.name = name.strip()
    domain.save(update_fields=["name"])
    audit_record(
        actor=actor,
        action="domain.update",
        target=domain,
        domain=domain,
        before=before,
        after=snapshot(domain, DOMAIN_FIELDS),
    )
    return domain


# -- Projects ---------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def project_create(
    *,
    actor: Any,
    domain: Domain,
    name: str,
    code: str,
    description: str = "",
    admin: User | None = None,
) -> Project:
    require(actor, Action.PROJECT_CREATE, domain)
    if admin is not None:
        require(actor, Action.DOMAIN_APPOINT, domain)
    tenant_writable(domain=domain)
    name = name.strip()
    if not name:
        raise ServiceError(
            _("A project needs a name."),
            code="name_required",
            fields={"name": [_("This field is required.")]},
        )
    code = _clean_code(code)
    if Project.objects.filter(domain=domain, code=code).exists():
        raise _project_code_taken(code)
    try:
        with transaction.atomic():
            project = Project.objects.create(
                domain=domain,
                name=name,
                code=code,
                description=description,
                created_by=_real(actor),
            )
    except IntegrityError as exc:  # a concurrent create with the same code in the domain
        raise _project_code_taken(code) from exc
    _billing().wallet_open(project=project)
    audit_record(
        actor=actor,
        action="project.create",
        target=project,
        project=project,
        after=snapshot(project, PROJECT_FIELDS),
    )
    _cloud_tenant_ensure_on_commit(project_id=project.pk)
    if admin is not None:
        _membership_add(actor=actor, project=project, user=admin, role="admin", expires_at=None)
    return project


def _project_code_taken(code: str) -> Conflict:
    return Conflict(
        _("The domain already has a project with the code %(code)s.") % {"code": code},
        code="code_taken",
        fields={"code": [_("This code is already used in the domain.")]},
    )


@transaction.atomic(durable=True)
def project_update(
    *,
    actor: Any,
    project: Project,
    name: str | None = None,
    code: str | None = None,
    description: str | None = None,
    end_date: date | object | None = KEEP,
) -> Project:
    """Change a project's name, code, description or course end date (`end_date=None`
    clears it; left out, it is kept). A new end date may not lie in the past (local date)."""
    require(actor, Action.PROJECT_EDIT, project)
    project = Project.objects.select_for_update().get(pk=project.pk)
    tenant_writable(project=project)
    fields = PROJECT_FIELDS if end_date is KEEP else [*PROJECT_FIELDS, "end_date"]
    before = snapshot(project, fields)
    if name is not None:
        if not name.strip():
            raise ServiceError(
                _("A project needs a name."),
                code="name_required",
                fields={"name": [_("This field is required.")]},
            )
        project.name = name.strip()
    if code is not None and code.strip().lower() != project.code:
        code = _clean_code(code)
        if Project.objects.filter(domain_id=project.domain_id, code=code).exists():
            raise _project_code_taken(code)
        project.code = code
    if description is not None:
        project.description = description
    if end_date is not KEEP and end_date != project.end_date:
        if isinstance(end_date, date) and end_date < timezone.localdate():
            raise ServiceError(
                _("The course end date cannot lie in the past."),
                code="end_date_in_past",
                fields={"end_date": [_("Choose today or a later date.")]},
            )
        project.end_date = end_date
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError as exc:  # a concurrent create or rename to the same code
        raise _project_code_taken(project.code) from exc
    audit_record(
        actor=actor,
        action="project.update",
        target=project,
        project=project,
        before=before,
        after=snapshot(project, fields),
    )
    return project


# -- Domain roles -----------------------------------------------------------------------------


@transaction.atomic(durable=True)
def domain_role_set(
    *, actor: Any, domain: Domain, user: User, role: str, expires_at: datetime | None = None
) -> DomainRole:
    """Appoint `user` as admin or assistant of `domain` (or change their role there)."""
    require(actor, Action.DOMAIN_APPOINT, domain)
    return _domain_role_set(actor=actor, domain=domain, user=user, role=role, expires_at=expires_at)


def _domain_role_set(
    *, actor: Any, domain: Domain, user: User, role: str, expires_at: datetime | None
) -> DomainRole:
    if role not in DomainRoleKind.values:
        raise ServiceError(
            _("Unknown role %(role)s.") % {"role": role},
            code="invalid_role",
            fields={"role": [_("Choose admin or assistant.")]},
        )
    _check_expiry(role, expires_at)
    _check_appointee(actor=actor, user=user, domain=domain, role=role)
    existing = DomainRole.objects.select_for_update().filter(domain=domain, user=user).first()
    if existing is None:
        try:
            with transaction.atomic():
                grant = DomainRole.objects.create(
                    domain=domain, user=user, role=role, expires_at=expires_at
                )
        except IntegrityError as exc:  # a concurrent appointment of the same user
            raise Conflict(
                _(
                    "%(user)s was appointed in %(domain)s at the same moment by someone else: "
                    "reload the page to see the role."
                )
                % {"user": user, "domain": domain.name},
                code="already_appointed",
            ) from exc
        audit_record(
            actor=actor,
            action="domain_role.appoint",
            target=grant,
            domain=domain,
            after=snapshot(grant, GRANT_FIELDS) | {"user": user.username},
        )
    else:
        if existing.role == "admin" and role != "admin":
            _ensure_other_domain_admin(existing)
        before = snapshot(existing, GRANT_FIELDS)
        existing.role, existing.expires_at = role, expires_at
        existing.save(update_fields=["role", "expires_at"])
        grant = existing
        audit_record(
            actor=actor,
            action="domain_role.change",
            target=grant,
            domain=domain,
            before=before,
            after=snapshot(grant, GRANT_FIELDS) | {"user": user.username},
        )
    forget_roles(user)
    return grant


def _ensure_other_domain_admin(grant: DomainRole) -> None:
    # Lock the domain row so that two concurrent removals of its last two admins serialise
    # (the second then sees the first one gone).
    Domain.objects.select_for_update().filter(pk=grant.domain_id).first()
    others = DomainRole.objects.active().filter(domain_id=grant.domain_id, role="admin")
    if not others.exclude(pk=grant.pk).exists():
        raise Conflict(
            _("A domain must keep at least one admin: appoint another admin first."),
            code="last_admin",
        )


@transaction.atomic(durable=True)
def domain_role_remove(*, actor: Any, grant: DomainRole) -> None:
    require(actor, Action.DOMAIN_ROLE_REMOVE, grant)
    # Lock order: the domain row, then only the grant itself (not the joined user/domain rows).
    Domain.objects.select_for_update().filter(pk=grant.domain_id).first()
    grant = (
        DomainRole.objects.select_for_update(of=("self",))
        .select_related("domain", "user")
        .get(pk=grant.pk)
    )
    if grant.role == "admin":
        _ensure_other_domain_admin(grant)
    audit_record(
        actor=actor,
        action="domain_role.remove",
        target=grant,
        domain=grant.domain,
        before=snapshot(grant, GRANT_FIELDS) | {"user": grant.user.username},
    )
    grant.delete()
    forget_roles(grant.user)


# -- Memberships ------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def membership_add(
    *,
    actor: Any,
    project: Project,
    user: User,
    role: str = "member",
    expires_at: datetime | None = None,
) -> Membership:
    if role not in ProjectRole.values:
        raise ServiceError(
            _("Unknown role %(role)s.") % {"role": role},
            code="invalid_role",
            fields={"role": [_("Choose member, assistant or admin.")]},
        )
    require(actor, membership_role_action(role), project)
    return _membership_add(
        actor=actor, project=project, user=user, role=role, expires_at=expires_at
    )


def _membership_add(
    *, actor: Any, project: Project, user: User, role: str, expires_at: datetime | None
) -> Membership:
    # Every new membership comes through here (portal, API, enrollment, roster rows, a queued
    # roster import that runs after a lock): each adds a monthly fee to the wallet. Appointing
    # an admin stays open (tenant_writable's docstring): a locked project whose admins left
    # needs one who recharges and unlocks it.
    tenant_writable(project=project, locked_ok=role == ProjectRole.ADMIN)
    _check_expiry(role, expires_at)
    _check_appointee(actor=actor, user=user, domain=project.domain, role=role)
    if Membership.objects.filter(project=project, user=user).exists():
        raise Conflict(
            _("%(user)s is already in the project %(project)s.")
            % {"user": user, "project": project.name},
            code="already_member",
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                project=project, user=user, role=role, expires_at=expires_at
            )
    except IntegrityError as exc:  # a concurrent add of the same user
        raise Conflict(
            _("%(user)s is already in the project.") % {"user": user}, code="already_member"
        ) from exc
    action = "membership.add" if role == "member" else "membership.appoint"
    audit_record(
        actor=actor,
        action=action,
        target=membership,
        project=project,
        after=snapshot(membership, GRANT_FIELDS) | {"user": user.username},
    )
    if role == "member":
        _billing().member_limit_apply_defaults(actor=actor, membership=membership)
    forget_roles(user)
    return membership


def _lock_membership(membership: Membership) -> Membership:
    """Lock in the one order (project, then membership) and only our own rows: two concurrent
    changes in a project queue on the project row instead of deadlocking on joined rows."""
    project_id = Membership.objects.values_list("project_id", flat=True).get(pk=membership.pk)
    Project.objects.select_for_update().filter(pk=project_id).first()
    return (
        Membership.objects.select_for_update(of=("self",))
        .select_related("project__domain", "user")
        .get(pk=membership.pk)
    )


def _ensure_other_project_admin(membership: Membership) -> None:
    Project.objects.select_for_update().filter(pk=membership.project_id).first()
    others = Membership.objects.active().filter(project_id=membership.project_id, role="admin")
    if not others.exclude(pk=membership.pk).exists():
        raise Conflict(
            _("A project must keep at least one admin: appoint another admin first."),
            code="last_admin",
        )


@transaction.atomic(durable=True)
def membership_update(
    *, actor: Any, membership: Membership, role: str, expires_at: datetime | None = None
) -> Membership:
    if role not in ProjectRole.values:
        raise ServiceError(
            _("Unknown role %(role)s.") % {"role": role},
            code="invalid_role",
            fields={"role": [_("Choose member, assistant or admin.")]},
        )
    membership = _lock_membership(membership)
    require(actor, Action.MEMBERSHIP_CHANGE, membership)
    require(actor, membership_role_action(role), membership.project)
    _check_expiry(role, expires_at)
    if role != membership.role:
        _check_appointee(
            actor=actor, user=membership.user, domain=membership.project.domain, role=role
        )
    if membership.role == "admin" and role != "admin":
        _ensure_other_project_admin(membership)
    before = snapshot(membership, GRANT_FIELDS)
    membership.role, membership.expires_at = role, expires_at
    membership.save(update_fields=["role", "expires_at"])
    audit_record(
        actor=actor,
        action="membership.change",
        target=membership,
        project=membership.project,
        before=before,
        after=snapshot(membership, GRANT_FIELDS) | {"user": membership.user.username},
    )
    forget_roles(membership.user)
    return membership


def _ensure_no_servers_left(membership: Membership) -> None:
    """A member leaves a project only without VMs there: their VMs would keep running, holding
    (and being charged on) the project's allocation, owned by someone no longer in it. Deleting
    them is a separate, confirmed step (the project's VMs tab), so nothing is lost by surprise."""
    from compute.models import Server, ServerStatus

    left = (
        Server.objects.filter(project_id=membership.project_id, owner_id=membership.user_id)
        .exclude(status=ServerStatus.DELETED)
        .count()
    )
    if left:
        raise Conflict(
            _(
                "%(user)s still has %(count)d VM(s) in this project: delete them first (the "
                "project's VMs tab), then remove the member."
            )
            % {"user": membership.user, "count": left},
            code="member_has_servers",
        )


@transaction.atomic(durable=True)
def membership_remove(*, actor: Any, membership: Membership) -> None:
    membership = _lock_membership(membership)
    require(actor, Action.MEMBERSHIP_REMOVE, membership)
    # No tenant_writable here: removing a member only lowers what a locked tenant pays.
    if membership.role == "admin":
        _ensure_other_project_admin(membership)
    _ensure_no_servers_left(membership)
    audit_record(
        actor=actor,
        action="membership.remove",
        target=membership,
        project=membership.project,
        before=snapshot(membership, GRANT_FIELDS) | {"user": membership.user.username},
    )
    membership.delete()
    forget_roles(membership.user)


# -- Housekeeping -----------------------------------------------------------------------------


@transaction.atomic(durable=True)
def grants_expire(*, now: datetime | None = None) -> int:
    """End assistant appointments whose date has passed, each with an audit event."""
    now = now or timezone.now()
    count = 0
    for grant in (
        DomainRole.objects.select_for_update(of=("self",))
        .select_related("domain", "user")
        .filter(expires_at__lte=now)
    ):
        audit_record(
            actor=None,
            action="domain_role.expire",
            target=grant,
            domain=grant.domain,
            before=snapshot(grant, GRANT_FIELDS) | {"user": grant.user.username},
        )
        grant.delete()
        count += 1
    for membership in (
        Membership.objects.select_for_update(of=("self",))
        .select_related("project__domain", "user")
        .filter(expires_at__lte=now)
    ):
        audit_record(
            actor=None,
            action="membership.expire",
            target=membership,
            project=membership.project,
            before=snapshot(membership, GRANT_FIELDS) | {"user": membership.user.username},
            after={"role": "member", "expires_at": None, "user": membership.user.username},
        )
        # An expired assistant stays in the project as a plain member.
        membership.role, membership.expires_at = "member", None
        membership.save(update_fields=["role", "expires_at"])
        count += 1
    return count


def _billing() -> Any:
    """Billing's services (wallets with every tenant, default limits for new members)."""
    from billing import services

    return services


def _cloud_tenant_ensure_on_commit(**ids: int) -> None:
    """After commit, have compute create the tenant's Keystone domain or project (a task: no
    network call here)."""

    def send() -> None:
        from kombu.exceptions import OperationalError

        from compute.tasks import cloud_tenant_ensure

        try:
            cloud_tenant_ensure.delay(**ids)
        except OperationalError:  # the broker is down: the first build ensures it instead
            logging.getLogger(__name__).exception("could not send cloud_tenant_ensure%r", ids)

    transaction.on_commit(send)


def _real(actor: Any) -> User | None:
    return actor if getattr(actor, "pk", None) is not None else None
