"""Locks, unlocks, member budgets, low-balance alerts, purges and anonymisation (SPEC "Locking,
credit, purge"). Time is driven by passing `now`; balances are built with the billing services
and resource charges posted through the ledger."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from allauth.account.models import EmailAddress
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from billing.enforcement import add_months, enforce, member_unlock, tenant_lock, tenant_unlock
from billing.ledger import platform_wallet, post
from billing.models import (
    BudgetAlert,
    ComputeRequest,
    LockPeriod,
    MemberConsumption,
    Notification,
    PurgeReminder,
    Transaction,
    TransactionKind,
    Wallet,
)
from billing.services import (
    allocation_set,
    member_budget_set,
    platform_capacity_set,
    target_of,
    wallet_adjust,
    wallet_open,
    wallet_recharge,
    wallet_update,
)
from teachcloud.errors import ServiceError
from teachcloud.testing.factories import UserFactory
from tenancy.models import AuditEvent, Domain, Membership, Project
from tenancy.permissions import forget_roles, roles_of
from tenancy.services import membership_add, membership_remove

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
_hours = itertools.count()


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """enforce(now=…) with its after-commit deliveries executed."""

    def _run(now):
        with django_capture_on_commit_callbacks(execute=True):
            return enforce(now=now)

    return _run


@pytest.fixture
def wallets(world):
    return wallet_open(domain=world.domain), wallet_open(project=world.project)


def charge(wallet: Wallet, amount: str) -> None:
    """A resource charge of `amount` to the wallet's payee, posted through the ledger."""
    value = Decimal(amount)
    payee = wallet_open(domain=wallet.project.domain) if wallet.project_id else platform_wallet()
    hour = datetime(2024, 1, 1, tzinfo=SHANGHAI) + timedelta(hours=next(_hours))
    post(
        kind=TransactionKind.RESOURCE_CHARGE,
        wallet=wallet,
        legs=[(wallet, -value), (payee, value)],
        period_start=hour,
        memo="test charge",
    )


def fresh(obj):
    obj.refresh_from_db()
    return obj


def events(event: str, **filters) -> list[Notification]:
    return list(Notification.objects.filter(event=event, channel="email", **filters).order_by("id"))


# -- Locking 1: lock at available ≤ 0 ---------------------------------------------------------


def test_lock_at_zero_and_not_before(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="10.0000", method="bank")
    charge(wallet, "9.9999")
    now = timezone.now() + timedelta(hours=1)
    assert run(now)["locked"] == 0
    assert not fresh(wallet).locked and fresh(world.project).status == "active"

    charge(wallet, "0.0001")  # available exactly 0.0000
    assert run(now)["locked"] == 1
    wallet = fresh(wallet)
    assert wallet.available == Decimal("0.0000")
    assert wallet.locked_at == now and wallet.unpaid_since == now
    assert "0.0000" in wallet.lock_reason_text
    assert fresh(world.project).status == "locked"
    period = LockPeriod.objects.get(wallet=wallet)
    assert period.start == now and period.end is None and period.locked_by is None
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.project == world.project and stop.membership is None
    assert AuditEvent.objects.filter(action="tenant.lock", project=world.project).count() == 1
    (mail,) = events("tenant_locked")
    assert mail.recipient == world.project_admin and mail.status == "sent"
    assert mail.project == world.project

    # A second run changes nothing (the lock is recorded once).
    assert run(now + timedelta(hours=1))["locked"] == 0
    assert LockPeriod.objects.count() == 1 and ComputeRequest.objects.count() == 1
    # The domain was not touched.
    assert fresh(world.domain).status == "active"


