"""Writes of billing: allocations, prices, wallets, recharges, credit, adjustments.

Hourly charging, fees and the run that drives them live in `billing.charging`; locks, alerts and
purges in `billing.enforcement`. Every top-level service here checks permission through
tenancy.permissions, validates, writes with its audit event in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.ledger import platform_wallet, post
from billing.models import (
    Allocation,
    Level,
    PlatformCapacity,
    PriceVersion,
    ProjectDefaults,
    RechargeRequest,
    RequestStatus,
    Transaction,
    TransactionKind,
    Wallet,
    WalletKind,
)
from billing.money import parse_amount, q4
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record, snapshot
from tenancy.models import Domain, Membership, Project
from tenancy.permissions import Action, require

RESOURCES = ("vcpus", "ram_gib", "disk_gib")
RESOURCE_NAMES = {"vcpus": "vCPU", "ram_gib": "RAM (GiB)", "disk_gib": "disk (GiB)"}
MAX_QUANTITY = 1_000_000
HOURS_PER_MONTH = 30 * 24


# -- Prices -----------------------------------------------------------------------------------


def price_at(instant: datetime) -> PriceVersion:
    """The price plan version in force at `instant`."""
    version = (
        PriceVersion.objects.filter(effective_from__lte=instant).order_by("-effective_from").first()
    )
    if version is None:
        raise ServiceError(_("No price plan is in force."), code="no_price_plan", status=409)
    return version


def hourly_cost(price: PriceVersion, vcpus: int, ram_gib: int, disk_gib: int) -> Decimal:
    return price.vcpu_hour * vcpus + price.ram_gib_hour * ram_gib + price.disk_gib_hour * disk_gib


@transaction.atomic(durable=True)
def price_version_create(
    *,
    actor: Any,
    effective_from: datetime,
    vcpu_hour: Any,
    ram_gib_hour: Any,
    disk_gib_hour: Any,
    domain_fee: Any,
    project_fee: Any,
    user_fee: Any,
) -> PriceVersion:
    """A new price plan version; it may only take effect in the future (Prices 1)."""
    require(actor, Action.PRICE_EDIT)
    if effective_from <= timezone.now():
        raise ServiceError(
            _("A new price plan may only take effect in the future."),
            code="price_in_past",
            fields={"effective_from": [_("Must be in the future.")]},
        )
    values = {
        name: parse_amount(value, field=name, allow_zero=True)
        for name, value in {
            "vcpu_hour": vcpu_hour,
            "ram_gib_hour": ram_gib_hour,
            "disk_gib_hour": disk_gib_hour,
            "domain_fee": domain_fee,
            "project_fee": project_fee,
            "user_fee": user_fee,
        }.items()
    }
    if PriceVersion.objects.filter(effective_from=effective_from).exists():
        raise Conflict(_("A price plan already takes effect at that instant."), code="price_exists")
    version = PriceVersion.objects.create(effective_from=effective_from, created_by=actor, **values)
    audit_record(
        actor=actor,
        action="price.create",
        target=version,
        after=snapshot(version, ["effective_from", *values]),
    )
    return version


# -- Wallets ----------------------------------------------------------------------------------


def wallet_open(*, domain: Domain | None = None, project: Project | None = None) -> Wallet:
    """The wallet of a domain or project, created with the tenant (idempotent)."""
    if project is not None:
        wallet, _ = Wallet.objects.get_or_create(project=project, defaults={"kind": "project"})
    elif domain is not None:
        wallet, _ = Wallet.objects.get_or_create(domain=domain, defaults={"kind": "domain"})
    else:
        wallet = platform_wallet()
    return wallet


def _locked_wallet(wallet: Wallet) -> Wallet:
    return (
        Wallet.objects.select_for_update(of=("self",))
        .select_related("domain", "project")
        .get(pk=wallet.pk)
    )


def _tenant_of(wallet: Wallet) -> tuple[Domain | None, Project | None]:
    if wallet.project_id:
        return wallet.project.domain, wallet.project
    return wallet.domain, None


@transaction.atomic(durable=True)
def wallet_recharge(
    *,
    actor: Any,
    wallet: Wallet,
    amount: Any,
    method: str,
    reference: str = "",
    payer: str = "",
) -> Transaction:
    """Record money received for a wallet (Money 5): external source → wallet."""
    require(actor, Action.WALLET_RECHARGE, wallet)
    return _recharge(
        actor=actor,
        wallet=wallet,
        amount=parse_amount(amount),
        method=method,
        reference=reference,
        payer=payer,
    )


def _recharge(
    *, actor: Any, wallet: Wallet, amount: Decimal, method: str, reference: str, payer: str
) -> Transaction:
    if wallet.kind == WalletKind.PLATFORM:
        raise ServiceError(
            _("The platform wallet receives revenue; it is not recharged."), code="platform_wallet"
        )
    method = (method or "").strip()
    if not method:
        raise ServiceError(
            _("Say how the money was paid."),
            code="method_required",
            fields={"method": [_("This field is required.")]},
        )
    reference = (reference or "").strip()[:200]
    wallet = _locked_wallet(wallet)
    # Under the wallet's lock, so two recordings of one payment queue and the second sees the
    # first (the unique constraint recharge_reference_once_per_wallet is the backstop).
    if (
        reference
        and Transaction.objects.filter(
            wallet=wallet, kind=TransactionKind.RECHARGE, reference=reference
        ).exists()
    ):
        raise Conflict(
            _("A recharge with the reference %(ref)s is already recorded for this wallet.")
            % {"ref": reference},
            code="reference_taken",
            fields={"reference": [_("Already recorded.")]},
        )
    tx = post(
        kind=TransactionKind.RECHARGE,
        wallet=wallet,
        legs=[(wallet, amount), (None, -amount)],
        created_by=actor,
        method=method[:32],
        reference=reference,
        payer=(payer or str(actor))[:200],
    )
    domain, project = _tenant_of(wallet)
    audit_record(
        actor=actor,
        action="wallet.recharge",
        target=wallet,
        domain=domain,
        project=project,
        after={
            "amount": str(amount),
            "method": method,
            "reference": reference,
            "transaction": tx.pk,
        },
    )
    return tx


@transaction.atomic(durable=True)
def recharge_request_create(
    *, actor: Any, wallet: Wallet, amount: Any, method: str, reference: str = ""
) -> RechargeRequest:
    """A tenant admin declares a payment; the receiving side confirms or rejects it."""
    require(actor, Action.WALLET_REQUEST_RECHARGE, wallet)
    value = parse_amount(amount)
    if not (method or "").strip():
        raise ServiceError(
            _("Say how the money was paid."),
            code="method_required",
            fields={"method": [_("This field is required.")]},
        )
    request = RechargeRequest.objects.create(
        wallet=wallet,
        amount=value,
        method=method.strip(),
        reference=reference.strip(),
        requested_by=actor,
    )
    domain, project = _tenant_of(wallet)
    audit_record(
        actor=actor,
        action="recharge_request.create",
        target=request,
        domain=domain,
        project=project,
        after={"amount": str(value), "method": method},
    )
    return request


@transaction.atomic(durable=True)
def recharge_request_decide(
    *, actor: Any, request: RechargeRequest, approve: bool
) -> RechargeRequest:
    request = (
        RechargeRequest.objects.select_for_update(of=("self",))
        .select_related("wallet")
        .get(pk=request.pk)
    )
    require(actor, Action.WALLET_RECHARGE, request.wallet)
    if request.status != RequestStatus.PENDING:
        raise Conflict(_("This request has already been decided."), code="already_decided")
    if request.requested_by_id == getattr(actor, "pk", None):
        raise ServiceError(
            _("Nobody confirms their own recharge request."), code="own_request", status=403
        )
    request.status = RequestStatus.APPROVED if approve else RequestStatus.DENIED
    request.decided_by, request.decided_at = actor, timezone.now()
    if approve:
        request.transaction = _recharge(
            actor=actor,
            wallet=request.wallet,
            amount=request.amount,
            method=request.method,
            reference=request.reference,
            payer=str(request.requested_by),
        )
    request.save()
    domain, project = _tenant_of(request.wallet)
    audit_record(
        actor=actor,
        action=f"recharge_request.{request.status}",
        target=request,
        domain=domain,
        project=project,
        after={"status": request.status},
    )
    return request


@transaction.atomic(durable=True)
def wallet_adjust(*, actor: Any, wallet: Wallet, amount: Any, reason: str) -> Transaction:
    """A correction by platform staff, with a reason: the platform wallet is the other side."""
    require(actor, Action.WALLET_ADJUST, wallet)
    value = parse_amount(amount, positive=False)
    if not (reason or "").strip():
        raise ServiceError(
            _("An adjustment needs a reason."),
            code="reason_required",
            fields={"reason": [_("This field is required.")]},
        )
    wallet = _locked_wallet(wallet)
    other = None if wallet.kind == WalletKind.PLATFORM else platform_wallet()
    tx = post(
        kind=TransactionKind.ADJUSTMENT,
        wallet=wallet,
        legs=[(wallet, value), (other, -value)],
        created_by=actor,
        reason=reason.strip(),
    )
    domain, project = _tenant_of(wallet)
    audit_record(
        actor=actor,
        action="wallet.adjust",
        target=wallet,
        domain=domain,
        project=project,
        after={"amount": str(value), "reason": reason, "transaction": tx.pk},
    )
    return tx


@transaction.atomic(durable=True)
def transaction_reverse(*, actor: Any, tx: Transaction, reason: str) -> Transaction:
    """Undo a transaction with a new one of opposite entries (entries are never edited)."""
    require(actor, Action.WALLET_ADJUST, tx.wallet)
    if not (reason or "").strip():
        raise ServiceError(
            _("A reversal needs a reason."),
            code="reason_required",
            fields={"reason": [_("This field is required.")]},
        )
    original = Transaction.objects.select_for_update().get(pk=tx.pk)
    if original.reversals.exists():
        raise Conflict(_("This transaction has already been reversed."), code="already_reversed")
    if original.reverses_id is not None:
        raise Conflict(_("A reversal is not reversed; post an adjustment."), code="is_reversal")
    legs = [(entry.wallet, -entry.amount) for entry in original.entries.select_related("wallet")]
    reversal = post(
        kind=TransactionKind.ADJUSTMENT,
        wallet=original.wallet,
        legs=legs,
        created_by=actor,
        reason=reason.strip(),
        reverses=original,
    )
    audit_record(
        actor=actor,
        action="transaction.reverse",
        target=original,
        after={"reversal": reversal.pk, "reason": reason},
    )
    return reversal


@transaction.atomic(durable=True)
def wallet_update(
    *,
    actor: Any,
    wallet: Wallet,
    credit_limit: Any = None,
    credit_ceiling: Any = None,
    billing_admin: Any = None,
    alert_threshold: Any = None,
    clear_alert_threshold: bool = False,
) -> Wallet:
    """Credit limit (tenant admin, ≤ ceiling), ceiling (superior), billing admin, alert level."""
    wallet = _locked_wallet(wallet)
    before = snapshot(
        wallet, ["credit_limit", "credit_ceiling", "billing_admin", "alert_threshold"]
    )
    if wallet.kind == WalletKind.PLATFORM:
        require(actor, Action.WALLET_ADJUST, wallet)
    if credit_ceiling is not None:
        require(actor, Action.WALLET_SET_CEILING, wallet)
        wallet.credit_ceiling = parse_amount(
            credit_ceiling, field="credit_ceiling", allow_zero=True
        )
    if credit_limit is not None:
        require(actor, Action.WALLET_SET_CREDIT_LIMIT, wallet)
        wallet.credit_limit = parse_amount(credit_limit, field="credit_limit", allow_zero=True)
    if wallet.credit_limit > wallet.credit_ceiling:
        message = _("The credit limit %(limit)s is above the ceiling %(ceiling)s.") % {
            "limit": wallet.credit_limit,
            "ceiling": wallet.credit_ceiling,
        }
        raise ServiceError(message, code="credit_above_ceiling", fields={"credit_limit": [message]})
    if billing_admin is not None:
        require(actor, Action.WALLET_SET_BILLING_ADMIN, wallet)
        if not _is_tenant_admin(wallet, billing_admin):
            raise ServiceError(
                _("The billing admin must be an admin of this tenant."),
                code="not_an_admin",
                fields={"billing_admin": [_("Choose one of the tenant's admins.")]},
            )
        wallet.billing_admin = billing_admin
    if alert_threshold is not None or clear_alert_threshold:
        require(actor, Action.WALLET_SET_ALERT, wallet)
        wallet.alert_threshold = (
            None
            if clear_alert_threshold
            else parse_amount(alert_threshold, field="alert_threshold", allow_zero=True)
        )
        wallet.low_balance_alerted = False
    wallet.save()
    domain, project = _tenant_of(wallet)
    audit_record(
        actor=actor,
        action="wallet.update",
        target=wallet,
        domain=domain,
        project=project,
        before=before,
        after=snapshot(
            wallet, ["credit_limit", "credit_ceiling", "billing_admin", "alert_threshold"]
        ),
    )
    return wallet


def _is_tenant_admin(wallet: Wallet, user: Any) -> bool:
    """The same rule that keeps a billing admin effective (billing.enforcement)."""
    from billing.enforcement import is_wallet_admin

    return is_wallet_admin(wallet, user)


# -- Allocations ------------------------------------------------------------------------------


@dataclass
class Target:
    level: str
    domain: Domain
    project: Project | None = None
    membership: Membership | None = None

    def filter(self) -> dict[str, Any]:
        if self.level == Level.DOMAIN:
            return {"level": Level.DOMAIN, "domain": self.domain}
        if self.level == Level.PROJECT:
            return {"level": Level.PROJECT, "project": self.project}
        assert self.membership is not None
        return {"level": Level.MEMBER, "project": self.project, "user": self.membership.user}


def target_of(
    *,
    domain: Domain | None = None,
    project: Project | None = None,
    membership: Membership | None = None,
) -> Target:
    given = [x for x in (domain, project, membership) if x is not None]
    if len(given) != 1:
        raise ServiceError(
            _("Name exactly one of domain, project or membership."), code="one_target"
        )
    if membership is not None:
        return Target(Level.MEMBER, membership.project.domain, membership.project, membership)
    if project is not None:
        return Target(Level.PROJECT, project.domain, project)
    assert domain is not None
    return Target(Level.DOMAIN, domain)


def current_allocation(target: Target) -> Allocation | None:
    return Allocation.objects.filter(end__isnull=True, **target.filter()).first()


def _quantities(vcpus: Any, ram_gib: Any, disk_gib: Any) -> dict[str, int]:
    values = {"vcpus": vcpus, "ram_gib": ram_gib, "disk_gib": disk_gib}
    errors = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUANTITY:
            errors[name] = [_("A whole number from 0 to %(max)d.") % {"max": MAX_QUANTITY}]
    if errors:
        raise ServiceError(
            _("Allocations are whole, non-negative numbers."),
            code="invalid_quantity",
            fields=errors,
        )
    return values


def _open_sum(**filters: Any) -> dict[str, int]:
    totals = Allocation.objects.filter(end__isnull=True, **filters).aggregate(
        **{r: Sum(r) for r in RESOURCES}
    )
    return {r: int(totals[r] or 0) for r in RESOURCES}


def held_by_vms(
    *, project: Project | None = None, user: Any = None, domain: Domain | None = None
) -> dict[str, int]:
    from billing.models import Holding

    filters: dict[str, Any] = {"end__isnull": True}
    if project is not None:
        filters["project"] = project
    if domain is not None:
        filters["project__domain"] = domain
    if user is not None:
        filters["user"] = user
    totals = Holding.objects.filter(**filters).aggregate(**{r: Sum(r) for r in RESOURCES})
    return {r: int(totals[r] or 0) for r in RESOURCES}


def _refuse_if(exceeds: dict[str, tuple[int, int]], message: str, code: str) -> None:
    """exceeds: resource → (asked, bound). Raise naming every resource and its numbers."""
    if not exceeds:
        return
    parts = [f"{RESOURCE_NAMES[r]}: {asked} / {bound}" for r, (asked, bound) in exceeds.items()]
    raise Conflict(
        f"{message} ({'; '.join(parts)})",
        code=code,
        fields={
            r: [f"{asked} > {bound}" if code.endswith("exceeded") else f"{asked} < {bound}"]
            for r, (asked, bound) in exceeds.items()
        },
    )


def _check_bounds(target: Target, new: dict[str, int]) -> dict[str, Any]:
    """Every bound of SPEC Allocations 2–3; returns the new totals for the quote."""
    totals: dict[str, Any] = {}
    if target.level == Level.DOMAIN:
        capacity = PlatformCapacity.objects.select_for_update().get_or_create(pk=1)[0]
        others = _open_sum(level=Level.DOMAIN)
        current = current_allocation(target)
        if current is not None:
            others = {r: others[r] - getattr(current, r) for r in RESOURCES}
        ceiling = {r: int(getattr(capacity, r) * capacity.overcommit) for r in RESOURCES}
        _refuse_if(
            {
                r: (others[r] + new[r], ceiling[r])
                for r in RESOURCES
                if others[r] + new[r] > ceiling[r]
            },
            _("The platform capacity would be exceeded"),
            "capacity_exceeded",
        )
        below = _open_sum(level=Level.PROJECT, domain=target.domain)
        _refuse_if(
            {r: (new[r], below[r]) for r in RESOURCES if new[r] < below[r]},
            _("The domain has already allocated more to its projects"),
            "below_suballocated",
        )
        totals = {
            "platform_allocated": {r: others[r] + new[r] for r in RESOURCES},
            "platform_capacity": ceiling,
        }
    elif target.level == Level.PROJECT:
        parent = Allocation.objects.filter(
            end__isnull=True, level=Level.DOMAIN, domain=target.domain
        ).first()
        parent_values = {r: getattr(parent, r) if parent else 0 for r in RESOURCES}
        siblings = _open_sum(level=Level.PROJECT, domain=target.domain)
        current = current_allocation(target)
        if current is not None:
            siblings = {r: siblings[r] - getattr(current, r) for r in RESOURCES}
        _refuse_if(
            {
                r: (siblings[r] + new[r], parent_values[r])
                for r in RESOURCES
                if siblings[r] + new[r] > parent_values[r]
            },
            _("The domain's allocation would be exceeded"),
            "domain_allocation_exceeded",
        )
        held = held_by_vms(project=target.project)
        _refuse_if(
            {r: (new[r], held[r]) for r in RESOURCES if new[r] < held[r]},
            _("The project's VMs hold more than that"),
            "below_held",
        )
        totals = {
            "domain_allocated": {r: siblings[r] + new[r] for r in RESOURCES},
            "domain_allocation": parent_values,
        }
    else:
        held = held_by_vms(project=target.project, user=target.membership.user)
        _refuse_if(
            {r: (new[r], held[r]) for r in RESOURCES if new[r] < held[r]},
            _("The member's VMs hold more than that"),
            "below_held",
        )
        totals = {"held": held}
    return totals


def allocation_quote(
    *, actor: Any, target: Target, vcpus: Any, ram_gib: Any, disk_gib: Any, budget: Any = None
) -> dict[str, Any]:
    """What an allocation change would cost at today's prices, and the new totals (dry run).

    Runs every check of `allocation_set` and writes nothing."""
    with transaction.atomic():
        _require_allocate(actor, target)
        new = _quantities(vcpus, ram_gib, disk_gib)
        totals = _check_bounds(target, new)
        transaction.set_rollback(True)
    if budget is not None:
        _budget(target, budget)  # the same refusal as allocation_set
    price = price_at(timezone.now())
    hourly = hourly_cost(price, **new)
    current = current_allocation(target)
    current_hourly = (
        hourly_cost(price, **{r: getattr(current, r) for r in RESOURCES}) if current else Decimal(0)
    )
    return {
        "hourly_cost": q4(hourly),
        "monthly_cost": q4(hourly * HOURS_PER_MONTH),
        "hourly_change": q4(hourly - current_hourly),
        "charged": target.level != Level.MEMBER,
        "price_version": price.pk,
        **new,
        "totals": totals,
    }


def _budget(target: Target, budget: Any) -> Decimal:
    if target.level != Level.MEMBER:
        raise ServiceError(
            _("Only a member's limit has a budget."),
            code="budget_not_member",
            fields={"budget": [_("Only for memberships.")]},
        )
    return parse_amount(budget, field="budget", allow_zero=True)


def _require_allocate(actor: Any, target: Target) -> None:
    if target.level == Level.DOMAIN:
        require(actor, Action.ALLOCATE_DOMAIN, target.domain)
    elif target.level == Level.PROJECT:
        require(actor, Action.ALLOCATE_PROJECT, target.project)
    else:
        require(actor, Action.SET_MEMBER_LIMIT, target.project)


@transaction.atomic(durable=True)
def allocation_set(
    *,
    actor: Any,
    target: Target,
    vcpus: Any,
    ram_gib: Any,
    disk_gib: Any,
    budget: Any = None,
) -> Allocation | None:
    """End the current allocation of `target` and open a new one (Allocations 1–4).

    All zeros ends the allocation without opening a new one (returns None). Locks: domain row
    first (every change inside a domain is serialised), as STYLE's lock order says."""
    _require_allocate(actor, target)
    Domain.objects.select_for_update().get(pk=target.domain.pk)
    return _allocation_set(
        actor=actor, target=target, vcpus=vcpus, ram_gib=ram_gib, disk_gib=disk_gib, budget=budget
    )


