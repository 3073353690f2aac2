"""Monthly statements (SPEC Reports, Money 1): services and selectors.

Rules (the README repeats them):

- A statement covers one wallet and one Asia/Shanghai calendar month M = [start, end).
- A ledger transaction is *booked* at its `period_start` (the hour or month a charge or fee is
  for) or, having none (recharges, adjustments, reversals), at its `created_at`.
- The statement is issued at `cutoff` (the issuing instant, after the month ended) and covers
  every entry of the wallet booked before `end` and posted (`created_at`) at or before `cutoff`
  that no earlier statement of the wallet covered. An earlier statement covered exactly the
  entries booked before its `period_end` and posted at or before its `cutoff`. So nothing is
  counted twice or lost: a charge for M posted after M's statement, or a correction posted
  later, appears on the next statement.
- opening = the previous statement's closing (or, for a wallet's first statement, the sum of its
  entries booked before `start`); closing = opening + the sum of the covered entries, which is
  the sum of every entry booked before `end` and posted at or before `cutoff`.
- Lines: resource charges the wallet paid, split by kind (vCPU, RAM, disk) and price version,
  quantities in resource-hours, unit prices copied from the price version, amounts q4 of the
  exact product; the difference to the ledger (the charges are rounded per hourly line) is its
  own "rounding" line, so the lines sum exactly to the ledger. Then charges received from
  sub-wallets, management fees paid and received, recharges, adjustments. Every line lists the
  transaction ids it sums. Money is exact (4 places) in the database and shown rounded once
  to cents (q2, half up) next to the exact figure.
- Issued statements are never changed; (wallet, month) is unique and issuing again is a no-op.
- The cutoff is never later than the start of any transaction still open on the database (minus
  a margin for clock skew): rows such a transaction writes carry a `created_at` at or after its
  start and become visible only when it commits, perhaps after the statement — so they must
  fall after the cutoff and land on the next statement rather than on neither.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Case, Count, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from billing.models import (
    ZERO,
    ChargeLine,
    Entry,
    PriceVersion,
    TransactionKind,
    Wallet,
    WalletKind,
)
from billing.money import q2, q4
from billing.notify import notify
from billing.selectors import wallets_visible_to
from reports.models import LineKind, Statement, StatementLine
from teachcloud.errors import ServiceError

log = logging.getLogger(__name__)

CST = ZoneInfo("Asia/Shanghai")
HOUR = Decimal(3600)


# -- Months -----------------------------------------------------------------------------------


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[start, end) of an Asia/Shanghai calendar month as aware instants."""
    start = datetime(month.year, month.month, 1, tzinfo=CST)
    nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=CST)


def parse_month(value: str) -> date:
    """ "YYYY-MM" → the 1st of that month, or a ServiceError."""
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m")
    except (ValueError, AttributeError) as exc:
        raise ServiceError(
            _("Give the month as YYYY-MM, e.g. 2026-10."),
            code="invalid_month",
            fields={"month": [_("Give the month as YYYY-MM, e.g. 2026-10.")]},
        ) from exc
    return date(parsed.year, parsed.month, 1)


def previous_month(now: datetime) -> date:
    """The Asia/Shanghai month before the one `now` is in."""
    local = now.astimezone(CST)
    if local.month == 1:
        return date(local.year - 1, 12, 1)
    return date(local.year, local.month - 1, 1)


# -- Selectors --------------------------------------------------------------------------------


def statements_visible_to(user: Any) -> QuerySet[Statement]:
    """Statements of the wallets the user may see (billing.selectors.wallets_visible_to)."""
    return Statement.objects.filter(wallet__in=wallets_visible_to(user)).prefetch_related("lines")


def _booked_entries(wallet: Wallet) -> QuerySet[Entry]:
    return Entry.objects.filter(wallet=wallet).annotate(
        booked=Coalesce("transaction__period_start", "transaction__created_at")
    )


def _sum(queryset: QuerySet[Entry]) -> Decimal:
    return queryset.aggregate(total=Sum("amount"))["total"] or ZERO


OPEN_TRANSACTION_MARGIN = timedelta(seconds=5)  # application vs database clock skew
OPEN_TRANSACTION_WARNING = timedelta(minutes=1)  # an older open transaction is worth a log line


