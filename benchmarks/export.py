"""Export benchmark (issue 6): `GET /api/v1/transactions/?export=csv` over N ledger entries.

    .venv/bin/python -m benchmarks.export [--rows 1000000] [--xlsx-rows 100000]

Uses $DATABASE_URL's server (in a fresh database `<name>_bench_export`, dropped at the end) or,
without it, a throw-away cluster (teachcloud.testing.pgcluster). Builds 100 domains with 9
projects each and N ledger entries set-based (N/2 transactions: hourly resource charges of the
project wallets, paid to the platform wallet, two entries each), then downloads the export
through the real endpoint (Django's test Client: URL routing, token authentication, the scoped
selector, the view and the streamed response) as platform staff, consuming it chunk by chunk as
a client would, and prints rows/s and the process's peak RSS (targets: ≥ 100,000 rows/s, peak
RSS ≤ 200 MB). With --xlsx-rows > 0 it also times the XLSX export on a filtered subset (the
`start=` filter keeps about that many entries). Prints figures; never asserts times.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from benchmarks.support import drop_database, prepare_database, setup_django

CST = ZoneInfo("Asia/Shanghai")
HOUR0 = datetime(2026, 1, 1, 0, 0, tzinfo=CST)
N_DOMAINS = 100
PROJECTS_PER_DOMAIN = 9


LEDGER_SQL = """
WITH payers AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM billing_wallet WHERE kind = 'project'
),
ins AS (
    INSERT INTO billing_transaction
        (kind, wallet_id, period_start, created_at, memo, payer, method, reference, reason)
    SELECT 'resource_charge', p.id, %(h0)s + make_interval(hours => g.i / %(w)s),
           %(h0)s + make_interval(hours => g.i / %(w)s, secs => 60 + g.i %% %(w)s),
           'hourly charge', '', '', '', ''
    FROM generate_series(0, %(n)s - 1) AS g(i) JOIN payers p ON p.n = g.i %% %(w)s
    RETURNING id, wallet_id
)
INSERT INTO billing_entry (transaction_id, wallet_id, amount)
SELECT id, wallet_id, -1.2345 FROM ins
UNION ALL
SELECT id, %(platform)s, 1.2345 FROM ins
"""


def _build(n_rows: int) -> str:
    """The tenants and N ledger entries; the platform staff user's API token."""
    from django.db import connection

    from billing.ledger import platform_wallet
    from billing.models import Wallet
    from teachcloud.testing.factories import api_token, platform_staff
    from tenancy.models import Domain, Project

    created = HOUR0 - timedelta(days=1)
    domains = Domain.objects.bulk_create(
        [Domain(name=f"学校 {i}", code=f"d{i}", created_at=created) for i in range(N_DOMAINS)]
    )
    projects = Project.objects.bulk_create(
        [
            Project(domain=d, name=f"课程 {d.code}-{j}", code=f"{d.code}p{j}", created_at=created)
            for d in domains
            for j in range(PROJECTS_PER_DOMAIN)
        ]
    )
    platform = platform_wallet()
    Wallet.objects.bulk_create(
        [Wallet(kind="domain", domain=d) for d in domains]
        + [Wallet(kind="project", project=p) for p in projects]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            LEDGER_SQL,
            {"h0": HOUR0, "w": len(projects), "n": n_rows // 2, "platform": platform.pk},
        )
        cursor.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    staff = platform_staff(username="bench-finance")
    return api_token(staff)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _download(token: str, params: dict) -> tuple[float, float, int, int, str]:
    """(seconds, seconds to the first data chunk, bytes, rows, content type) of one export,
    consumed chunk by chunk."""
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="en")
    t = time.perf_counter()
    response = client.get("/api/v1/transactions/", params)
    assert response.status_code == 200, response.status_code
    size = 0
    lines = 0
    first = 0.0
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        if lines and not first:  # the header line comes before the query runs
            first = time.perf_counter() - t
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    return time.perf_counter() - t, first, size, lines, response["Content-Type"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger entries to build")
    parser.add_argument(
        "--xlsx-rows", type=int, default=100_000, help="entries in the XLSX export (0: skip)"
    )
    args = parser.parse_args()

    url, admin = prepare_database("export")
    try:
        setup_django(url)
        t = time.perf_counter()
        token = _build(args.rows)
        from billing.models import Entry

        total = Entry.objects.count()
        print(f"built {total:,} ledger entries in {time.perf_counter() - t:.1f} s")
        _download(token, {"export": "csv", "kind": "recharge"})  # warm-up: imports, URLconf
        before = _peak_rss_mb()
        print(f"peak RSS before the export: {before:,.0f} MB")

        seconds, first, size, lines, content_type = _download(token, {"export": "csv"})
        rows = lines - 1  # the header
        assert rows == total, (rows, total)
        peak = _peak_rss_mb()
        print(
            f"CSV export        : {rows:,} rows ({size / 1e6:,.1f} MB, {content_type}) in "
            f"{seconds:.2f} s = {rows / seconds:,.0f} rows/s (target ≥ 100,000); first rows "
            f"after {first:.2f} s (the query and its sort)"
        )
        print(
            f"peak RSS          : {peak:,.0f} MB (target ≤ 200; "
            f"+{peak - before:,.0f} MB over the process before the export)"
        )

        if args.xlsx_rows > 0:
            n_wallets = N_DOMAINS * PROJECTS_PER_DOMAIN
            hours = max(1, args.xlsx_rows // 2 // n_wallets)
            last = HOUR0 + timedelta(hours=(args.rows // 2 - 1) // n_wallets)
            start = (last - timedelta(hours=hours - 1)).isoformat()
            seconds, _first, size, _lines, _type = _download(
                token, {"export": "xlsx", "start": start}
            )
            xlsx_rows = Entry.objects.filter(transaction__created_at__gte=start).count()
            print(
                f"XLSX export       : {xlsx_rows:,} rows ({size / 1e6:,.1f} MB) in "
                f"{seconds:.2f} s = {xlsx_rows / seconds:,.0f} rows/s; peak RSS now "
                f"{_peak_rss_mb():,.0f} MB"
            )
    finally:
        drop_database(url, admin)


if __name__ == "__main__":
    main()
