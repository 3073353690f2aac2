"""The charging engine (SPEC Charging 1–5, Prices 2, Money 1–3): hourly resource charges, member
rating, monthly management fees, and `billing_run`, the one entry point that runs what is due.

Rules (the README repeats them):

- Hours are whole clock hours [H, H+1h) (UTC hours are Asia/Shanghai hours: +08:00). A run charges
  every complete hour (H + 1h ≤ `until`) not yet charged — catch-up after downtime is the same
  code as the hourly run.
- Time is counted in whole seconds: every boundary (allocation start/end, price `effective_from`,
  lock start/end) is truncated to its second before anything is computed.
- Each domain wallet pays for its domain allocation (domain wallet → platform wallet) and each
  project wallet for its project allocation (project wallet → its domain's wallet). Member
  allocations are limits and cost nothing.
- An hour of a wallet is split at allocation changes and price-version changes; each piece is a
  ChargeLine with its allocation and price. **Line amount = q4(seconds × (vcpu_hour × vcpus +
  ram_gib_hour × ram_gib + disk_gib_hour × disk_gib) / 3600)** — computed exactly in Decimal /
  numeric and rounded once, half up (billing.money.q4). The transaction total is the sum of its
  lines. Lines of zero amount are not written; an hour whose total is zero creates no transaction.
- Locked seconds are not charged: the LockPeriod intervals of the wallet are subtracted, and a
  *domain* lock also stops the resource charges of all projects of that domain (their VMs are
  stopped too). A lock that falls inside a piece splits it into several lines.
- Exactly once: (wallet, resource_charge, H) is unique in the database; inserts use ON CONFLICT
  DO NOTHING and the balances move only by the entries actually inserted, in the same
  transaction. Each hour is one transaction (committed before the next hour starts), serialised
  between concurrent runs by a PostgreSQL advisory lock on that hour, so a killed run loses at
  most the hour it was writing and a rerun or a second run writes nothing twice.
- Which hours are scanned: from the hour after the last charged hour (the ledger is written hour
  by hour in order, so every earlier hour was complete) — or from the first allocation start if
  nothing was ever charged — but never before the earliest allocation still open then.
- Member rating (Charging 3): each member's VM holdings are rated per hour at the same prices —
  per holding and price piece q4(seconds × rate / 3600), summed per (project, user, hour) into one
  MemberConsumption row (unique); no money moves. Tenant locks are subtracted as from resource
  charges (same code): the seconds while the holding's project wallet or its domain's wallet has
  an open LockPeriod are not rated, and a lock inside a piece splits it (each part rounded on its
  own). A lock stops the VMs but does not end their holdings (only deleting the VM or a failed
  build does), so without this members would come back from an unlock over budget. A member's
  own budget lock is not subtracted: it records no LockPeriod, and the stopped VMs keep their
  resources.
- Management fees (Charging 4): at 00:00 on the 1st of each month, Asia/Shanghai, S, for what
  exists at S (created before S, not purged): the domain fee from each domain wallet; the project
  fee plus the user fee × every membership of the project (any role) from each project wallet;
  all to the platform wallet, at the price version in force at S. One management_fee
  transaction per (wallet, month), period_start = S; fees continue while locked. A membership
  removed after S but before the run that charges S is no longer counted (rows are deleted).
- Each hour, month and rating hour is one set-based PostgreSQL statement (CTEs; INSERT … SELECT …
  RETURNING). `billing/tests/oracle.py` is the independent, slow check of what they write.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import (
    Allocation,
    Holding,
    Level,
    MemberConsumption,
    Transaction,
    TransactionKind,
)
from billing.money import q4
from teachcloud.locks import xact_lock

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
ZERO = Decimal("0.0000")
PAUSE_ENV = "TEACHCLOUD_BILLING_BATCH_PAUSE"  # seconds to sleep between hours (tests of kills)
LOCK_CHARGE, LOCK_RATE, LOCK_FEE = 73_001, 73_002, 73_003  # advisory lock namespaces


# -- Time -------------------------------------------------------------------------------------


def floor_second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def month_start(instant: datetime) -> datetime:
    """00:00 on the 1st of the Asia/Shanghai month containing `instant`."""
    local = instant.astimezone(SHANGHAI)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    local = start.astimezone(SHANGHAI)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return local.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)


def _hours(first: datetime | None, until: datetime) -> list[datetime]:
    """Complete hours [H, H+1h) with H ≥ first and H + 1h ≤ until."""
    if first is None:
        return []
    hours, hour, last = [], floor_hour(first), floor_hour(until)
    while hour < last:
        hours.append(hour)
        hour += HOUR
    return hours


def _pause() -> None:
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    if pause > 0:
        time.sleep(pause)


def _advisory_lock(namespace: int, instant: datetime) -> None:
    """Serialise the runs that write the hour (or month) starting at `instant`."""
    xact_lock(namespace, int(instant.timestamp() // 3600))


# -- Resource charges -------------------------------------------------------------------------


def charge_hours_due(*, until: datetime) -> list[datetime]:
    """The hours a run up to `until` has to look at (see the module docstring)."""
    last = Transaction.objects.filter(kind=TransactionKind.RESOURCE_CHARGE).aggregate(
        h=Max("period_start")
    )["h"]
    after = last + HOUR if last else None
    allocations = Allocation.objects.filter(level__in=[Level.DOMAIN, Level.PROJECT])
    if after is not None:
        allocations = allocations.filter(Q(end__isnull=True) | Q(end__gt=after))
    first = allocations.aggregate(s=Min("start"))["s"]
    if first is None:
        return []
    first = floor_hour(first)
    if after is not None:
        first = max(first, after)
    return _hours(first, until)


# The tenant locks of the hour, shared by the charge and the rating statements: `lockagg` holds,
# per wallet, the union of its LockPeriods clipped to [h0, h1) and truncated to the second; a
# project wallet's includes its domain wallet's locks (a domain lock stops its projects too).
_LOCKS_SQL = """
locks AS (
    SELECT lp.wallet_id,
           greatest(date_trunc('second', lp.start), %(h0)s) AS s,
           least(coalesce(date_trunc('second', lp."end"), %(h1)s), %(h1)s) AS e
    FROM billing_lockperiod lp
    WHERE lp.start < %(h1)s AND (lp."end" IS NULL OR lp."end" > %(h0)s)
    UNION ALL
    SELECT pw.id,
           greatest(date_trunc('second', lp.start), %(h0)s),
           least(coalesce(date_trunc('second', lp."end"), %(h1)s), %(h1)s)
    FROM billing_lockperiod lp
    JOIN billing_wallet dw ON dw.id = lp.wallet_id AND dw.kind = 'domain'
    JOIN tenancy_project p ON p.domain_id = dw.domain_id
    JOIN billing_wallet pw ON pw.project_id = p.id
    WHERE lp.start < %(h1)s AND (lp."end" IS NULL OR lp."end" > %(h0)s)
),
lockagg AS (
    SELECT wallet_id, range_agg(tstzrange(s, e)) AS m FROM locks WHERE s < e GROUP BY wallet_id
),
"""


def _unlocked_sql(source: str, columns: str) -> str:
    """The rows of CTE `source` (with wallet_id, s, e) minus their wallet's `lockagg`: one row
    per unlocked interval, `columns` (of alias pc) then s, e. Unlocked wallets skip the range
    arithmetic."""
    return f"""
    SELECT {columns}, pc.s, pc.e
    FROM {source} pc
    WHERE NOT EXISTS (SELECT 1 FROM lockagg la WHERE la.wallet_id = pc.wallet_id)
    UNION ALL
    SELECT {columns}, lower(r), upper(r)
    FROM {source} pc
    JOIN lockagg la ON la.wallet_id = pc.wallet_id
    CROSS JOIN LATERAL unnest(tstzmultirange(tstzrange(pc.s, pc.e)) - la.m) AS r
