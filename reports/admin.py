"""Django admin of reports: issued monthly statements, read-only for platform and finance staff,
exported as CSV or XLSX (statements are issued by `statements_issue`, never edited here)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http.response import HttpResponseBase
from django.utils.translation import gettext_lazy as _

from billing.admin import ExportMixin, LedgerAdmin, ReadOnlyInline
from reports import exports as x
from reports.models import ExportJob, Statement, StatementLine
from tenancy.admin import PlatformAdminMixin


class StatementLineInline(ReadOnlyInline):
    model = StatementLine
    fields = ("position", "kind", "name", "quantity", "unit", "unit_price", "amount")
    readonly_fields = fields


@admin.register(Statement)
class StatementAdmin(ExportMixin, LedgerAdmin):
    list_display = (
        "month",
        "wallet_name",
        "tenant_name",
        "opening_balance",
        "closing_balance",
        "issued_at",
    )
    list_filter = ("month", "wallet__kind")
    search_fields = ("wallet_name", "tenant_name")
    date_hierarchy = "period_start"
    inlines = (StatementLineInline,)

    def export(self, queryset: QuerySet, export: str) -> HttpResponseBase:
        rows = queryset.order_by("-month", "wallet_id").values_list(
            "id",
            "month",
            "wallet_id",
            "wallet_name",
            "tenant_name",
            "opening_balance",
            "closing_balance",
            "issued_at",
        )

        def convert(row: tuple) -> tuple:
            pk, month, wallet, wallet_name, tenant_name, opening, closing, issued = row
            return (
                pk,
                month.strftime("%Y-%m"),
                wallet,
                x.text(wallet_name),
                x.text(tenant_name),
                opening,
                closing,
                x.iso_local(issued),
            )

        return x.export_response(
            export=export,
            filename="statements",
            columns=[
                x.Column(_("Statement"), x.NUMBER),
                x.Column(_("Month")),
                x.Column(_("Wallet"), x.NUMBER),
                x.Column(_("Wallet name")),
                x.Column(_("Tenant")),
                x.Column(_("Opening balance (CNY)"), x.MONEY),
                x.Column(_("Closing balance (CNY)"), x.MONEY),
                x.Column(_("Issued at"), x.DATETIME),
            ],
            rows=map(convert, rows.iterator(chunk_size=x.CHUNK_SIZE)),
        )


@admin.register(ExportJob)
class ExportJobAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Background exports, for platform staff looking into a slow or failed one (read-only: a
    job is run by its task and expired by beat)."""

    read_only = True
    list_display = ("created_at", "owner", "report", "format", "status", "rows_done", "rows_total")
    list_filter = ("status", "format", "report")
    search_fields = ("owner__username", "report")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]
