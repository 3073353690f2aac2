"""Locks, unlocks, budget locks, alerts and purges (SPEC "Locking, credit, purge").

- enforce(*, now) -> dict: everything due at `now` after charges were posted: lock wallets
  whose available ≤ 0, budget thresholds and locks of members, low-balance alerts, purge
  reminders and purges, anonymisation of long-gone users, digests. Called by
  billing.charging.billing_run (and so by Celery beat); safe to run twice or concurrently.
- tenant_lock(*, actor, domain=None, project=None, reason) -> Wallet
- tenant_unlock(*, actor, domain=None, project=None, restart_servers=False) -> Wallet
- member_unlock(*, actor, membership, budget=None) -> Membership

Rules written down where the SPEC is silent:
- "available reaches ≤ 0" means available < 0, or = 0 once the wallet has been debited: a fresh
  wallet that was never charged (0 + 0) owes nothing and is not locked.
- A lock stops the tenant's VMs through a `ComputeRequest(stop)` (for a domain: one request
  covering all its projects) that compute carries out; unlock may ask `restart`, purge `delete`.
- `Wallet.unpaid_since` is the start of the unbroken unpaid run: set when a locked wallet's
  available is ≤ 0 (the automatic lock sets it at once), cleared when available is > 0 again
  (recharge/credit) or on unlock. The tenant is purged 18 calendar months (Asia/Shanghai) after
  it, with reminders 30, 7 and 1 days before (only the most urgent one if a run is late).
- A lock by a superior (manual) is lifted only by someone who may lock that tenant.
- Budget: consumption is the member's whole rated consumption in the project. A threshold t % is
  crossed when consumption × 100 ≥ t × budget and consumption > 0; the member is locked at
  consumption ≥ budget (> 0). A run that jumps several thresholds sends one alert (the highest)
  and records all. Alerts remember the budget they were sent for; a changed budget re-arms them.
- Low balance: threshold = wallet.alert_threshold, or 7 × 24 × the hourly cost of the wallet's
  current allocation at the prices in force at `now`. Alerted once while available < threshold
  (locked wallets are not alerted: the lock says more); re-armed when available ≥ threshold.
- A user is anonymised when they have no live membership (unexpired, in a project not purged),
  no domain role in a domain not purged, no platform role, and their last activity is 18 months
  old. Last activity = the latest of: date_joined, last_login, the creation of any of their
  memberships or domain roles, the end of one (audit events membership.remove/expire,
  domain_role.remove/expire naming them), and the purge of a project or domain they belonged to.
- Anonymising a user blanks their row (real name "已清除用户", username "purged-<id>", no email,
  phone or id number) and rewrites the same values into the audit log, whose events are kept:
  the personal fields of the snapshots of the events about the user (user.create, real-name
  changes, …), the `user`/`owner` keys naming them by their old username in other snapshots
  (grants, enrollments, servers they owned), and the actor/target labels ("name (username)")
  that named them. Other users' values are left alone.
- Who is emailed about a wallet (one rule, `effective_billing_admin`, `tenant_admins`,
  `wallet_recipients`): the *effective billing admin* is `Wallet.billing_admin` while that user
  is an active account and still an admin of the tenant (a domain admin of a domain wallet's
  domain; a project admin of a project wallet's project, or that project's domain admin), else
  nobody. The tenant's admins are its current admins with active accounts (domain admins of a
  domain, project admins of a project). Low balance, lock/unlock, purge reminders and purge go
  to the effective billing admin and the tenant's admins, each once; "statement ready" goes to
  the effective billing admin or, when there is none, to the tenant's admins. The platform
  wallet is nobody's tenant wallet: its billing admin cannot be set and nobody is emailed
  about it (platform and finance staff read its statements in the portal).
"""

from __future__ import annotations

import calendar
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import (
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import (
    Allocation,
    BudgetAlert,
    ComputeAction,
    ComputeRequest,
    Entry,
    Level,
    LockPeriod,
    MemberConsumption,
    Notification,
    PurgeReminder,
    Wallet,
    WalletKind,
)
from billing.notify import flush_digests, notify, render
from billing.reasons import Reason, because, reason_fields
from billing.services import price_at
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project, TenantStatus
from tenancy.permissions import Action, can, require

log = logging.getLogger(__name__)

PURGE_MONTHS = 18
PURGE_REMINDER_DAYS = (30, 7, 1)
ALERT_HOURS = 7 * 24
ANONYMOUS_NAME = "已清除用户"
MONEY_FIELD = DecimalField(max_digits=18, decimal_places=4)
GRANT_END_ACTIONS = (
    "membership.remove",
    "membership.expire",
    "domain_role.remove",
    "domain_role.expire",
)


# -- Helpers ----------------------------------------------------------------------------------


def add_months(instant: datetime, months: int) -> datetime:
    """The same local wall time `months` calendar months later (earlier when negative), in
    Asia/Shanghai; the day is clipped to the month's last day (31 Aug + 18 months = 28 Feb)."""
    zone = ZoneInfo(settings.TIME_ZONE)
    local = instant.astimezone(zone)
    index = local.year * 12 + (local.month - 1) + months
    year, month = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day)


def purge_date(wallet: Wallet) -> datetime | None:
    """When the wallet's tenant is purged if nothing is paid (None: not on the way)."""
    if wallet.unpaid_since is None or wallet.locked_at is None:
        return None
    return add_months(wallet.unpaid_since, PURGE_MONTHS)


