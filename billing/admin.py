"""Django admin of billing for platform staff (finance staff: read-only money views).

Same rules as every TeachCloud admin (`tenancy.admin.PlatformAdminMixin`): access through
tenancy.permissions, every write through a service (billing.services / billing.enforcement),
a ServiceError shown on the form or as a message. The ledger (transactions, entries, charge
lines) is never editable: a correction is a reversing transaction with a reason.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing import enforcement, services
from billing.forms import AdjustForm, AllocationAdminForm, ReasonForm, RechargeForm, UnlockForm
from billing.memos import describe
from billing.models import (
    Allocation,
    AllocationRequest,
    ChargeLine,
    ComputeRequest,
    Entry,
    LockPeriod,
    MemberConsumption,
    Notification,
    PlatformCapacity,
    PriceVersion,
    RechargeRequest,
    RequestStatus,
    Transaction,
    Wallet,
    WalletKind,
    Webhook,
)
from teachcloud.errors import ServiceError
from tenancy.admin import PlatformAdminMixin, apply_service_error
from tenancy.permissions import roles_of

FORM_TEMPLATE = "billing/admin/object_form.html"


def _platform_only(request: HttpRequest) -> None:
    if not roles_of(request.user).platform:
        raise PermissionDenied


class LedgerAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Read-only for everybody; platform and finance staff may look."""

    read_only = True
    finance_can_view = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields] + list(self.readonly_fields)


class ExportMixin:
    """Links "Export CSV" and "Export XLSX" on the changelist: the changelist's filtered queryset
    (filters, search, date drill-down; not one page) streamed through `reports.exports`.
    Whoever may view the changelist may export it (finance staff included); nothing is written.
    """

    change_list_template = "billing/admin/export_change_list.html"
    export_filename = ""

    def export(self, queryset: QuerySet, export: str) -> HttpResponseBase:
        raise NotImplementedError

    def get_urls(self) -> list[Any]:
        opts = self.opts  # type: ignore[attr-defined]
        return [
            path(
                "export/<str:export>/",
                self.admin_site.admin_view(self.export_view),  # type: ignore[attr-defined]
                name=f"{opts.app_label}_{opts.model_name}_export",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def export_view(self, request: HttpRequest, export: str) -> HttpResponseBase:
        from reports.exports import FORMATS

        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        if export not in FORMATS:
            raise Http404
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters as exc:
            raise Http404 from exc
        return self.export(changelist.get_queryset(request), export)


class ObjectFormMixin:
    """An admin page with a small form about one object (recharge, adjust, lock, reverse…)."""

    def object_form_view(
        self,
        request: HttpRequest,
        obj: Any,
        form_class: type[forms.Form],
        title: str,
        perform: Any,
        intro: str = "",
        submit: str = "",
    ) -> HttpResponse:
        _platform_only(request)
        form = form_class(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                text = perform(form.cleaned_data)
            except (ServiceError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, text)
                opts = self.opts  # type: ignore[attr-defined]
                return HttpResponseRedirect(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
                )
        fieldsets = [(None, {"fields": list(form.fields)})]
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": title,
            "subtitle": str(obj),
            "intro": intro,
            "submit": submit or gettext("Save"),
            "opts": self.opts,  # type: ignore[attr-defined]
            "original": obj,
            "form": form,
            "adminform": helpers.AdminForm(form, fieldsets, {}),
            "errors": helpers.AdminErrorList(form, []),
            "media": self.media + form.media,  # type: ignore[attr-defined]
        }
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        return TemplateResponse(request, FORM_TEMPLATE, context)

    def _redirect_one(self, request: HttpRequest, queryset: QuerySet, view: str) -> Any:
        """Changelist action → the object's form page (one object at a time)."""
        if queryset.count() != 1:
            self.message_user(  # type: ignore[attr-defined]
                request, gettext("Select exactly one object for this action."), messages.WARNING
            )
            return None
        opts = self.opts  # type: ignore[attr-defined]
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[queryset.get().pk])
        )


