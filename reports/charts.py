"""Dashboard charts (SPEC Reports: "Dashboards show balance and spending over time as charts").

Read functions only: each returns plain dicts and lists that go to the page through Django's
`json_script` and are drawn by `static/js/charts.js` (Chart.js, vendored in
`static/vendor/chartjs/`). Every chart also carries a `table` with the same numbers, rendered as
a `<details>` table under the chart (readable without JavaScript and by screen readers).

Rules:

- Days and months are Asia/Shanghai days. "The last N days" are today and the N - 1 days
  before it.
- A ledger entry is *booked* at its transaction's `period_start` (the hour or month a charge or
  fee is for) or, having none, at its `created_at` — as on the monthly statements
  (reports.statements). The closing balance of a day is the sum of the wallet's entries booked
  before the end of that day (the opening sum before the window plus the running sum).
- Spending is what a wallet *paid*: its legs of resource charges and management fees whose
  transaction it is the payer of (`Transaction.wallet`), as a positive number; income is what it
  received from other wallets' charges and fees (a domain wallet from its projects, the
  platform wallet from the domains). A reversal (an adjustment that `reverses` a transaction)
  counts as the kind it reverses, on the day it was posted, so a reversed charge nets out.
- Members pay nothing: their figures are the rated MemberConsumption rows (Charging 3).
- Amounts are Decimal in the database and strings ("12.3400") in the chart data.
- Each function runs a fixed, small number of queries, whatever the number of days, entries,
  projects or members.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import (
    Allocation,
    Entry,
    Holding,
    Level,
    MemberConsumption,
    PlatformCapacity,
    TransactionKind,
    Wallet,
    WalletKind,
)
from tenancy import selectors as tenancy_selectors
from tenancy.models import Domain, Membership, Project

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZERO = Decimal("0.0000")
FOUR = Decimal("0.0001")
DAYS = 30
TOP = 12  # children shown by name; the rest are summed as "Others"
RESOURCES = ("vcpus", "ram_gib", "disk_gib")
PAID_KINDS = (TransactionKind.RESOURCE_CHARGE, TransactionKind.MANAGEMENT_FEE)


# -- Helpers ----------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str:
    return str((value or ZERO).quantize(FOUR))


def _window(days: int, now: datetime | None) -> tuple[list[date], datetime]:
    """The last `days` Asia/Shanghai days (oldest first) and the instant the first one starts."""
    today = (now or timezone.now()).astimezone(SHANGHAI).date()
    first = today - timedelta(days=days - 1)
    return [first + timedelta(days=i) for i in range(days)], datetime.combine(
        first, time(), tzinfo=SHANGHAI
    )


def _booked(queryset: QuerySet[Entry]) -> Any:  # QuerySet[Entry] + annotations
    """Entries with `booked` (as on statements) and `effective_kind` (a reversal counts as the
    kind of what it reverses)."""
    return queryset.annotate(
        booked=Coalesce("transaction__period_start", "transaction__created_at"),
        effective_kind=Coalesce("transaction__reverses__kind", "transaction__kind"),
    )


def _paid() -> Q:
    """The payer's legs of charges and fees (and of their reversals)."""
    return Q(effective_kind__in=PAID_KINDS, transaction__wallet_id=F("wallet_id"))


def _received() -> Q:
    return Q(effective_kind__in=PAID_KINDS) & ~Q(transaction__wallet_id=F("wallet_id"))


def _person(real_name: str, username: str) -> str:
    return f"{real_name} ({username})" if real_name else username


def _percent(part: int | Decimal, whole: int | Decimal) -> str:
    if not whole:
        return "0.0"
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1")))


def _resource_labels() -> list[str]:
    return [_("vCPU"), _("RAM (GiB)"), _("Disk (GiB)")]


def _chart(
    chart_id: str,
    *,
    kind: str,
    title: str,
    labels: list[str],
    datasets: list[dict[str, Any]],
    table: dict[str, Any],
    empty: bool,
    empty_text: str,
    note: str = "",
    **options: bool,
) -> dict[str, Any]:
    """One chart as charts.js reads it (`kind` is the Chart.js type: bar, line or doughnut;
    options: stacked, horizontal, percent, money)."""
    return {
        "id": chart_id,
        "data_id": f"{chart_id}-data",
        "type": kind,
        "title": title,
        "note": note,
        "empty": empty,
        "empty_text": empty_text,
        "labels": labels,
        "datasets": datasets,
        "options": {
            "stacked": False,
            "horizontal": False,
            "percent": False,
            "money": False,
            **options,
        },
        "table": table,
    }