def test_credit_keeps_the_tenant_open(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_update(actor=world.domain_admin, wallet=wallet, credit_ceiling="20")
    wallet_update(actor=world.project_admin, wallet=wallet, credit_limit="10")
    charge(wallet, "6")
    now = timezone.now()
    assert fresh(wallet).balance == Decimal("-6.0000")
    assert fresh(wallet).available == Decimal("4.0000")
    assert run(now)["locked"] == 0 and not fresh(wallet).locked
    charge(wallet, "4")
    assert run(now)["locked"] == 1 and fresh(wallet).locked


def test_domain_lock_stops_all_its_projects(world, wallets, run):
    domain_wallet, _wallet = wallets
    wallet_adjust(actor=world.platform, wallet=domain_wallet, amount="-100", reason="fee owed")
    now = timezone.now()
    run(now)
    assert fresh(world.domain).status == "locked"
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.domain == world.domain and stop.project is None  # all its projects
    (mail,) = events("tenant_locked")
    assert mail.recipient == world.domain_admin


# -- Locking 2: manual unlock -----------------------------------------------------------------


def test_unlock_refused_with_the_numbers_then_allowed_after_recharge(world, wallets, run):
    _domain_wallet, wallet = wallets
    charge(wallet, "5")
    lock_time = timezone.now()
    run(lock_time)
    with pytest.raises(ServiceError) as refused:
        tenant_unlock(actor=world.project_admin, project=world.project)
    assert refused.value.code == "not_payable" and refused.value.status == 409
    assert "-5.0000" in refused.value.detail and "0.0000" in refused.value.detail
    assert fresh(wallet).locked

    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="5", method="bank")
    with pytest.raises(ServiceError) as still:  # available exactly 0 is not enough
        tenant_unlock(actor=world.project_admin, project=world.project)
    assert still.value.code == "not_payable"

    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="20", method="bank")
    unlock_time = lock_time + timedelta(minutes=30)
    tenant_unlock(
        actor=world.project_admin, project=world.project, restart_servers=True, now=unlock_time
    )
    wallet = fresh(wallet)
    assert not wallet.locked and wallet.unpaid_since is None and wallet.lock_reason == ""
    assert fresh(world.project).status == "active"
    period = LockPeriod.objects.get(wallet=wallet)
    assert period.end == unlock_time and period.unlocked_by == world.project_admin
    restart = ComputeRequest.objects.get(action="restart")
    assert restart.project == world.project
    assert AuditEvent.objects.filter(action="tenant.unlock", project=world.project).exists()
    assert len(events("tenant_unlocked")) == 1
    with pytest.raises(ServiceError) as again:
        tenant_unlock(actor=world.project_admin, project=world.project)
    assert again.value.code == "not_locked"


def test_unlock_after_credit_without_restart(world, wallets, run):
    domain_wallet, _wallet = wallets
    wallet_adjust(actor=world.platform, wallet=domain_wallet, amount="-30", reason="arrears")
    run(timezone.now())
    assert fresh(domain_wallet).locked
    wallet_update(actor=world.platform, wallet=domain_wallet, credit_ceiling="50")
    wallet_update(actor=world.domain_admin, wallet=domain_wallet, credit_limit="40")
    tenant_unlock(actor=world.domain_admin, domain=world.domain)
    assert not fresh(domain_wallet).locked and fresh(world.domain).status == "active"
    assert not ComputeRequest.objects.filter(action="restart").exists()
    # A later run does not lock it again: available is 10.
    assert run(timezone.now())["locked"] == 0


def test_who_may_unlock(world, wallets, run):
    _domain_wallet, wallet = wallets
    charge(wallet, "1")
    run(timezone.now())
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="10", method="bank")
    for user in (world.member, world.project_assistant, world.other_admin, world.outsider):
        with pytest.raises(PermissionDenied):
            tenant_unlock(actor=user, project=world.project)
    tenant_unlock(actor=world.domain_admin, project=world.project)  # a superior
    assert not fresh(wallet).locked


# -- Manual lock by the superior --------------------------------------------------------------