# -- Prices and capacity ------------------------------------------------------------------------


@admin.register(PriceVersion)
class PriceVersionAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """History of the price plan; a new version only takes effect in the future (no change or
    deletion of existing versions)."""

    finance_can_view = True
    list_display = (
        "effective_from",
        "state",
        "vcpu_hour",
        "ram_gib_hour",
        "disk_gib_hour",
        "domain_fee",
        "project_fee",
        "user_fee",
        "created_by",
        "created_at",
    )
    list_select_related = ("created_by",)
    date_hierarchy = "effective_from"
    search_fields = ("created_by__username",)
    rates = (
        "vcpu_hour",
        "ram_gib_hour",
        "disk_gib_hour",
        "domain_fee",
        "project_fee",
        "user_fee",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("effective_from", *self.rates)
        return ("effective_from", *self.rates, "created_by", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj) if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PriceVersion]:
        following = PriceVersion.objects.filter(effective_from__gt=OuterRef("effective_from"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                next_from=Subquery(
                    following.order_by("effective_from").values("effective_from")[:1]
                )
            )
        )

    @admin.display(description=_("state"))
    def state(self, obj: PriceVersion) -> str:
        now = timezone.now()
        if obj.effective_from > now:
            return gettext("future")
        next_from = getattr(obj, "next_from", None)
        if next_from is None or next_from > now:
            return gettext("in force")
        return gettext("past")

    def service_save(
        self, request: HttpRequest, obj: PriceVersion, form: Any, change: bool
    ) -> PriceVersion:
        data = form.cleaned_data
        return services.price_version_create(
            actor=request.user,
            effective_from=data["effective_from"],
            **{name: data[name] for name in self.rates},
        )


@admin.register(PlatformCapacity)
class PlatformCapacityAdmin(PlatformAdminMixin, admin.ModelAdmin):
    finance_can_view = True
    list_display = ("vcpus", "ram_gib", "disk_gib", "overcommit", "updated_at")
    fields = ("vcpus", "ram_gib", "disk_gib", "overcommit", "updated_at")
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # one row, created by the migration

    def service_save(
        self, request: HttpRequest, obj: PlatformCapacity, form: Any, change: bool
    ) -> PlatformCapacity:
        data = form.cleaned_data
        return services.platform_capacity_set(
            actor=request.user,
            vcpus=data["vcpus"],
            ram_gib=data["ram_gib"],
            disk_gib=data["disk_gib"],
            overcommit=data["overcommit"],
        )


# -- Wallets ------------------------------------------------------------------------------------


class WalletKindFilter(admin.SimpleListFilter):
    title = _("wallet kind")
    parameter_name = "wallet_kind"
    field = "wallet__kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return WalletKind.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class TransactionWalletKindFilter(WalletKindFilter):
    field = "transaction__wallet__kind"


class LockedFilter(admin.SimpleListFilter):
    title = _("lock state")
    parameter_name = "locked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [("yes", _("Locked")), ("no", _("Active"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(locked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(locked_at__isnull=True)
        return queryset


