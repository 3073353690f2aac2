"""The `billing_run` and `billing_check` commands, the Celery task and beat, member rating."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing.charging import billing_run, ledger_check
from billing.models import Holding, MemberConsumption, PriceVersion, Transaction, Wallet
from billing.tasks import run_billing
from billing.tests import oracle
from billing.tests.oracle import CST, allocate, make_domain, make_project
from teachcloud.celery import app
from teachcloud.testing.clock import pinned
from teachcloud.testing.factories import UserFactory
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 5, 10, 17, 23, tzinfo=CST)


def hour(h: int) -> datetime:
    return datetime(2026, 10, 5, h, tzinfo=CST)


@pytest.fixture
def charged():
    staff = oracle.setup_platform()
    domain = make_domain(staff, "north")
    project = make_project(staff, domain, "net101")
    allocate(staff, T0, (4, 8, 100), domain=domain)
    allocate(staff, T0, (2, 4, 50), project=project)
    return staff, domain, project


@pytest.fixture
def recent():
    staff = oracle.setup_platform()
    domain = make_domain(staff, "east")
    start = timezone.now() - timedelta(hours=3, minutes=12)
    allocate(staff, start, (4, 8, 100), domain=domain)
    return start


def test_command_runs_until_and_prints_the_summary(charged):
    out = io.StringIO()
    call_command("billing_run", "--until", "2026-10-05T12:30:00+08:00", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["hours"] == 2 and summary["resource_charges"] == 4
    assert summary["resource_amount"] == "1.0518"
    # Without an offset the instant is Asia/Shanghai time: the same hours, nothing new.
    out = io.StringIO()
    call_command("billing_run", "--until", "2026-10-05T12:59:59", stdout=out)
    assert json.loads(out.getvalue())["resource_charges"] == 0
    assert Transaction.objects.filter(kind="resource_charge").count() == 4


def test_command_refuses_the_future_and_nonsense(charged):
    future = (timezone.now() + timedelta(hours=2)).isoformat()
    with pytest.raises(CommandError, match="in the future"):
        call_command("billing_run", "--until", future)
    with pytest.raises(CommandError, match="ISO-8601"):
        call_command("billing_run", "--until", "next tuesday")
    assert not Transaction.objects.filter(kind="resource_charge").exists()


def test_command_default_is_now_and_charges_every_hour_since_the_start(recent):
    out = io.StringIO()
    with pinned() as now:  # the command reads the clock too: no hour may end in between
        call_command("billing_run", stdout=out)
    summary = json.loads(out.getvalue())
    # The allocation began 3 h 12 min ago: its partial first hour and every complete one since.
    first = recent.replace(minute=0, second=0, microsecond=0)
    hours = int((now - first).total_seconds() // 3600)
    assert hours in (3, 4)
    assert summary["hours"] == hours and summary["resource_charges"] == hours


def test_billing_check_passes_then_reports_a_corrupted_balance(charged):
    billing_run(until=hour(13))
    out = io.StringIO()
    call_command("billing_check", stdout=out)
    assert "Ledger OK" in out.getvalue()

    _staff, domain, _project = charged
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_wallet SET balance = balance + 0.0001 WHERE id = %s", [domain.wallet.pk]
        )
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("billing_check", stderr=err)
    assert info.value.returncode == 1
    wallet = Wallet.objects.get(pk=domain.wallet.pk)
    expected = wallet.balance - Decimal("0.0001")
    assert (
        f"Wallet #{wallet.pk}: cached balance {wallet.balance}, its entries sum to {expected}"
        in (err.getvalue())
    )


def test_billing_check_reports_unbalanced_transactions_and_lines(charged):
    billing_run(until=hour(12))
    tx = Transaction.objects.filter(kind="resource_charge").order_by("id").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_chargeline SET amount = amount + 1 WHERE transaction_id = %s", [tx.pk]
        )
        cursor.execute(
            "UPDATE billing_entry SET amount = amount + 2 WHERE id = "
            "(SELECT min(id) FROM billing_entry WHERE transaction_id = %s)",
            [tx.pk],
        )
    problems = ledger_check()
    assert any(p.startswith(f"Transaction #{tx.pk}: its entries sum to 2.0000") for p in problems)
    assert any(p.startswith(f"Resource charge #{tx.pk}: charged") for p in problems)
    assert any("cached balance" in p for p in problems)


def test_celery_task_and_beat_run_the_same_code(recent):
    result = run_billing.delay().get()
    assert result["resource_charges"] > 0
    assert ledger_check() == []
    schedule = app.conf.beat_schedule
    billing = {k: v for k, v in schedule.items() if v["task"] == "billing.tasks.run_billing"}
    assert len(billing) == 3
    crons = {str(v["schedule"]) for v in billing.values()}
    assert any("5 * * * *" in c or "<crontab: 5 * * * *" in c for c in crons), crons
    assert "tenancy-expire-grants" in schedule  # existing entries kept


def test_members_are_rated_not_charged(charged):
    staff, domain, project = charged
    student = UserFactory(home_domain=domain)
    membership = membership_add(actor=staff, project=project, user=student)
    # Compute writes holdings; the test writes them as compute would.
    Holding.objects.create(
        membership=membership,
        project=project,
        user=student,
        server_ref="vm-1",
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        start=hour(10) + timedelta(minutes=30),
        end=hour(12) + timedelta(minutes=6),
    )
    Holding.objects.create(
        membership=membership,
        project=project,
        user=student,
        server_ref="vm-2",
        vcpus=1,
        ram_gib=1,
        disk_gib=10,
        start=hour(11) + timedelta(minutes=40),
        end=None,
    )
    PriceVersion.objects.create(
        effective_from=hour(12),
        vcpu_hour=Decimal("0.1000"),
        ram_gib_hour=Decimal("0.0400"),
        disk_gib_hour=Decimal("0.0010"),
        domain_fee=Decimal("100"),
        project_fee=Decimal("10"),
        user_fee=Decimal("1"),
    )
    balances = dict(Wallet.objects.values_list("id", "balance"))
    summary = billing_run(until=hour(13))
    rows = dict(
        MemberConsumption.objects.filter(project=project, user=student).values_list(
            "hour", "amount"
        )
    )
    # vm-1 rate 0.1 + 0.08 + 0.01 = 0.19/h; vm-2 0.05 + 0.02 + 0.005 = 0.075/h (doubled from 12:00)
    assert rows == {
        hour(10): Decimal("0.0950"),  # 1800 s × 0.19
        hour(11): Decimal("0.1900") + Decimal("0.0250"),  # full hour + 1200 s × 0.075
        hour(12): Decimal("0.0380") + Decimal("0.1500"),  # 360 s × 0.38 + full hour × 0.15
    }
    assert summary["rated"] == 3
    # Rating moves no money: only the resource charges of the wallets did.
    charges = Transaction.objects.filter(kind="resource_charge").count()
    assert charges == 6 and summary["resource_charges"] == 6
    assert dict(Wallet.objects.values_list("id", "balance")) != balances
    billing_run(until=hour(13))  # a second run rates nothing twice
    assert MemberConsumption.objects.count() == 3
    assert ledger_check() == []