def test_manual_lock_by_the_superior_only(world, wallets):
    _domain_wallet, wallet = wallets
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="100", method="bank")
    for user in (world.project_admin, world.domain_assistant, world.member, world.other_admin):
        with pytest.raises(PermissionDenied):
            tenant_lock(actor=user, project=world.project, reason="abuse")
    with pytest.raises(PermissionDenied):  # a domain is locked only by platform staff
        tenant_lock(actor=world.domain_admin, domain=world.domain, reason="abuse")
    with pytest.raises(ServiceError) as no_reason:
        tenant_lock(actor=world.domain_admin, project=world.project, reason="  ")
    assert no_reason.value.code == "reason_required"

    tenant_lock(actor=world.domain_admin, project=world.project, reason="crypto mining")
    wallet = fresh(wallet)
    assert wallet.locked and wallet.lock_reason == "crypto mining"
    assert wallet.unpaid_since is None  # not a lock for non-payment
    assert LockPeriod.objects.get(wallet=wallet).locked_by == world.domain_admin
    assert fresh(world.project).status == "locked"
    assert ComputeRequest.objects.filter(action="stop", project=world.project).count() == 1
    with pytest.raises(ServiceError) as twice:
        tenant_lock(actor=world.domain_admin, project=world.project, reason="again")
    assert twice.value.code == "locked"

    # The project admin may not lift a superior's lock, even with money; the superior may.
    with pytest.raises(PermissionDenied):
        tenant_unlock(actor=world.project_admin, project=world.project)
    tenant_unlock(actor=world.domain_admin, project=world.project)
    assert not fresh(wallet).locked

    tenant_lock(actor=world.platform, domain=world.domain, reason="contract ended")
    assert fresh(world.domain).status == "locked"


# -- Locking 3: member budgets ----------------------------------------------------------------


def _consume(project, user, amount: str) -> None:
    """Rated consumption of one more hour (what charging's rating writes)."""
    hour = datetime(2024, 1, 1, tzinfo=SHANGHAI) + timedelta(hours=next(_hours))
    MemberConsumption.objects.create(project=project, user=user, hour=hour, amount=Decimal(amount))


def _membership(world) -> Membership:
    return Membership.objects.get(project=world.project, user=world.member)


def _with_budget(world, budget: str) -> Membership:
    membership = _membership(world)
    allocation_set(
        actor=world.project_admin,
        target=target_of(membership=membership),
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        budget=budget,
    )
    return membership


def test_budget_alerts_once_each_and_lock_at_100(world, run):
    membership = _with_budget(world, "100")
    now = timezone.now()
    _consume(world.project, world.member, "49.9999")
    assert run(now)["budget_alerts"] == 0
    _consume(world.project, world.member, "0.0001")  # exactly 50 %
    assert run(now)["budget_alerts"] == 1
    assert run(now)["budget_alerts"] == 0  # once per crossing
    (alert,) = events("budget_alert")
    assert alert.recipient == world.member and "50 %" in alert.subject
    assert "50.0000" in alert.body and "100.0000" in alert.body

    _consume(world.project, world.member, "30")  # 80 %
    _consume(world.project, world.member, "5")  # 85 %
    assert run(now)["budget_alerts"] == 1
    _consume(world.project, world.member, "5")  # 90 %
    assert run(now)["budget_alerts"] == 1
    assert [n.subject.split()[3] for n in events("budget_alert")] == ["50", "80", "90"]
    assert not fresh(membership).locked

    _consume(world.project, world.member, "9.9999")  # 99.9999 %
    assert run(now)["members_locked"] == 0
    _consume(world.project, world.member, "0.0001")  # 100 %
    result = run(now)
    assert result["members_locked"] == 1 and result["budget_alerts"] == 0
    assert fresh(membership).locked
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.membership == membership and stop.project == world.project
    assert AuditEvent.objects.filter(action="membership.lock").count() == 1
    locked_mails = events("member_locked")
    assert {n.recipient for n in locked_mails} == {
        world.member,
        world.project_admin,
        world.project_assistant,
    }
    assert run(now)["members_locked"] == 0
    assert ComputeRequest.objects.count() == 1
    # The tenant itself is not locked.
    assert fresh(world.project).status == "active"


def test_a_jump_sends_one_alert_for_the_highest_threshold(world, run):
    _with_budget(world, "200")
    _consume(world.project, world.member, "183")  # 91.5 %
    assert run(timezone.now())["budget_alerts"] == 1
    (alert,) = events("budget_alert")
    assert "90 %" in alert.subject
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80, 90]


def test_thresholds_come_from_settings(world, run, settings):
    settings.TEACHCLOUD_BUDGET_ALERTS = [25, 75]
    _with_budget(world, "100")
    _consume(world.project, world.member, "30")
    run(timezone.now())
    (alert,) = events("budget_alert")
    assert "25 %" in alert.subject