@admin.register(Wallet)
class WalletAdmin(ObjectFormMixin, PlatformAdminMixin, admin.ModelAdmin):
    """Balances, credit and lock state; recharge, adjust, lock and unlock through services."""

    finance_can_view = True
    change_form_template = "billing/admin/wallet_change_form.html"
    list_display = (
        "__str__",
        "kind",
        "balance",
        "available_display",
        "credit_limit",
        "credit_ceiling",
        "lock_state",
        "billing_admin",
        "unpaid_since",
    )
    list_filter = ("kind", LockedFilter, "unpaid_since")
    search_fields = (
        "domain__name",
        "domain__code",
        "project__name",
        "project__code",
        "project__domain__code",
        "billing_admin__username",
        "billing_admin__real_name",
    )
    list_select_related = ("domain", "project__domain", "billing_admin")
    autocomplete_fields = ("billing_admin",)
    fields = (
        "kind",
        "domain",
        "project",
        "balance",
        "available_display",
        "credit_limit",
        "credit_ceiling",
        "alert_threshold",
        "low_balance_alerted",
        "billing_admin",
        "locked_at",
        "lock_reason_display",
        "unpaid_since",
        "created_at",
        "ledger_link",
    )
    readonly_fields = (
        "kind",
        "domain",
        "project",
        "balance",
        "available_display",
        "low_balance_alerted",
        "locked_at",
        "lock_reason_display",
        "unpaid_since",
        "created_at",
        "ledger_link",
    )
    actions = ("recharge_action", "adjust_action", "lock_action", "unlock_action")
    service_field_map = {"credit_limit": "credit_limit", "credit_ceiling": "credit_ceiling"}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # wallets are opened with their tenant

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "billing_admin" and field is not None:
            for flag in ("can_add_related", "can_change_related", "can_delete_related"):
                setattr(field.widget, flag, False)
            field.help_text = _("One of the tenant's admins.")
        return field

    @admin.display(description=_("available"))
    def available_display(self, obj: Wallet) -> Any:
        return obj.available

    @admin.display(description=_("lock reason"))
    def lock_reason_display(self, obj: Wallet) -> str:
        return obj.lock_reason_text

    @admin.display(description=_("state"), ordering="locked_at")
    def lock_state(self, obj: Wallet) -> str:
        if obj.locked_at is None:
            return gettext("active")
        return format_html(
            '<strong class="tc-error">{}</strong> {}',
            gettext("locked"),
            obj.locked_at.strftime("%Y-%m-%d %H:%M"),
        )

    @admin.display(description=_("ledger"))
    def ledger_link(self, obj: Wallet) -> str:
        if obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}?entries__wallet__id__exact={}">{}</a>',
            reverse("admin:billing_transaction_changelist"),
            obj.pk,
            gettext("Transactions of this wallet"),
        )

    def service_save(self, request: HttpRequest, obj: Wallet, form: Any, change: bool) -> Wallet:
        data, changed = form.cleaned_data, set(form.changed_data)
        kwargs: dict[str, Any] = {}
        if "credit_ceiling" in changed:
            kwargs["credit_ceiling"] = data["credit_ceiling"]
        if "credit_limit" in changed:
            kwargs["credit_limit"] = data["credit_limit"]
        if "billing_admin" in changed and data["billing_admin"] is not None:
            kwargs["billing_admin"] = data["billing_admin"]
        if "alert_threshold" in changed:
            if data["alert_threshold"] is None:
                kwargs["clear_alert_threshold"] = True
            else:
                kwargs["alert_threshold"] = data["alert_threshold"]
        # The form's instance carries the edited values; the service reads the stored row.
        wallet = Wallet.objects.get(pk=obj.pk)
        return services.wallet_update(actor=request.user, wallet=wallet, **kwargs)

    # Object pages ------------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        views = [
            ("recharge", self.recharge_view),
            ("adjust", self.adjust_view),
            ("lock", self.lock_view),
            ("unlock", self.unlock_view),
        ]
        return [
            *[
                path(
                    f"<path:object_id>/{name}/",
                    self.admin_site.admin_view(view),
                    name="{}_{}_{}".format(*info, name),
                )
                for name, view in views
            ],
            *super().get_urls(),
        ]

    def _wallet(self, request: HttpRequest, object_id: str) -> Wallet:
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    @staticmethod
    def _tenant(wallet: Wallet) -> dict[str, Any]:
        if wallet.kind == WalletKind.PLATFORM:
            raise ServiceError(gettext("The platform wallet has no tenant to lock."))
        if wallet.project_id:
            return {"project": wallet.project}
        return {"domain": wallet.domain}

    def recharge_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._wallet(request, object_id)

        def perform(data: dict[str, Any]) -> str:
            tx = services.wallet_recharge(actor=request.user, wallet=wallet, **data)
            return gettext("Recharge #%(id)s recorded.") % {"id": tx.pk}

        return self.object_form_view(
            request,
            wallet,
            RechargeForm,
            gettext("Record a recharge"),
            perform,
            intro=gettext("Money received for this wallet: external source → wallet."),
            submit=gettext("Record recharge"),
        )

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._wallet(request, object_id)

        def perform(data: dict[str, Any]) -> str:
            tx = services.wallet_adjust(
                actor=request.user, wallet=wallet, amount=data["amount"], reason=data["reason"]
            )
            return gettext("Adjustment #%(id)s posted.") % {"id": tx.pk}

        return self.object_form_view(
            request,
            wallet,
            AdjustForm,
            gettext("Adjust the balance"),
            perform,
            intro=gettext(
                "A correction with a reason; the platform wallet is the other side of it."
            ),
            submit=gettext("Post adjustment"),
        )

    def lock_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._wallet(request, object_id)

        def perform(data: dict[str, Any]) -> str:
            enforcement.tenant_lock(
                actor=request.user, reason=data["reason"], **self._tenant(wallet)
            )
            return gettext("%(wallet)s is locked.") % {"wallet": wallet}

        return self.object_form_view(
            request,
            wallet,
            ReasonForm,
            gettext("Lock the tenant"),
            perform,
            intro=gettext("Its VMs are stopped and nothing can be created until it is unlocked."),
            submit=gettext("Lock"),
        )

    def unlock_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._wallet(request, object_id)

        def perform(data: dict[str, Any]) -> str:
            enforcement.tenant_unlock(
                actor=request.user,
                restart_servers=data["restart_servers"],
                **self._tenant(wallet),
            )
            return gettext("%(wallet)s is unlocked.") % {"wallet": wallet}

        return self.object_form_view(
            request,
            wallet,
            UnlockForm,
            gettext("Unlock the tenant"),
            perform,
            intro=gettext("Refused unless the available amount is above zero."),
            submit=gettext("Unlock"),
        )

    # Changelist actions: one wallet at a time, on its form page --------------------------------

    @admin.action(description=_("Record a recharge for the selected wallet"))
    def recharge_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._redirect_one(request, queryset, "recharge")

    @admin.action(description=_("Adjust the selected wallet (with a reason)"))
    def adjust_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._redirect_one(request, queryset, "adjust")

    @admin.action(description=_("Lock the selected wallet's tenant (with a reason)"))
    def lock_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._redirect_one(request, queryset, "lock")

    @admin.action(description=_("Unlock the selected wallet's tenant"))
    def unlock_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._redirect_one(request, queryset, "unlock")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)