"""  # noqa: S608 — composed of this module's constants only, never of input


_CHARGE_COLUMNS = (
    "pc.allocation_id, pc.wallet_id, pc.payee_id, pc.vcpus, pc.ram_gib, pc.disk_gib, "
    "pc.price_id, pc.rate"
)

_CHARGE_SQL = f"""
WITH
prices AS (
    SELECT * FROM (
        SELECT id AS price_id, vcpu_hour, ram_gib_hour, disk_gib_hour,
               date_trunc('second', effective_from) AS ps,
               coalesce(date_trunc('second', lead(effective_from) OVER (ORDER BY effective_from)),
                        'infinity'::timestamptz) AS pe
        FROM billing_priceversion
    ) v WHERE v.ps < %(h1)s AND v.pe > %(h0)s
),
alloc AS (
    SELECT a.id AS allocation_id, w.id AS wallet_id, pw.id AS payee_id, a.domain_id,
           a.vcpus, a.ram_gib, a.disk_gib,
           greatest(date_trunc('second', a.start), %(h0)s) AS s,
           least(coalesce(date_trunc('second', a."end"), %(h1)s), %(h1)s) AS e
    FROM billing_allocation a
    JOIN billing_wallet w ON w.domain_id = a.domain_id
    CROSS JOIN (SELECT id FROM billing_wallet WHERE kind = 'platform') pw
    WHERE a.level = 'domain' AND a.start < %(h1)s AND (a."end" IS NULL OR a."end" > %(h0)s)
    UNION ALL
    SELECT a.id, w.id, dw.id, a.domain_id, a.vcpus, a.ram_gib, a.disk_gib,
           greatest(date_trunc('second', a.start), %(h0)s),
           least(coalesce(date_trunc('second', a."end"), %(h1)s), %(h1)s)
    FROM billing_allocation a
    JOIN billing_wallet w ON w.project_id = a.project_id
    JOIN billing_wallet dw ON dw.domain_id = a.domain_id
    WHERE a.level = 'project' AND a.start < %(h1)s AND (a."end" IS NULL OR a."end" > %(h0)s)
),
{_LOCKS_SQL}pieces AS (
    SELECT al.allocation_id, al.wallet_id, al.payee_id, al.vcpus, al.ram_gib, al.disk_gib,
           p.price_id,
           p.vcpu_hour * al.vcpus + p.ram_gib_hour * al.ram_gib + p.disk_gib_hour * al.disk_gib
               AS rate,
           greatest(al.s, p.ps) AS s, least(al.e, p.pe) AS e
    FROM alloc al JOIN prices p ON p.ps < al.e AND p.pe > al.s
    WHERE al.s < al.e
),
lines AS ({_unlocked_sql("pieces", _CHARGE_COLUMNS)}),
priced AS (
    SELECT l.*, round(extract(epoch FROM (l.e - l.s)) * l.rate / 3600, 4) AS amount
    FROM lines l
),
totals AS (
    SELECT wallet_id, min(payee_id) AS payee_id, sum(amount) AS amount
    FROM priced WHERE amount > 0 GROUP BY wallet_id
),
ins AS (
    INSERT INTO billing_transaction
        (kind, wallet_id, period_start, created_at, memo, payer, method, reference, reason)
    SELECT 'resource_charge', t.wallet_id, %(h0)s, now(), %(memo)s, '', '', '', ''
    FROM totals t ORDER BY t.wallet_id
    ON CONFLICT DO NOTHING
    RETURNING id, wallet_id
),
ent AS (
    INSERT INTO billing_entry (transaction_id, wallet_id, amount)
    SELECT ins.id, t.wallet_id, -t.amount FROM ins JOIN totals t ON t.wallet_id = ins.wallet_id
    UNION ALL
    SELECT ins.id, t.payee_id, t.amount FROM ins JOIN totals t ON t.wallet_id = ins.wallet_id
    RETURNING wallet_id, amount
),
cl AS (
    INSERT INTO billing_chargeline
        (transaction_id, allocation_id, price_id, start, "end", vcpus, ram_gib, disk_gib, amount)
    SELECT ins.id, p.allocation_id, p.price_id, p.s, p.e, p.vcpus, p.ram_gib, p.disk_gib, p.amount
    FROM ins JOIN priced p ON p.wallet_id = ins.wallet_id
    WHERE p.amount > 0
    RETURNING 1
),
bal AS (
    UPDATE billing_wallet w SET balance = w.balance + d.delta
    FROM (SELECT wallet_id, sum(amount) AS delta FROM ent GROUP BY wallet_id) d
    WHERE w.id = d.wallet_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins),
       (SELECT coalesce(sum(amount), 0) FROM ent WHERE amount > 0),
       (SELECT count(*) FROM cl),
       (SELECT count(*) FROM bal)