def consumption_of(*, project: Any, user: Any) -> Decimal:
    """A member's whole rated consumption in a project."""
    total = MemberConsumption.objects.filter(project=project, user=user).aggregate(s=Sum("amount"))
    return total["s"] or Decimal("0.0000")


def member_budget(*, project: Any, user: Any) -> Decimal | None:
    current = Allocation.objects.filter(
        level=Level.MEMBER, project=project, user=user, end__isnull=True
    ).first()
    return current.budget if current is not None else None


def _tenant(wallet: Wallet) -> Domain | Project:
    return wallet.project if wallet.project_id else wallet.domain


def _scope(wallet: Wallet) -> dict[str, Any]:
    """domain/project keyword arguments for audit, compute requests and notifications."""
    if wallet.project_id:
        return {"domain": wallet.project.domain, "project": wallet.project}
    return {"domain": wallet.domain, "project": None}


def tenant_admins(wallet: Wallet) -> list[Any]:
    """The wallet's tenant's current admins with active accounts, by id (the platform wallet:
    nobody; see the module docstring)."""
    from accounts.models import User

    if wallet.project_id:
        grants = Membership.objects.active().filter(project_id=wallet.project_id, role="admin")
    elif wallet.domain_id:
        grants = DomainRole.objects.active().filter(domain_id=wallet.domain_id, role="admin")
    else:
        return []
    admins = User.objects.filter(Exists(grants.filter(user=OuterRef("pk"))), is_active=True)
    return list(admins.order_by("pk"))


def is_wallet_admin(wallet: Wallet, user: Any) -> bool:
    """Is `user` an active admin of the wallet's tenant (for a project wallet: of the project
    or of its domain)? Who may be, and stays, a wallet's billing admin."""
    mine = {"user": user, "user__is_active": True, "role": "admin"}  # the row as it is now
    domain_admin = DomainRole.objects.active().filter(**mine)
    if wallet.project_id:
        project_admin = Membership.objects.active().filter(project_id=wallet.project_id, **mine)
        domain_id = Subquery(Project.objects.filter(pk=wallet.project_id).values("domain_id"))
        return project_admin.exists() or domain_admin.filter(domain_id=domain_id).exists()
    if wallet.domain_id:
        return domain_admin.filter(domain_id=wallet.domain_id).exists()
    return False


def effective_billing_admin(wallet: Wallet) -> Any | None:
    """`wallet.billing_admin` while they are an active admin of the tenant, else None."""
    user = wallet.billing_admin
    return user if user is not None and is_wallet_admin(wallet, user) else None


def wallet_recipients(wallet: Wallet, *, statement: bool = False) -> list[Any]:
    """Who is emailed about the wallet: the effective billing admin and the tenant's admins,
    each once; for `statement` ("statement ready"), the effective billing admin alone, or the
    tenant's admins when there is none."""
    billing_admin = effective_billing_admin(wallet)
    if statement and billing_admin is not None:
        return [billing_admin]
    users = [billing_admin] if billing_admin is not None else []
    users += [user for user in tenant_admins(wallet) if user not in users]
    return users


def _recipients(wallet: Wallet) -> list[Any]:
    """The wallet's effective billing admin and the tenant's admins (active accounts only)."""
    return wallet_recipients(wallet)


def _project_managers(project: Project) -> list[Any]:
    grants = (
        Membership.objects.active()
        .filter(project=project, role__in=["admin", "assistant"])
        .select_related("user")
        .order_by("user_id")
    )
    return [grant.user for grant in grants if grant.user.is_active]


def _wallet_of(*, domain: Domain | None, project: Project | None) -> tuple[Wallet, Any]:
    """The tenant's wallet, row-locked after the tenant row (lock order: domain → project →
    wallet). Exactly one of domain/project."""
    from billing.services import wallet_open

    if (domain is None) == (project is None):
        raise ServiceError(_("Name exactly one of domain or project."), code="one_target")
    if project is not None:
        tenant: Any = (
            Project.objects.select_for_update(of=("self",))
            .select_related("domain")
            .get(pk=project.pk)
        )
        wallet = wallet_open(project=tenant)
    else:
        tenant = Domain.objects.select_for_update().get(pk=domain.pk)  # type: ignore[union-attr]
        wallet = wallet_open(domain=tenant)
    wallet = (
        Wallet.objects.select_for_update(of=("self",))
        .select_related("domain", "project__domain", "billing_admin")
        .get(pk=wallet.pk)
    )
    return wallet, tenant


def _numbers(wallet: Wallet) -> dict[str, Decimal]:
    return {
        "balance": wallet.balance,
        "credit_limit": wallet.credit_limit,
        "available": wallet.available,
    }


def _set_status(tenant: Domain | Project, status: str) -> None:
    type(tenant).objects.filter(pk=tenant.pk).exclude(status=TenantStatus.PURGED).update(
        status=status
    )
    if tenant.status != TenantStatus.PURGED:
        tenant.status = status


# -- Requests to the compute side --------------------------------------------------------------


def _compute_request(**fields: Any) -> ComputeRequest:
    """Record what the servers must do and, once committed, ask a worker to do it now rather
    than at the next beat tick (`compute-requests`, every minute, stays the safety net)."""
    request = ComputeRequest.objects.create(**fields)
    if settings.TEACHCLOUD_COMPUTE_REQUESTS_NOW:
        pending = transaction.get_connection().run_on_commit
        if not any(entry[1] is _process_compute_requests for entry in pending):
            transaction.on_commit(_process_compute_requests)
    return request


