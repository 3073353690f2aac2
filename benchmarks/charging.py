"""Charging benchmark (issue 3): one hourly charge run over N wallets on PostgreSQL.

    .venv/bin/python -m benchmarks.charging [--wallets 100000] [--sample 1000]

Uses $DATABASE_URL's server (in a fresh database `<name>_bench_charging`, dropped at the end) or,
without it, a throw-away cluster (teachcloud.testing.pgcluster). Builds N/10 domains with 9
projects each, every one with an allocation covering the whole hour, then times:

1. the hourly run: `charge_hours_due` + `charge_hour` (one set-based statement + commit) — once
   on the freshly built tables (printed for information) and once for the next hour after a
   VACUUM, the steady state of an hourly job (autovacuum runs between hours): the figure used;
2. the ceiling: a raw set-based INSERT of the same ledger rows (N transactions, 2N entries, N
   charge lines) from a prepared table — no computation, no balance update;
3. the per-wallet way on a sample: one database transaction per wallet (ORM reads, ledger.post,
   one ChargeLine), as a Python loop would do it;

and prints wallets/s for each and the ratios (targets: ≥ 40,000/s, ≥ 0.5 × raw, ≥ 20 × per-wallet).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from benchmarks.support import drop_database, prepare_database, setup_django

CST = ZoneInfo("Asia/Shanghai")
HOUR0 = datetime(2026, 10, 5, 10, 0, tzinfo=CST)


def _build(n_wallets: int) -> None:
    from billing.models import Allocation, Wallet
    from tenancy.models import Domain, Project

    n_domains = max(1, n_wallets // 10)
    n_projects = n_wallets - n_domains
    created = HOUR0 - timedelta(hours=1)
    batch = 5000
    domains = Domain.objects.bulk_create(
        [Domain(name=f"Bench {i}", code=f"bench{i}", created_at=created) for i in range(n_domains)],
        batch_size=batch,
    )
    projects = Project.objects.bulk_create(
        [
            Project(domain=domains[i % n_domains], name=f"P {i}", code=f"p{i}", created_at=created)
            for i in range(n_projects)
        ],
        batch_size=batch,
    )
    Wallet.objects.bulk_create(
        [Wallet(kind="domain", domain=d) for d in domains]
        + [Wallet(kind="project", project=p) for p in projects],
        batch_size=batch,
    )
    from django.db import connection

    with connection.cursor() as cursor:  # every wallet gets a recharge, set-based
        cursor.execute(
            """WITH ins AS (
                   INSERT INTO billing_transaction (kind, wallet_id, created_at, memo, payer,
                                                    method, reference, reason)
                   SELECT 'recharge', id, now(), 'bench', 'bench', 'bank', '', ''
                   FROM billing_wallet WHERE kind <> 'platform'
                   RETURNING id, wallet_id)
               INSERT INTO billing_entry (transaction_id, wallet_id, amount)
               SELECT id, wallet_id, 10000 FROM ins UNION ALL SELECT id, NULL, -10000 FROM ins"""
        )
        cursor.execute("UPDATE billing_wallet SET balance = 10000 WHERE kind <> 'platform'")
    # Allocations: every wallet holds one from the start of the hour; a tenth change at 10:17:23
    # (two lines in the hour), so the run splits pieces as in real life.
    start = HOUR0
    change = HOUR0 + timedelta(minutes=17, seconds=23)
    rows = []
    for i, d in enumerate(domains):
        end = change if i % 10 == 0 else None
        rows.append(
            Allocation(
                level="domain",
                domain=d,
                vcpus=200,
                ram_gib=400,
                disk_gib=4000,
                start=start,
                end=end,
            )
        )
        if end:
            rows.append(
                Allocation(
                    level="domain", domain=d, vcpus=300, ram_gib=600, disk_gib=6000, start=change
                )
            )
    for i, p in enumerate(projects):
        end = change if i % 10 == 0 else None
        rows.append(
            Allocation(
                level="project",
                domain_id=p.domain_id,
                project=p,
                vcpus=8 + i % 5,
                ram_gib=16,
                disk_gib=100,
                start=start,
                end=end,
            )
        )
        if end:
            rows.append(
                Allocation(
                    level="project",
                    domain_id=p.domain_id,
                    project=p,
                    vcpus=4,
                    ram_gib=8,
                    disk_gib=50,
                    start=change,
                )
            )
    Allocation.objects.bulk_create(rows, batch_size=batch)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def _time_charge_run(hour: datetime) -> tuple[float, int]:
    from billing.charging import charge_hour, charge_hours_due

    t = time.perf_counter()
    hours = charge_hours_due(until=hour + timedelta(hours=1))
    assert hours == [hour], hours
    count, _amount = charge_hour(hours[0])
    return time.perf_counter() - t, count


def _vacuum() -> None:
    """What autovacuum does between two hourly runs in production."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