def _allocation_set(
    *,
    actor: Any,
    target: Target,
    vcpus: Any,
    ram_gib: Any,
    disk_gib: Any,
    budget: Any,
    now: datetime | None = None,
) -> Allocation | None:
    new = _quantities(vcpus, ram_gib, disk_gib)
    money = None if budget is None else _budget(target, budget)
    _check_bounds(target, new)
    now = now or timezone.now()
    current = (
        Allocation.objects.select_for_update().filter(end__isnull=True, **target.filter()).first()
    )
    if current is not None:
        if all(getattr(current, r) == new[r] for r in RESOURCES) and current.budget == money:
            return current
        if current.start >= now:  # changed twice within the same instant: keep order
            now = current.start + timedelta(microseconds=1)
        current.end = now
        current.save(update_fields=["end"])
    elif not any(new.values()) and money is None:
        return None  # all zero where nothing is allocated: nothing to end, nothing to record
    allocation = None
    if any(new.values()) or money is not None:
        allocation = Allocation.objects.create(
            level=target.level,
            domain=target.domain,
            project=target.project,
            membership=target.membership,
            user=target.membership.user if target.membership else None,
            budget=money,
            start=now,
            created_by=actor if getattr(actor, "pk", None) else None,
            **new,
        )
    audit_record(
        actor=actor,
        action=f"allocation.{target.level}",
        target=allocation or current,
        domain=target.domain,
        project=target.project,
        before={r: getattr(current, r) for r in RESOURCES} if current else None,
        after={**new, "budget": str(money) if money is not None else None},
    )
    if target.level == Level.PROJECT and target.project is not None:
        _quota_sync_on_commit(target.project.pk)
    return allocation