def _process_compute_requests() -> None:
    """By name: billing does not import compute (compute depends on billing)."""
    from celery import current_app

    try:
        current_app.send_task("compute.tasks_jobs.compute_requests_process")
    except Exception:  # the broker being down must not fail a committed lock
        log.warning("could not queue compute_requests_process; beat will pick it up")


# -- Tenant locks -----------------------------------------------------------------------------


LOCK_FIELDS = ["locked_at", "lock_reason", "lock_reason_code", "lock_reason_args", "unpaid_since"]


def _lock(
    *, wallet: Wallet, actor: Any, reason: str | Reason, now: datetime, unpaid: bool
) -> Wallet:
    """Lock the wallet's tenant (caller holds the row locks and checked it is unlocked).
    `reason`: text a person typed, or a generated Reason stored language-neutral."""
    tenant = _tenant(wallet)
    scope = _scope(wallet)
    stored = reason_fields(reason)
    wallet.locked_at = now
    for name, value in reason_fields(reason, "lock_reason").items():
        setattr(wallet, name, value)
    if unpaid and wallet.unpaid_since is None:
        wallet.unpaid_since = now
    wallet.save(update_fields=LOCK_FIELDS)
    actor = actor if getattr(actor, "pk", None) else None
    LockPeriod.objects.create(wallet=wallet, start=now, locked_by=actor, **stored)
    _set_status(tenant, TenantStatus.LOCKED)
    _compute_request(action=ComputeAction.STOP, created_at=now, **stored, **scope)
    audit_record(
        actor=actor,
        action="tenant.lock",
        target=tenant,
        after={"reason": str(reason), **{k: str(v) for k, v in _numbers(wallet).items()}},
        **scope,
    )
    notify(
        event="tenant_locked",
        users=_recipients(wallet),
        subject=_("%(tenant)s has been locked") % {"tenant": tenant.name},
        body=render(
            "tenant_locked", {"tenant": tenant.name, "reason": str(reason), **_numbers(wallet)}
        ),
        now=now,
        **scope,
    )
    return wallet


@transaction.atomic(durable=True)
def tenant_lock(
    *,
    actor: Any,
    domain: Domain | None = None,
    project: Project | None = None,
    reason: str,
    now: datetime | None = None,
) -> Wallet:
    """A superior locks a domain or project by hand (platform staff a domain, the domain's
    admins a project), with a reason."""
    require(actor, Action.TENANT_LOCK, project if project is not None else domain)
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(
            _("A lock needs a reason."),
            code="reason_required",
            fields={"reason": [_("This field is required.")]},
        )
    wallet, tenant = _wallet_of(domain=domain, project=project)
    if tenant.status == TenantStatus.PURGED:
        raise Conflict(_("This tenant has been purged."), code="purged")
    if wallet.locked:
        raise Conflict(_("%(tenant)s is already locked.") % {"tenant": tenant.name}, code="locked")
    return _lock(wallet=wallet, actor=actor, reason=reason, now=now or timezone.now(), unpaid=False)


@transaction.atomic(durable=True)
def tenant_unlock(
    *,
    actor: Any,
    domain: Domain | None = None,
    project: Project | None = None,
    restart_servers: bool = False,
    now: datetime | None = None,
) -> Wallet:
    """Manual unlock (SPEC Locking 2) by the tenant's admin or a superior, once a recharge and/or
    credit makes available > 0; optionally restart the VMs that were running at lock time."""
    target = project if project is not None else domain
    require(actor, Action.TENANT_UNLOCK, target)
    now = now or timezone.now()
    wallet, tenant = _wallet_of(domain=domain, project=project)
    if tenant.status == TenantStatus.PURGED:
        raise Conflict(_("This tenant has been purged."), code="purged")
    if not wallet.locked:
        raise Conflict(_("%(tenant)s is not locked.") % {"tenant": tenant.name}, code="not_locked")
    period = LockPeriod.objects.select_for_update().filter(wallet=wallet, end__isnull=True).first()
    if (
        period is not None
        and period.locked_by_id is not None
        and not can(actor, Action.TENANT_LOCK, target)
    ):
        raise PermissionDenied(
            _("This tenant was locked by %(who)s; only a superior can unlock it.")
            % {"who": period.locked_by}
        )
    if wallet.available <= 0:
        raise ServiceError(
            _(
                "Cannot unlock: the available amount is ¥%(available)s (balance ¥%(balance)s + "
                "credit limit ¥%(credit_limit)s). Recharge or raise the credit limit so that it "
                "is above zero."
            )
            % _numbers(wallet),
            code="not_payable",
            status=409,
        )
    if period is not None:
        period.end, period.unlocked_by = max(now, period.start), actor
        period.save(update_fields=["end", "unlocked_by"])
    wallet.locked_at, wallet.unpaid_since = None, None
    wallet.lock_reason, wallet.lock_reason_code, wallet.lock_reason_args = "", "", {}
    wallet.save(update_fields=LOCK_FIELDS)
    _set_status(tenant, TenantStatus.ACTIVE)
    scope = _scope(wallet)
    if restart_servers:
        _compute_request(
            action=ComputeAction.RESTART,
            created_at=now,
            **reason_fields(because("unlocked_by", who=actor)),
            **scope,
        )
    audit_record(
        actor=actor,
        action="tenant.unlock",
        target=tenant,
        after={"restart_servers": restart_servers, "available": str(wallet.available)},
        **scope,
    )
    notify(
        event="tenant_unlocked",
        users=_recipients(wallet),
        subject=_("%(tenant)s has been unlocked") % {"tenant": tenant.name},
        body=render(
            "tenant_unlocked",
            {
                "tenant": tenant.name,
                "actor": str(actor),
                "restart": restart_servers,
                **_numbers(wallet),
            },
        ),
        now=now,
        **scope,
    )
    return wallet


