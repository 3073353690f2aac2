"""An independent, simple, slow oracle of what the ledger must hold — and test-state helpers.

The oracle shares no code with billing.charging. For each payer wallet and each complete hour it
cuts the hour into elementary second ranges at every boundary it knows (allocation, price and
lock instants, truncated to the second), looks up what holds at the first second of each range
(which allocation, which price, locked or not), glues consecutive unlocked ranges that share an
allocation and a price into one line, and prices each line with its own Decimal arithmetic.
`brute_force_hour` does the same for one wallet-hour second by second (3,600 steps), to check
the oracle itself. Member rating (`expected_rating`) is cut the same way per VM holding: a range
is rated unless the holding's project wallet or its domain's wallet is locked then.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

ONE_HOUR = timedelta(hours=1)
TEN_THOUSANDTH = Decimal("0.0001")
CST = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class OAlloc:
    id: int
    payer: int  # wallet that pays
    payee: int  # wallet that receives
    domain_wallet: int  # a domain lock stops the charges of its projects too
    start: datetime
    end: datetime | None
    vcpus: int
    ram_gib: int
    disk_gib: int


@dataclass(frozen=True)
class OPrice:
    id: int
    effective_from: datetime
    vcpu_hour: Decimal
    ram_gib_hour: Decimal
    disk_gib_hour: Decimal
    domain_fee: Decimal = Decimal(0)
    project_fee: Decimal = Decimal(0)
    user_fee: Decimal = Decimal(0)


@dataclass(frozen=True)
class OLock:
    wallet: int
    start: datetime
    end: datetime | None


def _sec(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(microsecond=0)


def _price_of(prices: list[OPrice], t: datetime) -> OPrice | None:
    current = None
    for p in sorted(prices, key=lambda p: p.effective_from):
        if _sec(p.effective_from) <= t:
            current = p
    return current


def _alloc_of(allocs: list[OAlloc], t: datetime) -> OAlloc | None:
    for a in allocs:
        if _sec(a.start) <= t and (a.end is None or t < _sec(a.end)):
            return a
    return None


def _locked(locks: list[OLock], wallets: set[int], t: datetime) -> bool:
    return any(
        lk.wallet in wallets and _sec(lk.start) <= t and (lk.end is None or t < _sec(lk.end))
        for lk in locks
    )


@dataclass(frozen=True)
class OHolding:
    project: int
    user: int
    wallets: frozenset[int]  # the project's wallet and its domain's: their locks stop the rating
    start: datetime
    end: datetime | None
    vcpus: int
    ram_gib: int
    disk_gib: int


def money(seconds: int, price: OPrice, a: OAlloc | OHolding) -> Decimal:
    per_hour = (
        price.vcpu_hour * a.vcpus
        + price.ram_gib_hour * a.ram_gib
        + price.disk_gib_hour * a.disk_gib
    )
    return (per_hour * seconds / 3600).quantize(TEN_THOUSANDTH, rounding=ROUND_HALF_UP)


Line = tuple[int, int, datetime, datetime, Decimal]  # allocation, price, start, end, amount


def oracle_hour(
    allocs: list[OAlloc], prices: list[OPrice], locks: list[OLock], hour: datetime
) -> list[Line]:
    """The lines of one payer's hour (allocs: that payer's allocations only)."""
    end_of_hour = hour + ONE_HOUR
    cuts = {hour, end_of_hour}
    instants = [a.start for a in allocs] + [a.end for a in allocs if a.end]
    instants += [p.effective_from for p in prices]
    instants += [lk.start for lk in locks] + [lk.end for lk in locks if lk.end]
    cuts |= {_sec(t) for t in instants if hour < _sec(t) < end_of_hour}
    ordered = sorted(cuts)
    wallets = {allocs[0].payer, allocs[0].domain_wallet} if allocs else set()
    lines: list[Line] = []
    run: tuple[OAlloc, OPrice, datetime, datetime] | None = None
    for a_start, a_end in itertools.pairwise(ordered):
        alloc = _alloc_of(allocs, a_start)
        price = _price_of(prices, a_start)
        if alloc is None or price is None or _locked(locks, wallets, a_start):
            if run:
                lines.append(_close(run))
            run = None
            continue
        if run and run[0] is alloc and run[1] is price and run[3] == a_start:
            run = (alloc, price, run[2], a_end)
        else:
            if run:
                lines.append(_close(run))
            run = (alloc, price, a_start, a_end)
    if run:
        lines.append(_close(run))
    return [line for line in lines if line[4] > 0]


def _close(run: tuple[OAlloc, OPrice, datetime, datetime]) -> Line:
    alloc, price, start, end = run
    seconds = int((end - start).total_seconds())
    return (alloc.id, price.id, start, end, money(seconds, price, alloc))


def brute_force_hour(
    allocs: list[OAlloc], prices: list[OPrice], locks: list[OLock], hour: datetime
) -> Decimal:
    """One payer's hour, one second at a time: seconds counted per (allocation, price)."""
    seconds: dict[tuple[int, int], int] = defaultdict(int)
    wallets = {allocs[0].payer, allocs[0].domain_wallet} if allocs else set()
    by_id = {a.id: a for a in allocs}
    prices_by_id = {p.id: p for p in prices}
    for i in range(3600):
        t = hour + timedelta(seconds=i)
        alloc, price = _alloc_of(allocs, t), _price_of(prices, t)
        if alloc and price and not _locked(locks, wallets, t):
            seconds[(alloc.id, price.id)] += 1
    # Without locks inside a piece, one piece per (allocation, price) is one line.
    return sum((money(n, prices_by_id[p], by_id[a]) for (a, p), n in seconds.items()), Decimal("0"))


