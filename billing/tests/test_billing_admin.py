"""Who is emailed about a wallet (SPEC glossary "Billing admin", Locking 4, Notifications): the
effective billing admin — the wallet's billing admin while still an active admin of the tenant —
and the tenant's current admins; "statement ready" to the billing admin, else to the admins."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from django.utils import timezone

from accounts.services import user_update
from billing.enforcement import enforce, tenant_unlock
from billing.ledger import platform_wallet
from billing.models import Notification, Wallet
from billing.services import wallet_adjust, wallet_open, wallet_recharge, wallet_update
from reports.statements import previous_month, statement_issue
from teachcloud.testing.factories import UserFactory
from tenancy.models import DomainRole, Membership
from tenancy.services import (
    domain_role_remove,
    domain_role_set,
    membership_add,
    membership_remove,
    membership_update,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def issue(django_capture_on_commit_callbacks):
    """Issue a statement of a wallet (each call the next month, ending with last month), its
    emails delivered after commit; who got "statement ready"?"""
    months = itertools.count(-6)

    def _issue(wallet: Wallet) -> list:
        Notification.objects.filter(event="statement_ready").delete()
        last = previous_month(timezone.now())
        index = last.year * 12 + last.month - 1 + next(months)
        month = date(index // 12, index % 12 + 1, 1)
        with django_capture_on_commit_callbacks(execute=True):
            statement = statement_issue(wallet=wallet, month=month, force=True)
        assert statement is not None and statement.wallet_id == wallet.pk
        ready = Notification.objects.filter(event="statement_ready", channel="email")
        return [n.recipient for n in ready.order_by("recipient_id")]

    return _issue


@pytest.fixture
def lock(django_capture_on_commit_callbacks):
    """Put the wallet into arrears and run enforcement: who got the lock email?"""

    def _lock(wallet: Wallet, platform) -> list:
        Notification.objects.filter(event="tenant_locked").delete()
        wallet_adjust(actor=platform, wallet=wallet, amount="-5", reason="arrears")
        with django_capture_on_commit_callbacks(execute=True):
            assert enforce(now=timezone.now())["locked"] == 1
        locked = Notification.objects.filter(event="tenant_locked", channel="email")
        return sorted((n.recipient for n in locked), key=lambda user: user.pk)

    return _lock


def second_project_admin(world):
    user = UserFactory(home_domain=world.domain, email="second@example.edu")
    membership_add(actor=world.domain_admin, project=world.project, user=user, role="admin")
    return user


def test_statement_ready_goes_to_the_admins_when_there_is_no_billing_admin(world, smtp, issue):
    second = second_project_admin(world)
    project_wallet = wallet_open(project=world.project)
    assert project_wallet.billing_admin is None

    assert issue(project_wallet) == [world.project_admin, second]
    for user in (world.project_admin, second):
        (message,) = smtp.to(user.email)
        assert "Statement for" in message["Subject"] and "Networks 101" in message["Subject"]
    # Assistants, members and the domain's admins are not the project's admins.
    for user in (world.project_assistant, world.member, world.domain_admin):
        assert smtp.to(user.email) == []

    assert issue(wallet_open(domain=world.domain)) == [world.domain_admin]
    (message,) = smtp.to(world.domain_admin.email)
    assert "North School" in message["Subject"]

    # The platform wallet is nobody's tenant wallet: no email, as before.
    assert issue(platform_wallet()) == []


def test_the_billing_admin_alone_gets_the_statement_until_removed(world, issue, lock):
    second = second_project_admin(world)
    wallet = wallet_open(project=world.project)
    wallet = wallet_update(actor=world.project_admin, wallet=wallet, billing_admin=second)

    assert issue(wallet) == [second]
    # Lock (and low balance): the billing admin and the tenant's admins, one email each.
    assert lock(wallet, world.platform) == [world.project_admin, second]
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="10", method="bank")
    tenant_unlock(actor=world.project_admin, project=world.project)

    membership_remove(actor=world.domain_admin, membership=Membership.objects.get(user=second))
    wallet.refresh_from_db()
    assert wallet.billing_admin == second  # still recorded, no longer in effect
    assert issue(wallet) == [world.project_admin]
    assert lock(wallet, world.platform) == [world.project_admin]
    assert not Notification.objects.filter(recipient=second, event="tenant_locked").exists()


def test_a_demoted_billing_admin_is_no_longer_emailed(world, lock, issue):
    second = second_project_admin(world)
    wallet = wallet_open(project=world.project)
    wallet = wallet_update(actor=world.project_admin, wallet=wallet, billing_admin=second)
    membership_update(
        actor=world.project_admin, membership=Membership.objects.get(user=second), role="member"
    )

    assert lock(wallet, world.platform) == [world.project_admin]
    assert issue(wallet) == [world.project_admin]
    assert not Notification.objects.filter(recipient=second).exists()


def test_the_domain_admin_as_a_project_wallets_billing_admin(world, issue):
    """A project wallet's billing admin may be the project's domain admin — while they are."""
    wallet = wallet_open(project=world.project)
    Wallet.objects.filter(pk=wallet.pk).update(billing_admin=world.domain_admin)
    wallet.refresh_from_db()
    assert issue(wallet) == [world.domain_admin]

    other = UserFactory(home_domain=world.domain)
    domain_role_set(actor=world.platform, domain=world.domain, user=other, role="admin")
    grant = DomainRole.objects.get(domain=world.domain, user=world.domain_admin)
    domain_role_remove(actor=world.platform, grant=grant)
    assert issue(wallet) == [world.project_admin]


def test_inactive_users_are_not_emailed(world, issue, lock):
    second = second_project_admin(world)
    wallet = wallet_open(project=world.project)
    wallet = wallet_update(actor=world.project_admin, wallet=wallet, billing_admin=second)
    user_update(actor=world.domain_admin, user=second, is_active=False)

    assert issue(wallet) == [world.project_admin]
    assert lock(wallet, world.platform) == [world.project_admin]
    # Not even a failed notification: an inactive account is nobody to write to.
    assert not Notification.objects.filter(recipient=second).exists()

    user_update(actor=world.domain_admin, user=world.project_admin, is_active=False)
    user_update(actor=world.domain_admin, user=second, is_active=True)
    assert issue(wallet) == [second]


def test_who_may_be_chosen_is_who_stays_effective(world):
    """wallet_update accepts as billing admin exactly who the emails count: for a project
    wallet, a project admin or that project's domain admin; nobody else."""
    from billing.enforcement import effective_billing_admin
    from teachcloud.errors import ServiceError

    wallet = wallet_open(project=world.project)
    wallet_update(actor=world.domain_admin, wallet=wallet, billing_admin=world.domain_admin)
    assert effective_billing_admin(Wallet.objects.get(pk=wallet.pk)) == world.domain_admin
    with pytest.raises(ServiceError) as refused:
        wallet_update(actor=world.domain_admin, wallet=wallet, billing_admin=world.member)
    assert refused.value.code == "not_an_admin"
    with pytest.raises(ServiceError):
        wallet_update(actor=world.domain_admin, wallet=wallet, billing_admin=world.other_admin)