def _owes() -> Q:
    """available < 0, or = 0 after the wallet was debited (a fresh wallet that was never
    charged owes nothing and is not locked). Needs the `avail` annotation."""
    debited = Exists(Entry.objects.filter(wallet=OuterRef("pk"), amount__lt=0))
    return Q(avail__lt=0) | Q(avail=0) & Q(debited)


def _lock_unpayable(now: datetime) -> int:
    """SPEC Locking 1: lock every unlocked tenant whose wallet's available is ≤ 0."""
    candidates = (
        Wallet.objects.exclude(kind=WalletKind.PLATFORM)
        .filter(locked_at__isnull=True)
        .annotate(avail=F("balance") + F("credit_limit"))
        .filter(_owes())
        .exclude(domain__status=TenantStatus.PURGED)
        .exclude(project__status=TenantStatus.PURGED)
        .values_list("pk", "domain_id", "project_id")
    )
    count = 0
    for pk, domain_id, project_id in list(candidates):
        try:
            with transaction.atomic():
                wallet, _tenant_row = _wallet_of(
                    domain=Domain(pk=domain_id) if domain_id else None,
                    project=Project(pk=project_id) if project_id else None,
                )
                if wallet.locked or wallet.available > 0:  # another run was first
                    continue
                why = because("available_exhausted", available=wallet.available)
                _lock(wallet=wallet, actor=None, reason=why, now=now, unpaid=True)
                count += 1
        except Exception:
            log.exception("locking wallet %s failed", pk)
    return count


def _track_unpaid(now: datetime) -> None:
    """unpaid_since: set on locked wallets with available ≤ 0, cleared once available > 0."""
    locked = (
        Wallet.objects.exclude(kind=WalletKind.PLATFORM)
        .filter(locked_at__isnull=False)
        .exclude(domain__status=TenantStatus.PURGED)
        .exclude(project__status=TenantStatus.PURGED)
        .annotate(avail=F("balance") + F("credit_limit"))
    )
    paid = list(locked.filter(unpaid_since__isnull=False, avail__gt=0).values_list("pk", flat=True))
    unpaid = list(locked.filter(_owes(), unpaid_since__isnull=True).values_list("pk", flat=True))
    Wallet.objects.filter(pk__in=paid).update(unpaid_since=None)
    Wallet.objects.filter(pk__in=unpaid, unpaid_since__isnull=True).update(unpaid_since=now)


# -- Member budgets ---------------------------------------------------------------------------


def _enforce_budgets(now: datetime) -> tuple[int, int]:
    """SPEC Locking 3: alerts at the configured thresholds, lock at 100 %. Returns
    (members locked, alerts sent)."""
    thresholds = sorted({int(t) for t in settings.TEACHCLOUD_BUDGET_ALERTS if 0 < int(t) < 100})
    current = Allocation.objects.filter(
        level=Level.MEMBER,
        end__isnull=True,
        project=OuterRef("project_id"),
        user=OuterRef("user_id"),
    )
    # A changed budget re-arms: drop alerts remembered for another budget.
    BudgetAlert.objects.exclude(Exists(current.filter(budget=OuterRef("budget")))).delete()
    lowest = Decimal(thresholds[0] if thresholds else 100)
    spent = (
        MemberConsumption.objects.filter(project=OuterRef("project_id"), user=OuterRef("user_id"))
        .values("project", "user")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    rows = list(
        Membership.objects.exclude(project__status=TenantStatus.PURGED)
        .annotate(
            budget=Subquery(current.values("budget")[:1], output_field=MONEY_FIELD),
            consumption=Subquery(spent, output_field=MONEY_FIELD),
        )
        .filter(budget__isnull=False, consumption__gt=0)
        .filter(consumption__gte=F("budget") * lowest / 100)
        .values_list("pk", "project_id", "user_id", "budget", "consumption", "locked")
    )
    if not rows:
        return 0, 0
    alerted: dict[tuple[int, int], set[int]] = {}
    for project_id, user_id, threshold in BudgetAlert.objects.filter(
        project_id__in={r[1] for r in rows}, user_id__in={r[2] for r in rows}
    ).values_list("project_id", "user_id", "threshold"):
        alerted.setdefault((project_id, user_id), set()).add(threshold)
    locked_count = alerts = 0
    for pk, project_id, user_id, budget, consumption, locked in rows:
        crossed = [t for t in thresholds if consumption * 100 >= budget * t]
        new = [t for t in crossed if t not in alerted.get((project_id, user_id), set())]
        over = consumption >= budget
        if not new and (locked or not over):
            continue
        try:
            with transaction.atomic():
                did_lock, did_alert = _member_budget_step(
                    pk=pk, new=new, over=over, budget=budget, consumption=consumption, now=now
                )
            locked_count += did_lock
            alerts += did_alert
        except Exception:
            log.exception("budget enforcement of membership %s failed", pk)
    return locked_count, alerts


def _member_budget_step(
    *, pk: int, new: list[int], over: bool, budget: Decimal, consumption: Decimal, now: datetime
) -> tuple[int, int]:
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("project__domain", "user")
        .get(pk=pk)
    )
    project, member = membership.project, membership.user
    context = {
        "project": project.name,
        "member": member.real_name or member.username,
        "consumption": consumption,
        "budget": budget,
    }
    sent = []
    for threshold in new:
        try:
            with transaction.atomic():
                BudgetAlert.objects.create(
                    project=project, user=member, threshold=threshold, budget=budget, alerted_at=now
                )
            sent.append(threshold)
        except IntegrityError:  # another run recorded it
            continue
    did_alert = 0
    if sent and not (over and not membership.locked):
        percent = max(sent)
        notify(
            event="budget_alert",
            users=[member],
            subject=_("You have used %(percent)d %% of your budget in %(project)s")
            % {"percent": percent, "project": project.name},
            body=render("budget_alert", {**context, "percent": percent}),
            project=project,
            now=now,
        )
        did_alert = 1
    if over and not membership.locked:
        membership.locked = True
        membership.save(update_fields=["locked"])
        why = because(
            "budget_used_up", consumption=context["consumption"], budget=context["budget"]
        )
        _compute_request(
            action=ComputeAction.STOP,
            domain=project.domain,
            project=project,
            membership=membership,
            created_at=now,
            **reason_fields(why),
        )
        audit_record(
            actor=None,
            action="membership.lock",
            target=membership,
            project=project,
            after={"consumption": str(consumption), "budget": str(budget)},
        )
        notify(
            event="member_locked",
            users=[member, *_project_managers(project)],
            subject=_("%(member)s is locked in %(project)s: budget used up") % context,
            body=render("member_locked", context),
            project=project,
            now=now,
        )
        return 1, did_alert
    return 0, did_alert


