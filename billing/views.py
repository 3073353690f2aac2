"""Portal pages of billing: a billing page per domain and per project, and the member's usage.

Views validate input and call one service (billing.services / billing.enforcement); objects are
fetched through scoped selectors (a foreign object is 404) and every action is asked of
tenancy.permissions (a visible but forbidden action is 403).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.models import User
from billing import enforcement, services
from billing import requests as allocation_requests
from billing.forms import (
    AlertSettingsForm,
    AllocationForm,
    AllocationRequestForm,
    BillingAdminForm,
    CreditForm,
    MemberLimitForm,
    ReasonForm,
    RechargeForm,
    RechargeRequestForm,
    UnlockForm,
)
from billing.models import (
    Allocation,
    AllocationRequest,
    Entry,
    Level,
    Notification,
    ProjectDefaults,
    RechargeRequest,
    RequestStatus,
    Wallet,
    Webhook,
)
from billing.selectors import notifications_of, notifications_of_tenant, wallets_visible_to
from reports import charts
from teachcloud.errors import ServiceError
from tenancy import selectors
from tenancy.forms import apply_service_error
from tenancy.models import Domain, Membership, Project
from tenancy.permissions import Action, can, require
from tenancy.views import error_message, is_htmx, paginate, visible_domain, visible_project

RECENT_TRANSACTIONS = 20
RESOURCES = ("vcpus", "ram_gib", "disk_gib")


# -- Scoped reads -----------------------------------------------------------------------------


def _visible_wallet(request: HttpRequest, pk: int) -> Wallet:
    return get_object_or_404(
        wallets_visible_to(request.user).select_related(
            "domain", "project__domain", "billing_admin"
        ),
        pk=pk,
    )


def tenant_wallet(*, domain: Domain | None = None, project: Project | None = None) -> Wallet:
    """The tenant's wallet (opened with the tenant; opened now for tenants older than billing)."""
    filters = {"project": project} if project is not None else {"domain": domain}
    wallet = (
        Wallet.objects.select_related("domain", "project__domain", "billing_admin")
        .filter(**filters)
        .first()
    )
    return wallet or services.wallet_open(domain=domain, project=project)


def usage_percent(consumption: Decimal, budget: Decimal | None) -> Decimal | None:
    if budget is None:
        return None
    if budget <= 0:
        return Decimal(100) if consumption > 0 else Decimal(0)
    return (consumption * 100 / budget).quantize(Decimal("0.1"))


def usage_colour(percent: Decimal | None) -> str:
    """Bootstrap colour of a consumption bar: the alert thresholds 50/80/90 % (SPEC Locking 3)."""
    if percent is None or percent < 50:
        return "success"
    if percent < 80:
        return "info"
    if percent < 90:
        return "warning"
    return "danger"


# -- Page contexts ----------------------------------------------------------------------------


def _wallet_context(request: HttpRequest, wallet: Wallet, forms: dict[str, Any]) -> dict[str, Any]:
    user = request.user
    tenant = wallet.project if wallet.project_id else wallet.domain
    may = {
        "recharge": can(user, Action.WALLET_RECHARGE, wallet),
        "request_recharge": can(user, Action.WALLET_REQUEST_RECHARGE, wallet),
        "credit_limit": can(user, Action.WALLET_SET_CREDIT_LIMIT, wallet),
        "credit_ceiling": can(user, Action.WALLET_SET_CEILING, wallet),
        "billing_admin": can(user, Action.WALLET_SET_BILLING_ADMIN, wallet),
        "lock": can(user, Action.TENANT_LOCK, tenant),
        "unlock": can(user, Action.TENANT_UNLOCK, tenant),
        "webhook": services.may_set_webhook(user, **_tenant_kwargs(wallet)),
        "alert": can(user, Action.WALLET_SET_ALERT, wallet),
    }
    webhook = Webhook.objects.filter(**_tenant_kwargs(wallet)).first()
    entries = (
        Entry.objects.filter(wallet=wallet)
        .select_related("transaction__created_by")
        .order_by("-transaction__created_at", "-id")[:RECENT_TRANSACTIONS]
    )
    pending = (
        RechargeRequest.objects.filter(wallet=wallet, status=RequestStatus.PENDING)
        .select_related("requested_by")
        .order_by("created_at")
    )
    return {
        "wallet": wallet,
        "tab": "billing",
        "may": may,
        "entries": entries,
        "pending_requests": pending,
        "recharge_form": forms.get("recharge_form") or RechargeForm(prefix="recharge"),
        "request_form": forms.get("request_form") or RechargeRequestForm(prefix="request"),
        "credit_form": forms.get("credit_form")
        or CreditForm(
            prefix="credit",
            may_limit=may["credit_limit"],
            may_ceiling=may["credit_ceiling"],
            initial={
                "credit_limit": wallet.credit_limit,
                "credit_ceiling": wallet.credit_ceiling,
            },
        ),
        "billing_admin_form": forms.get("billing_admin_form")
        or BillingAdminForm(
            prefix="ba",
            admins=_tenant_admins(wallet),
            initial={"billing_admin": wallet.billing_admin_id},
        ),
        "unlock_form": forms.get("unlock_form") or UnlockForm(prefix="unlock"),
        "lock_form": forms.get("lock_form") or ReasonForm(prefix="lock"),
        "webhook": webhook,
        "alerts_form": forms.get("alerts_form")
        or AlertSettingsForm(
            prefix="alerts",
            may_webhook=may["webhook"],
            may_alert=may["alert"],
            initial={
                "url": webhook.url if webhook else "",
                "format": webhook.format if webhook else Webhook.Format.AUTO,
                "active": webhook.active if webhook else True,
                "alert_threshold": wallet.alert_threshold
                if wallet.alert_threshold is not None
                else "",
            },
        ),
    }


