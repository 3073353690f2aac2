"""Writes of the accounts app: real-name users, API tokens, enrollment codes and requests,
roster imports."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _
from knox.models import AuthToken

from accounts.models import (
    EnrollmentCode,
    EnrollmentRequest,
    EnrollmentStatus,
    ImportStatus,
    RosterImport,
    User,
)
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record, snapshot
from tenancy.models import Domain, Membership, Project
from tenancy.permissions import Action, require

REAL_NAME_FIELDS = ["real_name", "id_number", "email", "phone"]
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")


def _real(actor: Any) -> User | None:
    return actor if getattr(actor, "pk", None) is not None else None


def default_username(domain: Domain, id_number: str) -> str:
    """`<domain code>-<id number>`, lower case: unique because id numbers are unique per domain."""
    cleaned = re.sub(r"[^\w.@+-]", "", id_number.strip().lower())
    return f"{domain.code}-{cleaned}"[:150]


def _validate_identity(
    *,
    domain: Domain | None,
    username: str,
    real_name: str,
    id_number: str,
    email: str,
    exclude: User | None = None,
) -> dict[str, list[str]]:
    """Field errors for a real-name identity (empty when valid)."""
    errors: dict[str, list[str]] = {}
    others = User.objects.exclude(pk=exclude.pk) if exclude else User.objects.all()
    if not USERNAME_RE.match(username):
        errors["username"] = [_("Use 1 to 150 letters, digits and . @ + - _ only.")]
    elif others.filter(username__iexact=username).exists():
        errors["username"] = [_("This username is already taken.")]
    if not real_name.strip():
        errors["real_name"] = [_("The real name is required.")]
    if domain is not None and not id_number.strip():
        errors["id_number"] = [_("The student/staff number is required.")]
    elif domain is not None and others.filter(home_domain=domain, id_number=id_number).exists():
        errors["id_number"] = [_("Another user of this domain has this number.")]
    if not email:
        errors["email"] = [_("The email address is required.")]
    else:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = [_("Enter a valid email address.")]
        else:
            if others.filter(email__iexact=email).exists():
                errors["email"] = [_("Another user has this email address.")]
    return errors


def _user_create(
    *,
    actor: Any,
    domain: Domain | None,
    username: str,
    real_name: str,
    id_number: str,
    email: str,
    phone: str = "",
    password: str | None = None,
    is_active: bool = True,
    email_verified: bool = False,
    invite: bool = True,
) -> User:
    username, email = username.strip(), email.strip().lower()
    real_name, id_number = real_name.strip(), id_number.strip()
    errors = _validate_identity(
        domain=domain, username=username, real_name=real_name, id_number=id_number, email=email
    )
    user = User(
        username=username,
        real_name=real_name,
        id_number=id_number,
        email=email,
        phone=phone.strip(),
        home_domain=domain,
        is_active=is_active,
    )
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise ServiceError(
            _("The user could not be created: please check the fields."),
            code="invalid_user",
            fields=errors,
        )
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent create of the same identity
        raise Conflict(
            _("A user with this username, email or number already exists."), code="user_exists"
        ) from exc
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=email_verified)
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        domain=domain,
        after=snapshot(user, ["username", *REAL_NAME_FIELDS]),
    )
    if invite and not password and is_active:
        transaction.on_commit(lambda: send_invitation(user_id=user.pk))
    return user


@transaction.atomic(durable=True)
def user_create(
    *,
    actor: Any,
    domain: Domain,
    username: str,
    real_name: str,
    id_number: str,
    email: str,
    phone: str = "",
    password: str | None = None,
) -> User:
    """An admin creates a real-name user of `domain`. Without a password, an invitation email
    lets the user choose one (and proves the address)."""
    from tenancy.services import tenant_writable

    require(actor, Action.USER_CREATE, domain)
    tenant_writable(domain=domain)
    return _user_create(
        actor=actor,
        domain=domain,
        username=username,
        real_name=real_name,
        id_number=id_number,
        email=email,
        phone=phone,
        password=password,
    )


@transaction.atomic(durable=True)
def user_create_in_project(
    *,
    actor: Any,
    project: Project,
    username: str,
    real_name: str,
    id_number: str,
    email: str,
    phone: str = "",
    role: str = "member",
) -> Membership:
    """An admin creates a real-name user of the project's domain and adds them to the project,
    in one transaction (an invitation email lets the user choose a password)."""
    from tenancy.permissions import membership_role_action
    from tenancy.services import _membership_add, tenant_writable

    require(actor, Action.USER_CREATE, project.domain)
    require(actor, membership_role_action(role), project)
    tenant_writable(project=project)
    user = _user_create(
        actor=actor,
        domain=project.domain,
        username=username.strip() or default_username(project.domain, id_number),
        real_name=real_name,
        id_number=id_number,
        email=email,
        phone=phone,
    )
    return _membership_add(actor=actor, project=project, user=user, role=role, expires_at=None)


def _email_change_notice(*, actor: Any, user: User, old: str) -> None:
    """Tell the replaced address (a changed email is how an account is taken over: a password
    reset goes to the new one), after commit, recorded like every notification."""
    from billing.notify import notify  # billing builds on accounts: imported when used

    notify(
        event="email_changed",
        users=[user],
        to=old,
        subject=_("Your TeachCloud email address was changed"),
        body=render_to_string(
            "accounts/email/email_changed.txt",
            {"user": user, "actor": actor, "old": old, "new": user.email},
        ),
    )


@transaction.atomic(durable=True)
def user_update(*, actor: Any, user: User, **changes: Any) -> User:
    """Change real-name fields (admins only) — every change is audited."""
    unknown = set(changes) - set(REAL_NAME_FIELDS) - {"is_active"}
    if unknown:
        raise ServiceError(
            _("These fields cannot be changed here: %(f)s") % {"f": ", ".join(sorted(unknown))},
            code="invalid_fields",
        )
    user = User.objects.select_for_update().get(pk=user.pk)
    if "is_active" in changes:
        require(actor, Action.USER_DEACTIVATE, user)
        if user.pk == getattr(actor, "pk", None) and not changes["is_active"]:
            raise ServiceError(_("You cannot deactivate your own account."), code="self_deactivate")
    if set(changes) & set(REAL_NAME_FIELDS):
        require(actor, Action.USER_EDIT_REAL_NAME, user)
    if str(changes.get("email", user.email)).strip().lower() != (user.email or "").lower():
        require(actor, Action.USER_EDIT_EMAIL, user)
    before = snapshot(user, [*REAL_NAME_FIELDS, "is_active"])
    new = {k: (v.strip() if isinstance(v, str) else v) for k, v in changes.items()}
    if "email" in new:
        new["email"] = new["email"].lower()
    errors = _validate_identity(
        domain=user.home_domain,
        username=user.username,
        real_name=new.get("real_name", user.real_name),
        id_number=new.get("id_number", user.id_number),
        email=new.get("email", user.email),
        exclude=user,
    )
    errors.pop("username", None)
    if errors:
        raise ServiceError(
            _("The user could not be changed: please check the fields."),
            code="invalid_user",
            fields=errors,
        )
    for key, value in new.items():
        setattr(user, key, value)
    user.save()
    if before["is_active"] and not user.is_active:
        tokens_revoke(user=user)  # a deactivated account keeps no API access for a reactivation
    if "email" in new and new["email"] != (before["email"] or "").lower():  # not a case change
        EmailAddress.objects.filter(user=user).delete()
        EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)
        if before["email"]:
            _email_change_notice(actor=actor, user=user, old=before["email"])
    after = snapshot(user, [*REAL_NAME_FIELDS, "is_active"])
    if after != before:
        action = "user.real_name_change" if set(new) & set(REAL_NAME_FIELDS) else "user.update"
        audit_record(
            actor=actor,
            action=action,
            target=user,
            domain=user.home_domain,
            before=before,
            after=after,
        )
    return user


# -- API tokens (django-rest-knox: only a SHA-512 digest of each key is stored) ---------------


def token_create(*, user: User) -> tuple[AuthToken, str]:
    """A new API token for `user`, expiring TEACHCLOUD_TOKEN_TTL_HOURS from now: the stored row
    (its digest and expiry) and the key, which exists only in this answer. The user's expired
    tokens are cleared on the way, so rows do not pile up for scripts that sign in every run."""
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(
        user=user, expiry=timedelta(hours=settings.TEACHCLOUD_TOKEN_TTL_HOURS)
    )


def token_revoke(*, token: AuthToken) -> None:
    """Revoke one token (its owner signs it out)."""
    AuthToken.objects.filter(pk=token.pk).delete()


def tokens_revoke(*, user: User) -> int:
    """Revoke every API token of `user`: by their own wish, and whenever their password changes
    (allauth's change, set and reset; the admin site) or their account is deactivated."""
    count, _deleted = AuthToken.objects.filter(user=user).delete()
    return count


@transaction.atomic(durable=True)
def user_password_set(*, user: User, password: str | None) -> User:
    """Set a user's password (None: no usable password) outside allauth's own views — the admin
    site's password form, the demo seed — and revoke their API tokens like every password change.
    The password was validated by the caller's form. Changes `user` in place, so a caller that
    keeps the instance (the admin updating its own session hash) sees the new password."""
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save(update_fields=["password"])
    tokens_revoke(user=user)
    return user


PLATFORM_ACCESS_FIELDS = ["platform_role", "is_staff", "is_superuser"]


@transaction.atomic(durable=True)
def staff_user_create(
    *,
    actor: Any,
    username: str,
    real_name: str,
    email: str,
    phone: str = "",
    password: str | None = None,
    platform_role: str = "operator",
    is_staff: bool = True,
    is_superuser: bool = False,
) -> User:
    """Platform staff create another platform account (no home domain)."""
    require(actor, Action.PLATFORM_STAFF_MANAGE)
    user = _user_create(
        actor=actor,
        domain=None,
        username=username,
        real_name=real_name,
        id_number="",
        email=email,
        phone=phone,
        password=password,
    )
    _platform_access_apply(
        actor=actor,
        user=user,
        platform_role=platform_role,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    return user


@transaction.atomic(durable=True)
def user_platform_access_set(
    *, actor: Any, user: User, platform_role: str, is_staff: bool, is_superuser: bool
) -> User:
    """Grant or withdraw platform access (operator/finance role, admin site, superuser)."""
    require(actor, Action.PLATFORM_STAFF_MANAGE)
    user = User.objects.select_for_update().get(pk=user.pk)
    return _platform_access_apply(
        actor=actor,
        user=user,
        platform_role=platform_role,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )


def _platform_access_apply(
    *, actor: Any, user: User, platform_role: str, is_staff: bool, is_superuser: bool
) -> User:
    from accounts.models import PlatformRole

    if platform_role not in PlatformRole.values:
        raise ServiceError(
            _("Unknown platform role %(role)s.") % {"role": platform_role},
            code="invalid_role",
            fields={"platform_role": [_("Choose a role.")]},
        )
    before = snapshot(user, PLATFORM_ACCESS_FIELDS)
    if bool(is_superuser) != user.is_superuser and not getattr(actor, "is_superuser", False):
        raise ServiceError(
            _("Only a superuser may grant or withdraw superuser status."),
            code="superuser_required",
            fields={"is_superuser": [_("Only a superuser may change this.")]},
            status=403,
        )
    staff_before = user.is_staff and (user.is_superuser or before["platform_role"] == "operator")
    staff_after = is_staff and (is_superuser or platform_role == "operator")
    if user.pk == getattr(actor, "pk", None) and staff_before and not staff_after:
        raise ServiceError(_("You cannot withdraw your own platform access."), code="self_demote")
    user.platform_role, user.is_staff, user.is_superuser = platform_role, is_staff, is_superuser
    after = snapshot(user, PLATFORM_ACCESS_FIELDS)
    if after != before:
        user.save(update_fields=PLATFORM_ACCESS_FIELDS)
        audit_record(
            actor=actor,
            action="user.platform_access_change",
            target=user,
            domain=user.home_domain,
            before=before,
            after=after,
        )
    finance_group_sync(user=user)
    return user


FINANCE_GROUP = "Finance staff"
# The money models finance staff may look at (view permission only); accounts.0003 holds the
# same list, frozen, for the migration that first created the group.
FINANCE_VIEW_MODELS = {
    "billing": [
        "allocation",
        "allocationrequest",
        "chargeline",
        "entry",
        "lockperiod",
        "memberconsumption",
        "platformcapacity",
        "priceversion",
        "rechargerequest",
        "transaction",
        "wallet",
    ],
    "reports": ["statement", "statementline"],
}


def finance_group() -> Any:
    """The "Finance staff" group with exactly the view permissions of the money models (found
    or made, and mended if someone changed or deleted it)."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    group, _created = Group.objects.get_or_create(name=FINANCE_GROUP)
    wanted = Q(pk__in=[])
    for app_label, models in FINANCE_VIEW_MODELS.items():
        wanted |= Q(
            content_type__app_label=app_label,
            codename__in=[f"view_{model}" for model in models],
        )
    permissions = list(Permission.objects.filter(wanted).values_list("pk", flat=True))
    if set(group.permissions.values_list("pk", flat=True)) != set(permissions):
        group.permissions.set(permissions)
    return group


def finance_group_sync(*, user: User) -> None:
    """Keep the "Finance staff" group in step with the platform role: finance staff with admin
    access are in it, nobody else. The admin still decides access through tenancy.permissions;
    the group makes the grant visible and usable."""
    group = finance_group()
    if user.platform_role == "finance" and user.is_staff:
        user.groups.add(group)
    else:
        user.groups.remove(group)


def send_invitation(*, user_id: int) -> None:
    """Email a set-your-password link to a user created without a password."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str
    from django.conf import settings
    from django.core.mail import send_mail
    from django.template.loader import render_to_string
    from django.urls import reverse

    user = User.objects.get(pk=user_id)
    key = default_token_generator.make_token(user)
    path = reverse(
        "account_reset_password_from_key", kwargs={"uidb36": user_pk_to_url_str(user), "key": key}
    )
    context = {"user": user, "url": settings.TEACHCLOUD_BASE_URL.rstrip("/") + path}
    send_mail(
        subject=settings.EMAIL_SUBJECT_PREFIX + _("Your TeachCloud account"),
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )


# -- Enrollment -------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def enrollment_code_create(
    *,
    actor: Any,
    project: Project,
    label: str = "",
    expires_at: datetime | None = None,
    max_uses: int | None = None,
) -> EnrollmentCode:
    from tenancy.services import tenant_writable

    require(actor, Action.PROJECT_MANAGE, project)
    tenant_writable(project=project)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(
            _("The expiry must be in the future."),
            code="expiry_in_past",
            fields={"expires_at": [_("Must be in the future.")]},
        )
    if max_uses is not None and max_uses < 1:
        raise ServiceError(
            _("The maximum number of uses must be at least 1."),
            code="invalid_max_uses",
            fields={"max_uses": [_("At least 1.")]},
        )
    code = EnrollmentCode.objects.create(
        project=project,
        label=label.strip(),
        expires_at=expires_at,
        max_uses=max_uses,
        created_by=_real(actor),
    )
    audit_record(
        actor=actor,
        action="enrollment_code.create",
        target=code,
        project=project,
        after=snapshot(code, ["code", "label", "expires_at", "max_uses"]),
    )
    return code


@transaction.atomic(durable=True)
def enrollment_code_deactivate(*, actor: Any, code: EnrollmentCode) -> EnrollmentCode:
    require(actor, Action.PROJECT_MANAGE, code.project)
    code.active = False
    code.save(update_fields=["active"])
    audit_record(
        actor=actor, action="enrollment_code.deactivate", target=code, project=code.project
    )
    return code


def _usable_code(code: str) -> EnrollmentCode:
    found = (
        EnrollmentCode.objects.select_for_update(of=("self",))
        .select_related("project__domain")
        .filter(code=code.strip())
        .first()
    )
    if found is None or not found.usable():
        raise ServiceError(
            _("This enrollment code is not valid any more. Ask your teacher for a new one."),
            code="code_invalid",
            status=404,
        )
    return found


@transaction.atomic(durable=True)
def enrollment_redeem(
    *,
    code: str,
    real_name: str,
    id_number: str,
    email: str,
    password: str,
    username: str = "",
) -> EnrollmentRequest | None:
    """A student without an account redeems a code: a new, inactive real-name account waits for
    approval by the project's admin or an assistant.

    The form is public (anyone holding the link), so it never tells whether a student number,
    email address or username is taken: with a number or address that already has an account,
    nothing is created and None is returned — the caller answers exactly as for a new request
    ("if you already have an account, sign in and open the link again"). A chosen username that
    is taken is replaced by the default one. Format errors (a bad address, a weak password) are
    answered as usual: they say nothing about other people."""
    enrollment_code = _usable_code(code)
    project = enrollment_code.project
    domain = project.domain
    if not password:
        # No invitation goes to a redeemed account: without a password it could never sign in.
        raise ServiceError(
            _("Choose a password for your account."),
            code="invalid_user",
            fields={"password": [_("This field is required.")]},
        )
    email_taken = User.objects.filter(email__iexact=email.strip()).exists()
    if email_taken or User.objects.filter(home_domain=domain, id_number=id_number.strip()).exists():
        return None
    username = username.strip()
    if not username or User.objects.filter(username__iexact=username).exists():
        username = default_username(domain, id_number)
        if User.objects.filter(username__iexact=username).exists():
            return None
    user = _user_create(
        actor=None,
        domain=domain,
        username=username,
        real_name=real_name,
        id_number=id_number,
        email=email,
        password=password,
        is_active=False,
        invite=False,
    )
    return _enrollment_request(enrollment_code, user)


@transaction.atomic(durable=True)
def enrollment_redeem_as_user(*, code: str, user: User) -> EnrollmentRequest:
    """A signed-in user of the project's domain asks to join with a code."""
    enrollment_code = _usable_code(code)
    project = enrollment_code.project
    if user.home_domain_id != project.domain_id:
        raise ServiceError(
            _("This code is for a project of another school."), code="user_not_in_domain"
        )
    if Membership.objects.filter(project=project, user=user).exists():
        raise Conflict(_("You are already in this project."), code="already_member")
    if EnrollmentRequest.objects.filter(
        project=project, user=user, status=EnrollmentStatus.PENDING
    ).exists():
        raise Conflict(_("Your request is already waiting for approval."), code="already_pending")
    return _enrollment_request(enrollment_code, user)


def _enrollment_request(enrollment_code: EnrollmentCode, user: User) -> EnrollmentRequest:
    EnrollmentCode.objects.filter(pk=enrollment_code.pk).update(uses=F("uses") + 1)
    request = EnrollmentRequest.objects.create(
        code=enrollment_code, project=enrollment_code.project, user=user
    )
    audit_record(
        actor=user,
        action="enrollment.redeem",
        target=request,
        project=enrollment_code.project,
        after={"user": user.username, "code": enrollment_code.code},
    )
    return request


@transaction.atomic(durable=True)
def enrollment_decide(
    *, actor: Any, request: EnrollmentRequest, approve: bool
) -> EnrollmentRequest:
    """Approve (activate the account, add the member) or reject a pending request.

    Approval activates only an account the redemption itself created (still pending); an
    account an admin deactivated stays inactive and its request cannot be approved."""
    from tenancy.services import _membership_add, tenant_writable

    request = (
        EnrollmentRequest.objects.select_for_update(of=("self",))
        .select_related("project__domain", "user")
        .get(pk=request.pk)
    )
    require(actor, Action.PROJECT_MANAGE, request.project)
    if request.status != EnrollmentStatus.PENDING:
        raise Conflict(_("This request has already been decided."), code="already_decided")
    user = request.user
    if approve:
        # Rejecting stays possible in a locked project: it creates nothing and answers the
        # student. Approving adds a member, and a monthly fee, so waits for the unlock.
        tenant_writable(project=request.project)
        if not user.is_active and not _pending_account(user):
            raise Conflict(
                _(
                    "The account of %(user)s has been deactivated by an admin of the school: "
                    "it must be reactivated before this request can be approved."
                )
                % {"user": user},
                code="user_inactive",
            )
    request.status = EnrollmentStatus.APPROVED if approve else EnrollmentStatus.REJECTED
    request.decided_at, request.decided_by = timezone.now(), _real(actor)
    request.save(update_fields=["status", "decided_at", "decided_by"])
    if approve:
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
        if not Membership.objects.filter(project=request.project, user=user).exists():
            _membership_add(
                actor=actor, project=request.project, user=user, role="member", expires_at=None
            )
    audit_record(
        actor=actor,
        action=f"enrollment.{request.status}",
        target=request,
        project=request.project,
        after={"user": user.username, "status": request.status},
    )
    return request


def _pending_account(user: User) -> bool:
    """An inactive account that only waits for its first approval: made inactive by
    enrollment_redeem, never purged and never deactivated by an admin. Every deactivation goes
    through user_update (portal, API, admin site), which records is_active true → false in the
    audit log; no other service creates inactive accounts."""
    from tenancy.models import AuditEvent

    if user.purged_at is not None:
        return False
    return not AuditEvent.objects.filter(
        target_type=user._meta.label_lower,
        target_id=str(user.pk),
        before__is_active=True,
        after__is_active=False,
    ).exists()


# -- Roster import ----------------------------------------------------------------------------


@transaction.atomic(durable=True)
def roster_import_create(
    *,
    actor: Any,
    rows: list[dict[str, str]],
    filename: str,
    domain: Domain,
    project: Project | None = None,
) -> RosterImport:
    """Record an import of parsed roster rows; it runs inline when small, else in Celery."""
    from django.conf import settings

    from tenancy.services import tenant_writable

    if project is not None:
        require(actor, Action.PROJECT_MANAGE, project)
        domain = project.domain
    else:
        require(actor, Action.DOMAIN_MANAGE, domain)
    tenant_writable(domain=domain, project=project)
    if not rows:
        raise ServiceError(_("The file has no rows to import."), code="empty_roster")
    roster = RosterImport.objects.create(
        domain=domain,
        project=project,
        uploaded_by=_real(actor),
        filename=filename[:255],
        rows=rows,
        total=len(rows),
    )
    if len(rows) > settings.TEACHCLOUD_ROSTER_INLINE_ROWS:
        from accounts.tasks import run_roster_import

        transaction.on_commit(lambda: run_roster_import.delay(roster.pk))
    return roster


def roster_import_run(*, roster_import_id: int, progress_every: int = 50) -> RosterImport:
    """Process every row, each in its own savepoint: a bad row never half-imports, and a row
    already imported is reported as such, so running the same file again changes nothing."""
    roster = RosterImport.objects.select_related("domain", "project", "uploaded_by").get(
        pk=roster_import_id
    )
    # Claim the import atomically: of two workers given the same import (a redelivered task,
    # a double enqueue), only one runs it.
    claimed = RosterImport.objects.filter(
        pk=roster.pk, status__in=[ImportStatus.PENDING, ImportStatus.FAILED]
    ).update(status=ImportStatus.RUNNING, error="", updated_at=timezone.now())
    if not claimed:
        roster.refresh_from_db()
        return roster
    counts = {"created": 0, "added": 0, "existing": 0, "error": 0}
    results: list[dict[str, Any]] = []
    try:
        for index, row in enumerate(roster.rows, start=1):
            outcome, detail = _roster_row(roster, row)
            counts[outcome] += 1
            results.append(
                {
                    "row": index,
                    "id_number": row.get("id_number", ""),
                    "real_name": row.get("real_name", ""),
                    "result": outcome,
                    "detail": detail,
                }
            )
            if index % progress_every == 0:
                RosterImport.objects.filter(pk=roster.pk).update(
                    processed=index, updated_at=timezone.now()
                )
    except Exception as exc:
        RosterImport.objects.filter(pk=roster.pk).update(
            status=ImportStatus.FAILED,
            error=str(exc)[:2000],
            processed=len(results),
            results=results,
            finished_at=timezone.now(),
        )
        raise
    with transaction.atomic():
        RosterImport.objects.filter(pk=roster.pk).update(
            status=ImportStatus.DONE,
            processed=len(results),
            results=results,
            created=counts["created"],
            added=counts["added"],
            existing=counts["existing"],
            errors=counts["error"],
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        roster.refresh_from_db()
        audit_record(
            actor=roster.uploaded_by,
            action="roster.import",
            target=roster,
            domain=roster.domain,
            project=roster.project,
            after={"file": roster.filename, "rows": roster.total, **counts},
        )
    return roster


def _roster_row(roster: RosterImport, row: dict[str, str]) -> tuple[str, str]:
    domain, project, actor = roster.domain, roster.project, roster.uploaded_by
    id_number = (row.get("id_number") or "").strip()
    try:
        with transaction.atomic():
            user = (
                User.objects.filter(home_domain=domain, id_number=id_number).first()
                if id_number
                else None
            )
            created = False
            if user is None:
                user = _user_create(
                    actor=actor,
                    domain=domain,
                    username=(row.get("username") or "").strip()
                    or default_username(domain, id_number),
                    real_name=row.get("real_name") or "",
                    id_number=id_number,
                    email=row.get("email") or "",
                )
                created = True
            if project is None:
                return ("created", "") if created else ("existing", _("already a user"))
            if Membership.objects.filter(project=project, user=user).exists():
                return "existing", _("already a member")
            from tenancy.services import _membership_add

            _membership_add(actor=actor, project=project, user=user, role="member", expires_at=None)
            return ("created", "") if created else ("added", _("existing user added"))
    except ServiceError as exc:
        reasons = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in (exc.fields or {}).items()
        )
        return "error", reasons or exc.detail


def email_confirm_by_reset(*, user: User) -> None:
    """A password set through an emailed link proves the user reads their primary address."""
    EmailAddress.objects.filter(user=user, email__iexact=user.email).update(verified=True)


def roster_imports_resume(
    *,
    now: datetime | None = None,
    queued_for: timedelta = timedelta(minutes=5),
    silent_for: timedelta = timedelta(minutes=10),
) -> list[int]:
    """Re-enqueue imports that nobody is working on: still queued after `queued_for` (the
    broker was down when they were enqueued) or running without progress for `silent_for` (the
    worker died). Rows are idempotent, so running an import again is harmless."""
    from accounts.tasks import run_roster_import

    now = now or timezone.now()
    resumed = []
    stale = RosterImport.objects.filter(
        Q(status=ImportStatus.PENDING, updated_at__lt=now - queued_for)
        | Q(status=ImportStatus.RUNNING, updated_at__lt=now - silent_for)
    ).values_list("pk", "status", "updated_at")
    for pk, status, updated_at in stale:
        # Conditional: if the import moved meanwhile, leave it alone.
        if RosterImport.objects.filter(pk=pk, status=status, updated_at=updated_at).update(
            status=ImportStatus.PENDING, updated_at=now
        ):
            run_roster_import.delay(pk)
            resumed.append(pk)
    return resumed