# -- The ledger (read-only) ---------------------------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        roles = roles_of(request.user)
        return roles.platform or roles.finance

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ("wallet", "amount")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Entry]:
        return (
            super()
            .get_queryset(request)
            .select_related("wallet__domain", "wallet__project__domain")
        )


class ChargeLineInline(ReadOnlyInline):
    model = ChargeLine
    fields = ("start", "end", "vcpus", "ram_gib", "disk_gib", "price", "allocation", "amount")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChargeLine]:
        return super().get_queryset(request).select_related("price", "allocation")


@admin.register(Transaction)
class TransactionAdmin(ExportMixin, ObjectFormMixin, LedgerAdmin):
    change_form_template = "billing/admin/transaction_change_form.html"
    list_display = (
        "id",
        "created_at",
        "kind",
        "wallet",
        "amount",
        "period_start",
        "memo_display",
        "method",
        "reference",
        "created_by",
        "reverses",
    )
    list_display_links = ("id", "created_at")
    list_filter = ("kind", WalletKindFilter, "created_at", "method")
    search_fields = (
        "=id",
        "wallet__domain__code",
        "wallet__domain__name",
        "wallet__project__code",
        "wallet__project__name",
        "reference",
        "memo",
        "reason",
        "payer",
        "created_by__username",
    )
    list_select_related = (
        "wallet__domain",
        "wallet__project__domain",
        "created_by",
        "reverses",
    )
    date_hierarchy = "created_at"
    inlines = (EntryInline, ChargeLineInline)
    actions = ("reverse_action",)
    readonly_fields = ("amount", "memo_display")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transaction]:
        moved = (
            Entry.objects.filter(transaction=OuterRef("pk"), amount__gt=0)
            .values("transaction")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                moved=Subquery(moved, output_field=DecimalField(max_digits=18, decimal_places=4))
            )
        )

    @admin.display(description=_("amount"), ordering="moved")
    def amount(self, obj: Transaction) -> Any:
        return getattr(obj, "moved", None)

    @admin.display(description=_("memo"))
    def memo_display(self, obj: Transaction) -> str:
        return describe(obj)

    def export(self, queryset: QuerySet, export: str) -> HttpResponseBase:
        from reports.exports import transactions_export

        return transactions_export(transactions=queryset, export=export)

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        # The wallet page links here with the transactions of one wallet.
        if lookup == "entries__wallet__id__exact":
            return True
        return super().lookup_allowed(lookup, value, request)

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/reverse/",
                self.admin_site.admin_view(self.reverse_view),
                name="{}_{}_reverse".format(*info),
            ),
            *super().get_urls(),
        ]

    def reverse_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        tx = get_object_or_404(self.get_queryset(request), pk=object_id)

        def perform(data: dict[str, Any]) -> str:
            reversal = services.transaction_reverse(
                actor=request.user, tx=tx, reason=data["reason"]
            )
            return gettext("Transaction #%(id)s reverses #%(original)s.") % {
                "id": reversal.pk,
                "original": tx.pk,
            }

        return self.object_form_view(
            request,
            tx,
            ReasonForm,
            gettext("Reverse a transaction"),
            perform,
            intro=gettext(
                "Posts a new transaction with the opposite entries; the original stays as it is."
            ),
            submit=gettext("Reverse"),
        )

    @admin.action(description=_("Reverse the selected transaction (with a reason)"))
    def reverse_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._redirect_one(request, queryset, "reverse")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        tx = self.get_object(request, object_id)
        may_reverse = (
            tx is not None
            and roles_of(request.user).platform
            and tx.reverses_id is None
            and not tx.reversals.exists()
        )
        extra = {**(extra_context or {}), "may_reverse": may_reverse}
        return super().change_view(request, object_id, form_url, extra)


