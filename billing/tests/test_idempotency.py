"""Money-moving POSTs accept an Idempotency-Key and a recharge reference is recorded once per
wallet (issue 12.8): twenty identical requests at once move the money once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import IdempotencyKey, RechargeRequest, Transaction, Wallet
from billing.services import recharge_request_create
from billing.tests.test_api import API, client_for, wallet

pytestmark = pytest.mark.django_db


def recharges(wallet_obj: Wallet) -> list[Transaction]:
    return list(Transaction.objects.filter(wallet=wallet_obj, kind="recharge"))


def test_same_key_same_body_answers_the_first_answer_again(w):
    api = client_for(w.platform)
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    body = {"amount": "50.00", "method": "bank", "reference": "BANK-7731"}
    first = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert len(recharges(wallet(w.domain))) == 1
    other = api.post(url, {**body, "amount": "60.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert wallet(w.domain).balance == Decimal("50.0000")


def test_a_failed_request_frees_its_key(w):
    api = client_for(w.platform)
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    bad = api.post(
        url, {"amount": "1e3", "method": "bank"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert bad.status_code == 400 and not IdempotencyKey.objects.filter(key="k-2").exists()
    good = api.post(
        url, {"amount": "5", "method": "bank"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert good.status_code == 201


def test_a_reference_is_recorded_once_per_wallet(w):
    api = client_for(w.platform)
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    body = {"amount": "50.00", "method": "bank", "reference": "BANK-8000"}
    assert api.post(url, body, format="json").status_code == 201
    again = api.post(url, body, format="json")
    assert again.status_code == 409 and again.json()["code"] == "reference_taken"
    # Another wallet may carry the same reference (two schools' own bank numbering).
    other = api.post(f"{API}/wallets/{wallet(w.other_domain).pk}/recharges/", body, format="json")
    assert other.status_code == 201


def test_a_request_approved_twice_with_one_key_moves_money_once(w):
    request = recharge_request_create(
        actor=w.project_admin, wallet=wallet(w.project), amount="12", method="bank"
    )
    api = client_for(w.domain_admin)
    url = f"{API}/recharge-requests/{request.pk}/approve/"
    first = api.post(url, format="json", HTTP_IDEMPOTENCY_KEY="approve-1")
    again = api.post(url, format="json", HTTP_IDEMPOTENCY_KEY="approve-1")
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert RechargeRequest.objects.get(pk=request.pk).status == "approved"
    assert len(recharges(wallet(w.project))) == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_recharges_post_once(w):
    """With one Idempotency-Key, and (another payment) with only the same reference."""
    url = f"{API}/wallets/{wallet(w.domain).pk}/recharges/"
    statuses: list[int] = []
    start = threading.Barrier(20)

    def post(body: dict, headers: dict) -> None:
        try:
            api = client_for(w.platform)
            start.wait()
            statuses.append(api.post(url, body, format="json", **headers).status_code)
        finally:
            connection.close()

    rounds = [
        ({"amount": "50.00", "method": "bank"}, {"HTTP_IDEMPOTENCY_KEY": "race"}),
        ({"amount": "50.00", "method": "bank", "reference": "BANK-RACE"}, {}),
    ]
    for number, (body, headers) in enumerate(rounds, start=1):
        statuses.clear()
        start.reset()
        threads = [threading.Thread(target=post, args=(body, headers)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(statuses) == 20 and all(s < 500 for s in statuses), statuses
        assert statuses.count(201) == 1, statuses
        assert len(recharges(wallet(w.domain))) == number, statuses
    assert wallet(w.domain).balance == Decimal("100.0000")