RAW_SQL = """
WITH ins AS (
    INSERT INTO billing_transaction
        (kind, wallet_id, period_start, created_at, memo, payer, method, reference, reason)
    SELECT 'resource_charge', wallet_id, %(h)s, now(), 'raw', '', '', '', ''
    FROM bench_raw ORDER BY wallet_id
    RETURNING id, wallet_id
),
ent AS (
    INSERT INTO billing_entry (transaction_id, wallet_id, amount)
    SELECT ins.id, r.wallet_id, -r.amount FROM ins JOIN bench_raw r USING (wallet_id)
    UNION ALL
    SELECT ins.id, r.payee_id, r.amount FROM ins JOIN bench_raw r USING (wallet_id)
    RETURNING 1
),
cl AS (
    INSERT INTO billing_chargeline
        (transaction_id, allocation_id, price_id, start, "end", vcpus, ram_gib, disk_gib, amount)
    SELECT ins.id, r.allocation_id, r.price_id, %(h)s, %(h1)s, 1, 1, 1, r.amount
    FROM ins JOIN bench_raw r USING (wallet_id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM ent), (SELECT count(*) FROM cl)
"""


def _time_raw(n_rows: int) -> float:
    from django.db import connection, transaction

    hour = HOUR0 + timedelta(hours=5)  # a period nobody charged: no conflicts
    with connection.cursor() as cursor:
        cursor.execute(
            """CREATE UNLOGGED TABLE bench_raw AS
               SELECT t.wallet_id, e.wallet_id AS payee_id, min(cl.allocation_id) AS allocation_id,
                      min(cl.price_id) AS price_id, -min(t_e.amount) AS amount
               FROM billing_transaction t
               JOIN billing_entry t_e ON t_e.transaction_id = t.id AND t_e.wallet_id = t.wallet_id
               JOIN billing_entry e ON e.transaction_id = t.id AND e.wallet_id <> t.wallet_id
               JOIN billing_chargeline cl ON cl.transaction_id = t.id
               WHERE t.kind = 'resource_charge'
               GROUP BY t.wallet_id, e.wallet_id"""
        )
        cursor.execute("VACUUM ANALYZE")  # the same conditions as the timed hourly run
        cursor.execute("SELECT count(*) FROM bench_raw")
        assert cursor.fetchone()[0] == n_rows
    t = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(RAW_SQL, {"h": hour, "h1": hour + timedelta(hours=1)})
        inserted = cursor.fetchone()
    elapsed = time.perf_counter() - t
    assert inserted == (n_rows, 2 * n_rows, n_rows), inserted
    return elapsed