@admin.register(Entry)
class EntryAdmin(LedgerAdmin):
    list_display = ("id", "transaction", "transaction_kind", "wallet", "amount", "created_at")
    list_filter = ("transaction__kind", WalletKindFilter)
    search_fields = (
        "=transaction__id",
        "wallet__domain__code",
        "wallet__project__code",
        "transaction__reference",
    )
    list_select_related = ("transaction", "wallet__domain", "wallet__project__domain")

    @admin.display(description=_("kind"), ordering="transaction__kind")
    def transaction_kind(self, obj: Entry) -> str:
        return obj.transaction.get_kind_display()

    @admin.display(description=_("created at"), ordering="transaction__created_at")
    def created_at(self, obj: Entry) -> Any:
        return obj.transaction.created_at


@admin.register(ChargeLine)
class ChargeLineAdmin(ExportMixin, LedgerAdmin):
    list_display = (
        "id",
        "transaction",
        "payer",
        "start",
        "end",
        "vcpus",
        "ram_gib",
        "disk_gib",
        "price",
        "amount",
    )
    list_filter = ("transaction__kind", "start")
    search_fields = (
        "=transaction__id",
        "transaction__wallet__domain__code",
        "transaction__wallet__project__code",
    )
    list_select_related = (
        "transaction__wallet__domain",
        "transaction__wallet__project__domain",
        "price",
    )
    date_hierarchy = "start"

    @admin.display(description=_("wallet"))
    def payer(self, obj: ChargeLine) -> str:
        return str(obj.transaction.wallet)

    def export(self, queryset: QuerySet, export: str) -> HttpResponseBase:
        from reports import exports as x

        rows = queryset.order_by("start", "id").values_list(
            "id",
            "transaction_id",
            "transaction__wallet_id",
            "start",
            "end",
            "vcpus",
            "ram_gib",
            "disk_gib",
            "price__effective_from",
            "amount",
        )
        names = x._tenant_names()

        def convert(row: tuple) -> tuple:
            line, tx, wallet, start, end, vcpus, ram, disk, price_from, amount = row
            return (
                line,
                tx,
                wallet,
                names.get(wallet, ""),
                x.iso_local(start),
                x.iso_local(end),
                vcpus,
                ram,
                disk,
                x.iso_local(price_from),
                amount,
            )

        return x.export_response(
            export=export,
            filename="charge-lines",
            columns=[
                x.Column(_("Charge line"), x.NUMBER),
                x.Column(_("Transaction"), x.NUMBER),
                x.Column(_("Wallet"), x.NUMBER),
                x.Column(_("Tenant")),
                x.Column(_("From"), x.DATETIME),
                x.Column(_("To"), x.DATETIME),
                x.Column(_("vCPUs"), x.NUMBER),
                x.Column(_("RAM (GiB)"), x.NUMBER),
                x.Column(_("Disk (GiB)"), x.NUMBER),
                x.Column(_("Price plan from"), x.DATETIME),
                x.Column(_("Amount (CNY)"), x.MONEY),
            ],
            rows=map(convert, rows.iterator(chunk_size=x.CHUNK_SIZE)),
        )