def expected_charges(
    allocs: list[OAlloc], prices: list[OPrice], locks: list[OLock], until: datetime
) -> dict[tuple[int, datetime], tuple[Decimal, list[Line]]]:
    """(payer wallet, hour) → (total, lines) for every complete hour before `until`."""
    result = {}
    by_payer: dict[int, list[OAlloc]] = defaultdict(list)
    for a in allocs:
        by_payer[a.payer].append(a)
    last = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for payer, mine in by_payer.items():
        hour = min(a.start for a in mine).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour < last:
            lines = oracle_hour(mine, prices, locks, hour)
            total = sum((line[4] for line in lines), Decimal("0"))
            if total > 0:
                result[(payer, hour)] = (total, lines)
            hour += ONE_HOUR
    return result


def oracle_rating_hour(
    holdings: list[OHolding], prices: list[OPrice], locks: list[OLock], hour: datetime
) -> dict[tuple[int, int], Decimal]:
    """(project, user) → rated amount of one hour: per holding, the unlocked ranges glued into
    runs of one price, each run priced on its own."""
    end_of_hour = hour + ONE_HOUR
    rated: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for h in holdings:
        cuts = {hour, end_of_hour}
        instants = [h.start, *([h.end] if h.end else []), *(p.effective_from for p in prices)]
        instants += [lk.start for lk in locks] + [lk.end for lk in locks if lk.end]
        cuts |= {_sec(t) for t in instants if hour < _sec(t) < end_of_hour}
        runs: list[tuple[OPrice, datetime, datetime]] = []
        for a_start, a_end in itertools.pairwise(sorted(cuts)):
            held = _sec(h.start) <= a_start and (h.end is None or a_start < _sec(h.end))
            price = _price_of(prices, a_start)
            if not held or price is None or _locked(locks, set(h.wallets), a_start):
                continue
            if runs and runs[-1][0] is price and runs[-1][2] == a_start:
                runs[-1] = (price, runs[-1][1], a_end)
            else:
                runs.append((price, a_start, a_end))
        for price, start, end in runs:
            rated[(h.project, h.user)] += money(int((end - start).total_seconds()), price, h)
    return {key: amount for key, amount in rated.items() if amount > 0}


def expected_rating(
    holdings: list[OHolding], prices: list[OPrice], locks: list[OLock], until: datetime
) -> dict[tuple[int, int, datetime], Decimal]:
    """(project, user, hour) → MemberConsumption amount for every complete hour before `until`."""
    result = {}
    if not holdings:
        return result
    last = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hour = min(h.start for h in holdings).astimezone(UTC)
    hour = hour.replace(minute=0, second=0, microsecond=0)
    while hour < last:
        for (project, user), amount in oracle_rating_hour(holdings, prices, locks, hour).items():
            result[(project, user, hour)] = amount
        hour += ONE_HOUR
    return result


def month_starts(after: datetime, until: datetime) -> list[datetime]:
    """Every 00:00 on a 1st (Asia/Shanghai) in (after, until]."""
    local = after.astimezone(CST)
    y, m = local.year, local.month
    out = []
    while True:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        start = datetime(y, m, 1, tzinfo=CST)
        if start > until:
            return out
        out.append(start)


def expected_fees(
    *,
    domains: list[tuple[int, datetime]],
    projects: list[tuple[int, datetime, list[datetime]]],
    prices: list[OPrice],
    month: datetime,
) -> dict[int, Decimal]:
    """wallet → fee due at `month` (domains: (wallet, created); projects: (wallet, created,
    membership creation instants)). Only what exists before the month starts pays."""
    price = None
    for p in sorted(prices, key=lambda p: p.effective_from):
        if p.effective_from <= month:
            price = p
    assert price is not None
    fees = {}
    for wallet, created in domains:
        if created < month and price.domain_fee > 0:
            fees[wallet] = price.domain_fee
    for wallet, created, members in projects:
        if created < month:
            amount = price.project_fee + price.user_fee * sum(1 for c in members if c < month)
            if amount > 0:
                fees[wallet] = amount
    return fees


# -- Reading the inputs and the ledger back (plain rows, no engine code) ----------------------