def _quota_sync_on_commit(project_id: int) -> None:
    """After commit, mirror the project's allocation into its Keystone quota (compute task)."""

    def send() -> None:
        from kombu.exceptions import OperationalError

        from compute.tasks import quota_sync

        try:
            quota_sync.delay(project_id)
        except OperationalError:  # the broker is down: the next build puts the quota in step
            logging.getLogger(__name__).exception("could not send quota_sync(%s)", project_id)

    transaction.on_commit(send)


@transaction.atomic(durable=True)
def project_defaults_set(
    *, actor: Any, project: Project, vcpus: Any, ram_gib: Any, disk_gib: Any, budget: Any = None
) -> ProjectDefaults:
    require(actor, Action.SET_MEMBER_LIMIT, project)
    values = _quantities(vcpus, ram_gib, disk_gib)
    money = None if budget in (None, "") else parse_amount(budget, field="budget", allow_zero=True)
    defaults, _ = ProjectDefaults.objects.update_or_create(
        project=project, defaults={**values, "budget": money}
    )
    audit_record(
        actor=actor,
        action="project.member_defaults",
        target=defaults,
        project=project,
        after={**values, "budget": str(money) if money is not None else None},
    )
    return defaults


def member_limit_apply_defaults(*, actor: Any, membership: Membership) -> Allocation | None:
    """Give a new member the project's default limit and budget (inside the caller's
    transaction; called when a membership is created)."""
    defaults = ProjectDefaults.objects.filter(project_id=membership.project_id).first()
    if defaults is None:
        return None
    target = Target(Level.MEMBER, membership.project.domain, membership.project, membership)
    if current_allocation(target) is not None:
        return None
    return _allocation_set(
        actor=actor,
        target=target,
        vcpus=defaults.vcpus,
        ram_gib=defaults.ram_gib,
        disk_gib=defaults.disk_gib,
        budget=defaults.budget,
    )


