"""Exactly once on PostgreSQL: two `billing_run` processes started together, and a run killed
with SIGKILL mid-way then rerun, end with the ledger of one clean run (the oracle's), and
`billing_check` passes."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.charging import floor_hour, ledger_check
from billing.models import Transaction, Wallet
from billing.tests import oracle
from billing.tests.oracle import allocate, make_domain, make_project

ROOT = Path(__file__).resolve().parents[2]
HOURS = 40

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def start_run(until: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "billing_run", "--until", until],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teachcloud.settings.test",
            "DATABASE_URL": database_url(),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def world():
    """10 domains with 2 projects each: 30 paying wallets, 40 hours to catch up."""
    # A transactional test starts from whatever the previous one flushed: put back the rows
    # migration 0002 writes (platform wallet, default price plan), idempotently.
    importlib.import_module("billing.migrations.0002_defaults").forwards(apps, None)
    staff = oracle.setup_platform()
    until = floor_hour(timezone.now()) - timedelta(hours=2) + timedelta(minutes=7)
    start = until - timedelta(hours=HOURS) + timedelta(minutes=13, seconds=5)
    for i in range(10):
        domain = make_domain(staff, f"d{i}")
        allocate(staff, start, (8 + i, 16, 200), domain=domain)
        for j in range(2):
            project = make_project(staff, domain, f"p{i}-{j}")
            allocate(
                staff, start + timedelta(minutes=i, seconds=j), (1 + j, 2, 10 * i), project=project
            )
    return until


def assert_clean_ledger(until) -> None:
    allocs, prices, locks = oracle.load_inputs()
    expected = oracle.expected_charges(allocs, prices, locks, until)
    assert len(expected) == 30 * HOURS
    assert oracle.ledger_charges() == expected
    assert ledger_check() == []
    call_command("billing_check")  # raises CommandError (exit 1) on any problem
    total = sum((t for t, _lines in expected.values()), Decimal(0))
    platform = Wallet.objects.get(kind="platform")
    domain_side = sum(t for (w, _h), (t, _l) in expected.items() if w in _domain_wallets())
    assert platform.balance == domain_side
    assert Wallet.objects.exclude(kind="platform").count() == 30
    assert total > 0


def _domain_wallets() -> set[int]:
    return set(Wallet.objects.filter(kind="domain").values_list("id", flat=True))


def test_two_runs_started_together_charge_each_hour_once(world):
    until = world.isoformat()
    first, second = start_run(until), start_run(until)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert Transaction.objects.filter(kind="resource_charge").count() == 30 * HOURS
    assert_clean_ledger(world)
    # Together they inserted each charge once: the two summaries add up to the whole.
    import json

    counts = [json.loads(out)["resource_charges"] for out, _err in outputs]
    assert sum(counts) == 30 * HOURS


def test_run_killed_mid_way_then_rerun_ends_like_a_clean_run(world):
    until = world.isoformat()
    victim = start_run(until, TEACHCLOUD_BILLING_BATCH_PAUSE="0.25")
    deadline = time.monotonic() + 120
    while Transaction.objects.filter(kind="resource_charge").count() < 30 * 5:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    partial = Transaction.objects.filter(kind="resource_charge").count()
    assert 0 < partial < 30 * HOURS
    assert partial % 30 == 0  # whole hours only: the open hour was rolled back
    assert ledger_check() == []

    rerun = start_run(until)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert_clean_ledger(world)