@transaction.atomic(durable=True)
def member_unlock(
    *, actor: Any, membership: Membership, budget: Any = None, now: datetime | None = None
) -> Membership:
    """A project admin or assistant unlocks a member locked at 100 % of the budget, optionally
    raising the budget first; refused while consumption ≥ budget."""
    from billing.services import _member_budget_set

    require(actor, Action.MEMBER_UNLOCK, membership)
    Domain.objects.select_for_update().get(pk=membership.project.domain_id)
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("project__domain", "user")
        .get(pk=membership.pk)
    )
    if not membership.locked:
        raise Conflict(
            _("%(member)s is not locked.") % {"member": membership.user}, code="not_locked"
        )
    if budget is not None:
        _member_budget_set(actor=actor, membership=membership, budget=budget)
    project, member = membership.project, membership.user
    current = member_budget(project=project, user=member)
    consumption = consumption_of(project=project, user=member)
    if current is not None and consumption > 0 and consumption >= current:
        raise ServiceError(
            _(
                "Cannot unlock: the member has consumed ¥%(consumption)s of a ¥%(budget)s "
                "budget. Raise the budget above the consumption."
            )
            % {"consumption": consumption, "budget": current},
            code="over_budget",
            fields={"budget": [_("More than %(c)s.") % {"c": consumption}]},
            status=409,
        )
    membership.locked = False
    membership.save(update_fields=["locked"])
    audit_record(
        actor=actor,
        action="membership.unlock",
        target=membership,
        project=project,
        after={
            "budget": str(current) if current is not None else None,
            "consumption": str(consumption),
        },
    )
    context = {
        "project": project.name,
        "member": member.real_name or member.username,
        "actor": str(actor),
        "consumption": consumption,
        "budget": current,
    }
    notify(
        event="member_unlocked",
        users=[member],
        subject=_("You have been unlocked in %(project)s") % context,
        body=render("member_unlocked", context),
        project=project,
        now=now,
    )
    return membership


# -- Low balance ------------------------------------------------------------------------------


def _with_threshold(queryset: Any, now: datetime) -> Any:
    """Annotate `avail` and `threshold` (alert_threshold, or 7 days of the current hourly cost
    of the wallet's allocation at the prices in force at `now`)."""
    price = price_at(now)
    cost = ExpressionWrapper(
        F("vcpus") * Value(price.vcpu_hour)
        + F("ram_gib") * Value(price.ram_gib_hour)
        + F("disk_gib") * Value(price.disk_gib_hour),
        output_field=MONEY_FIELD,
    )
    open_allocations = Allocation.objects.filter(end__isnull=True).annotate(cost=cost)
    domain_cost = open_allocations.filter(level=Level.DOMAIN, domain=OuterRef("domain_id"))
    project_cost = open_allocations.filter(level=Level.PROJECT, project=OuterRef("project_id"))
    hourly = Coalesce(
        Subquery(domain_cost.values("cost")[:1], output_field=MONEY_FIELD),
        Subquery(project_cost.values("cost")[:1], output_field=MONEY_FIELD),
        Value(Decimal(0)),
        output_field=MONEY_FIELD,
    )
    return queryset.annotate(
        avail=F("balance") + F("credit_limit"),
        threshold=Coalesce(
            F("alert_threshold"), hourly * Value(ALERT_HOURS), output_field=MONEY_FIELD
        ),
    )


def low_balance_threshold(wallet: Wallet, *, now: datetime | None = None) -> Decimal:
    """The `available` under which the wallet's admins are alerted."""
    row = _with_threshold(Wallet.objects.filter(pk=wallet.pk), now or timezone.now()).first()
    return row.threshold