@transaction.atomic(durable=True)
def platform_capacity_set(
    *, actor: Any, vcpus: Any, ram_gib: Any, disk_gib: Any, overcommit: Any
) -> PlatformCapacity:
    """What the platform may sell (Allocations 2): capacity per resource × overcommit ratio."""
    require(actor, Action.ALLOCATE_DOMAIN, None)
    values = _quantities(vcpus, ram_gib, disk_gib)
    ratio = parse_amount(overcommit, field="overcommit")
    if ratio > 100:
        raise ServiceError(
            _("The overcommit ratio is at most 100."),
            code="overcommit_too_large",
            fields={"overcommit": [_("At most 100.")]},
        )
    capacity = PlatformCapacity.objects.select_for_update().get_or_create(pk=1)[0]
    before = snapshot(capacity, [*RESOURCES, "overcommit"])
    allocated = _open_sum(level=Level.DOMAIN)
    ceiling = {r: int(values[r] * ratio) for r in RESOURCES}
    _refuse_if(
        {r: (ceiling[r], allocated[r]) for r in RESOURCES if ceiling[r] < allocated[r]},
        _("Domains already hold more than that"),
        "below_suballocated",
    )
    for name, value in values.items():
        setattr(capacity, name, value)
    capacity.overcommit = ratio
    capacity.updated_at = timezone.now()
    capacity.save()
    audit_record(
        actor=actor,
        action="platform.capacity",
        target=capacity,
        before=before,
        after=snapshot(capacity, [*RESOURCES, "overcommit"]),
    )
    return capacity