def _top(rows: list[dict[str, Any]], limit: int = TOP) -> list[dict[str, Any]]:
    """The `limit` largest rows by name; the rest summed into one "Others" row."""
    rows = sorted(rows, key=lambda r: (-r["value"], r["name"]))
    if len(rows) <= limit + 1:
        return rows
    rest = rows[limit:]
    others = {
        "id": None,
        "name": _("Others (%(count)d)") % {"count": len(rest)},
        "value": sum((r["value"] for r in rest), ZERO),
    }
    return [*rows[:limit], others]


# -- Balance and spending over time -----------------------------------------------------------


def wallet_history(
    *, wallet: Wallet, days: int = DAYS, now: datetime | None = None
) -> dict[str, Any]:
    """The wallet's last `days` days: closing balance, spending (charges and fees paid), income
    (charges and fees received from sub-wallets) and recharges per day (2 queries).

    Returns {"days": [{"date", "balance", "spending", "income", "recharges"}], "empty",
    "balance": chart, "spending": chart}."""
    dates, start = _window(days, now)
    entries = _booked(Entry.objects.filter(wallet=wallet))
    before = entries.filter(booked__lt=start).aggregate(total=Sum("amount"), count=Count("id"))
    per_day: dict[date, dict[str, Any]] = {
        row["day"]: row
        for row in entries.filter(booked__gte=start)
        .annotate(day=TruncDate("booked", tzinfo=SHANGHAI))
        .values("day")
        .annotate(
            total=Sum("amount"),
            paid=Sum("amount", filter=_paid()),
            received=Sum("amount", filter=_received()),
            recharged=Sum("amount", filter=Q(effective_kind=TransactionKind.RECHARGE)),
        )
        .order_by()
    }
    balance = before["total"] or ZERO
    rows = []
    for day in dates:
        row = per_day.get(day, {})
        balance += row.get("total") or ZERO
        rows.append(
            {
                "date": day.isoformat(),
                "balance": _money(balance),
                "spending": _money(-(row.get("paid") or ZERO)),
                "income": _money(row.get("received")),
                "recharges": _money(row.get("recharged")),
            }
        )
    empty = not before["count"] and not per_day
    labels = [day.strftime("%m-%d") for day in dates]
    balance_chart = _chart(
        "chart-balance",
        kind="line",
        title=_("Balance at the end of each day, last %(days)d days") % {"days": days},
        labels=labels,
        datasets=[{"label": _("Balance"), "data": [r["balance"] for r in rows]}],
        table={
            "columns": [_("Day"), _("Balance"), _("Recharges")],
            "rows": [[r["date"], r["balance"], r["recharges"]] for r in rows],
        },
        empty=empty,
        empty_text=_(
            "The balance appears here day by day once the wallet has its first recharge or charge."
        ),
        money=True,
    )
    if wallet.kind == WalletKind.PLATFORM:
        series = [("income", _("Revenue (charges and fees received)"))]
        title = _("Revenue per day, last %(days)d days")
    elif wallet.kind == WalletKind.DOMAIN:
        series = [
            ("spending", _("Paid to the platform")),
            ("income", _("Received from projects")),
        ]
        title = _("Spending and income per day, last %(days)d days")
    else:
        series = [("spending", _("Paid to the domain"))]
        title = _("Spending per day, last %(days)d days")
    spending_chart = _chart(
        "chart-spending",
        kind="bar",
        title=title % {"days": days},
        labels=labels,
        datasets=[{"label": label, "data": [r[key] for r in rows]} for key, label in series],
        table={
            "columns": [_("Day"), *(label for _key, label in series)],
            "rows": [[r["date"], *(r[key] for key, _label in series)] for r in rows],
        },
        empty=empty or all(Decimal(r[key]) == 0 for r in rows for key, _label in series),
        empty_text=_(
            "Spending appears here once hourly charges or monthly fees have been booked in the "
            "last %(days)d days."
        )
        % {"days": days},
        money=True,
    )
    return {"days": rows, "empty": empty, "balance": balance_chart, "spending": spending_chart}