def _low_balance(now: datetime) -> tuple[int, int]:
    """SPEC Locking 4: alert once per crossing, re-arm above the threshold. Returns (alerts,
    re-armed)."""
    wallets = _with_threshold(
        Wallet.objects.exclude(kind=WalletKind.PLATFORM)
        .exclude(domain__status=TenantStatus.PURGED)
        .exclude(project__status=TenantStatus.PURGED),
        now,
    )
    rearm = list(
        wallets.filter(low_balance_alerted=True, avail__gte=F("threshold")).values_list(
            "pk", flat=True
        )
    )
    Wallet.objects.filter(pk__in=rearm).update(low_balance_alerted=False)
    due = list(
        wallets.filter(
            low_balance_alerted=False, locked_at__isnull=True, avail__lt=F("threshold")
        ).values_list("pk", "threshold")
    )
    alerts = 0
    for pk, threshold in due:
        try:
            with transaction.atomic():
                wallet = (
                    Wallet.objects.select_for_update(of=("self",))
                    .select_related("domain", "project__domain", "billing_admin")
                    .get(pk=pk)
                )
                if wallet.low_balance_alerted or wallet.locked:
                    continue
                wallet.low_balance_alerted = True
                wallet.save(update_fields=["low_balance_alerted"])
                tenant = _tenant(wallet)
                notify(
                    event="low_balance",
                    users=_recipients(wallet),
                    subject=_("Low balance: %(tenant)s has ¥%(available)s available")
                    % {"tenant": tenant.name, "available": wallet.available},
                    body=render(
                        "low_balance",
                        {"tenant": tenant.name, "threshold": threshold, **_numbers(wallet)},
                    ),
                    now=now,
                    **_scope(wallet),
                )
                alerts += 1
        except Exception:
            log.exception("low-balance alert of wallet %s failed", pk)
    return alerts, len(rearm)


# -- Purge ------------------------------------------------------------------------------------


def _purges(now: datetime) -> tuple[int, int]:
    """SPEC Locking 5: reminders 30/7/1 days before, then purge. Returns (reminders, purged)."""
    horizon = add_months(now + timedelta(days=max(PURGE_REMINDER_DAYS) + 1), -PURGE_MONTHS)
    candidates = list(
        Wallet.objects.exclude(kind=WalletKind.PLATFORM)
        .filter(locked_at__isnull=False, unpaid_since__isnull=False, unpaid_since__lte=horizon)
        .exclude(domain__status=TenantStatus.PURGED)
        .exclude(project__status=TenantStatus.PURGED)
        .order_by("kind", "pk")  # domains before projects: a purged domain takes its projects
        .values_list("pk", flat=True)
    )
    reminders = purged = 0
    for pk in candidates:
        try:
            with transaction.atomic():
                wallet = Wallet.objects.select_related("domain", "project").get(pk=pk)
                wallet, tenant = _wallet_of(domain=wallet.domain, project=wallet.project)
                when = purge_date(wallet)
                if when is None or tenant.status == TenantStatus.PURGED:
                    continue
                if now >= when:
                    _purge(wallet=wallet, tenant=tenant, now=now)
                    purged += 1
                else:
                    reminders += _remind(wallet=wallet, tenant=tenant, when=when, now=now)
        except Exception:
            log.exception("purge of wallet %s failed", pk)
    return reminders, purged


def _remind(*, wallet: Wallet, tenant: Any, when: datetime, now: datetime) -> int:
    due = [days for days in PURGE_REMINDER_DAYS if now >= when - timedelta(days=days)]
    if not due:
        return 0
    done = set(
        PurgeReminder.objects.filter(wallet=wallet, unpaid_since=wallet.unpaid_since).values_list(
            "days", flat=True
        )
    )
    urgent = min(due)
    if urgent in done:
        return 0
    for days in due:
        if days not in done:
            PurgeReminder.objects.create(
                wallet=wallet, unpaid_since=wallet.unpaid_since, days=days, sent_at=now
            )
    zone = ZoneInfo(settings.TIME_ZONE)
    notify(
        event="purge_reminder",
        users=_recipients(wallet),
        subject=_("%(tenant)s will be purged on %(date)s")
        % {"tenant": tenant.name, "date": f"{when.astimezone(zone):%Y-%m-%d}"},
        body=render(
            "purge_reminder",
            {
                "tenant": tenant.name,
                "days": urgent,
                "purge_at": f"{when.astimezone(zone):%Y-%m-%d %H:%M}",
                "unpaid_since": f"{wallet.unpaid_since.astimezone(zone):%Y-%m-%d}",  # type: ignore[union-attr]
                **_numbers(wallet),
            },
        ),
        now=now,
        **_scope(wallet),
    )
    return 1


def _purge(*, wallet: Wallet, tenant: Any, now: datetime) -> None:
    """Mark the tenant (and a domain's projects) purged, ask compute to delete its VMs and cloud
    project, end its allocations; memberships stay as history but grant nothing (roles_of
    ignores purged tenants). Ledger, statements and audit stay."""
    scope = _scope(wallet)
    recipients = _recipients(wallet)
    if isinstance(tenant, Domain):
        projects = list(Project.objects.select_for_update().filter(domain=tenant))
        allocations = Allocation.objects.filter(domain=tenant)
    else:
        projects = [tenant]
        allocations = Allocation.objects.filter(project=tenant)
    allocations.filter(end__isnull=True, start__lt=now).update(end=now)
    Project.objects.filter(pk__in=[p.pk for p in projects]).update(status=TenantStatus.PURGED)
    type(tenant).objects.filter(pk=tenant.pk).update(status=TenantStatus.PURGED)
    tenant.status = TenantStatus.PURGED
    _compute_request(
        action=ComputeAction.DELETE,
        created_at=now,
        **reason_fields(because("purged_unpaid", since=f"{wallet.unpaid_since:%Y-%m-%d}")),
        **scope,
    )
    LockPeriod.objects.filter(wallet=wallet, end__isnull=True).update(
        **reason_fields(because("purged"))
    )
    after = {"unpaid_since": wallet.unpaid_since.isoformat(), "purged_at": now.isoformat()}  # type: ignore[union-attr]
    audit_record(actor=None, action="tenant.purge", target=tenant, after=after, **scope)
    if isinstance(tenant, Domain):
        for project in projects:
            audit_record(
                actor=None,
                action="tenant.purge",
                target=project,
                project=project,
                after={**after, "with_domain": tenant.code},
            )
    notify(
        event="tenant_purged",
        users=recipients,
        subject=_("%(tenant)s has been purged") % {"tenant": tenant.name},
        body=render(
            "tenant_purged",
            {"tenant": tenant.name, "unpaid_since": f"{wallet.unpaid_since:%Y-%m-%d}"},
        ),
        now=now,
        **scope,
    )