def _tenant_admins(wallet: Wallet) -> QuerySet[User]:
    if wallet.project_id:
        ids = Membership.objects.active().filter(project_id=wallet.project_id, role="admin")
    else:
        from tenancy.models import DomainRole

        ids = DomainRole.objects.active().filter(domain_id=wallet.domain_id, role="admin")
    return User.objects.filter(pk__in=ids.values("user_id")).order_by("username")


def _allocation_totals(allocation: Allocation | None) -> dict[str, int]:
    return {r: getattr(allocation, r) if allocation else 0 for r in RESOURCES}


def _domain_page(request: HttpRequest, domain: Domain, forms: dict[str, Any]) -> HttpResponse:
    user = request.user
    wallet = tenant_wallet(domain=domain)
    require(user, Action.WALLET_VIEW, wallet)
    projects = list(selectors.projects_visible_to(user).filter(domain=domain).order_by("name"))
    current = {
        a.project_id: a
        for a in Allocation.objects.filter(
            level=Level.PROJECT, domain=domain, end__isnull=True
        ).order_by()
    }
    rows = [{"project": p, "allocation": current.get(p.pk)} for p in projects]
    allocated = {r: sum(getattr(a, r) for a in current.values()) for r in RESOURCES}
    own = services.current_allocation(services.target_of(domain=domain))
    may_domain = can(user, Action.ALLOCATE_DOMAIN, domain)
    allocatable = [p for p in projects if can(user, Action.ALLOCATE_PROJECT, p)]
    form = forms.get("allocation_form")
    if form is None and (may_domain or allocatable):
        form = _domain_allocation_form(request, domain, allocatable, may_domain, data=None)
    context = {
        **_wallet_context(request, wallet, forms),
        "domain": domain,
        "allocation": own,
        "own_totals": _allocation_totals(own),
        "allocated": allocated,
        "project_rows": rows,
        "allocation_form": form,
        "quote_url": "portal:billing_domain_quote",
        "allocation_url": "portal:billing_domain_allocation",
        "tenant_pk": domain.pk,
        **_decidable_requests(request, Level.PROJECT, domain_id=domain.pk),
        "charts": charts.domain_charts(domain=domain, wallet=wallet),
    }
    return render(request, "billing/domain_billing.html", context)


def _domain_allocation_form(
    request: HttpRequest,
    domain: Domain,
    allocatable: list[Project],
    may_domain: bool,
    data: Any,
) -> AllocationForm:
    ids = [p.pk for p in allocatable]
    projects = Project.objects.filter(pk__in=ids).select_related("domain").order_by("name")
    form = AllocationForm(data, projects=projects)
    project_field = form.fields["project"]
    project_field.required = not may_domain
    if may_domain:
        project_field.empty_label = _("— the domain's own allocation —")
    return form


