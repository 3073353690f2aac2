"""Lock and compute-request reasons the system writes are language-neutral (billing.reasons):
rendered in the reader's language, whatever language the beat or request ran in."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from rest_framework.test import APIClient

from billing.charging import billing_run
from billing.enforcement import tenant_lock, tenant_unlock
from billing.models import ComputeRequest, LockPeriod, Wallet
from billing.reasons import Reason, because, reason_fields, reason_text
from billing.services import wallet_open, wallet_update
from teachcloud.testing.clock import pinned
from teachcloud.testing.factories import make_world

pytestmark = pytest.mark.django_db


def test_generated_reasons_render_in_the_active_language():
    why = because("available_exhausted", available=Decimal("-0.0100"))
    assert why.args == {"available": "-0.0100"}
    with translation.override("en"):
        assert str(why) == "Available amount ¥-0.0100 reached zero"
    with translation.override("zh-hans"):
        assert str(why) != "Available amount ¥-0.0100 reached zero" and "-0.0100" in str(why)
    assert reason_fields(why) == {
        "reason": "",
        "reason_code": "available_exhausted",
        "reason_args": {"available": "-0.0100"},
    }


def test_typed_text_and_old_rows_show_as_stored():
    assert reason_fields("  crypto mining" * 20)["reason"] == ("  crypto mining" * 20)[:200]
    assert reason_text(code="", args={}, text="Course paused") == "Course paused"
    assert reason_text(code="no_such_code", args={}, text="可用金额已归零") == "可用金额已归零"
    # arguments of an older form of a message: the stored text, never a crash
    assert reason_text(code="budget_used_up", args={"x": "1"}, text="old") == "old"
    with pytest.raises(ValueError):
        Reason("no_such_code")


def _lock_by_the_beat(world) -> Wallet:
    wallet = wallet_open(project=world.project)
    wallet_update(actor=world.domain_admin, wallet=wallet, credit_limit="0")
    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("-0.0100"))
    with translation.override("zh-hans"):  # the beat runs in the platform language
        billing_run(until=timezone.now())
    return Wallet.objects.get(pk=wallet.pk)


def test_an_automatic_lock_reads_in_each_readers_language():
    # One instant for the tenants and the run: no month start, with its management fees
    # (¥13 here), may fall between them and change the figure the lock reason shows.
    with pinned():
        world = make_world()
        wallet = _lock_by_the_beat(world)
    assert wallet.locked and wallet.lock_reason == ""
    assert wallet.lock_reason_code == "available_exhausted"
    period = LockPeriod.objects.get(wallet=wallet)
    stop = ComputeRequest.objects.get(action="stop", project=world.project)
    assert period.reason_code == stop.reason_code == "available_exhausted"

    english = "Available amount ¥-0.0100 reached zero"
    api = APIClient()
    api.force_authenticate(world.project_admin)
    url = f"/api/v1/wallets/{wallet.pk}/"
    assert api.get(url, HTTP_ACCEPT_LANGUAGE="en").json()["lock_reason"] == english
    chinese = api.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").json()["lock_reason"]
    assert chinese != english and "-0.0100" in chinese
    with translation.override("en"):
        assert period.reason_text == stop.reason_text == english

    portal = Client()
    portal.force_login(world.project_admin)
    page = portal.get(
        reverse("portal:project_billing", args=[world.project.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert page.status_code == 200 and english in page.content.decode()


def test_a_manual_lock_keeps_its_text_and_unlock_clears_the_reason():
    world = make_world()
    wallet = wallet_open(project=world.project)
    tenant_lock(actor=world.domain_admin, project=world.project, reason="Course paused")
    wallet = Wallet.objects.get(pk=wallet.pk)
    assert (wallet.lock_reason, wallet.lock_reason_code) == ("Course paused", "")
    with translation.override("zh-hans"):
        assert wallet.lock_reason_text == "Course paused"
    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("5"))
    tenant_unlock(actor=world.domain_admin, project=world.project, restart_servers=True)
    wallet = Wallet.objects.get(pk=wallet.pk)
    assert (wallet.lock_reason, wallet.lock_reason_code, wallet.lock_reason_args) == ("", "", {})
    restart = ComputeRequest.objects.get(action="restart", project=world.project)
    assert restart.reason_code == "unlocked_by" and restart.reason == ""
    with translation.override("en"):
        assert restart.reason_text == f"Unlocked by {world.domain_admin}"