# -- Users ------------------------------------------------------------------------------------


def _anonymise_users(now: datetime) -> int:
    """Anonymise users gone for 18 months (see the module docstring for "last activity")."""
    from accounts.models import User

    cutoff = add_months(now, -PURGE_MONTHS)
    user = OuterRef("pk")
    live_membership = Membership.objects.active(now).filter(user=user)
    live_membership = live_membership.exclude(project__status=TenantStatus.PURGED)
    live_role = DomainRole.objects.active(now).filter(user=user)
    live_role = live_role.exclude(domain__status=TenantStatus.PURGED)
    recent_grant = Q(Exists(Membership.objects.filter(user=user, created_at__gt=cutoff))) | Q(
        Exists(DomainRole.objects.filter(user=user, created_at__gt=cutoff))
    )
    recent_end = Exists(
        AuditEvent.objects.filter(action__in=GRANT_END_ACTIONS, created_at__gt=cutoff)
        .annotate(grant_user=KeyTextTransform("user", "before"))
        .filter(grant_user=OuterRef("username"))
    )
    recent_purge = Q(
        Exists(
            AuditEvent.objects.filter(
                action="tenant.purge",
                created_at__gt=cutoff,
                project__memberships__user=user,
            )
        )
    ) | Q(
        Exists(
            AuditEvent.objects.filter(
                action="tenant.purge",
                created_at__gt=cutoff,
                project__isnull=True,
                domain__roles__user=user,
            )
        )
    )
    candidates = list(
        User.objects.filter(
            purged_at__isnull=True,
            is_superuser=False,
            is_staff=False,
            platform_role="",
            date_joined__lte=cutoff,
        )
        .filter(Q(last_login__isnull=True) | Q(last_login__lte=cutoff))
        .exclude(Exists(live_membership))
        .exclude(Exists(live_role))
        .exclude(recent_grant)
        .exclude(recent_end)
        .exclude(recent_purge)
        .values_list("pk", flat=True)
    )
    for pk in candidates:
        try:
            with transaction.atomic():
                _anonymise(pk=pk, now=now)
        except Exception:
            log.exception("anonymising user %s failed", pk)
    return len(candidates)


PERSONAL_FIELDS = ("username", "real_name", "id_number", "email", "phone")
USER_KEYS = ("user", "owner", "username")  # audit snapshot keys that hold a username


def _label(real_name: str, username: str) -> str:
    """What str(user) was for these values (accounts.models.User.__str__)."""
    return f"{real_name} ({username})" if real_name else username


def _former_names(user: Any, old: dict[str, str]) -> set[str]:
    """Every real name the user had (each change is audited), read before anything is scrubbed."""
    return _former_values(user, old, ("real_name",))


def _former_values(user: Any, old: dict[str, str], fields: tuple[str, ...]) -> set[str]:
    """Every value of `fields` the user had: now (`old`) and in their audited snapshots."""
    values = {old[name] for name in fields}
    own = Q(target_type=user._meta.label_lower, target_id=str(user.pk))
    for event in AuditEvent.objects.filter(own).only("before", "after"):
        for data in (event.before, event.after):
            if isinstance(data, dict):
                values |= {data[name] for name in fields if isinstance(data.get(name), str)}
    return {value for value in values if value}


def _anonymise_notifications(*, user: Any, old: dict[str, str], former: set[str]) -> None:
    """The recorded notifications keep what happened, not who. The user's own lose their
    address; in theirs, and in the notifications of the projects they were in (a teacher's
    budget alert names the student), their former names, email, phone and number become the
    anonymous label — as whole tokens only (王伟 is not the start of 王伟东, 100 is not the start
    of ¥100.00), never in anybody else's notifications."""
    import re

    Notification.objects.filter(recipient=user).update(address="")
    values = {value for value in former if len(value) >= 2}
    if not values:
        return
    # Whole tokens: not inside a word, a CJK run or an address; a sentence's full stop after
    # the token is fine ("… to li@x.edu."), a dot that continues it ("li@x.edu.cn") is not.
    word = r"\w@+\u3400-\u9fff-"

    def tokens(found: set[str]) -> re.Pattern[str]:
        return re.compile(
            "|".join(
                rf"(?<![{word}.]){re.escape(value)}(?![{word}]|\.[{word}])"
                for value in sorted(found, key=len, reverse=True)
            )
        )

    pattern = tokens(values)
    # Their own notifications also name their login (a short one may be a word elsewhere).
    own_pattern = tokens(values | {old["username"]})
    projects = AuditEvent.objects.filter(  # the audit log is scrubbed first: the new username
        Q(after__user=user.username) | Q(after__user=old["username"]),
        action__startswith="membership.",
    ).values("project_id")
    mentions = Q()
    for value in values:
        mentions |= Q(subject__contains=value) | Q(body__contains=value)
    label = str(user)
    scope = Q(recipient=user) | Q(project_id__in=projects) | Q(project__memberships__user=user)
    # A digest repeats what it folded in, for another recipient and without a project.
    digests = Notification.objects.filter(scope).exclude(digest=None).values("digest_id")
    rows = Notification.objects.filter(scope | Q(pk__in=digests)).filter(
        mentions | Q(recipient=user)
    )
    for row in rows.distinct().only("pk", "recipient_id", "subject", "body"):
        found = own_pattern if row.recipient_id == user.pk else pattern
        subject, body = found.sub(label, row.subject), found.sub(label, row.body)
        if (subject, body) != (row.subject, row.body):
            Notification.objects.filter(pk=row.pk).update(subject=subject, body=body)


