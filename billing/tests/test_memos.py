"""Transaction memos are stored language-neutral and read in the reader's language (billing.memos):
in the API, the portal's transactions table and the CSV export; and the data migration that
empties the old generated memos."""

from __future__ import annotations

import csv
import importlib
import io
import re
from datetime import datetime

import pytest
from django.apps import apps as real_apps
from django.test import Client
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from billing import services
from billing.charging import billing_run, charge_hour
from billing.ledger import post
from billing.memos import describe, memo_renderer, transaction_memo
from billing.models import Transaction, TransactionKind, Wallet
from billing.tests import oracle
from billing.tests.oracle import CST, make_domain, make_project
from teachcloud.testing.clock import month_start_after, pinned
from teachcloud.testing.factories import api_token

pytestmark = pytest.mark.django_db

API = "/api/v1"
LANGUAGES = {"en": "en", "zh": "zh-hans"}


def api(user, language: str) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE=language)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def portal(user, language: str) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _language_restored():
    """Requests in Chinese leave their language active in this thread (LocaleMiddleware):
    restore it so later tests read English."""
    with translation.override(translation.get_language()):
        yield


@pytest.fixture
def w(world):
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world


def details_cells(html: str) -> list[str]:
    """The "Details" cells of the portal's recent-transactions table, memo part only."""
    table = html[html.index('id="transactions"') :]
    return [cell.split("·")[0].strip() for cell in re.findall(r'<td class="small">([^<]*)', table)]


# -- Stored neutral, read in each language -------------------------------------------------------


def test_a_recharge_posted_in_chinese_reads_in_the_readers_language(w):
    wallet = Wallet.objects.get(domain=w.domain)
    with translation.override("zh-hans"):
        tx = services.wallet_recharge(
            actor=w.platform, wallet=wallet, amount="50", method="cash", reference="R1"
        )
    tx.refresh_from_db()
    assert tx.memo == ""  # nothing language-bound is stored

    # The API
    for language, expected in (("en", "Recharge"), ("zh-hans", "充值")):
        response = api(w.domain_admin, language).get(f"{API}/transactions/", {"wallet": wallet.pk})
        assert response.status_code == 200, response.content
        assert [row["memo"] for row in response.json()["results"]] == [expected]

    # The portal's transactions table (the domain billing page)
    url = reverse("portal:domain_billing", args=[w.domain.pk])
    for language, expected in (("en", "Recharge"), ("zh-hans", "充值")):
        response = portal(w.domain_admin, language).get(url)
        assert response.status_code == 200
        assert details_cells(response.content.decode()) == [expected]

    # The CSV export: the memo is the last column
    for language, expected in (("en", "Recharge"), ("zh-hans", "充值")):
        response = api(w.domain_admin, language).get(
            f"{API}/transactions/", {"wallet": wallet.pk, "export": "csv"}
        )
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row[-1] for row in rows[1:]] == [expected, expected]  # both legs

    # The recharges export of the wallet
    for language, expected in (("en", "Recharge"), ("zh-hans", "充值")):
        response = api(w.domain_admin, language).get(
            f"{API}/wallets/{wallet.pk}/recharges/", {"export": "csv"}
        )
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row[-1] for row in rows[1:]] == [expected]


def test_adjustment_and_reversal_memos_name_the_reversed_transaction(w):
    wallet = Wallet.objects.get(project=w.project)
    with translation.override("zh-hans"):
        adjustment = services.wallet_adjust(
            actor=w.platform, wallet=wallet, amount="7", reason="Goodwill"
        )
        reversal = services.transaction_reverse(actor=w.platform, tx=adjustment, reason="Oops")
    for tx in (adjustment, reversal):
        tx.refresh_from_db()
        assert tx.memo == ""
    with translation.override("en"):
        assert describe(adjustment) == "Adjustment"
        assert describe(reversal) == f"Reversal of #{adjustment.pk}"
    with translation.override("zh-hans"):
        assert describe(adjustment) == "调整"
        assert describe(reversal) == f"冲正 #{adjustment.pk}"
    # The reason typed by a person stays as typed, in the API next to the memo.
    response = api(w.platform, "zh-hans").get(f"{API}/transactions/", {"wallet": wallet.pk})
    rows = {row["id"]: row for row in response.json()["results"]}
    assert rows[reversal.pk]["memo"] == f"冲正 #{adjustment.pk}"
    assert rows[reversal.pk]["reason"] == "Oops"