def load_inputs() -> tuple[list[OAlloc], list[OPrice], list[OLock]]:
    from billing.models import Allocation, LockPeriod, PriceVersion, Wallet

    platform = Wallet.objects.get(kind="platform").pk
    domain_wallets = dict(Wallet.objects.filter(kind="domain").values_list("domain_id", "id"))
    project_wallets = dict(Wallet.objects.filter(kind="project").values_list("project_id", "id"))
    allocs = []
    for a in Allocation.objects.exclude(level="member"):
        dw = domain_wallets[a.domain_id]
        payer, payee = (
            (dw, platform) if a.level == "domain" else (project_wallets[a.project_id], dw)
        )
        allocs.append(
            OAlloc(a.pk, payer, payee, dw, a.start, a.end, a.vcpus, a.ram_gib, a.disk_gib)
        )
    prices = [
        OPrice(
            p.pk,
            p.effective_from,
            p.vcpu_hour,
            p.ram_gib_hour,
            p.disk_gib_hour,
            p.domain_fee,
            p.project_fee,
            p.user_fee,
        )
        for p in PriceVersion.objects.all()
    ]
    locks = [OLock(lk.wallet_id, lk.start, lk.end) for lk in LockPeriod.objects.all()]
    return allocs, prices, locks


def load_holdings() -> list[OHolding]:
    from billing.models import Holding, Wallet

    domain_wallets = dict(Wallet.objects.filter(kind="domain").values_list("domain_id", "id"))
    wallets = {
        project: frozenset({wallet, domain_wallets[domain]})
        for project, wallet, domain in Wallet.objects.filter(kind="project").values_list(
            "project_id", "id", "project__domain_id"
        )
    }
    return [
        OHolding(
            h.project_id,
            h.user_id,
            wallets[h.project_id],
            h.start,
            h.end,
            h.vcpus,
            h.ram_gib,
            h.disk_gib,
        )
        for h in Holding.objects.all()
    ]


def ledger_rating() -> dict[tuple[int, int, datetime], Decimal]:
    """The MemberConsumption rows, in the oracle's shape."""
    from billing.models import MemberConsumption

    return {
        (project, user, hour): amount
        for project, user, hour, amount in MemberConsumption.objects.values_list(
            "project_id", "user_id", "hour", "amount"
        )
    }


def ledger_charges() -> dict[tuple[int, datetime], tuple[Decimal, list[Line]]]:
    """What the database holds, in the oracle's shape."""
    from billing.models import ChargeLine, Entry, Transaction

    result = {}
    for tx in Transaction.objects.filter(kind="resource_charge"):
        paid = -sum(e.amount for e in Entry.objects.filter(transaction=tx, wallet_id=tx.wallet_id))
        lines = [
            (cl.allocation_id, cl.price_id, cl.start, cl.end, cl.amount)
            for cl in ChargeLine.objects.filter(transaction=tx).order_by("start")
        ]
        result[(tx.wallet_id, tx.period_start)] = (paid, lines)
    return result


def ledger_snapshot() -> list[tuple[Any, ...]]:
    """Everything that matters of the ledger, independent of ids and insertion time."""
    from billing.models import Entry, Wallet

    entries = sorted(
        (
            e.transaction.kind,
            e.transaction.wallet_id,
            e.transaction.period_start,
            e.wallet_id or 0,
            e.amount,
        )
        for e in Entry.objects.select_related("transaction")
    )
    balances = sorted(Wallet.objects.values_list("id", "balance"))
    return [*entries, *balances]


# -- Building state through the services -------------------------------------------------------


def setup_platform() -> Any:
    from billing.services import platform_capacity_set
    from teachcloud.testing.factories import platform_staff

    staff = platform_staff(username="billing-staff")
    platform_capacity_set(
        actor=staff, vcpus=100_000, ram_gib=1_000_000, disk_gib=1_000_000, overcommit="1"
    )
    return staff


def make_domain(staff: Any, code: str, *, money: str = "1000000") -> Any:
    from billing.services import wallet_recharge
    from tenancy.services import domain_create

    domain = domain_create(actor=staff, name=f"School {code}", code=code)
    if money:
        wallet_recharge(actor=staff, wallet=domain.wallet, amount=money, method="bank")
    return domain


def make_project(staff: Any, domain: Any, code: str, *, money: str = "1000000") -> Any:
    from billing.services import wallet_recharge
    from tenancy.services import project_create

    project = project_create(actor=staff, domain=domain, name=f"Course {code}", code=code)
    if money:
        wallet_recharge(actor=staff, wallet=project.wallet, amount=money, method="bank")
    return project


def allocate(staff: Any, at: datetime, quantities: tuple[int, int, int], **target: Any) -> Any:
    """An allocation change at instant `at` (the services' clock, controlled)."""
    from django.db import transaction

    from billing.services import _allocation_set, target_of

    vcpus, ram_gib, disk_gib = quantities
    with transaction.atomic():
        return _allocation_set(
            actor=staff,
            target=target_of(**target),
            vcpus=vcpus,
            ram_gib=ram_gib,
            disk_gib=disk_gib,
            budget=None,
            now=at,
        )