def _project_page(request: HttpRequest, project: Project, forms: dict[str, Any]) -> HttpResponse:
    user = request.user
    wallet = tenant_wallet(project=project)
    require(user, Action.WALLET_VIEW, wallet)
    own = services.current_allocation(services.target_of(project=project))
    may_allocate = can(user, Action.ALLOCATE_PROJECT, project)
    may_limits = can(user, Action.SET_MEMBER_LIMIT, project)
    defaults = ProjectDefaults.objects.filter(project=project).first()
    context = {
        **_wallet_context(request, wallet, forms),
        "project": project,
        "allocation": own,
        "own_totals": _allocation_totals(own),
        "held": services.held_by_vms(project=project),
        "allocation_form": forms.get("allocation_form")
        or (AllocationForm(initial=_allocation_totals(own)) if may_allocate else None),
        "quote_url": "portal:billing_project_quote",
        "allocation_url": "portal:billing_project_allocation",
        "tenant_pk": project.pk,
        "charts": charts.project_charts(project=project, wallet=wallet),
        **_project_request_context(request, project, forms),
        "may_limits": may_limits,
        "member_rows": _member_rows(request, project, may_limits, forms),
        "defaults": defaults,
        "defaults_form": forms.get("defaults_form")
        or MemberLimitForm(
            prefix="defaults",
            initial={
                "vcpus": defaults.vcpus if defaults else 2,
                "ram_gib": defaults.ram_gib if defaults else 4,
                "disk_gib": defaults.disk_gib if defaults else 40,
                "budget": defaults.budget if defaults and defaults.budget is not None else "",
            },
        ),
    }
    return render(request, "billing/project_billing.html", context)


def _member_rows(
    request: HttpRequest, project: Project, may_limits: bool, forms: dict[str, Any]
) -> list[dict[str, Any]]:
    user = request.user
    memberships = selectors.with_consumption(
        selectors.memberships_visible_to(user).filter(project=project).active()
    ).order_by("user__username")
    limits = {
        a.user_id: a
        for a in Allocation.objects.filter(
            level=Level.MEMBER, project=project, end__isnull=True
        ).order_by()
    }
    failed = forms.get("member_form")
    rows = []
    for m in memberships:
        limit = limits.get(m.user_id)
        consumption = selectors.membership_consumption(m)
        budget = limit.budget if limit else None
        percent = usage_percent(consumption, budget)
        form = None
        if may_limits:
            if failed is not None and failed.prefix == f"m{m.pk}":
                form = failed
            else:
                form = MemberLimitForm(
                    prefix=f"m{m.pk}",
                    initial={
                        **_allocation_totals(limit),
                        "budget": budget if budget is not None else "",
                    },
                )
        rows.append(
            {
                "membership": m,
                "limit": limit,
                "budget": budget,
                "consumption": consumption,
                "percent": percent,
                "bar": min(int(percent), 100) if percent is not None else 0,
                "colour": usage_colour(percent),
                "form": form,
                "may_unlock": m.locked and can(user, Action.MEMBER_UNLOCK, m),
            }
        )
    return rows


def _page_for(request: HttpRequest, wallet: Wallet, **forms: Any) -> HttpResponse:
    if wallet.project_id:
        return _project_page(request, wallet.project, forms)
    return _domain_page(request, wallet.domain, forms)


def _back_to(wallet: Wallet) -> HttpResponse:
    if wallet.project_id:
        return redirect("portal:project_billing", wallet.project_id)
    return redirect("portal:domain_billing", wallet.domain_id)


def _refused(form: Any, exc: ServiceError | PermissionDenied) -> None:
    if isinstance(exc, PermissionDenied):
        form.add_error(None, str(exc) or _("You do not have permission to do this."))
    else:
        apply_service_error(form, exc)


# -- Pages ------------------------------------------------------------------------------------


@login_required
def domain_billing(request: HttpRequest, pk: int) -> HttpResponse:
    return _domain_page(request, visible_domain(request, pk), {})


@login_required
def project_billing(request: HttpRequest, pk: int) -> HttpResponse:
    return _project_page(request, visible_project(request, pk), {})


# -- Money ------------------------------------------------------------------------------------


