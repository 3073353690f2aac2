"""Nobody credits their own wallet (SPEC Money 5), also with two hats: a domain admin who runs
one of the domain's projects does not record recharges into that project's wallet."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from billing.models import Transaction
from billing.services import wallet_open, wallet_recharge
from teachcloud.testing.factories import ProjectFactory, make_world
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def w():
    world = make_world()
    membership_add(
        actor=world.platform, project=world.project, user=world.domain_admin, role="admin"
    )
    return world


def test_a_domain_admin_does_not_recharge_a_project_they_run(w):
    wallet = wallet_open(project=w.project)
    with pytest.raises(PermissionDenied):
        wallet_recharge(actor=w.domain_admin, wallet=wallet, amount="100", method="bank")
    assert not Transaction.objects.filter(wallet=wallet).exists()
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_authenticate(w.domain_admin)
    response = client.post(
        f"/api/v1/wallets/{wallet.pk}/recharges/",
        {"amount": "100", "method": "bank", "reference": ""},
        format="json",
    )
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_they_still_recharge_the_domains_other_projects_and_staff_recharge_theirs(w):
    other = ProjectFactory(domain=w.domain, code="os202")
    wallet_recharge(
        actor=w.domain_admin, wallet=wallet_open(project=other), amount="100", method="bank"
    )
    wallet_recharge(
        actor=w.platform, wallet=wallet_open(project=w.project), amount="100", method="bank"
    )
    assert Transaction.objects.filter(kind="recharge").count() == 2