def _time_per_wallet(sample: int) -> float:
    """One transaction per wallet, the way a Python loop over wallets would charge."""
    from django.db import transaction

    from billing.charging import HOUR, line_amount
    from billing.ledger import platform_wallet, post
    from billing.models import Allocation, ChargeLine, Wallet
    from billing.services import price_at

    hour = HOUR0 + timedelta(hours=10)
    wallets = list(Wallet.objects.filter(kind="project").order_by("id")[:sample])
    platform_wallet()
    t = time.perf_counter()
    for wallet in wallets:
        with transaction.atomic():
            payer = Wallet.objects.select_for_update().get(pk=wallet.pk)
            allocation = (
                Allocation.objects.filter(
                    level="project", project_id=payer.project_id, start__lt=hour + HOUR
                )
                .order_by("-start")
                .first()
            )
            payee = Wallet.objects.get(domain_id=allocation.domain_id)
            price = price_at(hour)
            rate = (
                price.vcpu_hour * allocation.vcpus
                + price.ram_gib_hour * allocation.ram_gib
                + price.disk_gib_hour * allocation.disk_gib
            )
            amount = line_amount(3600, rate)
            tx = post(
                kind="resource_charge",
                wallet=payer,
                legs=[(payer, -amount), (payee, amount)],
                period_start=hour,
                memo="per-wallet",
            )
            ChargeLine.objects.create(
                transaction=tx,
                allocation=allocation,
                price=price,
                start=hour,
                end=hour + HOUR,
                vcpus=allocation.vcpus,
                ram_gib=allocation.ram_gib,
                disk_gib=allocation.disk_gib,
                amount=amount,
            )
    return time.perf_counter() - t


def _time_rest_of_run() -> tuple[float, dict]:
    from billing.charging import billing_run

    t = time.perf_counter()
    summary = billing_run(until=HOUR0 + timedelta(hours=2))
    return time.perf_counter() - t, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wallets", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1000, help="wallets for the per-wallet way")
    args = parser.parse_args()

    url, admin = prepare_database("charging")
    try:
        setup_django(url)
        t = time.perf_counter()
        _build(args.wallets)
        print(f"built {args.wallets:,} wallets with allocations in {time.perf_counter() - t:.1f} s")

        first_s, charged = _time_charge_run(HOUR0)
        assert charged == args.wallets, charged
        _vacuum()
        charge_s, charged = _time_charge_run(HOUR0 + timedelta(hours=1))
        assert charged == args.wallets, charged
        from billing.charging import ledger_check

        t = time.perf_counter()
        assert ledger_check() == [], "ledger check failed"
        check_s = time.perf_counter() - t
        rest_s, summary = _time_rest_of_run()
        raw_s = _time_raw(args.wallets)
        sample = min(args.sample, args.wallets)
        per_wallet_s = _time_per_wallet(sample)

        print(
            f"first hourly run (fresh tables): {args.wallets:,} wallets in {first_s:.2f} s "
            f"= {args.wallets / first_s:,.0f} wallets/s"
        )
        run_wps = args.wallets / charge_s
        raw_wps = args.wallets / raw_s
        per_wallet_wps = sample / per_wallet_s
        print(
            f"hourly charge run : {args.wallets:,} wallets in {charge_s:.2f} s "
            f"= {run_wps:,.0f} wallets/s (target ≥ 40,000)"
        )
        print(
            f"raw INSERT ceiling: {args.wallets:,} rows×4 tables in {raw_s:.2f} s "
            f"= {raw_wps:,.0f} wallets/s"
        )
        print(
            f"per-wallet way    : {sample:,} wallets in {per_wallet_s:.2f} s "
            f"= {per_wallet_wps:,.0f} wallets/s"
        )
        print(f"ratio run / raw        : {run_wps / raw_wps:.2f} (target ≥ 0.5)")
        print(f"ratio run / per-wallet : {run_wps / per_wallet_wps:.1f}× (target ≥ 20×)")
        print(f"billing_check over the ledger: {check_s:.2f} s")
        print(
            f"rest of billing_run (rating, fees, enforcement; charges already done): "
            f"{rest_s:.2f} s, summary {summary}"
        )
    finally:
        drop_database(url, admin)


if __name__ == "__main__":
    main()