"""  # noqa: S608 — module constants only


def line_amount(seconds: int, rate: Decimal) -> Decimal:
    """The one rounding of a charge, in Python: q4(seconds × hourly rate / 3600) — what the SQL
    statements compute as round(extract(epoch …) × rate / 3600, 4)."""
    return q4(Decimal(seconds) * rate / Decimal(3600))


def charge_hour(hour: datetime) -> tuple[int, Decimal]:
    """Charge every wallet for one hour, in one transaction; returns (transactions, amount).

    Idempotent: wallets already charged for the hour are left alone."""
    memo = ""  # language-neutral: billing.memos renders it from kind and period_start
    with transaction.atomic():
        _advisory_lock(LOCK_CHARGE, hour)
        with connection.cursor() as cursor:
            # Hash aggregates and the sort of 100k+ rows fit in memory instead of temp files.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute(_CHARGE_SQL, {"h0": hour, "h1": hour + HOUR, "memo": memo})
            count, amount, _lines, _balances = cursor.fetchone()
        return int(count), Decimal(amount)


# -- Member rating ----------------------------------------------------------------------------


def rating_hours_due(*, until: datetime) -> list[datetime]:
    last = MemberConsumption.objects.aggregate(h=Max("hour"))["h"]
    after = last + HOUR if last else None
    holdings = Holding.objects.all()
    if after is not None:
        holdings = holdings.filter(Q(end__isnull=True) | Q(end__gt=after))
    first = holdings.aggregate(s=Min("start"))["s"]
    if first is None:
        return []
    first = floor_hour(first)
    if after is not None:
        first = max(first, after)
    return _hours(first, until)


_RATE_SQL = f"""
WITH
prices AS (
    SELECT * FROM (
        SELECT vcpu_hour, ram_gib_hour, disk_gib_hour,
               date_trunc('second', effective_from) AS ps,
               coalesce(date_trunc('second', lead(effective_from) OVER (ORDER BY effective_from)),
                        'infinity'::timestamptz) AS pe
        FROM billing_priceversion
    ) v WHERE v.ps < %(h1)s AND v.pe > %(h0)s
),
held AS (
    SELECT h.project_id, h.user_id, pw.id AS wallet_id, h.vcpus, h.ram_gib, h.disk_gib,
           greatest(date_trunc('second', h.start), %(h0)s) AS s,
           least(coalesce(date_trunc('second', h."end"), %(h1)s), %(h1)s) AS e
    FROM billing_holding h
    LEFT JOIN billing_wallet pw ON pw.project_id = h.project_id
    WHERE h.start < %(h1)s AND (h."end" IS NULL OR h."end" > %(h0)s)
),
{_LOCKS_SQL}pieces AS (
    SELECT hd.project_id, hd.user_id, hd.wallet_id,
           p.vcpu_hour * hd.vcpus + p.ram_gib_hour * hd.ram_gib + p.disk_gib_hour * hd.disk_gib
               AS rate,
           greatest(hd.s, p.ps) AS s, least(hd.e, p.pe) AS e
    FROM held hd JOIN prices p ON p.ps < hd.e AND p.pe > hd.s
    WHERE hd.s < hd.e
),
lines AS ({_unlocked_sql("pieces", "pc.project_id, pc.user_id, pc.rate")}),
priced AS (
    SELECT project_id, user_id, round(extract(epoch FROM (e - s)) * rate / 3600, 4) AS amount
    FROM lines
),
ins AS (
    INSERT INTO billing_memberconsumption (project_id, user_id, hour, amount)
    SELECT project_id, user_id, %(h0)s, sum(amount) FROM priced
    GROUP BY project_id, user_id HAVING sum(amount) > 0
    ORDER BY project_id, user_id
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM ins
"""  # noqa: S608 — module constants only


def rate_hour(hour: datetime) -> int:
    """Rate every member's holdings for one hour (MemberConsumption); returns the rows written."""
    with transaction.atomic():
        _advisory_lock(LOCK_RATE, hour)
        with connection.cursor() as cursor:
            cursor.execute(_RATE_SQL, {"h0": hour, "h1": hour + HOUR})
            return int(cursor.fetchone()[0])


# -- Management fees --------------------------------------------------------------------------


def fee_months_due(*, until: datetime) -> list[datetime]:
    """Month starts S ≤ until not yet charged (catch-up included)."""
    from tenancy.models import Domain

    last = Transaction.objects.filter(kind=TransactionKind.MANAGEMENT_FEE).aggregate(
        m=Max("period_start")
    )["m"]
    if last is not None:
        start = next_month(last)
    else:
        first = Domain.objects.aggregate(c=Min("created_at"))["c"]
        if first is None:
            return []
        start = next_month(first)
    months = []
    while start <= until:
        months.append(start)
        start = next_month(start)
    return months


_FEE_SQL = """
WITH
price AS (
    SELECT domain_fee, project_fee, user_fee FROM billing_priceversion
    WHERE effective_from <= %(s)s ORDER BY effective_from DESC LIMIT 1
),
platform AS (SELECT id FROM billing_wallet WHERE kind = 'platform'),
fees AS (
    SELECT w.id AS wallet_id, price.domain_fee AS amount
    FROM billing_wallet w JOIN tenancy_domain d ON d.id = w.domain_id CROSS JOIN price
    WHERE d.created_at < %(s)s AND d.status <> 'purged'
    UNION ALL
    SELECT w.id, price.project_fee + price.user_fee * (
        SELECT count(*) FROM tenancy_membership m
        WHERE m.project_id = p.id AND m.created_at < %(s)s)
    FROM billing_wallet w
    JOIN tenancy_project p ON p.id = w.project_id
    JOIN tenancy_domain d ON d.id = p.domain_id
    CROSS JOIN price
    WHERE p.created_at < %(s)s AND p.status <> 'purged' AND d.status <> 'purged'
),
due AS (SELECT wallet_id, amount FROM fees WHERE amount > 0),
ins AS (
    INSERT INTO billing_transaction
        (kind, wallet_id, period_start, created_at, memo, payer, method, reference, reason)
    SELECT 'management_fee', wallet_id, %(s)s, now(), %(memo)s, '', '', '', ''
    FROM due ORDER BY wallet_id
    ON CONFLICT DO NOTHING
    RETURNING id, wallet_id
),
ent AS (
    INSERT INTO billing_entry (transaction_id, wallet_id, amount)
    SELECT ins.id, d.wallet_id, -d.amount FROM ins JOIN due d ON d.wallet_id = ins.wallet_id
    UNION ALL
    SELECT ins.id, platform.id, d.amount
    FROM ins JOIN due d ON d.wallet_id = ins.wallet_id CROSS JOIN platform
    RETURNING wallet_id, amount
),
bal AS (
    UPDATE billing_wallet w SET balance = w.balance + x.delta
    FROM (SELECT wallet_id, sum(amount) AS delta FROM ent GROUP BY wallet_id) x
    WHERE w.id = x.wallet_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins),
       (SELECT coalesce(sum(amount), 0) FROM ent WHERE amount > 0),
       (SELECT count(*) FROM bal)
"""


def charge_month(start: datetime) -> tuple[int, Decimal]:
    """Post the management fees due at month start `start`; returns (transactions, amount)."""
    memo = ""  # language-neutral: billing.memos renders it from kind and period_start
    with transaction.atomic():
        _advisory_lock(LOCK_FEE, start)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute(_FEE_SQL, {"s": start, "memo": memo})
            count, amount, _balances = cursor.fetchone()
        return int(count), Decimal(amount)


# -- The run ----------------------------------------------------------------------------------


def billing_run(*, until: datetime) -> dict[str, Any]:
    """Run everything due up to `until`: resource charges, member rating, management fees,
    then enforcement (locks, alerts, purges). Safe to run twice, concurrently, or after a kill.
    """
    if timezone.is_naive(until):
        raise ValueError("billing_run needs an aware datetime")
    from billing import enforcement

    summary: dict[str, Any] = {"until": until.isoformat()}
    charged, charge_total, hours = 0, ZERO, charge_hours_due(until=until)
    for hour in hours:
        count, amount = charge_hour(hour)
        charged, charge_total = charged + count, charge_total + amount
        _pause()
    summary |= {
        "hours": len(hours),
        "resource_charges": charged,
        "resource_amount": str(q4(charge_total)),
    }
    rated_rows, rating_hours = 0, rating_hours_due(until=until)
    for hour in rating_hours:
        rated_rows += rate_hour(hour)
    summary |= {"rating_hours": len(rating_hours), "rated": rated_rows}
    fees, fee_total, months = 0, ZERO, fee_months_due(until=until)
    for start in months:
        count, amount = charge_month(start)
        fees, fee_total = fees + count, fee_total + amount
    summary |= {
        "fee_months": [m.astimezone(SHANGHAI).strftime("%Y-%m") for m in months],
        "management_fees": fees,
        "fee_amount": str(q4(fee_total)),
    }
    summary["enforcement"] = enforcement.enforce(now=until)
    summary["course_end"] = _course_end(until)
    logger.info("billing run: %s", summary)
    return summary


def _course_end(now: datetime) -> dict[str, Any]:
    """Course end (SPEC Allocations 7, compute.course), then have compute carry out the
    requests recorded by enforcement and course end — enqueued after commit, so billing itself
    makes no network call."""
    from compute.course import course_end_run
    from compute.enforcement import requests_waiting
    from compute.tasks_jobs import compute_requests_process

    result = course_end_run(now=now)
    if requests_waiting():
        transaction.on_commit(compute_requests_process.delay)
    return result


# -- Proof ------------------------------------------------------------------------------------


def ledger_check(*, limit: int = 20) -> list[str]:
    """Every invariant of the ledger; returns one readable line per problem (empty: all good).

    Amounts are numeric(…, 4) on PostgreSQL, so every comparison is exact."""
    problems: list[str] = []
    checks = [
        (
            _("Transaction #%(id)s: its entries sum to %(sum)s, not 0."),
            """SELECT t.id, coalesce(sum(e.amount), 0) FROM billing_transaction t
               LEFT JOIN billing_entry e ON e.transaction_id = t.id
               GROUP BY t.id HAVING round(coalesce(sum(e.amount), 0), 4) <> 0 OR count(e.id) = 0
               ORDER BY t.id""",
            ("id", "sum"),
        ),
        (
            _("Wallet #%(id)s: cached balance %(cached)s, its entries sum to %(sum)s."),
            """SELECT wallet_id, sum(cached), sum(entries) FROM (
                   SELECT id AS wallet_id, balance AS cached, 0 AS entries FROM billing_wallet
                   UNION ALL
                   SELECT wallet_id, 0, amount FROM billing_entry WHERE wallet_id IS NOT NULL
               ) x GROUP BY wallet_id HAVING round(sum(cached) - sum(entries), 4) <> 0
               ORDER BY wallet_id""",
            ("id", "cached", "sum"),
        ),
        (
            _("Wallet #%(id)s: %(kind)s for %(period)s posted %(count)s times."),
            """SELECT wallet_id, kind, period_start, count(*) FROM billing_transaction
               WHERE kind IN ('resource_charge', 'management_fee')
               GROUP BY wallet_id, kind, period_start HAVING count(*) > 1
               ORDER BY wallet_id, period_start""",
            ("id", "kind", "period", "count"),
        ),
        (
            _("Resource charge #%(id)s: charged %(charged)s, its lines sum to %(lines)s."),
            """SELECT transaction_id, sum(charged), sum(lines) FROM (
                   SELECT e.transaction_id, -e.amount AS charged, 0 AS lines
                   FROM billing_entry e JOIN billing_transaction t
                        ON t.id = e.transaction_id AND t.wallet_id = e.wallet_id
                   WHERE t.kind = 'resource_charge'
                   UNION ALL
                   SELECT transaction_id, 0, amount FROM billing_chargeline
               ) x GROUP BY transaction_id HAVING round(sum(charged) - sum(lines), 4) <> 0
               ORDER BY transaction_id""",
            ("id", "charged", "lines"),
        ),
    ]
    with connection.cursor() as cursor:
        for message, sql, names in checks:
            cursor.execute(sql)
            rows = cursor.fetchall()
            for row in rows[:limit]:
                problems.append(message % dict(zip(names, map(str, row), strict=True)))
            if len(rows) > limit:
                problems.append(_("… and %(n)d more like this.") % {"n": len(rows) - limit})
    return problems
