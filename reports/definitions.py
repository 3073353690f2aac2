"""The catalogue of reports (see reports.catalog for what a Report is). Each definition is a
scoped queryset built from the selectors plus a converter to final cells; no definition does a
query per row."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import (
    CharField,
    DateTimeField,
    DecimalField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Greatest, Least, TruncMonth
from django.utils import timezone
from django.utils.translation import gettext_lazy, pgettext_lazy

from billing.models import (
    Allocation,
    ChargeLine,
    Entry,
    Level,
    RequestStatus,
    Transaction,
    TransactionKind,
    WalletKind,
)
from billing.selectors import (
    allocations_visible_to,
    consumption_visible_to,
    holdings_visible_to,
    prices,
    recharge_requests_visible_to,
    transactions_visible_to,
    wallets_visible_to,
)
from compute.models import Server
from reports.catalog import DOMAIN, Filters, Report, register
from reports.exports import CST, DATETIME, MONEY, NUMBER, Column, iso_local, text
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
    # A reversed recharge keeps its row (the reversal is an adjustment, as on the statements);
    # the reversing transaction is named so that a reader does not count the money twice.
    reversal = Transaction.objects.filter(reverses_id=OuterRef("pk")).values("pk")[:1]
    queryset = transactions_visible_to(user).filter(kind=TransactionKind.RECHARGE)
    queryset = wallet_tenant(in_period(queryset, "created_at", filters), "wallet", filters)
    return (
        queryset.annotate(
            amount=Subquery(amount, output_field=DecimalField(max_digits=18, decimal_places=4)),
            reversed_by=Subquery(reversal),
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
            "reversed_by",
        )
        .prefetch_related(None)
    )


def _recharge_cells(row: tuple) -> tuple:
    pk, created, wallet, domain, project_domain, project, amount, payer, method, ref, by = row[:11]
    reversed_by = row[11]
    return (
        pk,
        iso_local(created),
        wallet,
        text(domain or project_domain),
        text(project),
        amount,
        text(payer),
        text(method),
        text(ref),
        by,
        reversed_by,
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
            ("reversed_by", Column(gettext_lazy("Reversed by transaction"))),
        ],
        action=Action.REPORT_TENANT,
        build=_recharges,
        convert=_recharge_cells,
        filename="recharges",
    )
)


# -- Shared pieces ------------------------------------------------------------------------------


def overlapping(queryset: QuerySet, filters: Filters) -> QuerySet:
    """Intervals [start, end) (end null: still open) that overlap the period."""
    if filters.until is not None:
        queryset = queryset.filter(start__lt=filters.until)
    if filters.since is not None:
        queryset = queryset.filter(Q(end__isnull=True) | Q(end__gt=filters.since))
    return queryset


def tenant(queryset: QuerySet, filters: Filters, *, domain: str, project: str) -> QuerySet:
    """Rows of the chosen project, else of the chosen domain (`domain`, `project`: the lookups
    to the row's domain and project)."""
    if filters.project is not None:
        return queryset.filter(**{project: filters.project})
    if filters.domain is not None:
        return queryset.filter(**{domain: filters.domain})
    return queryset


def label(choices: Any, value: str | None) -> str | None:
    """The (translated, in the current language) label of a choice."""
    return None if value is None else str(dict(choices.choices).get(value, value))


def days_since(instant: datetime | None, now: datetime) -> int | None:
    return None if instant is None else max((now - instant).days, 0)


def ratio(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    """part / whole with 4 places, None without a positive whole."""
    if part is None or not whole:
        return None
    return (part / whole).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


ZERO = Decimal("0.0000")
MONEY_OUTPUT = DecimalField(max_digits=18, decimal_places=4)  # billing.models.MONEY


# -- Charges (计费明细) ---------------------------------------------------------------------------


def _charges(user: Any, filters: Filters) -> QuerySet:
    queryset = ChargeLine.objects.filter(
        transaction__wallet_id__in=wallets_visible_to(user).values("pk")
    )
    queryset = in_period(queryset, "transaction__period_start", filters)
    queryset = wallet_tenant(queryset, "transaction__wallet", filters)
    # As on the recharges report: a reversed charge keeps its rows and names its reversal.
    reversal = Transaction.objects.filter(reverses_id=OuterRef("transaction_id")).values("pk")[:1]
    queryset = queryset.annotate(reversed_by=Subquery(reversal))
    return queryset.order_by(
        "-transaction__period_start", "-transaction_id", "start", "pk"
    ).values_list(
        "transaction_id",
        "transaction__period_start",
        "transaction__wallet_id",
        "allocation__domain__name",
        "allocation__project__name",
        "allocation_id",
        "allocation__level",
        "vcpus",
        "ram_gib",
        "disk_gib",
        "price_id",
        "price__vcpu_hour",
        "price__ram_gib_hour",
        "price__disk_gib_hour",
        "start",
        "end",
        "amount",
        "reversed_by",
    )


def _charge_cells(row: tuple) -> tuple:
    tx, hour, wallet, domain, project, allocation, level, *quantities = row[:10]
    price, vcpu, ram, disk, start, end, amount, reversed_by = row[10:]
    return (
        tx,
        iso_local(hour),
        wallet,
        text(domain),
        text(project),
        allocation,
        label(Level, level),
        amount,
        *quantities,
        price,
        vcpu,
        ram,
        disk,
        iso_local(start),
        iso_local(end),
        reversed_by,
    )


register(
    Report(
        slug="charges",
        title=gettext_lazy("Charges"),
        description=gettext_lazy(
            "Each piece of an hourly resource charge: the allocation and the price it was "
            "computed from, newest hour first."
        ),
        columns=[
            ("transaction", Column(gettext_lazy("Transaction"))),
            ("hour", Column(gettext_lazy("Charged hour"), DATETIME)),
            ("wallet", Column(gettext_lazy("Wallet"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("project", Column(gettext_lazy("Project"))),
            ("allocation", Column(gettext_lazy("Allocation"))),
            ("level", Column(gettext_lazy("Level"))),
            # The amount before its factors: it is what a reader looks for first.
            ("amount", Column(gettext_lazy("Amount (CNY)"), MONEY)),
            ("vcpus", Column(gettext_lazy("vCPUs"), NUMBER)),
            ("ram_gib", Column(gettext_lazy("RAM (GiB)"), NUMBER)),
            ("disk_gib", Column(gettext_lazy("Disk (GiB)"), NUMBER)),
            ("price", Column(gettext_lazy("Price version"))),
            ("vcpu_hour", Column(gettext_lazy("Per vCPU-hour (CNY)"), MONEY)),
            ("ram_gib_hour", Column(gettext_lazy("Per GiB-RAM-hour (CNY)"), MONEY)),
            ("disk_gib_hour", Column(gettext_lazy("Per GiB-disk-hour (CNY)"), MONEY)),
            ("start", Column(gettext_lazy("From"), DATETIME)),
            ("end", Column(gettext_lazy("To"), DATETIME)),
            ("reversed_by", Column(gettext_lazy("Reversed by transaction"))),
        ],
        action=Action.REPORT_TENANT,
        build=_charges,
        convert=_charge_cells,
        filename="charges",
    )
)


# -- Allocation history -----------------------------------------------------------------------


ALLOCATION_FIELDS = (
    "pk",
    "level",
    "domain__name",
    "project__name",
    "user__username",
    "vcpus",
    "ram_gib",
    "disk_gib",
    "budget",
    "start",
    "end",
    "created_by__username",
)


def _allocations(user: Any, filters: Filters) -> QuerySet:
    queryset = overlapping(allocations_visible_to(user), filters)
    queryset = tenant(queryset, filters, domain="domain", project="project")
    return queryset.order_by("-start", "-pk").values_list(*ALLOCATION_FIELDS)


def _allocation_cells(row: tuple) -> tuple:
    pk, level, domain, project, member, vcpus, ram, disk, budget, start, end, by = row
    return (
        pk,
        label(Level, level),
        text(domain),
        text(project),
        member,
        vcpus,
        ram,
        disk,
        budget,
        iso_local(start),
        iso_local(end),
        by,
    )


register(
    Report(
        slug="allocations",
        title=gettext_lazy("Allocation history"),
        description=gettext_lazy(
            "Each allocation interval at every level (platform → domain, domain → project, "
            "project → member), newest first; the end is empty while it is current."
        ),
        columns=[
            ("allocation", Column(gettext_lazy("Allocation"))),
            ("level", Column(gettext_lazy("Level"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("project", Column(gettext_lazy("Project"))),
            ("member", Column(gettext_lazy("Member"))),
            ("vcpus", Column(gettext_lazy("vCPUs"), NUMBER)),
            ("ram_gib", Column(gettext_lazy("RAM (GiB)"), NUMBER)),
            ("disk_gib", Column(gettext_lazy("Disk (GiB)"), NUMBER)),
            ("budget", Column(gettext_lazy("Budget (CNY)"), MONEY)),
            ("start", Column(pgettext_lazy("period", "Start"), DATETIME)),
            ("end", Column(pgettext_lazy("period", "End"), DATETIME)),
            ("created_by", Column(gettext_lazy("Set by"))),
        ],
        action=Action.REPORT_OWN,
        build=_allocations,
        convert=_allocation_cells,
        filename="allocations",
    )
)


# -- Price plan history -----------------------------------------------------------------------


def _prices(user: Any, filters: Filters) -> QuerySet:
    return (
        in_period(prices(), "effective_from", filters)
        .order_by("-effective_from", "-pk")
        .values_list(
            "pk",
            "effective_from",
            "vcpu_hour",
            "ram_gib_hour",
            "disk_gib_hour",
            "domain_fee",
            "project_fee",
            "user_fee",
            "created_by__username",
        )
    )


def _price_cells(row: tuple) -> tuple:
    return (row[0], iso_local(row[1]), *row[2:])


register(
    Report(
        slug="prices",
        title=gettext_lazy("Price plan history"),
        description=gettext_lazy(
            "Each version of the price plan with the instant it takes effect, newest first."
        ),
        columns=[
            ("price", Column(gettext_lazy("Price version"))),
            ("effective_from", Column(gettext_lazy("Effective from"), DATETIME)),
            ("vcpu_hour", Column(gettext_lazy("Per vCPU-hour (CNY)"), MONEY)),
            ("ram_gib_hour", Column(gettext_lazy("Per GiB-RAM-hour (CNY)"), MONEY)),
            ("disk_gib_hour", Column(gettext_lazy("Per GiB-disk-hour (CNY)"), MONEY)),
            ("domain_fee", Column(gettext_lazy("Domain fee per month (CNY)"), MONEY)),
            ("project_fee", Column(gettext_lazy("Project fee per month (CNY)"), MONEY)),
            ("user_fee", Column(gettext_lazy("User fee per month (CNY)"), MONEY)),
            ("created_by", Column(gettext_lazy("Set by"))),
        ],
        action=Action.REPORT_OWN,
        build=_prices,
        convert=_price_cells,
        filters=frozenset(),
        filename="prices",
    )
)


# -- Member consumption -----------------------------------------------------------------------


def _member_consumption(user: Any, filters: Filters) -> QuerySet:
    queryset = in_period(consumption_visible_to(user), "hour", filters)
    queryset = tenant(queryset, filters, domain="project__domain", project="project")
    budget = Allocation.objects.filter(
        level=Level.MEMBER,
        end__isnull=True,
        project_id=OuterRef("project_id"),
        user_id=OuterRef("user_id"),
    ).values("budget")[:1]
    return (
        queryset.values(
            "project_id", "project__name", "user_id", "user__username", "user__real_name"
        )
        .annotate(total=Sum("amount"), budget=Subquery(budget, output_field=MONEY_OUTPUT))
        .order_by("project__name", "project_id", "user__username")
        .values_list("project__name", "user__username", "user__real_name", "total", "budget")
    )


def _consumption_cells(row: tuple) -> tuple:
    project, username, real_name, total, budget = row
    return (text(project), username, text(real_name), total, budget, ratio(total, budget))


register(
    Report(
        slug="member-consumption",
        title=gettext_lazy("Member consumption"),
        description=gettext_lazy(
            "What each member's VMs consumed in a project over the period (rated at the "
            "price plan, not charged), against their current budget."
        ),
        columns=[
            ("project", Column(gettext_lazy("Project"))),
            ("username", Column(gettext_lazy("Username"))),
            ("real_name", Column(gettext_lazy("Name"))),
            ("consumption", Column(gettext_lazy("Consumption (CNY)"), MONEY)),
            ("budget", Column(gettext_lazy("Current budget (CNY)"), MONEY)),
            ("budget_used", Column(gettext_lazy("Share of budget used"), NUMBER)),
        ],
        action=Action.REPORT_OWN,
        build=_member_consumption,
        convert=_consumption_cells,
        filename="member-consumption",
    )
)


# -- VM usage ---------------------------------------------------------------------------------


def _vm_usage(user: Any, filters: Filters) -> QuerySet:
    now = timezone.now()
    until = now if filters.until is None else min(filters.until, now)
    queryset = overlapping(holdings_visible_to(user), filters)
    queryset = tenant(queryset, filters, domain="project__domain", project="project")
    name = Server.objects.filter(holding_id=OuterRef("pk")).values("name")[:1]
    moment = DateTimeField()
    window_start: Any = F("start")
    if filters.since is not None:
        window_start = Greatest("start", Value(filters.since, output_field=moment))
    return (
        queryset.annotate(
            server_name=Coalesce(Subquery(name, output_field=CharField()), "server_ref"),
            window_start=window_start,
            window_end=Least(
                Coalesce("end", Value(now, output_field=moment)), Value(until, output_field=moment)
            ),
        )
        .order_by("-start", "-pk")
        .values_list(
            "pk",
            "server_name",
            "user__username",
            "project__name",
            "vcpus",
            "ram_gib",
            "disk_gib",
            "start",
            "end",
            "window_start",
            "window_end",
        )
    )


def _hours(start: datetime, end: datetime) -> Decimal:
    seconds = max(int((end - start).total_seconds()), 0)
    return (Decimal(seconds) / Decimal(3600)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _vm_usage_cells(row: tuple) -> tuple:
    pk, server, owner, project, vcpus, ram, disk, start, end, window_start, window_end = row
    return (
        pk,
        text(server),
        owner,
        text(project),
        vcpus,
        ram,
        disk,
        iso_local(start),
        iso_local(end),
        _hours(window_start, window_end),
    )


register(
    Report(
        slug="vm-usage",
        title=gettext_lazy("VM usage"),
        description=gettext_lazy(
            "Each VM's reservation of resources overlapping the period, with the hours it "
            "held them inside the period."
        ),
        columns=[
            ("holding", Column(gettext_lazy("Holding"))),
            ("server", Column(gettext_lazy("Server"))),
            ("owner", Column(gettext_lazy("Owner"))),
            ("project", Column(gettext_lazy("Project"))),
            ("vcpus", Column(gettext_lazy("vCPUs"), NUMBER)),
            ("ram_gib", Column(gettext_lazy("RAM (GiB)"), NUMBER)),
            ("disk_gib", Column(gettext_lazy("Disk (GiB)"), NUMBER)),
            ("start", Column(pgettext_lazy("period", "Start"), DATETIME)),
            ("end", Column(pgettext_lazy("period", "End"), DATETIME)),
            ("hours", Column(gettext_lazy("Hours in the period"), NUMBER)),
        ],
        action=Action.REPORT_OWN,
        build=_vm_usage,
        convert=_vm_usage_cells,
        filename="vm-usage",
    )
)


# -- Revenue (finance) ------------------------------------------------------------------------

PLATFORM_INCOME = [TransactionKind.RESOURCE_CHARGE, TransactionKind.MANAGEMENT_FEE]


def _revenue(user: Any, filters: Filters) -> QuerySet:
    """The platform wallet's legs of resource charges and management fees (and of their
    reversals, counted against the month they reverse), per Shanghai month and paying domain:
    domain wallets pay the resource charges of their domain allocation, domain and project
    wallets pay their management fees (project wallets pay their resource charges to their
    domain, not to the platform)."""
    platform = wallets_visible_to(user).filter(kind=WalletKind.PLATFORM).values("pk")
    entries = Entry.objects.filter(wallet_id__in=platform).filter(
        Q(transaction__kind__in=PLATFORM_INCOME)
        | Q(transaction__reverses__kind__in=PLATFORM_INCOME)
    )
    entries = entries.annotate(
        income=Coalesce("transaction__reverses__kind", "transaction__kind"),
        charged=Coalesce("transaction__reverses__period_start", "transaction__period_start"),
    )
    entries = wallet_tenant(in_period(entries, "charged", filters), "transaction__wallet", filters)
    return (
        entries.annotate(
            month=TruncMonth("charged", tzinfo=CST),
            payer_domain=Coalesce(
                "transaction__wallet__domain_id", "transaction__wallet__project__domain_id"
            ),
            payer_domain_name=Coalesce(
                "transaction__wallet__domain__name", "transaction__wallet__project__domain__name"
            ),
        )
        .values("month", "payer_domain", "payer_domain_name")
        .annotate(
            resource=Sum("amount", filter=Q(income=TransactionKind.RESOURCE_CHARGE)),
            fees=Sum("amount", filter=Q(income=TransactionKind.MANAGEMENT_FEE)),
            total=Sum("amount"),
        )
        .order_by("-month", "payer_domain_name", "payer_domain")
        .values_list("month", "payer_domain_name", "resource", "fees", "total")
    )


def _revenue_cells(row: tuple) -> tuple:
    month, domain, resource, fees, total = row
    return (
        month.astimezone(CST).strftime("%Y-%m"),
        text(domain),
        resource or ZERO,
        fees or ZERO,
        total or ZERO,
    )


register(
    Report(
        slug="revenue",
        title=gettext_lazy("Revenue"),
        description=gettext_lazy(
            "What each domain paid the platform per month (Asia/Shanghai): resource charges "
            "and management fees, net of reversals, newest month first."
        ),
        columns=[
            ("month", Column(gettext_lazy("Month"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("resource_charges", Column(gettext_lazy("Resource charges (CNY)"), MONEY)),
            ("management_fees", Column(gettext_lazy("Management fees (CNY)"), MONEY)),
            ("total", Column(gettext_lazy("Total (CNY)"), MONEY)),
        ],
        action=Action.REPORT_FINANCE,
        build=_revenue,
        convert=_revenue_cells,
        filters=frozenset({DOMAIN}),
        filename="revenue",
    )
)


# -- Arrears (finance) ------------------------------------------------------------------------


def _arrears(user: Any, filters: Filters) -> QuerySet:
    queryset = (
        wallets_visible_to(user)
        .exclude(kind=WalletKind.PLATFORM)
        .filter(Q(balance__lt=0) | Q(unpaid_since__isnull=False))
    )
    queryset = in_period(queryset, "unpaid_since", filters)
    if filters.project is not None:
        queryset = queryset.filter(project=filters.project)
    elif filters.domain is not None:
        queryset = queryset.filter(Q(domain=filters.domain) | Q(project__domain=filters.domain))
    return queryset.order_by(F("unpaid_since").asc(nulls_last=True), "balance", "pk").values_list(
        "pk",
        "kind",
        "domain__name",
        "project__domain__name",
        "project__name",
        "balance",
        "credit_limit",
        "unpaid_since",
        "locked_at",
        "billing_admin__username",
    )


def _arrears_cells(row: tuple) -> tuple:
    pk, kind, domain, project_domain, project, balance, credit = row[:7]
    unpaid_since, locked_at, admin = row[7:]
    return (
        pk,
        label(WalletKind, kind),
        text(domain or project_domain),
        text(project),
        balance,
        credit,
        balance + credit,
        iso_local(unpaid_since),
        days_since(unpaid_since, timezone.now()),
        locked_at is not None,
        admin,
    )


register(
    Report(
        slug="arrears",
        title=gettext_lazy("Arrears"),
        description=gettext_lazy(
            "Each wallet in debt (negative balance or unpaid fees), oldest debt first; "
            "a period selects by the start of the unpaid run."
        ),
        columns=[
            ("wallet", Column(gettext_lazy("Wallet"))),
            ("kind", Column(gettext_lazy("Kind"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("project", Column(gettext_lazy("Project"))),
            ("balance", Column(gettext_lazy("Balance (CNY)"), MONEY)),
            ("credit_limit", Column(gettext_lazy("Credit limit (CNY)"), MONEY)),
            ("available", Column(gettext_lazy("Available (CNY)"), MONEY)),
            ("unpaid_since", Column(gettext_lazy("Unpaid since"), DATETIME)),
            ("age_days", Column(gettext_lazy("Days unpaid"), NUMBER)),
            ("locked", Column(gettext_lazy("Locked"))),
            ("billing_admin", Column(gettext_lazy("Billing admin"))),
        ],
        action=Action.REPORT_FINANCE,
        build=_arrears,
        convert=_arrears_cells,
        filename="arrears",
    )
)


# -- Pending recharge requests ----------------------------------------------------------------


def _recharge_requests(user: Any, filters: Filters) -> QuerySet:
    queryset = recharge_requests_visible_to(user).filter(status=RequestStatus.PENDING)
    queryset = wallet_tenant(in_period(queryset, "created_at", filters), "wallet", filters)
    return queryset.order_by("created_at", "pk").values_list(
        "pk",
        "wallet_id",
        "wallet__domain__name",
        "wallet__project__domain__name",
        "wallet__project__name",
        "amount",
        "method",
        "reference",
        "requested_by__username",
        "created_at",
    )


def _recharge_request_cells(row: tuple) -> tuple:
    pk, wallet, domain, project_domain, project, amount, method, reference, by, created = row
    return (
        pk,
        wallet,
        text(domain or project_domain),
        text(project),
        amount,
        text(method),
        text(reference),
        by,
        iso_local(created),
        days_since(created, timezone.now()),
    )


register(
    Report(
        slug="recharge-requests",
        title=gettext_lazy("Pending recharge requests"),
        description=gettext_lazy(
            "Each declared payment still waiting to be confirmed, oldest first."
        ),
        columns=[
            ("request", Column(gettext_lazy("Request"))),
            ("wallet", Column(gettext_lazy("Wallet"))),
            ("domain", Column(gettext_lazy("Domain"))),
            ("project", Column(gettext_lazy("Project"))),
            ("amount", Column(gettext_lazy("Amount (CNY)"), MONEY)),
            ("method", Column(gettext_lazy("Method"))),
            ("reference", Column(gettext_lazy("Reference"))),
            ("requested_by", Column(gettext_lazy("Requested by"))),
            ("created_at", Column(gettext_lazy("Requested at"), DATETIME)),
            ("waiting_days", Column(gettext_lazy("Days waiting"), NUMBER)),
        ],
        action=Action.REPORT_TENANT,
        build=_recharge_requests,
        convert=_recharge_request_cells,
        filename="recharge-requests",
    )
)