def _anonymise_audit(*, user: Any, old: dict[str, str], names: set[str]) -> None:
    """Replace an anonymised user's personal data in the audit log by the values their row now
    has; the events stay (see the module docstring). `old`: PERSONAL_FIELDS before; `names`:
    every real name they had."""
    import json
    import re

    from django.db.models import TextField
    from django.db.models.functions import Cast

    new = {name: getattr(user, name) for name in PERSONAL_FIELDS}
    own = Q(target_type=user._meta.label_lower, target_id=str(user.pk))
    label = str(user)
    patterns = [
        re.compile(rf"(?<![\w.@-]){re.escape(_label(name, old['username']))}(?![\w.@-])")
        for name in sorted(names, key=len, reverse=True)
    ]
    username = json.dumps(old["username"], ensure_ascii=False)
    events = AuditEvent.objects.alias(
        before_text=Cast("before", TextField()), after_text=Cast("after", TextField())
    ).filter(
        own
        | Q(actor_id=user.pk)
        | Q(before_text__contains=username)
        | Q(after_text__contains=username)
        | Q(target_repr__contains=old["username"])
        | Q(actor_repr__contains=old["username"])
    )

    def scrub(value: Any, *, mine: bool) -> Any:
        """In their own snapshots every personal field, elsewhere a key naming a user (grants,
        enrollments, server owners) that holds their old username → the new value."""
        if isinstance(value, dict):
            return {key: scrub_item(key, item, mine=mine) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item, mine=mine) for item in value]
        return value

    def scrub_item(key: str, item: Any, *, mine: bool) -> Any:
        if mine and key in new and isinstance(item, str):
            return new[key]
        if key in USER_KEYS and item == old["username"]:
            return new["username"]
        return scrub(item, mine=mine)

    def relabel(text: str) -> str:
        for pattern in patterns:
            text = pattern.sub(label, text)
        return text

    for event in events:
        mine = event.target_type == user._meta.label_lower and event.target_id == str(user.pk)
        changed = {
            "before": scrub(event.before, mine=mine),
            "after": scrub(event.after, mine=mine),
            "target_repr": label if mine else relabel(event.target_repr),
            "actor_repr": label if event.actor_id == user.pk else relabel(event.actor_repr),
        }
        changed = {key: value for key, value in changed.items() if value != getattr(event, key)}
        if changed:
            AuditEvent.objects.filter(pk=event.pk).update(**changed)


def _anonymise(*, pk: int, now: datetime) -> None:
    from allauth.account.models import EmailAddress

    from accounts.models import User
    from accounts.services import tokens_revoke

    user = User.objects.select_for_update().get(pk=pk)
    if user.purged_at is not None:
        return
    home = user.home_domain
    old = {name: getattr(user, name) for name in PERSONAL_FIELDS}
    names = _former_names(user, old)  # read before the audit log is scrubbed
    former = _former_values(user, old, ("real_name", "email", "phone", "id_number"))
    user.real_name = ANONYMOUS_NAME
    user.username = f"purged-{user.pk}"
    user.email = user.phone = user.id_number = ""
    user.is_active = False
    user.purged_at = now
    user.set_unusable_password()
    user.save()
    tokens_revoke(user=user)
    EmailAddress.objects.filter(user=user).delete()
    try:
        from allauth.mfa.models import Authenticator

        Authenticator.objects.filter(user=user).delete()
    except ImportError:  # MFA not installed
        pass
    _anonymise_audit(user=user, old=old, names=names)
    _anonymise_notifications(user=user, old=old, former=former)
    audit_record(
        actor=None,
        action="user.purge",
        target=user,
        domain=home,
        after={"purged_at": now.isoformat()},
    )


# -- The run ----------------------------------------------------------------------------------


def enforce(*, now: datetime) -> dict[str, Any]:
    """Everything due at `now` after the charges and fees were posted (see the module docstring).

    Each item is its own short transaction; notifications go out after each commits."""
    result: dict[str, Any] = {}
    result["locked"] = _lock_unpayable(now)
    _track_unpaid(now)
    result["members_locked"], result["budget_alerts"] = _enforce_budgets(now)
    result["low_balance_alerts"], result["low_balance_rearmed"] = _low_balance(now)
    result["purge_reminders"], result["purged"] = _purges(now)
    result["users_anonymised"] = _anonymise_users(now)
    result["digest_emails"] = flush_digests(now=now)
    return result