# -- Member budgets ---------------------------------------------------------------------------


def _member_budget_set(*, actor: Any, membership: Membership, budget: Any) -> Allocation | None:
    """Change a member's budget and keep their limit (inside the caller's transaction).

    A changed budget re-arms the member's budget alerts (SPEC Locking 3)."""
    from billing.models import BudgetAlert

    require(actor, Action.SET_MEMBER_LIMIT, membership.project)
    money = parse_amount(budget, field="budget", allow_zero=True)
    Domain.objects.select_for_update().get(pk=membership.project.domain_id)
    target = Target(Level.MEMBER, membership.project.domain, membership.project, membership)
    current = current_allocation(target)
    quantities = {r: getattr(current, r) if current else 0 for r in RESOURCES}
    allocation = _allocation_set(actor=actor, target=target, budget=money, **quantities)
    BudgetAlert.objects.filter(
        project_id=membership.project_id, user_id=membership.user_id
    ).exclude(budget=money).delete()
    return allocation


@transaction.atomic(durable=True)
def member_budget_set(*, actor: Any, membership: Membership, budget: Any) -> Allocation | None:
    """Set a member's budget (project admins and assistants); the limit stays as it is."""
    return _member_budget_set(actor=actor, membership=membership, budget=budget)


# -- Webhooks ---------------------------------------------------------------------------------