@admin.register(MemberConsumption)
class MemberConsumptionAdmin(LedgerAdmin):
    list_display = ("hour", "project", "user", "amount")
    list_filter = ("hour",)
    search_fields = ("project__code", "project__name", "user__username", "user__real_name")
    list_select_related = ("project__domain", "user")
    date_hierarchy = "hour"


# -- Allocations --------------------------------------------------------------------------------


class CurrentFilter(admin.SimpleListFilter):
    title = _("current")
    parameter_name = "current"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [("yes", _("Current")), ("no", _("Ended"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(end__isnull=True)
        if self.value() == "no":
            return queryset.filter(end__isnull=False)
        return queryset


@admin.register(Allocation)
class AllocationAdmin(LedgerAdmin):
    """The allocation history (interval records, never edited). "Add" sets a new allocation
    through `allocation_set`, with a dry-run quote first if wanted."""

    list_display = (
        "level",
        "domain",
        "project",
        "user",
        "vcpus",
        "ram_gib",
        "disk_gib",
        "budget",
        "start",
        "end",
        "created_by",
    )
    list_filter = ("level", CurrentFilter, "domain", "start")
    search_fields = (
        "domain__code",
        "domain__name",
        "project__code",
        "project__name",
        "user__username",
        "user__real_name",
    )
    list_select_related = ("domain", "project__domain", "user", "created_by")
    date_hierarchy = "start"

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return roles_of(request.user).platform

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        _platform_only(request)
        form = AllocationAdminForm(request.POST if request.method == "POST" else None)
        quote = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if data["project"] is not None:
                target = services.target_of(project=data["project"])
            else:
                target = services.target_of(domain=data["domain"])
            try:
                if "_quote" in request.POST:
                    quote = services.allocation_quote(
                        actor=request.user, target=target, **form.quantities()
                    )
                else:
                    allocation = services.allocation_set(
                        actor=request.user, target=target, **form.quantities()
                    )
            except (ServiceError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                if quote is None:
                    messages.success(
                        request,
                        gettext("The allocation of %(target)s was set.")
                        % {"target": target.project or target.domain},
                    )
                    if allocation is None:
                        return HttpResponseRedirect(reverse("admin:billing_allocation_changelist"))
                    return HttpResponseRedirect(
                        reverse("admin:billing_allocation_change", args=[allocation.pk])
                    )
        fieldsets = [(None, {"fields": list(form.fields)})]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Set an allocation"),
            "subtitle": None,
            "intro": gettext(
                "Ends the current allocation of the domain or project and opens a new one. "
                "All zeros ends it. “Quote” shows the cost at today's prices and writes nothing."
            ),
            "submit": gettext("Set allocation"),
            "quote_button": True,
            "quote": quote,
            "opts": self.opts,
            "form": form,
            "adminform": helpers.AdminForm(form, fieldsets, {}),
            "errors": helpers.AdminErrorList(form, []),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, FORM_TEMPLATE, context)


class DecideRequestsMixin:
    """Approve/reject actions for pending requests: one service call per request, each refusal
    reported on its own, the rest decided."""

    def decide_one(self, request: HttpRequest, pending: Any, approve: bool) -> None:
        raise NotImplementedError

    def decided_message(self, approve: bool) -> str:
        raise NotImplementedError

    def _decide(self, request: HttpRequest, queryset: QuerySet, approve: bool) -> None:
        done = 0
        for pending in queryset.filter(status=RequestStatus.PENDING):
            try:
                self.decide_one(request, pending, approve)
            except (ServiceError, PermissionDenied) as exc:
                detail = getattr(exc, "detail", None) or str(exc)
                self.message_user(request, f"{pending}: {detail}", messages.ERROR)  # type: ignore[attr-defined]
            else:
                done += 1
        if done:
            self.message_user(  # type: ignore[attr-defined]
                request, self.decided_message(approve) % {"n": done}, messages.SUCCESS
            )


@admin.register(AllocationRequest)
class AllocationRequestAdmin(DecideRequestsMixin, LedgerAdmin):
    list_display = (
        "created_at",
        "level",
        "project",
        "membership",
        "vcpus",
        "ram_gib",
        "disk_gib",
        "budget",
        "status",
        "requested_by",
        "decided_by",
    )
    list_filter = ("status", "level", "domain", "created_at")
    search_fields = ("project__code", "project__name", "requested_by__username", "justification")
    list_select_related = (
        "project__domain",
        "membership__user",
        "membership__project",
        "requested_by",
        "decided_by",
    )
    date_hierarchy = "created_at"
    actions = ("approve", "reject")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)

    def decide_one(self, request: HttpRequest, pending: Any, approve: bool) -> None:
        from billing.requests import allocation_request_decide

        allocation_request_decide(actor=request.user, request=pending, approve=approve)

    def decided_message(self, approve: bool) -> str:
        if approve:
            return gettext("%(n)d request(s) approved.")
        return gettext("%(n)d request(s) denied.")

    @admin.action(description=_("Approve the selected requests (apply the allocations)"))
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description=_("Deny the selected requests"))
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=False)