def safe_cutoff(now: datetime) -> datetime:
    """`now`, or earlier: just before the oldest transaction another client session has open
    (see the module docstring). Only client backends count: autovacuum and other server
    processes never write ledger rows, and a cut-off pulled back by one of them would move a
    month's charges to the next statement for nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, xact_start, state, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            " ORDER BY xact_start LIMIT 1"
        )
        oldest = cursor.fetchone()
    if oldest is None:
        return now
    pid, started, state, application = oldest
    cutoff = min(now, started - OPEN_TRANSACTION_MARGIN)
    if cutoff < now:
        level = logging.WARNING if now - cutoff > OPEN_TRANSACTION_WARNING else logging.INFO
        log.log(
            level,
            "statement cut-off held back to %s by session %s (%s, %r) open since %s",
            cutoff.isoformat(),
            pid,
            state,
            application,
            started.isoformat(),
        )
    return cutoff


def _covered(*, end: datetime, cutoff: datetime) -> Q:
    return Q(booked__lt=end, transaction__created_at__lte=cutoff)


# -- Lines ------------------------------------------------------------------------------------


@dataclass
class _Line:
    kind: str
    name: str
    amount: Decimal
    transaction_ids: list[int]
    quantity: Decimal | None = None
    unit: str = ""
    unit_price: Decimal | None = None
    price_version_id: int | None = None


RESOURCES = (
    (LineKind.VCPU, "vcpus", "vcpu_hour"),
    (LineKind.RAM, "ram_gib", "ram_gib_hour"),
    (LineKind.DISK, "disk_gib", "disk_gib_hour"),
)


def _resource_lines(charge_ids: list[int], paid: Decimal) -> list[_Line]:
    """Charges the wallet paid, by kind and price version; `paid` is the ledger's (negative)
    total, the rounding line makes the lines sum to it exactly."""
    if not charge_ids:
        return []
    seconds: dict[tuple[int, str], int] = defaultdict(int)
    txs: dict[int, set[int]] = defaultdict(set)
    rows = ChargeLine.objects.filter(transaction_id__in=charge_ids).values_list(
        "transaction_id", "price_id", "start", "end", "vcpus", "ram_gib", "disk_gib"
    )
    for tx_id, price_id, start, end, vcpus, ram_gib, disk_gib in rows.iterator():
        span = int((end - start).total_seconds())
        counts = {"vcpus": vcpus, "ram_gib": ram_gib, "disk_gib": disk_gib}
        for kind, field, _rate in RESOURCES:
            if counts[field]:
                seconds[(price_id, kind)] += span * counts[field]
        txs[price_id].add(tx_id)
    prices = PriceVersion.objects.in_bulk({price_id for price_id, _k in seconds})
    names = {LineKind.VCPU: _("vCPU"), LineKind.RAM: _("RAM"), LineKind.DISK: _("Disk")}
    units = {LineKind.VCPU: _("vCPU-hours"), LineKind.RAM: _("GiB-hours")}
    lines: list[_Line] = []
    for price_id in sorted(prices, key=lambda pk: prices[pk].effective_from):
        price = prices[price_id]
        since = timezone.localtime(price.effective_from, CST).strftime("%Y-%m-%d")
        for kind, _field, rate_field in RESOURCES:
            total = seconds.get((price_id, kind))
            if not total:
                continue
            rate = getattr(price, rate_field)
            lines.append(
                _Line(
                    kind=kind,
                    name=_("%(resource)s (prices from %(date)s)")
                    % {"resource": names[kind], "date": since},
                    quantity=q4(Decimal(total) / HOUR),
                    unit=units.get(kind, _("GiB-hours")),
                    unit_price=rate,
                    amount=-q4(Decimal(total) * rate / HOUR),
                    transaction_ids=sorted(txs[price_id]),
                    price_version_id=price_id,
                )
            )
    rounding = paid - sum((line.amount for line in lines), ZERO)
    if rounding:
        lines.append(
            _Line(
                kind=LineKind.CHARGE_ROUNDING,
                name=_("Rounding of hourly charges"),
                amount=rounding,
                transaction_ids=sorted(charge_ids),
            )
        )
    return lines


# Which entries each kind of sum line takes: transaction kind, and whether the wallet is the
# transaction's own wallet (it paid) or received the money from another wallet's transaction.
SUM_LINES = {
    LineKind.CHARGES_RECEIVED: Q(transaction__kind=TransactionKind.RESOURCE_CHARGE, own=False),
    LineKind.FEE: Q(transaction__kind=TransactionKind.MANAGEMENT_FEE, own=True),
    LineKind.FEES_RECEIVED: Q(transaction__kind=TransactionKind.MANAGEMENT_FEE, own=False),
    LineKind.RECHARGE: Q(transaction__kind=TransactionKind.RECHARGE),
    LineKind.ADJUSTMENT: Q(transaction__kind=TransactionKind.ADJUSTMENT),
}
CHARGES_PAID = Q(transaction__kind=TransactionKind.RESOURCE_CHARGE, own=True)
# Lines whose transaction ids are stored (bounded: one per hour, payment or correction); the
# "received" lines of a domain or the platform wallet may sum millions of entries, so they
# store only their filter, which statement_line_entries() applies again.
MAX_STORED_IDS = 5000


def _with_owner(wallet: Wallet, entries: QuerySet[Entry]) -> QuerySet[Entry]:
    return entries.annotate(
        own=Case(
            When(transaction__wallet_id=wallet.pk, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


def _ids(entries: QuerySet[Entry]) -> list[int]:
    ids = list(
        entries.order_by("transaction_id").values_list("transaction_id", flat=True)[
            : MAX_STORED_IDS + 1
        ]
    )
    return [] if len(ids) > MAX_STORED_IDS else ids


def _lines(wallet: Wallet, entries: QuerySet[Entry]) -> list[_Line]:
    entries = _with_owner(wallet, entries)
    lines: list[_Line] = []
    paid = entries.filter(CHARGES_PAID)
    paid_total = _sum(paid)
    if paid_total:
        lines += _resource_lines(_ids(paid), paid_total)
    titles = {
        LineKind.CHARGES_RECEIVED: _("Resource charges received from sub-accounts"),
        LineKind.FEE: _("Management fees"),
        LineKind.FEES_RECEIVED: _("Management fees received"),
        LineKind.RECHARGE: _("Recharges"),
        LineKind.ADJUSTMENT: _("Adjustments and corrections"),
    }
    for kind, title in titles.items():
        chosen = entries.filter(SUM_LINES[kind])
        found = chosen.aggregate(total=Sum("amount"), n=Count("id"))
        if found["n"]:
            lines.append(
                _Line(kind=kind, name=title, amount=found["total"], transaction_ids=_ids(chosen))
            )
    return lines


def _statement_entries(statement: Statement) -> QuerySet[Entry]:
    """The entries a statement covers (see the module's rules)."""
    entries = _booked_entries(statement.wallet).filter(
        _covered(end=statement.period_end, cutoff=statement.cutoff)
    )
    previous = (
        statement.wallet.statements.filter(month__lt=statement.month).order_by("-month").first()
    )
    if previous is not None:
        return entries.exclude(_covered(end=previous.period_end, cutoff=previous.cutoff))
    return entries.filter(booked__gte=statement.period_start)


def statement_line_entries(line: StatementLine) -> QuerySet[Entry]:
    """The ledger entries a line sums (resource lines: the charges of its price version)."""
    entries = _with_owner(line.statement.wallet, _statement_entries(line.statement))
    if line.kind in SUM_LINES:
        return entries.filter(SUM_LINES[line.kind])
    paid = entries.filter(CHARGES_PAID)
    if line.price_version_id is not None:
        with_price = ChargeLine.objects.filter(price_id=line.price_version_id)
        paid = paid.filter(transaction__in=with_price.values("transaction_id"))
    return paid


# -- Services ---------------------------------------------------------------------------------


def _names(wallet: Wallet) -> tuple[str, str]:
    if wallet.kind == WalletKind.PLATFORM:
        return _("Platform wallet"), ""
    tenant = wallet.domain if wallet.kind == WalletKind.DOMAIN else wallet.project
    return _("Wallet of %(tenant)s") % {"tenant": tenant.name}, tenant.name


def statement_issue(
    *, wallet: Wallet, month: date, now: datetime | None = None, force: bool = False
) -> Statement | None:
    """Issue the statement of `wallet` for `month` (the 1st of a finished month).

    Returns the existing statement if one was issued (a no-op), None when the wallet had
    neither activity nor a balance (unless `force`), else the new statement."""
    now = now or timezone.now()
    start, end = month_bounds(month)
    if end > now:
        raise ServiceError(
            _("The month %(month)s is not over yet.") % {"month": f"{month:%Y-%m}"},
            code="month_not_over",
        )
    existing = Statement.objects.filter(wallet=wallet, month=month).first()
    if existing is not None:
        return existing
    if wallet.statements.filter(month__gt=month).exists():
        raise ServiceError(
            _("A later statement of this wallet was already issued; %(month)s is in it.")
            % {"month": f"{month:%Y-%m}"},
            code="statement_out_of_order",
        )
    cutoff = safe_cutoff(now)
    entries = _booked_entries(wallet)
    previous = wallet.statements.filter(month__lt=month).order_by("-month").first()
    covered = _covered(end=end, cutoff=cutoff)
    if previous is not None:
        opening = previous.closing_balance
        earlier = _covered(end=previous.period_end, cutoff=previous.cutoff)
        current = entries.filter(covered).exclude(earlier)
    else:
        opening = _sum(entries.filter(booked__lt=start, transaction__created_at__lte=cutoff))
        current = entries.filter(covered, booked__gte=start)
    with translation.override(settings.LANGUAGE_CODE):  # names in the platform's language
        lines = _lines(wallet, current)
        wallet_name, tenant_name = _names(wallet)
    if not lines and not opening and not force:
        return None
    closing = opening + sum((line.amount for line in lines), ZERO)
    try:
        with transaction.atomic():
            statement = Statement.objects.create(
                wallet=wallet,
                month=month,
                period_start=start,
                period_end=end,
                cutoff=cutoff,
                wallet_name=wallet_name[:300],
                tenant_name=tenant_name[:200],
                opening_balance=opening,
                closing_balance=closing,
                issued_at=now,
            )
            StatementLine.objects.bulk_create(
                StatementLine(
                    statement=statement,
                    position=position,
                    kind=line.kind,
                    name=line.name[:200],
                    quantity=line.quantity,
                    unit=line.unit,
                    unit_price=line.unit_price,
                    amount=line.amount,
                    transaction_ids=line.transaction_ids,
                    price_version_id=line.price_version_id,
                )
                for position, line in enumerate(lines, start=1)
            )
            _notify_ready(statement, now=now)
    except IntegrityError:  # issued concurrently: theirs stands
        return Statement.objects.get(wallet=wallet, month=month)
    return statement


def _notify_ready(statement: Statement, *, now: datetime) -> None:
    from billing.enforcement import wallet_recipients

    wallet = statement.wallet
    # The effective billing admin, else the tenant's admins (rule: billing/enforcement.py).
    recipients = wallet_recipients(wallet, statement=True)
    if not recipients:
        return
    month = f"{statement.month:%Y-%m}"
    base = settings.TEACHCLOUD_BASE_URL.rstrip("/")
    with translation.override(settings.LANGUAGE_CODE):
        body = render_to_string(
            "reports/email/statement_ready.txt",
            {
                "wallet": statement.wallet_name,
                "month": month,
                "opening": q2(statement.opening_balance),
                "closing": q2(statement.closing_balance),
                "pdf_url": base + reverse("portal:statement_pdf", args=[statement.pk]),
                "portal_url": base + reverse("portal:statement_detail", args=[statement.pk]),
            },
        )
        subject = _("Statement for %(month)s is ready: %(wallet)s") % {
            "month": month,
            "wallet": statement.wallet_name,
        }
    notify(
        event="statement_ready",
        users=recipients,
        subject=subject,
        body=body,
        domain=wallet.domain,
        project=wallet.project,
        now=now,
    )


def statements_issue(*, month: date | None = None, now: datetime | None = None) -> int:
    """Issue every wallet's statement for `month` (default: the month before `now`) that is due:
    wallets with activity or a balance. Idempotent; returns how many were newly issued."""
    now = now or timezone.now()
    month = month or previous_month(now)
    issued = 0
    for wallet in Wallet.objects.select_related("domain", "project", "billing_admin").order_by(
        "id"
    ):
        if wallet.statements.filter(month__gte=month).exists():
            continue  # issued already (or a later month was: its statement covers this one)
        if statement_issue(wallet=wallet, month=month, now=now) is not None:
            issued += 1
    log.info("statements for %s issued: %d", f"{month:%Y-%m}", issued)
    return issued


def statement_ledger_closing(statement: Statement) -> Decimal:
    """The closing balance recomputed from the ledger (the proof the statement is right)."""
    entries = _booked_entries(statement.wallet).filter(
        _covered(end=statement.period_end, cutoff=statement.cutoff)
    )
    return _sum(entries)