def _webhook_guard(*, domain: Domain | None, project: Project | None) -> tuple[Action, Any]:
    """The action that guards a tenant's webhook, and the tenant it is asked of."""
    if (domain is None) == (project is None):
        raise ServiceError(_("Name exactly one of domain or project."), code="one_target")
    if project is not None:
        return Action.PROJECT_EDIT, project
    return Action.DOMAIN_EDIT, domain


def may_set_webhook(
    actor: Any, *, domain: Domain | None = None, project: Project | None = None
) -> bool:
    """May `actor` set, test or remove the tenant's webhook?"""
    from tenancy.permissions import can

    action, tenant = _webhook_guard(domain=domain, project=project)
    return can(actor, action, tenant)


def webhook_url(url: str) -> str:
    """A webhook address as stored: stripped, an http(s) URL of at most 500 characters."""
    from django.core.exceptions import ValidationError
    from django.core.validators import URLValidator

    url = (url or "").strip()
    try:
        if len(url) > 500:
            raise ValidationError("too long")
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as exc:
        raise ServiceError(
            _("Enter a valid http(s) URL."), code="invalid_url", fields={"url": [_("Invalid URL.")]}
        ) from exc
    from billing.notify import address_problem

    problem = address_problem(url)
    if problem:
        raise ServiceError(
            _("Webhooks go to public internet addresses only: %(problem)s.") % {"problem": problem},
            code="webhook_address",
            fields={"url": [_("Not a public address.")]},
        )
    return url