# -- Recharge requests --------------------------------------------------------------------------


@admin.register(RechargeRequest)
class RechargeRequestAdmin(ExportMixin, DecideRequestsMixin, LedgerAdmin):
    """Requests by tenant admins; the receiving side approves (credits) or rejects them."""

    list_display = (
        "created_at",
        "wallet",
        "amount",
        "method",
        "reference",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
        "transaction",
    )
    list_filter = ("status", "method", WalletKindFilter, "created_at")
    search_fields = (
        "wallet__domain__code",
        "wallet__project__code",
        "reference",
        "requested_by__username",
    )
    list_select_related = (
        "wallet__domain",
        "wallet__project__domain",
        "requested_by",
        "decided_by",
        "transaction",
    )
    date_hierarchy = "created_at"
    actions = ("approve", "reject")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)

    def decide_one(self, request: HttpRequest, pending: Any, approve: bool) -> None:
        services.recharge_request_decide(actor=request.user, request=pending, approve=approve)

    def export(self, queryset: QuerySet, export: str) -> HttpResponseBase:
        from reports import exports as x

        rows = queryset.order_by("-created_at", "-id").values_list(
            "id",
            "created_at",
            "wallet_id",
            "amount",
            "method",
            "reference",
            "status",
            "requested_by__username",
            "decided_by__username",
            "decided_at",
            "transaction_id",
        )
        names = x._tenant_names()
        statuses = {value: str(label) for value, label in RequestStatus.choices}

        def convert(row: tuple) -> tuple:
            pk, created, wallet, amount, method, reference, status, *rest = row
            requested_by, decided_by, decided, tx = rest
            return (
                pk,
                x.iso_local(created),
                wallet,
                names.get(wallet, ""),
                amount,
                x.text(method),
                x.text(reference),
                statuses.get(status, status),
                requested_by,
                decided_by or "",
                x.iso_local(decided),
                tx,
            )

        return x.export_response(
            export=export,
            filename="recharge-requests",
            columns=[
                x.Column(_("Request"), x.NUMBER),
                x.Column(_("Created at"), x.DATETIME),
                x.Column(_("Wallet"), x.NUMBER),
                x.Column(_("Tenant")),
                x.Column(_("Amount (CNY)"), x.MONEY),
                x.Column(_("Method")),
                x.Column(_("Reference")),
                x.Column(_("Status")),
                x.Column(_("Requested by")),
                x.Column(_("Decided by")),
                x.Column(_("Decided at"), x.DATETIME),
                x.Column(_("Transaction"), x.NUMBER),
            ],
            rows=map(convert, rows.iterator(chunk_size=x.CHUNK_SIZE)),
        )

    def decided_message(self, approve: bool) -> str:
        if approve:
            return gettext("%(n)d request(s) approved.")
        return gettext("%(n)d request(s) rejected.")

    @admin.action(description=_("Approve the selected requests (credit the wallets)"))
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description=_("Reject the selected requests"))
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve=False)