def test_member_unlock_needs_a_budget_above_consumption_and_rearms_alerts(world, run):
    membership = _with_budget(world, "100")
    _consume(world.project, world.member, "100")
    now = timezone.now()
    run(now)
    assert fresh(membership).locked
    assert BudgetAlert.objects.count() == 3

    with pytest.raises(PermissionDenied):
        member_unlock(actor=world.member, membership=membership)
    with pytest.raises(ServiceError) as refused:
        member_unlock(actor=world.project_assistant, membership=membership)
    assert refused.value.code == "over_budget"
    assert "100.0000" in refused.value.detail
    with pytest.raises(ServiceError) as not_above:
        member_unlock(actor=world.project_assistant, membership=membership, budget="100.0000")
    assert not_above.value.code == "over_budget"
    with pytest.raises(ServiceError):
        member_unlock(actor=world.project_assistant, membership=membership, budget="99")
    # Nothing was written by the refusals: the budget is still 100 and the member locked.
    current = membership.allocations.get(end__isnull=True)
    assert current.budget == Decimal("100.0000") and fresh(membership).locked

    member_unlock(actor=world.project_assistant, membership=membership, budget="250")
    assert not fresh(membership).locked
    current = membership.allocations.get(end__isnull=True)
    assert current.budget == Decimal("250.0000")
    assert (current.vcpus, current.ram_gib, current.disk_gib) == (2, 4, 20)  # limit kept
    assert not BudgetAlert.objects.exists()  # re-armed
    assert len(events("member_unlocked")) == 1
    assert AuditEvent.objects.filter(action="membership.unlock").count() == 1

    # 100 / 250 = 40 %: no alert; 125 / 250 = 50 %: the 50 % alert again.
    assert run(now)["budget_alerts"] == 0
    _consume(world.project, world.member, "25")
    assert run(now)["budget_alerts"] == 1
    # The jump straight to 100 % was told by the lock email alone; now the 50 % alert.
    (alert,) = events("budget_alert")
    assert "50 %" in alert.subject and "125.0000" in alert.body and "250.0000" in alert.body


def test_raising_the_budget_through_allocations_rearms(world, run):
    membership = _with_budget(world, "100")
    _consume(world.project, world.member, "60")
    now = timezone.now()
    run(now)
    assert len(events("budget_alert")) == 1
    member_budget_set(actor=world.project_admin, membership=membership, budget="110")
    _consume(world.project, world.member, "0")
    run(now)  # 60 / 110 = 54.5 %: alerted again for the new budget
    assert len(events("budget_alert")) == 2
    # The general allocation service re-arms too (enforce drops alerts of another budget).
    _with_budget(world, "119")
    run(now)
    assert len(events("budget_alert")) == 3


def test_member_not_locked_cannot_be_unlocked(world):
    membership = _with_budget(world, "100")
    with pytest.raises(ServiceError) as error:
        member_unlock(actor=world.project_admin, membership=membership)
    assert error.value.code == "not_locked"


# -- Locking 4: low balance -------------------------------------------------------------------


def test_low_balance_once_per_crossing_with_the_default_threshold(world, wallets, run):
    domain_wallet, _wallet = wallets
    platform_capacity_set(actor=world.platform, vcpus=100, ram_gib=400, disk_gib=4000, overcommit=1)
    allocation_set(
        actor=world.platform,
        target=target_of(domain=world.domain),
        vcpus=10,
        ram_gib=20,
        disk_gib=100,
    )
    # Default prices: 10×0.05 + 20×0.02 + 100×0.0005 = 0.95 per hour; 7 days = 159.60.
    wallet_update(actor=world.domain_admin, wallet=domain_wallet, billing_admin=world.domain_admin)
    wallet_recharge(actor=world.platform, wallet=domain_wallet, amount="200", method="bank")
    now = timezone.now() + timedelta(minutes=1)
    assert run(now)["low_balance_alerts"] == 0

    charge(domain_wallet, "40.4001")  # available 159.5999 < 159.60
    assert run(now)["low_balance_alerts"] == 1
    assert run(now)["low_balance_alerts"] == 0
    (mail,) = events("low_balance")
    assert mail.recipient == world.domain_admin  # billing admin and admin: one email
    assert "159.6000" in mail.body and "159.5999" in mail.body
    assert fresh(domain_wallet).low_balance_alerted

    wallet_recharge(actor=world.platform, wallet=domain_wallet, amount="0.0001", method="bank")
    result = run(now)  # exactly at the threshold: re-armed, no alert
    assert result["low_balance_rearmed"] == 1 and result["low_balance_alerts"] == 0
    assert not fresh(domain_wallet).low_balance_alerted
    charge(domain_wallet, "1")
    assert run(now)["low_balance_alerts"] == 1
    assert len(events("low_balance")) == 2


