"""The catalogue of reports (see reports.catalog for what a Report is). Each definition is a
scoped queryset built from the selectors plus a converter to final cells; no definition does a
query per row."""

from __future__ import annotations

from typing import Any

from django.db.models import DecimalField, OuterRef, Q, QuerySet, Subquery
from django.utils.translation import gettext_lazy

from billing.models import Entry, TransactionKind
from billing.selectors import transactions_visible_to
from reports.catalog import Filters, Report, register
from reports.exports import DATETIME, MONEY, Column, iso_local, text
from tenancy.permissions import Action


def in_period(queryset: QuerySet, field: str, filters: Filters) -> QuerySet:
    """Rows whose `field` (a datetime) falls inside the period."""
    if filters.since is not None:
        queryset = queryset.filter(**{f"{field}__gte": filters.since})
    if filters.until is not None:
        queryset = queryset.filter(**{f"{field}__lt": filters.until})
    return queryset


def wallet_tenant(queryset: QuerySet, prefix: str, filters: Filters) -> QuerySet:
    """Rows whose wallet (at `prefix`, e.g. "wallet") belongs to the chosen domain/project."""
    if filters.project is not None:
        queryset = queryset.filter(**{f"{prefix}__project": filters.project})
    elif filters.domain is not None:
        queryset = queryset.filter(
            Q(**{f"{prefix}__domain": filters.domain})
            | Q(**{f"{prefix}__project__domain": filters.domain})
        )
    return queryset


# -- Recharges (交费明细) -------------------------------------------------------------------------


def _recharges(user: Any, filters: Filters) -> QuerySet:
    amount = Entry.objects.filter(
        transaction_id=OuterRef("pk"), wallet_id=OuterRef("wallet_id")
    ).values("amount")[:1]
    queryset = transactions_visible_to(user).filter(kind=TransactionKind.RECHARGE)
    queryset = wallet_tenant(in_period(queryset, "created_at", filters), "wallet", filters)
    return (
        queryset.annotate(
            amount=Subquery(amount, output_field=DecimalField(max_digits=18, decimal_places=4))
        )
        .order_by("-created_at", "-pk")
        .values_list(
            "pk",
            "created_at",
            "wallet_id",
            "wallet__domain__name",
            "wallet__project__domain__name",
            "wallet__project__name",
            "amount",
            "payer",
            "method",
            "reference",
            "created_by__username",
        )
        .prefetch_related(None)
    )


def _recharge_cells(row: tuple) -> tuple:
    pk, created, wallet, domain, project_domain, project, amount, payer, method, ref, by = row
    return (
        pk,
        iso_local(created),
        wallet,
        text(domain or project_domain),
        text(project),
        amount,
        text(payer),
        method,
        text(ref),
        by,
    )


register(
    Report(
        slug="recharges",
        title=gettext_lazy("Recharges"),
        description=gettext_lazy("Each payment recorded into a wallet, newest first."),
        columns=[
            ("transaction", Column(gettext_lazy("Transaction"))),
            ("created_at", Column(gettext_lazy("Recorded at"), DATETIME)),
            ("wallet", Column(gettext_lazy("Wallet"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("project", Column(gettext_lazy("Project"))),
            ("amount", Column(gettext_lazy("Amount (CNY)"), MONEY)),
            ("payer", Column(gettext_lazy("Paid by"))),
            ("method", Column(gettext_lazy("Method"))),
            ("reference", Column(gettext_lazy("Reference"))),
            ("recorded_by", Column(gettext_lazy("Recorded by"))),
        ],
        action=Action.REPORT_TENANT,
        build=_recharges,
        convert=_recharge_cells,
        filename="recharges",
    )
)