def test_charge_and_fee_memos_show_the_local_hour_and_month():
    with pinned():  # one instant: a month end cannot fall between the tenants
        staff = oracle.setup_platform()
        domain = make_domain(staff, "north")
        project = make_project(staff, domain, "net101")
    # The first fees of tenants created now fall due at the next month start (e.g. 2026-12-01
    # 00:00 +08:00 = 2026-11-30 16:00 UTC): the memo shows the local month, not the UTC one.
    month = month_start_after(domain.created_at)
    # Charges for hours long past (the allocations are dated back; no "now" is involved).
    ten = datetime(2026, 10, 5, 10, tzinfo=CST)  # 02:00 UTC
    oracle.allocate(staff, ten, (4, 8, 100), domain=domain)
    oracle.allocate(staff, ten, (2, 4, 50), project=project)
    noon = datetime(2026, 10, 5, 12, tzinfo=CST)  # all zeros end them: few hours to charge
    oracle.allocate(staff, noon, (0, 0, 0), project=project)
    oracle.allocate(staff, noon, (0, 0, 0), domain=domain)
    with translation.override("zh-hans"):
        billing_run(until=datetime(2026, 10, 5, 11, tzinfo=CST))  # hour 10
        charge_hour(datetime(2026, 10, 5, 11, tzinfo=CST))  # one hour on its own
        billing_run(until=month)  # the first fees
    charge = Transaction.objects.get(wallet=project.wallet, period_start=ten)
    single_charge = Transaction.objects.get(
        wallet=project.wallet, period_start=datetime(2026, 10, 5, 11, tzinfo=CST)
    )
    fee = Transaction.objects.get(
        wallet=project.wallet,
        kind=TransactionKind.MANAGEMENT_FEE,
        period_start=month,
    )
    assert {charge.memo, single_charge.memo, fee.memo} == {""}
    with translation.override("en"):
        assert describe(charge) == "Resource charge 2026-10-05 10:00"
        assert describe(single_charge) == "Resource charge 2026-10-05 11:00"
        assert describe(fee) == f"Management fee {month:%Y-%m}"
    with translation.override("zh-hans"):
        assert describe(charge) == "资源扣费 2026-10-05 10:00"
        assert describe(fee) == f"管理费 {month:%Y-%m}"


def test_text_typed_by_a_person_is_shown_as_typed():
    for language in LANGUAGES.values():
        with translation.override(language):
            assert transaction_memo(kind="recharge", memo="Paid at the counter") == (
                "Paid at the counter"
            )


def test_a_renderer_keeps_the_language_it_was_made_in():
    """Exports are streamed after the view returned: the renderer is translated up front."""
    with translation.override("zh-hans"):
        render = memo_renderer()
    with translation.override("en"):
        assert render(kind="recharge") == "充值"
        assert transaction_memo(kind="recharge") == "Recharge"


# -- The data migration --------------------------------------------------------------------------


def test_the_migration_empties_old_generated_memos_and_nothing_else(w):
    migration = importlib.import_module("billing.migrations.0006_neutral_memos")
    wallet = Wallet.objects.get(domain=w.domain)
    recharge = services.wallet_recharge(actor=w.platform, wallet=wallet, amount="9", method="x")
    adjustment = services.wallet_adjust(actor=w.platform, wallet=wallet, amount="2", reason="r")
    reversal = services.transaction_reverse(actor=w.platform, tx=adjustment, reason="back")
    typed = services.wallet_recharge(actor=w.platform, wallet=wallet, amount="1", method="x")
    other = services.wallet_recharge(actor=w.platform, wallet=wallet, amount="1", method="x")
    hour = datetime(2026, 10, 5, 10, tzinfo=CST)
    month = datetime(2026, 10, 1, tzinfo=CST)
    charge = post(
        kind=TransactionKind.RESOURCE_CHARGE,
        wallet=wallet,
        legs=[],
        period_start=hour,
        memo="资源扣费 2026-10-05 10:00",
    )
    fee = post(
        kind=TransactionKind.MANAGEMENT_FEE,
        wallet=wallet,
        legs=[],
        period_start=month,
        memo="Management fee 2026-10",
    )
    # Rows as the old code wrote them (the memo in the language of the request that posted it).
    old = {
        recharge.pk: "充值",
        adjustment.pk: "Adjustment",
        reversal.pk: f"冲正 #{adjustment.pk}",
        typed.pk: "Paid at the counter",  # typed by a person: stays
        other.pk: "Reversal of #999",  # not a reversal: stays
    }
    for pk, memo in old.items():
        Transaction.objects.filter(pk=pk).update(memo=memo)
    before = list(
        Transaction.objects.order_by("pk").values_list(
            "pk", "kind", "wallet_id", "period_start", "reverses_id", "reason", "created_at"
        )
    )

    changed = migration.neutralise_memos(real_apps, None)

    assert changed == 5
    memos = dict(Transaction.objects.values_list("pk", "memo"))
    assert memos[recharge.pk] == memos[adjustment.pk] == memos[reversal.pk] == ""
    assert memos[charge.pk] == memos[fee.pk] == ""
    assert memos[typed.pk] == "Paid at the counter"
    assert memos[other.pk] == "Reversal of #999"
    assert before == list(
        Transaction.objects.order_by("pk").values_list(
            "pk", "kind", "wallet_id", "period_start", "reverses_id", "reason", "created_at"
        )
    )
    with translation.override("en"):
        assert describe(Transaction.objects.get(pk=reversal.pk)) == (
            f"Reversal of #{adjustment.pk}"
        )
        assert describe(Transaction.objects.get(pk=charge.pk)) == (
            "Resource charge 2026-10-05 10:00"
        )
    assert migration.neutralise_memos(real_apps, None) == 0  # idempotent