def test_low_balance_with_an_explicit_threshold_and_credit(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_update(actor=world.project_assistant, wallet=wallet, alert_threshold="50")
    wallet_update(actor=world.domain_admin, wallet=wallet, credit_ceiling="30")
    wallet_update(actor=world.project_admin, wallet=wallet, credit_limit="30")
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="25", method="bank")
    now = timezone.now()
    assert run(now)["low_balance_alerts"] == 0  # available 55
    charge(wallet, "10")  # 45
    assert run(now)["low_balance_alerts"] == 1
    (mail,) = events("low_balance")
    assert mail.recipient == world.project_admin and mail.project == world.project


def test_locked_wallet_is_locked_not_low_balance_alerted(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_update(actor=world.project_admin, wallet=wallet, alert_threshold="50")
    charge(wallet, "5")
    result = run(timezone.now())
    assert result["locked"] == 1 and result["low_balance_alerts"] == 0
    # After a recharge below the threshold and an unlock, the low balance is told.
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="15", method="bank")
    tenant_unlock(actor=world.project_admin, project=world.project)
    assert run(timezone.now())["low_balance_alerts"] == 1


# -- Locking 5: purge -------------------------------------------------------------------------


def test_purge_reminders_30_7_1_then_purge(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_adjust(actor=world.platform, wallet=wallet, amount="-10", reason="fees owed")
    t0 = timezone.now()
    run(t0)
    wallet = fresh(wallet)
    assert wallet.unpaid_since == t0
    purge_at = add_months(t0, 18)
    transactions = Transaction.objects.count()

    assert run(purge_at - timedelta(days=31))["purge_reminders"] == 0
    assert run(purge_at - timedelta(days=30))["purge_reminders"] == 1
    assert run(purge_at - timedelta(days=29))["purge_reminders"] == 0
    assert run(purge_at - timedelta(days=7))["purge_reminders"] == 1
    assert run(purge_at - timedelta(days=6))["purge_reminders"] == 0
    assert run(purge_at - timedelta(days=1))["purge_reminders"] == 1
    last = run(purge_at - timedelta(seconds=1))
    assert last["purge_reminders"] == 0 and last["purged"] == 0
    assert sorted(PurgeReminder.objects.values_list("days", flat=True)) == [1, 7, 30]
    reminders = events("purge_reminder")
    assert len(reminders) == 3 and {n.recipient for n in reminders} == {world.project_admin}
    assert any("1 day." in n.body for n in reminders)
    assert any("30 days" in n.body for n in reminders)
    assert fresh(world.project).status == "locked"

    assert run(purge_at)["purged"] == 1
    assert fresh(world.project).status == "purged"
    delete = ComputeRequest.objects.get(action="delete")
    assert delete.project == world.project
    assert AuditEvent.objects.filter(action="tenant.purge", project=world.project).count() == 1
    assert len(events("tenant_purged")) == 1
    # Access ends, the rows and the ledger stay.
    assert Membership.objects.filter(project=world.project).count() == 3
    forget_roles(world.member)
    assert world.project.pk not in roles_of(world.member).projects
    assert Transaction.objects.count() == transactions
    assert Wallet.objects.filter(pk=wallet.pk).exists()
    assert run(purge_at + timedelta(days=1))["purged"] == 0
    assert fresh(world.domain).status == "active"


def test_payment_stops_the_purge_clock(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_adjust(actor=world.platform, wallet=wallet, amount="-10", reason="fees owed")
    t0 = timezone.now()
    run(t0)
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="11", method="bank")
    run(t0 + timedelta(days=1))  # paid, still locked: no longer unpaid
    assert fresh(wallet).locked and fresh(wallet).unpaid_since is None
    assert run(add_months(t0, 18))["purged"] == 0
    assert fresh(world.project).status == "locked"


def test_late_run_sends_only_the_most_urgent_reminder(world, wallets, run):
    domain_wallet, _wallet = wallets
    wallet_adjust(actor=world.platform, wallet=domain_wallet, amount="-1", reason="fees owed")
    t0 = timezone.now()
    run(t0)
    purge_at = add_months(t0, 18)
    assert run(purge_at - timedelta(days=3))["purge_reminders"] == 1
    assert sorted(PurgeReminder.objects.values_list("days", flat=True)) == [7, 30]
    assert "7 days" in events("purge_reminder")[0].body
    result = run(purge_at)
    assert result["purged"] == 1
    # A purged domain takes its projects with it.
    assert fresh(world.domain).status == "purged"
    assert Project.objects.get(pk=world.project.pk).status == "purged"
    assert ComputeRequest.objects.get(action="delete").domain == world.domain
    forget_roles(world.domain_admin)
    assert not roles_of(world.domain_admin).domains


def test_manual_lock_alone_does_not_start_the_purge_clock(world, wallets, run):
    _domain_wallet, wallet = wallets
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="5", method="bank")
    tenant_lock(actor=world.domain_admin, project=world.project, reason="audit")
    run(timezone.now())
    assert fresh(wallet).unpaid_since is None
    assert run(timezone.now() + timedelta(days=600))["purged"] == 0