# -- Spending by project, member or domain ----------------------------------------------------


def spending_by_child(
    *,
    domain: Domain | None = None,
    project: Project | None = None,
    platform: bool = False,
    days: int = DAYS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Spending over the last `days` days split by child (1 query): for the platform by domain
    (what each domain paid the platform: its domain wallet, and its projects' fees), for a
    domain by project (what each project wallet paid), for a project by member (their rated
    consumption). Rows with nothing are left out.

    The chart dict carries "rows" [{"id", "name", "amount"}] (largest first, the tail summed
    as "Others") and "total"."""
    _dates, start = _window(days, now)
    if project is not None:
        grouped = (
            MemberConsumption.objects.filter(project=project, hour__gte=start)
            .values("user_id", "user__username", "user__real_name")
            .annotate(total=Sum("amount"))
            .order_by()
        )
        rows = [
            {
                "id": r["user_id"],
                "name": _person(r["user__real_name"], r["user__username"]),
                "value": r["total"] or ZERO,
            }
            for r in grouped
        ]
        chart_id, kind = "chart-spending-by-member", "bar"
        title = _("Consumption by member, last %(days)d days")
        child = _("Member")
        empty_text = _(
            "Each member's consumption appears here once their VMs have run for an hour."
        )
    else:
        payers = _booked(Entry.objects.all()).filter(_paid(), booked__gte=start)
        if platform:
            # Domain wallets pay the platform their charges and fees; project wallets pay it
            # their management fees (their resource charges go to their domain): by domain.
            payers = payers.filter(
                Q(wallet__kind=WalletKind.DOMAIN)
                | Q(wallet__kind=WalletKind.PROJECT, effective_kind=TransactionKind.MANAGEMENT_FEE)
            ).annotate(
                payer_domain=Coalesce("wallet__domain_id", "wallet__project__domain_id"),
                payer_domain_name=Coalesce("wallet__domain__name", "wallet__project__domain__name"),
            )
            key, name = "payer_domain", "payer_domain_name"
            chart_id = "chart-spending-by-domain"
            title = _("Paid to the platform by domain, last %(days)d days")
            child = _("Domain")
            empty_text = _(
                "What each domain pays appears here once hourly charges or monthly fees have "
                "been booked."
            )
        elif domain is not None:
            payers = payers.filter(wallet__kind=WalletKind.PROJECT, wallet__project__domain=domain)
            key, name = "wallet__project_id", "wallet__project__name"
            chart_id = "chart-spending-by-project"
            title = _("Spending by project, last %(days)d days")
            child = _("Project")
            empty_text = _(
                "What each project pays appears here once its hourly charges or monthly fees "
                "have been booked."
            )
        else:
            raise ValueError("spending_by_child needs a domain, a project or platform=True")
        grouped = payers.values(key, name).annotate(total=Sum("amount")).order_by()
        rows = [{"id": r[key], "name": r[name], "value": -(r["total"] or ZERO)} for r in grouped]
        kind = "doughnut"
    rows = _top([r for r in rows if r["value"] != 0])
    out = [{"id": r["id"], "name": r["name"], "amount": _money(r["value"])} for r in rows]
    total = sum((r["value"] for r in rows), ZERO)
    label = _("Consumption") if project is not None else _("Spending")
    chart = _chart(
        chart_id,
        kind=kind,
        title=title % {"days": days},
        labels=[r["name"] for r in out],
        datasets=[{"label": label, "data": [r["amount"] for r in out]}],
        table={
            "columns": [child, label],
            "rows": [[r["name"], r["amount"]] for r in out],
            "footer": [_("Total"), _money(total)],
        },
        empty=not out,
        empty_text=empty_text,
        money=True,
        horizontal=kind == "bar",
    )
    chart["rows"] = out
    chart["total"] = _money(total)
    return chart


# -- Allocation used / held / free ------------------------------------------------------------


def _sums(queryset: QuerySet[Any], **filters: Q) -> dict[str, dict[str, int]]:
    """Per named filter, the sums of vCPU/RAM/disk (one aggregate query)."""
    totals = queryset.aggregate(
        **{
            f"{name}__{r}": Sum(r, filter=condition)
            for name, condition in filters.items()
            for r in RESOURCES
        }
    )
    return {name: {r: int(totals[f"{name}__{r}"] or 0) for r in RESOURCES} for name in filters}


def allocation_usage(
    *, domain: Domain | None = None, project: Project | None = None, platform: bool = False
) -> dict[str, Any]:
    """vCPU, RAM and disk at one level (2 queries at most), as a stacked bar in percent of the
    total (the absolute figures in the tooltips and the table):

    - platform: capacity × overcommit vs allocated to domains vs free;
    - domain: its allocation vs allocated to its projects vs free;
    - project: its allocation vs held by running VMs (open holdings) vs free, and the member
      limits given out (a limit is a ceiling, not a use: in the table and the note).

    The chart dict carries "resources" [{"resource", "total", "used", "free", "limits"?}]."""
    limits: dict[str, int] | None = None
    if platform:
        capacity = PlatformCapacity.objects.filter(pk=1).first()
        total = {
            r: int(getattr(capacity, r) * capacity.overcommit) if capacity else 0 for r in RESOURCES
        }
        used = _sums(Allocation.objects.filter(end__isnull=True), used=Q(level=Level.DOMAIN))[
            "used"
        ]
        total_label, used_label = _("Capacity × overcommit"), _("Allocated to domains")
        empty_text = _("Set the platform capacity in the administration to see it used here.")
    elif domain is not None:
        sums = _sums(
            Allocation.objects.filter(domain=domain, end__isnull=True),
            total=Q(level=Level.DOMAIN),
            used=Q(level=Level.PROJECT),
        )
        total, used = sums["total"], sums["used"]
        total_label, used_label = _("Domain allocation"), _("Allocated to projects")
        empty_text = _(
            "The domain has no allocation yet: once the platform allocates resources, their use "
            "appears here."
        )
    elif project is not None:
        sums = _sums(
            Allocation.objects.filter(project=project, end__isnull=True),
            total=Q(level=Level.PROJECT),
            limits=Q(level=Level.MEMBER),
        )
        total, limits = sums["total"], sums["limits"]
        used = _sums(Holding.objects.filter(project=project, end__isnull=True), used=Q())["used"]
        total_label, used_label = _("Project allocation"), _("Held by running VMs")
        empty_text = _(
            "The project has no allocation yet: once the domain allocates resources, what the "
            "VMs hold appears here."
        )
    else:
        raise ValueError("allocation_usage needs a domain, a project or platform=True")
    return _usage_chart(
        "chart-allocation",
        title=_("Allocation used and free"),
        total=total,
        used=used,
        total_label=total_label,
        used_label=used_label,
        empty_text=empty_text,
        limits=limits,
    )


def _usage_chart(
    chart_id: str,
    *,
    title: str,
    total: dict[str, int],
    used: dict[str, int],
    total_label: str,
    used_label: str,
    empty_text: str,
    limits: dict[str, int] | None = None,
) -> dict[str, Any]:
    free = {r: max(total[r] - used[r], 0) for r in RESOURCES}
    labels = _resource_labels()
    resources = []
    rows = []
    for r, label in zip(RESOURCES, labels, strict=True):
        item = {"resource": r, "total": total[r], "used": used[r], "free": free[r]}
        row: list[Any] = [label, total[r], used[r], free[r]]
        if limits is not None:
            item["limits"] = limits[r]
            row.append(limits[r])
        resources.append(item)
        rows.append(row)
    columns = [_("Resource"), total_label, used_label, _("Free")]
    note = ""
    if limits is not None:
        columns.append(_("Member limits given out"))
        note = _(
            "Member limits given out: %(v)s vCPU, %(r)s GiB RAM, %(d)s GiB disk (a limit is a "
            "ceiling for one member, not a use)."
        ) % {"v": limits["vcpus"], "r": limits["ram_gib"], "d": limits["disk_gib"]}
    chart = _chart(
        chart_id,
        kind="bar",
        title=title,
        labels=labels,
        datasets=[
            {
                "label": used_label,
                "data": [_percent(used[r], total[r]) for r in RESOURCES],
                "raw": [used[r] for r in RESOURCES],
                "of": [total[r] for r in RESOURCES],
            },
            {
                "label": _("Free"),
                "data": [_percent(free[r], total[r]) for r in RESOURCES],
                "raw": [free[r] for r in RESOURCES],
                "of": [total[r] for r in RESOURCES],
            },
        ],
        table={"columns": columns, "rows": rows},
        empty=not any(total.values()),
        empty_text=empty_text,
        note=note,
        stacked=True,
        horizontal=True,
        percent=True,
    )
    chart["resources"] = resources
    return chart


# -- Member consumption against budget --------------------------------------------------------


def _budget_percent(consumption: Decimal, budget: Decimal | None) -> str | None:
    if budget is None:
        return None
    if budget <= 0:
        return "100.0" if consumption > 0 else "0.0"
    return _percent(consumption, budget)


def member_budgets(*, project: Project) -> dict[str, Any]:
    """Each active member's consumption so far (tenancy.selectors.with_consumption, the figure of
    the member table) against their budget (2 queries). The chart dict carries "members"
    [{"user_id", "name", "consumption", "budget", "percent"}] (budget/percent None: no budget)."""
    memberships = tenancy_selectors.with_consumption(
        Membership.objects.active().filter(project=project).select_related("user")
    ).order_by("user__username")
    budgets = dict(
        Allocation.objects.filter(level=Level.MEMBER, project=project, end__isnull=True)
        .order_by()
        .values_list("user_id", "budget")
    )
    members: list[dict[str, Any]] = []
    for m in memberships:
        consumption = tenancy_selectors.membership_consumption(m)
        budget = budgets.get(m.user_id)
        members.append(
            {
                "user_id": m.user_id,
                "name": _person(m.user.real_name, m.user.username),
                "consumption": _money(consumption),
                "budget": _money(budget) if budget is not None else None,
                "percent": _budget_percent(consumption, budget),
            }
        )
    chart = _chart(
        "chart-budgets",
        kind="bar",
        title=_("Member consumption against budget"),
        labels=[m["name"] for m in members],
        datasets=[
            {"label": _("Consumption"), "data": [m["consumption"] for m in members]},
            {"label": _("Budget"), "data": [m["budget"] for m in members]},
        ],
        table={
            "columns": [_("Member"), _("Consumption"), _("Budget"), _("Used (%)")],
            "rows": [
                [m["name"], m["consumption"], m["budget"] or "–", m["percent"] or "–"]
                for m in members
            ],
        },
        empty=not members,
        empty_text=_("Members' consumption and budgets appear here once the project has members."),
        note=_("A member without a budget has no budget bar."),
        money=True,
        horizontal=True,
    )
    chart["members"] = members
    return chart


# -- The member's own usage -------------------------------------------------------------------


def member_usage_history(
    *, user: Any, days: int = DAYS, now: datetime | None = None
) -> list[dict[str, Any]]:
    """For each project the user is an active member of (4 queries in all): their consumption
    per day over the last `days` days, the running total so far against their budget, and
    their limit against what their running VMs hold.

    Returns [{"project_id", "project", "days": [{"date", "consumption", "total"}], "total",
    "budget", "consumption": chart, "limit": chart}]."""
    dates, start = _window(days, now)
    memberships = list(
        tenancy_selectors.with_consumption(
            Membership.objects.active().filter(user=user).select_related("project")
        ).order_by("project__name", "project_id")
    )
    limits = {
        a.project_id: a
        for a in Allocation.objects.filter(level=Level.MEMBER, user=user, end__isnull=True)
        .order_by()
        .only("project_id", *RESOURCES, "budget")
    }
    daily: dict[tuple[int, date], Decimal] = {
        (r["project_id"], r["day"]): r["total"] or ZERO
        for r in MemberConsumption.objects.filter(user=user, hour__gte=start)
        .annotate(day=TruncDate("hour", tzinfo=SHANGHAI))
        .values("project_id", "day")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    held_totals: Any = (
        Holding.objects.filter(user=user, end__isnull=True)
        .values("project_id")
        .annotate(**{r: Sum(r) for r in RESOURCES})
        .order_by()
    )
    held = {h["project_id"]: {r: int(h[r] or 0) for r in RESOURCES} for h in held_totals}
    labels = [day.strftime("%m-%d") for day in dates]
    out = []
    for m in memberships:
        pid = m.project_id
        total = tenancy_selectors.membership_consumption(m)
        in_window = sum((daily.get((pid, day), ZERO) for day in dates), ZERO)
        running = total - in_window  # consumption before the window
        rows = []
        for day in dates:
            amount = daily.get((pid, day), ZERO)
            running += amount
            rows.append(
                {"date": day.isoformat(), "consumption": _money(amount), "total": _money(running)}
            )
        limit = limits.get(pid)
        budget = limit.budget if limit else None
        datasets: list[dict[str, Any]] = [
            {"label": _("Consumption that day"), "data": [r["consumption"] for r in rows]},
            {"label": _("Total so far"), "data": [r["total"] for r in rows], "type": "line"},
        ]
        columns = [_("Day"), _("Consumption that day"), _("Total so far")]
        if budget is not None:
            datasets.append(
                {
                    "label": _("Budget"),
                    "data": [_money(budget)] * len(rows),
                    "type": "line",
                    "dashed": True,
                }
            )
        consumption_chart = _chart(
            f"chart-usage-{pid}",
            kind="bar",
            title=_("My consumption in %(project)s, last %(days)d days")
            % {"project": m.project.name, "days": days},
            labels=labels,
            datasets=datasets,
            table={
                "columns": columns,
                "rows": [[r["date"], r["consumption"], r["total"]] for r in rows],
            },
            empty=total == 0,
            empty_text=_(
                "Your consumption appears here once one of your VMs in this project has run for "
                "an hour."
            ),
            note=(
                _("Budget: ¥%(budget)s; used so far: ¥%(total)s (%(percent)s %%).")
                % {
                    "budget": _money(budget),
                    "total": _money(total),
                    "percent": _budget_percent(total, budget),
                }
                if budget is not None
                else _("No budget is set for you in this project.")
            ),
            money=True,
        )
        limit_chart = _usage_chart(
            f"chart-limit-{pid}",
            title=_("My limit and what my running VMs hold"),
            total=_allocation_totals(limit),
            used=held.get(pid, dict.fromkeys(RESOURCES, 0)),
            total_label=_("My limit"),
            used_label=_("Held by my running VMs"),
            empty_text=_("You have no limit in this project yet: ask the project's staff."),
        )
        out.append(
            {
                "project_id": pid,
                "project": m.project.name,
                "days": rows,
                "total": _money(total),
                "budget": _money(budget) if budget is not None else None,
                "consumption": consumption_chart,
                "limit": limit_chart,
            }
        )
    return out


def _allocation_totals(allocation: Allocation | None) -> dict[str, int]:
    return {r: getattr(allocation, r) if allocation else 0 for r in RESOURCES}


# -- Page bundles (what the views put in their context as `charts`) ---------------------------


def platform_charts(*, now: datetime | None = None) -> dict[str, Any]:
    """The platform/finance dashboard: platform revenue over time, what each domain paid, and
    the allocation against capacity."""
    # Before the first charge the platform wallet may not exist yet: an id no entry has.
    wallet = Wallet.objects.filter(kind=WalletKind.PLATFORM).first() or Wallet(
        kind=WalletKind.PLATFORM, pk=0
    )
    history = wallet_history(wallet=wallet, now=now)
    return {
        "balance": history["balance"],
        "spending": history["spending"],
        "by_child": spending_by_child(platform=True, now=now),
        "allocation": allocation_usage(platform=True),
    }


def domain_charts(*, domain: Domain, wallet: Wallet, now: datetime | None = None) -> dict[str, Any]:
    history = wallet_history(wallet=wallet, now=now)
    return {
        "balance": history["balance"],
        "spending": history["spending"],
        "by_child": spending_by_child(domain=domain, now=now),
        "allocation": allocation_usage(domain=domain),
    }


def project_charts(
    *, project: Project, wallet: Wallet, now: datetime | None = None
) -> dict[str, Any]:
    history = wallet_history(wallet=wallet, now=now)
    return {
        "balance": history["balance"],
        "spending": history["spending"],
        "by_child": spending_by_child(project=project, now=now),
        "allocation": allocation_usage(project=project),
        "budgets": member_budgets(project=project),
    }


def my_usage_charts(*, user: Any, now: datetime | None = None) -> dict[str, Any]:
    return {"projects": member_usage_history(user=user, now=now)}