def webhook_format_choice(value: Any) -> str:
    """A webhook format (`Webhook.Format`); refused if unknown."""
    from billing.models import Webhook

    if value not in Webhook.Format.values:
        raise ServiceError(
            _("Choose one of the webhook formats."),
            code="invalid_format",
            fields={"format": [_("Unknown format.")]},
        )
    return value


def webhook_set(
    *,
    actor: Any,
    domain: Domain | None = None,
    project: Project | None = None,
    url: str,
    active: bool = True,
    format: str | None = None,
) -> Any:
    """The tenant's webhook (one per domain or project): created or replaced, audited.

    `format`: how notifications are posted (Webhook.Format); None keeps the current one. The
    address is checked (a DNS lookup) before the transaction opens."""
    action, tenant = _webhook_guard(domain=domain, project=project)
    require(actor, action, tenant)
    url = webhook_url(url)
    return _webhook_save(
        actor=actor, domain=domain, project=project, url=url, active=active, format=format
    )


@transaction.atomic(durable=True)
def _webhook_save(
    *,
    actor: Any,
    domain: Domain | None,
    project: Project | None,
    url: str,
    active: bool,
    format: str | None,
) -> Any:
    from billing.models import Webhook

    owner = {"project": project} if project is not None else {"domain": domain}
    before = Webhook.objects.filter(**owner).values("url", "format", "active").first()
    values = {"url": url, "active": bool(active)}
    if format is not None:
        values["format"] = webhook_format_choice(format)
    webhook, _created = Webhook.objects.update_or_create(**owner, defaults=values)
    audit_record(
        actor=actor,
        action="webhook.set",
        target=webhook,
        domain=domain or project.domain,
        project=project,
        before=before,
        after={"url": webhook.url, "format": webhook.format, "active": webhook.active},
    )
    return webhook


def webhook_test(*, actor: Any, webhook: Any) -> Any:
    """Post a test message to the tenant's webhook now (outside any transaction: it waits for
    the receiver) and return the recorded notification, `sent` or `failed` with the error."""
    from billing import notify

    action, tenant = _webhook_guard(domain=webhook.domain, project=webhook.project)
    require(actor, action, tenant)
    return notify.send_test(webhook)


@transaction.atomic(durable=True)
def webhook_delete(*, actor: Any, webhook: Any) -> None:
    tenant = webhook.project if webhook.project_id else webhook.domain
    require(actor, Action.PROJECT_EDIT if webhook.project_id else Action.DOMAIN_EDIT, tenant)
    audit_record(
        actor=actor,
        action="webhook.delete",
        target=webhook,
        domain=webhook.domain if webhook.domain_id else webhook.project.domain,
        project=webhook.project,
        before={"url": webhook.url, "active": webhook.active},
    )
    webhook.delete()