def test_add_months_clips_to_the_month_end_in_shanghai():
    start = datetime(2024, 8, 31, 23, 30, tzinfo=SHANGHAI)
    assert add_months(start, 18) == datetime(2026, 2, 28, 23, 30, tzinfo=SHANGHAI)
    assert add_months(start, -6) == datetime(2024, 2, 29, 23, 30, tzinfo=SHANGHAI)


# -- Users gone for 18 months -----------------------------------------------------------------


def test_user_without_membership_for_18_months_is_anonymised(world, run):
    long_ago = timezone.now() - timedelta(days=800)
    gone = UserFactory(home_domain=world.domain, date_joined=long_ago, phone="13800000000")
    recent = UserFactory(home_domain=world.domain, date_joined=long_ago)
    membership_add(actor=world.project_admin, project=world.project, user=recent)
    membership = Membership.objects.get(user=recent)
    membership_remove(actor=world.project_admin, membership=membership)
    logged_in = UserFactory(home_domain=world.domain, date_joined=long_ago)
    logged_in.last_login = timezone.now() - timedelta(days=30)
    logged_in.save()
    old_member = UserFactory(home_domain=world.domain, date_joined=long_ago)
    membership_add(actor=world.project_admin, project=world.project, user=old_member)
    Membership.objects.filter(user=old_member).update(created_at=long_ago)

    now = timezone.now() + timedelta(days=1)
    result = run(now)
    gone = fresh(gone)
    assert gone.real_name == "已清除用户"
    assert gone.email == gone.phone == gone.id_number == ""
    assert not gone.is_active and gone.purged_at == now
    assert not gone.has_usable_password()
    assert not EmailAddress.objects.filter(user=gone).exists()
    assert AuditEvent.objects.filter(action="user.purge", target_id=str(gone.pk)).exists()
    for kept in (recent, logged_in, old_member, world.member, world.domain_admin, world.platform):
        assert fresh(kept).purged_at is None and fresh(kept).is_active
    # world.outsider joined just now: not yet.
    assert fresh(world.outsider).purged_at is None
    assert result["users_anonymised"] == 1

    # 18 months after the membership of `recent` ended, they go too.
    later = add_months(timezone.now(), 18) + timedelta(days=1)
    run(later)
    assert fresh(recent).real_name == "已清除用户"
    assert fresh(old_member).purged_at is None  # still a live member
    assert fresh(world.domain_admin).purged_at is None  # a live domain role
    assert fresh(world.outsider).purged_at == later


def test_fresh_wallets_that_were_never_charged_are_not_locked(world, wallets, run):
    """0 + 0 available on a new tenant owes nothing; enforcement is quiet."""
    result = run(timezone.now())
    assert result["locked"] == 0 and result["purged"] == 0
    assert not Notification.objects.exists()
    assert Domain.objects.get(pk=world.domain.pk).status == "active"
    assert not any(w.locked for w in Wallet.objects.all())