@login_required
@require_POST
def wallet_recharge(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    require(request.user, Action.WALLET_RECHARGE, wallet)
    form = RechargeForm(request.POST, prefix="recharge")
    if form.is_valid():
        try:
            tx = services.wallet_recharge(actor=request.user, wallet=wallet, **form.cleaned_data)
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            amount = tx.entries.get(wallet=wallet).amount
            messages.success(request, _("Recharge of ¥%(amount)s recorded.") % {"amount": amount})
            return _back_to(wallet)
    return _page_for(request, wallet, recharge_form=form)


@login_required
@require_POST
def recharge_request_create(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    require(request.user, Action.WALLET_REQUEST_RECHARGE, wallet)
    form = RechargeRequestForm(request.POST, prefix="request")
    if form.is_valid():
        try:
            created = services.recharge_request_create(
                actor=request.user, wallet=wallet, **form.cleaned_data
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                _("Your recharge request of ¥%(amount)s waits for confirmation.")
                % {"amount": created.amount},
            )
            return _back_to(wallet)
    return _page_for(request, wallet, request_form=form)


@login_required
@require_POST
def recharge_request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    visible = wallets_visible_to(request.user)
    pending = get_object_or_404(
        RechargeRequest.objects.select_related("wallet").filter(wallet__in=visible), pk=pk
    )
    wallet = _visible_wallet(request, pending.wallet_id)
    require(request.user, Action.WALLET_RECHARGE, wallet)
    approve = request.POST.get("decision") == "approve"
    try:
        decided = services.recharge_request_decide(
            actor=request.user, request=pending, approve=approve
        )
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        if approve:
            text = _("The recharge of ¥%(amount)s was confirmed and credited.")
        else:
            text = _("The recharge request of ¥%(amount)s was rejected.")
        messages.success(request, text % {"amount": decided.amount})
    return _back_to(wallet)


@login_required
@require_POST
def wallet_credit(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    may_limit = can(request.user, Action.WALLET_SET_CREDIT_LIMIT, wallet)
    may_ceiling = can(request.user, Action.WALLET_SET_CEILING, wallet)
    if not (may_limit or may_ceiling):
        raise PermissionDenied
    form = CreditForm(request.POST, prefix="credit", may_limit=may_limit, may_ceiling=may_ceiling)
    if form.is_valid():
        try:
            wallet = services.wallet_update(actor=request.user, wallet=wallet, **form.changes())
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                _("Credit limit ¥%(limit)s, ceiling ¥%(ceiling)s.")
                % {"limit": wallet.credit_limit, "ceiling": wallet.credit_ceiling},
            )
            return _back_to(wallet)
    return _page_for(request, wallet, credit_form=form)


@login_required
@require_POST
def wallet_billing_admin(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    require(request.user, Action.WALLET_SET_BILLING_ADMIN, wallet)
    form = BillingAdminForm(request.POST, prefix="ba", admins=_tenant_admins(wallet))
    if form.is_valid():
        try:
            wallet = services.wallet_update(
                actor=request.user, wallet=wallet, billing_admin=form.cleaned_data["billing_admin"]
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request, _("%(user)s is now the billing admin.") % {"user": wallet.billing_admin}
            )
            return _back_to(wallet)
    return _page_for(request, wallet, billing_admin_form=form)


def _tenant_kwargs(wallet: Wallet) -> dict[str, Any]:
    return {"project": wallet.project} if wallet.project_id else {"domain": wallet.domain}


@login_required
@require_POST
def wallet_alerts(request: HttpRequest, pk: int) -> HttpResponse:
    """The tenant's webhook (its admins: set, remove, send a test message) and low-balance alert
    level (admins and assistants). Everything is checked before anything is saved."""
    wallet = _visible_wallet(request, pk)
    tenant = _tenant_kwargs(wallet)
    may_webhook = services.may_set_webhook(request.user, **tenant)
    may_alert = can(request.user, Action.WALLET_SET_ALERT, wallet)
    webhook = Webhook.objects.filter(**tenant).first()
    if "test" in request.POST:
        if not may_webhook:
            raise PermissionDenied
        if webhook is None:
            messages.error(request, _("Save a webhook URL first, then send a test message."))
            return _back_to(wallet)
        row = services.webhook_test(actor=request.user, webhook=webhook)
        if row.status == "failed":
            messages.error(
                request,
                _("The test message could not be delivered: %(error)s") % {"error": row.error},
            )
        else:
            messages.success(request, _("The test message was delivered to the webhook."))
        return _back_to(wallet)
    if not (may_webhook or may_alert):
        raise PermissionDenied
    form = AlertSettingsForm(
        request.POST, prefix="alerts", may_webhook=may_webhook, may_alert=may_alert
    )
    if form.is_valid():
        data = form.cleaned_data
        try:
            # Check a new address before saving anything, so a refusal changes nothing; the
            # stored one is not looked up again when only the alert level changes.
            raw = (data.get("url") or "").strip() if may_webhook else ""
            wanted = (raw, data.get("format"), data.get("active"))
            changed = bool(raw) and (
                webhook is None or (webhook.url, webhook.format, webhook.active) != wanted
            )
            url = services.webhook_url(raw) if changed else raw
            threshold = (data.get("alert_threshold") or "").strip()
            current = wallet.alert_threshold
            if may_alert and (threshold or "") != ("" if current is None else str(current)):
                if threshold:
                    services.wallet_update(
                        actor=request.user, wallet=wallet, alert_threshold=threshold
                    )
                elif current is not None:
                    services.wallet_update(
                        actor=request.user, wallet=wallet, clear_alert_threshold=True
                    )
            if may_webhook and url:
                if changed:
                    services.webhook_set(
                        actor=request.user,
                        url=url,
                        format=data["format"],
                        active=data["active"],
                        **tenant,
                    )
            elif may_webhook and webhook is not None:
                services.webhook_delete(actor=request.user, webhook=webhook)
        except (ServiceError, PermissionDenied) as exc:
            _refused(form, exc)
        else:
            messages.success(request, _("The notification settings are saved."))
            return _back_to(wallet)
    return _page_for(request, wallet, alerts_form=form)


@login_required
@require_POST
def wallet_lock(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    tenant = wallet.project if wallet.project_id else wallet.domain
    require(request.user, Action.TENANT_LOCK, tenant)
    form = ReasonForm(request.POST, prefix="lock")
    if form.is_valid():
        try:
            enforcement.tenant_lock(
                actor=request.user, reason=form.cleaned_data["reason"], **_tenant_kwargs(wallet)
            )
        except (ServiceError, PermissionDenied) as exc:
            _refused(form, exc)
        else:
            messages.success(request, _("%(tenant)s is locked.") % {"tenant": tenant})
            return _back_to(wallet)
    return _page_for(request, wallet, lock_form=form)


@login_required
@require_POST
def wallet_unlock(request: HttpRequest, pk: int) -> HttpResponse:
    wallet = _visible_wallet(request, pk)
    tenant = wallet.project if wallet.project_id else wallet.domain
    require(request.user, Action.TENANT_UNLOCK, tenant)
    form = UnlockForm(request.POST, prefix="unlock")
    if form.is_valid():
        try:
            enforcement.tenant_unlock(
                actor=request.user,
                restart_servers=form.cleaned_data["restart_servers"],
                **_tenant_kwargs(wallet),
            )
        except (ServiceError, PermissionDenied) as exc:
            _refused(form, exc)
        else:
            messages.success(request, _("%(tenant)s is unlocked.") % {"tenant": tenant})
            return _back_to(wallet)
    return _page_for(request, wallet, unlock_form=form)


# -- Allocations ------------------------------------------------------------------------------


def _domain_target(
    request: HttpRequest, domain: Domain, data: Any
) -> tuple[AllocationForm, services.Target | None]:
    allocatable = [
        p
        for p in selectors.projects_visible_to(request.user).filter(domain=domain)
        if can(request.user, Action.ALLOCATE_PROJECT, p)
    ]
    may_domain = can(request.user, Action.ALLOCATE_DOMAIN, domain)
    if not (allocatable or may_domain):
        raise PermissionDenied
    form = _domain_allocation_form(request, domain, allocatable, may_domain, data=data)
    if not form.is_valid():
        return form, None
    project = form.cleaned_data.get("project")
    if project is not None:
        return form, services.target_of(project=project)
    return form, services.target_of(domain=domain)


def _quote_response(
    request: HttpRequest, form: AllocationForm, target: services.Target | None
) -> HttpResponse:
    context: dict[str, Any] = {"form": form}
    if target is not None:
        try:
            context["quote"] = services.allocation_quote(
                actor=request.user, target=target, **form.quantities()
            )
        except ServiceError as exc:
            context["refusal"] = exc
        except PermissionDenied as exc:
            context["refusal"] = ServiceError(
                str(exc) or _("You do not have permission to do this."), code="forbidden"
            )
        current = services.current_allocation(target)
        context["current"] = _allocation_totals(current)
        context["target"] = target
    return render(request, "billing/partials/quote.html", context)


@login_required
@require_POST
def domain_quote(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    form, target = _domain_target(request, domain, request.POST)
    return _quote_response(request, form, target)


@login_required
@require_POST
def project_quote(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.ALLOCATE_PROJECT, project)
    form = AllocationForm(request.POST)
    target = services.target_of(project=project) if form.is_valid() else None
    return _quote_response(request, form, target)


def _allocate(request: HttpRequest, form: AllocationForm, target: services.Target | None) -> bool:
    if target is None:
        return False
    try:
        services.allocation_set(actor=request.user, target=target, **form.quantities())
    except (ServiceError, PermissionDenied) as exc:
        _refused(form, exc)
        return False
    name = target.project or target.domain
    messages.success(
        request,
        _("The allocation of %(name)s is now %(vcpus)s vCPU, %(ram)s GiB RAM, %(disk)s GiB disk.")
        % {
            "name": name,
            "vcpus": form.cleaned_data["vcpus"],
            "ram": form.cleaned_data["ram_gib"],
            "disk": form.cleaned_data["disk_gib"],
        },
    )
    return True


@login_required
@require_POST
def domain_allocation(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    form, target = _domain_target(request, domain, request.POST)
    if _allocate(request, form, target):
        return redirect("portal:domain_billing", domain.pk)
    return _domain_page(request, domain, {"allocation_form": form})


@login_required
@require_POST
def project_allocation(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.ALLOCATE_PROJECT, project)
    form = AllocationForm(request.POST)
    target = services.target_of(project=project) if form.is_valid() else None
    if _allocate(request, form, target):
        return redirect("portal:project_billing", project.pk)
    return _project_page(request, project, {"allocation_form": form})


# -- Member limits ----------------------------------------------------------------------------


@login_required
@require_POST
def project_defaults(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.SET_MEMBER_LIMIT, project)
    form = MemberLimitForm(request.POST, prefix="defaults")
    if form.is_valid():
        try:
            services.project_defaults_set(
                actor=request.user,
                project=project,
                budget=form.budget_value(),
                **form.quantities(),
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, _("New members get this limit and budget from now on."))
            return redirect("portal:project_billing", project.pk)
    return _project_page(request, project, {"defaults_form": form})


def _membership(request: HttpRequest, pk: int) -> Membership:
    return get_object_or_404(selectors.memberships_visible_to(request.user), pk=pk)


@login_required
@require_POST
def member_limit(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership(request, pk)
    project = membership.project
    require(request.user, Action.SET_MEMBER_LIMIT, project)
    form = MemberLimitForm(request.POST, prefix=f"m{membership.pk}")
    if form.is_valid():
        try:
            services.allocation_set(
                actor=request.user,
                target=services.target_of(membership=membership),
                budget=form.budget_value(),
                **form.quantities(),
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request, _("The limit of %(user)s was saved.") % {"user": membership.user}
            )
            return redirect("portal:project_billing", project.pk)
    messages.error(request, _("The limit of %(user)s was not saved.") % {"user": membership.user})
    return _project_page(request, project, {"member_form": form})


@login_required
@require_POST
def member_unlock(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership(request, pk)
    require(request.user, Action.MEMBER_UNLOCK, membership)
    budget = (request.POST.get("budget") or "").strip() or None
    try:
        enforcement.member_unlock(actor=request.user, membership=membership, budget=budget)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        messages.success(request, _("%(user)s is unlocked.") % {"user": membership.user})
    return redirect("portal:project_billing", membership.project_id)


# -- The member's own usage -------------------------------------------------------------------


def member_usage(user: Any, projects: Any = None) -> list[dict[str, Any]]:
    """The user's limit, budget and consumption in each of their projects (3 queries)."""
    memberships = selectors.with_consumption(
        Membership.objects.active().filter(user=user).select_related("project__domain")
    ).order_by("project__name")
    if projects is not None:
        memberships = memberships.filter(project__in=projects)
    limits = {
        a.project_id: a
        for a in Allocation.objects.filter(level=Level.MEMBER, user=user, end__isnull=True)
    }
    rows = []
    for m in memberships:
        limit = limits.get(m.project_id)
        consumption = selectors.membership_consumption(m)
        budget = limit.budget if limit else None
        percent = usage_percent(consumption, budget)
        rows.append(
            {
                "membership": m,
                "project": m.project,
                "limit": limit,
                "budget": budget,
                "consumption": consumption,
                "percent": percent,
                "bar": min(int(percent), 100) if percent is not None else 0,
                "colour": usage_colour(percent),
            }
        )
    return rows


@login_required
def my_usage(request: HttpRequest) -> HttpResponse:
    rows = member_usage(request.user)
    if is_htmx(request):
        return render(request, "billing/partials/usage_cards.html", {"usage_rows": rows})
    context = {"usage_rows": rows, **_member_request_context(request, None)}
    context["charts"] = charts.my_usage_charts(user=request.user)
    return render(request, "billing/my_usage.html", context)


# -- Allocation requests (SPEC Allocations 6) -------------------------------------------------


def _pending_requests() -> QuerySet[AllocationRequest]:
    return AllocationRequest.objects.filter(status=RequestStatus.PENDING).select_related(
        "project", "membership__user", "requested_by"
    )


def _decidable_requests(request: HttpRequest, level: str, **filters: Any) -> dict[str, Any]:
    """Pending requests of `level` the user may approve or deny (not their own)."""
    pending = _pending_requests().filter(level=level, **filters).order_by("created_at", "id")
    decidable = [r for r in pending if allocation_requests.may_decide(request.user, r)]
    return {"alloc_requests_to_decide": decidable}


def _project_request_context(
    request: HttpRequest, project: Project, forms: dict[str, Any]
) -> dict[str, Any]:
    context = _decidable_requests(request, Level.MEMBER, project=project)
    if can(request.user, Action.REQUEST_ALLOCATION, project):
        context |= {
            "alloc_request_form": forms.get("alloc_request_form")
            or AllocationRequestForm(prefix="ask"),
            "alloc_request_title": _("Request a larger allocation"),
            "alloc_request_url": reverse(
                "portal:billing_project_allocation_request", args=[project.pk]
            ),
            "alloc_request_pending": _pending_requests()
            .filter(level=Level.PROJECT, project=project)
            .first(),
        }
    return context


def _own_memberships(user: Any) -> QuerySet[Membership]:
    return (
        Membership.objects.active()
        .filter(user=user)
        .select_related("project", "user")
        .order_by("project__name")
    )


def _member_request_context(
    request: HttpRequest, form: AllocationRequestForm | None
) -> dict[str, Any]:
    memberships = _own_memberships(request.user)
    if not memberships.exists():
        return {}
    mine = AllocationRequest.objects.filter(
        level=Level.MEMBER, requested_by=request.user
    ).select_related("project")
    return {
        "alloc_request_form": form or AllocationRequestForm(prefix="ask", memberships=memberships),
        "alloc_request_title": _("Request a larger limit"),
        "alloc_request_url": reverse("portal:billing_member_allocation_request"),
        "my_alloc_requests": list(mine.order_by("-created_at", "-id")[:10]),
    }


@login_required
@require_POST
def project_allocation_request(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.REQUEST_ALLOCATION, project)
    form = AllocationRequestForm(request.POST, prefix="ask")
    if form.is_valid():
        try:
            allocation_requests.allocation_request_create(
                actor=request.user,
                project=project,
                justification=form.cleaned_data["justification"],
                **form.quantities(),
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, _("Your request was sent to the domain's admins."))
            return redirect("portal:project_billing", project.pk)
    return _project_page(request, project, {"alloc_request_form": form})


@login_required
@require_POST
def member_allocation_request(request: HttpRequest) -> HttpResponse:
    form = AllocationRequestForm(
        request.POST, prefix="ask", memberships=_own_memberships(request.user)
    )
    if form.is_valid():
        try:
            allocation_requests.allocation_request_create(
                actor=request.user,
                membership=form.cleaned_data["membership"],
                budget=form.budget_value(),
                justification=form.cleaned_data["justification"],
                **form.quantities(),
            )
        except (ServiceError, PermissionDenied) as exc:
            _refused(form, exc)
        else:
            messages.success(request, _("Your request was sent to the project's staff."))
            return redirect("portal:my_usage")
    context = {"usage_rows": member_usage(request.user), **_member_request_context(request, form)}
    return render(request, "billing/my_usage.html", context)


@login_required
@require_POST
def allocation_request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    pending = get_object_or_404(
        allocation_requests.allocation_requests_visible_to(request.user), pk=pk
    )
    approve = request.POST.get("decision") == "approve"
    try:
        allocation_requests.allocation_request_decide(
            actor=request.user,
            request=pending,
            approve=approve,
            note=(request.POST.get("note") or "")[:5000],
        )
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        if approve:
            messages.success(request, _("The request was approved and the allocation applied."))
        else:
            messages.success(request, _("The request was denied."))
    if pending.level == Level.PROJECT:
        return redirect("portal:domain_billing", pending.domain_id)
    return redirect("portal:project_billing", pending.project_id)


# -- Notifications (SPEC Notifications: every notification is recorded and listed) -------------

NOTIFICATION_EVENTS = {
    "low_balance": gettext_lazy("Low balance"),
    "tenant_locked": gettext_lazy("Tenant locked"),
    "tenant_unlocked": gettext_lazy("Tenant unlocked"),
    "member_locked": gettext_lazy("Member locked"),
    "member_unlocked": gettext_lazy("Member unlocked"),
    "budget_alert": gettext_lazy("Budget threshold"),
    "purge_reminder": gettext_lazy("Purge reminder"),
    "tenant_purged": gettext_lazy("Tenant purged"),
    "statement_ready": gettext_lazy("Monthly statement ready"),
    "allocation_request.created": gettext_lazy("Allocation request"),
    "allocation_request.approved": gettext_lazy("Allocation request approved"),
    "allocation_request.denied": gettext_lazy("Allocation request denied"),
    "course_ending": gettext_lazy("Course ending"),
    "course_ended": gettext_lazy("Course ended"),
    "digest": gettext_lazy("Digest"),
    "email_changed": gettext_lazy("Email address changed"),
}


def notification_event_label(event: str) -> str:
    """The reader's-language label of a notification event code (unknown codes as recorded)."""
    label = NOTIFICATION_EVENTS.get(event)
    return str(label) if label is not None else event


def _webhook_target(url: str) -> str:
    """Which webhook a delivery went to, without the URL's path or query (which often carry the
    webhook's secret token) or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
    return f"{parts.scheme}://{host}{port}" if host else ""


def _annotate_notifications(rows: Any) -> None:
    for row in rows:
        row.event_label = notification_event_label(row.event)
        row.webhook_target = _webhook_target(row.address) if row.channel == "webhook" else ""


def _notification_filters(
    request: HttpRequest, queryset: QuerySet[Notification]
) -> tuple[QuerySet[Notification], dict[str, Any]]:
    """Apply the list's filters (event kind, status, channel); unknown values are ignored."""
    choices: dict[str, list[tuple[str, str]]] = {
        "event": [(code, str(label)) for code, label in NOTIFICATION_EVENTS.items()],
        "status": [(code, str(label)) for code, label in Notification.Status.choices],
        "channel": [(code, str(label)) for code, label in Notification.Channel.choices],
    }
    chosen: dict[str, str] = {}
    for name, options in choices.items():
        value = request.GET.get(name) or ""
        if value in {code for code, _label in options}:
            queryset = queryset.filter(**{name: value})
            chosen[name] = value
        else:
            chosen[name] = ""
    return queryset, {
        "filters": chosen,
        "filter_choices": choices,
        "filtered": any(chosen.values()),
    }


@login_required
def my_notifications(request: HttpRequest) -> HttpResponse:
    queryset = notifications_of(request.user).select_related("domain", "project")
    page = paginate(request, queryset)
    _annotate_notifications(page)
    return render(request, "billing/notifications_mine.html", {"page": page})


@login_required
def my_notification(request: HttpRequest, pk: int) -> HttpResponse:
    notification = get_object_or_404(
        notifications_of(request.user).select_related("domain", "project"), pk=pk
    )
    folded = list(notification.folded.order_by("created_at", "id"))
    _annotate_notifications([notification, *folded])
    context = {"notification": notification, "folded": folded}
    return render(request, "billing/notifications_mine_detail.html", context)


def _tenant_notifications_context(
    request: HttpRequest, *, domain: Domain | None = None, project: Project | None = None
) -> tuple[QuerySet[Notification], dict[str, Any]]:
    """The tenant's notifications, for whoever may see the tenant's billing page."""
    require(request.user, Action.WALLET_VIEW, tenant_wallet(domain=domain, project=project))
    queryset = notifications_of_tenant(domain=domain, project=project)
    if project is not None:
        context = {
            "project": project,
            "tenant_base": "tenancy/project_base.html",
            "list_url": "portal:project_notifications",
            "detail_url": "portal:project_notification",
            "tenant_pk": project.pk,
        }
    else:
        context = {
            "domain": domain,
            "tenant_base": "tenancy/domain_base.html",
            "list_url": "portal:domain_notifications",
            "detail_url": "portal:domain_notification",
            "tenant_pk": domain.pk if domain else None,
        }
    return queryset, {**context, "tab": "notifications"}


def _tenant_notification_list(
    request: HttpRequest, *, domain: Domain | None = None, project: Project | None = None
) -> HttpResponse:
    queryset, context = _tenant_notifications_context(request, domain=domain, project=project)
    queryset, filters = _notification_filters(request, queryset)
    page = paginate(request, queryset)
    _annotate_notifications(page)
    context |= {**filters, "page": page}
    return render(request, "billing/notifications_tenant.html", context)


def _tenant_notification_detail(
    request: HttpRequest,
    pk: int,
    *,
    domain: Domain | None = None,
    project: Project | None = None,
) -> HttpResponse:
    queryset, context = _tenant_notifications_context(request, domain=domain, project=project)
    notification = get_object_or_404(queryset.select_related("digest"), pk=pk)
    _annotate_notifications([notification])
    context["notification"] = notification
    return render(request, "billing/notifications_tenant_detail.html", context)


@login_required
def domain_notifications(request: HttpRequest, pk: int) -> HttpResponse:
    return _tenant_notification_list(request, domain=visible_domain(request, pk))


@login_required
def domain_notification(request: HttpRequest, pk: int, nid: int) -> HttpResponse:
    return _tenant_notification_detail(request, nid, domain=visible_domain(request, pk))


@login_required
def project_notifications(request: HttpRequest, pk: int) -> HttpResponse:
    return _tenant_notification_list(request, project=visible_project(request, pk))


@login_required
def project_notification(request: HttpRequest, pk: int, nid: int) -> HttpResponse:
    return _tenant_notification_detail(request, nid, project=visible_project(request, pk))