# -- Locks, compute requests, notifications -----------------------------------------------------


@admin.display(description=_("reason"))
def reason_display(obj: LockPeriod | ComputeRequest) -> str:
    """A lock period's or compute request's reason in the reader's language (billing.reasons)."""
    return obj.reason_text


@admin.register(LockPeriod)
class LockPeriodAdmin(LedgerAdmin):
    list_display = ("wallet", "start", "end", reason_display, "locked_by", "unlocked_by")
    list_filter = (CurrentFilter, "start")
    search_fields = ("wallet__domain__code", "wallet__project__code", "reason")
    list_select_related = (
        "wallet__domain",
        "wallet__project__domain",
        "locked_by",
        "unlocked_by",
    )
    date_hierarchy = "start"


@admin.register(ComputeRequest)
class ComputeRequestAdmin(LedgerAdmin):
    list_display = (
        "created_at",
        "action",
        "domain",
        "project",
        "membership",
        reason_display,
        "done_at",
    )
    list_filter = ("action", "created_at")
    search_fields = ("domain__code", "project__code", "reason")
    list_select_related = ("domain", "project__domain", "membership__user", "membership__project")
    date_hierarchy = "created_at"


@admin.register(Notification)
class NotificationAdmin(LedgerAdmin):
    list_display = (
        "created_at",
        "event",
        "channel",
        "address",
        "recipient",
        "domain",
        "project",
        "subject",
        "status",
        "sent_at",
    )
    list_filter = ("event", "channel", "status", "created_at")
    search_fields = ("address", "subject", "event", "recipient__username")
    list_select_related = ("recipient", "domain", "project__domain")
    date_hierarchy = "created_at"


# -- Webhooks -----------------------------------------------------------------------------------


class WebhookForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")

    class Meta:
        model = Webhook
        fields = ("domain", "project", "url", "format", "active")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("domain")) == bool(data.get("project")):
            raise forms.ValidationError(_("Choose either a domain or a project."))
        return data


@admin.register(Webhook)
class WebhookAdmin(PlatformAdminMixin, admin.ModelAdmin):
    form = WebhookForm
    list_display = ("url", "format", "domain", "project", "active")
    list_filter = ("active", "format")
    search_fields = ("url", "domain__code", "project__code")
    list_select_related = ("domain", "project__domain")
    autocomplete_fields = ("domain", "project")

    def service_save(self, request: HttpRequest, obj: Webhook, form: Any, change: bool) -> Webhook:
        data = form.cleaned_data
        return services.webhook_set(
            actor=request.user,
            domain=data["domain"],
            project=data["project"],
            url=data["url"],
            active=data["active"],
            format=data["format"],
        )

    def service_delete(self, request: HttpRequest, obj: Webhook) -> None:
        services.webhook_delete(actor=request.user, webhook=obj)
