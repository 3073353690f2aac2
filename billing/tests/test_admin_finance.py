"""Finance staff in the Django admin: the "Finance staff" group, read-only money views, no
tenancy edits, no changing actions, and CSV/XLSX exports of the filtered changelists."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

import openpyxl
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from billing import enforcement, services
from billing.charging import billing_run
from billing.models import (
    ChargeLine,
    PriceVersion,
    RechargeRequest,
    RequestStatus,
    Transaction,
    Wallet,
)
from billing.requests import allocation_request_create
from billing.tests import oracle
from billing.tests.oracle import CST
from reports.models import Statement
from reports.statements import statement_issue
from tenancy.models import Domain

pytestmark = pytest.mark.django_db

MONEY_ADMINS = [
    "billing_transaction",
    "billing_entry",
    "billing_chargeline",
    "billing_wallet",
    "billing_rechargerequest",
    "billing_priceversion",
    "billing_allocation",
    "billing_allocationrequest",
    "billing_lockperiod",
    "billing_memberconsumption",
    "billing_platformcapacity",
    "reports_statement",
]
TENANCY_ADMINS = [
    "tenancy_domain",
    "tenancy_project",
    "tenancy_membership",
    "tenancy_domainrole",
    "accounts_user",
]
EXPORTS = ["billing_transaction", "billing_chargeline", "billing_rechargerequest"]
EXPORTS += ["reports_statement"]


@pytest.fixture
def money(world):
    """Every kind of money row: recharges, a pending request, hourly charges with their lines,
    a lock period and an issued statement."""
    staff = world.platform
    services.platform_capacity_set(
        actor=staff, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    domain_wallet = Wallet.objects.get(domain=world.domain)
    project_wallet = Wallet.objects.get(project=world.project)
    services.wallet_recharge(actor=staff, wallet=domain_wallet, amount="500", method="bank")
    services.wallet_recharge(actor=staff, wallet=project_wallet, amount="80", method="cash")
    services.recharge_request_create(
        actor=world.domain_admin, wallet=domain_wallet, amount="30", method="bank"
    )
    assert PriceVersion.objects.exists()  # the default plan of billing.0002
    ten = datetime(2026, 10, 5, 10, tzinfo=CST)
    oracle.allocate(staff, ten, (4, 8, 100), domain=world.domain)
    oracle.allocate(staff, ten, (2, 4, 50), project=world.project)
    noon = datetime(2026, 10, 5, 12, tzinfo=CST)
    oracle.allocate(staff, noon, (0, 0, 0), project=world.project)
    oracle.allocate(staff, noon, (0, 0, 0), domain=world.domain)
    billing_run(until=noon)
    allocation_request_create(
        actor=world.project_admin,
        project=world.project,
        vcpus=8,
        ram_gib=16,
        disk_gib=100,
        justification="A bigger lab",
    )
    enforcement.tenant_lock(actor=staff, project=world.other_project, reason="Unpaid")
    statement_issue(wallet=domain_wallet, month=date(2026, 10, 1), force=True)
    assert ChargeLine.objects.exists() and Statement.objects.exists()
    return world


@pytest.fixture
def finance(money):
    """A finance account made the way platform staff make one: through the service."""
    return account_services.staff_user_create(
        actor=money.platform,
        username="fin",
        real_name="Fin Ance",
        email="fin@example.edu",
        password="x-Very-Long-Password-1",
        platform_role="finance",
        is_staff=True,
    )


def client_of(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def url(name: str, view: str, *args) -> str:
    return reverse(f"admin:{name}_{view}", args=args)


def first_pk(name: str) -> int | None:
    app, model = name.split("_", 1)
    return apps.get_model(app, model).objects.order_by("pk").values_list("pk", flat=True).first()


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# -- The group ----------------------------------------------------------------------------------


def test_finance_staff_group_holds_the_money_view_permissions_and_the_finance_users(finance, money):
    group = Group.objects.get(name="Finance staff")
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))
    expected = {(name.split("_", 1)[0], f"view_{name.split('_', 1)[1]}") for name in MONEY_ADMINS}
    assert codenames >= expected
    assert all(codename.startswith("view_") for _app, codename in codenames)
    assert not {app for app, _codename in codenames} & {"tenancy", "accounts"}
    assert list(finance.groups.all()) == [group]
    assert finance.has_perm("billing.view_transaction")
    assert not finance.has_perm("billing.change_wallet")

    account_services.user_platform_access_set(
        actor=money.platform,
        user=finance,
        platform_role="operator",
        is_staff=True,
        is_superuser=False,
    )
    assert not finance.groups.exists()
    account_services.user_platform_access_set(
        actor=money.platform,
        user=finance,
        platform_role="finance",
        is_staff=True,
        is_superuser=False,
    )
    assert list(finance.groups.all()) == [group]


# -- Read-only money views -------------------------------------------------------------------------


@pytest.mark.parametrize("name", MONEY_ADMINS)
def test_finance_sees_every_money_model_read_only(finance, name):
    client = client_of(finance)
    response = client.get(url(name, "changelist"))
    assert response.status_code == 200, name
    assert response.context["has_add_permission"] is False
    assert response.context["action_form"] is None  # no actions at all, changing or not
    if name == "billing_memberconsumption":  # rated from VM holdings: none in this world
        assert first_pk(name) is None
        return
    detail = client.get(url(name, "change", first_pk(name)))
    assert detail.status_code == 200, name
    assert detail.context["has_change_permission"] is False
    assert detail.context["has_delete_permission"] is False
    html = detail.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html
    assert client.get(url(name, "add")).status_code == 403
    assert client.post(url(name, "change", first_pk(name)), {}).status_code == 403
    assert client.post(url(name, "delete", first_pk(name)), {"post": "yes"}).status_code == 403


def test_finance_post_changes_nothing(finance, money):
    client = client_of(finance)
    wallet = Wallet.objects.get(domain=money.domain)
    response = client.post(
        url("billing_wallet", "change", wallet.pk), {"credit_ceiling": "999", "credit_limit": "9"}
    )
    assert response.status_code == 403
    wallet.refresh_from_db()
    assert wallet.credit_ceiling == 0
    # A changing action posted by hand is not there: nothing is approved.
    pending = RechargeRequest.objects.get()
    response = client.post(
        url("billing_rechargerequest", "changelist"),
        {"action": "approve", "_selected_action": [pending.pk]},
    )
    assert response.status_code in (200, 302)
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING
    tx = Transaction.objects.order_by("pk").first()
    response = client.post(url("billing_transaction", "reverse", tx.pk), {"reason": "x"})
    assert response.status_code == 403
    assert not tx.reversals.exists()


@pytest.mark.parametrize("name", TENANCY_ADMINS)
def test_finance_has_no_tenancy_admin(finance, money, name):
    """Tenancy is not visible to finance at all (not even read-only): 403 everywhere."""
    client = client_of(finance)
    pk = money.domain.pk if name == "tenancy_domain" else first_pk(name)
    assert client.get(url(name, "changelist")).status_code == 403
    assert client.get(url(name, "add")).status_code == 403
    assert client.post(url(name, "add"), {"name": "X", "code": "x"}).status_code == 403
    assert client.get(url(name, "change", pk)).status_code == 403
    assert client.post(url(name, "change", pk), {"name": "Renamed"}).status_code == 403
    assert Domain.objects.filter(name="Renamed").count() == 0


# -- Exports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPORTS)
def test_finance_exports_csv_and_xlsx(finance, name):
    client = client_of(finance)
    changelist = client.get(url(name, "changelist"))
    export_csv = url(name, "export", "csv")
    assert export_csv in changelist.content.decode()  # the "Export CSV" link
    rows = csv_rows(client.get(export_csv))
    assert len(rows) >= 2
    response = client.get(url(name, "export", "xlsx"))
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    assert sheet.max_row == len(rows)
    assert client.get(url(name, "export", "pdf")).status_code == 404


def test_exports_follow_the_changelist_filters(finance, money):
    client = client_of(finance)
    rows = csv_rows(client.get(url("billing_transaction", "export", "csv"), {"kind": "recharge"}))
    recharges = Transaction.objects.filter(kind="recharge")
    assert {int(row[0]) for row in rows[1:]} == set(recharges.values_list("pk", flat=True))
    assert {row[-1] for row in rows[1:]} == {"Recharge"}  # the memo, rendered
    assert len(rows) - 1 == 2 * recharges.count()  # one row per entry

    rows = csv_rows(
        client.get(url("billing_rechargerequest", "export", "csv"), {"status__exact": "pending"})
    )
    assert [(row[0], row[4], row[7]) for row in rows[1:]] == [
        (str(RechargeRequest.objects.get().pk), "30.0000", "Pending")
    ]
    lines = csv_rows(client.get(url("billing_chargeline", "export", "csv")))
    assert len(lines) - 1 == ChargeLine.objects.count()
    assert {row[4][:13] for row in lines[1:]} >= {"2026-10-05T10"}  # local time


def test_tenant_admins_cannot_export(money):
    client = client_of(money.domain_admin)
    response = client.get(url("billing_transaction", "export", "csv"))
    assert response.status_code == 302 and "/login/" in response["Location"]


# -- Others -------------------------------------------------------------------------------------


def test_an_operator_still_edits_and_has_the_actions(money):
    client = client_of(money.platform)
    wallet = Wallet.objects.get(domain=money.domain)
    changelist = client.get(url("billing_wallet", "changelist"))
    assert changelist.context["action_form"] is not None
    page = client.get(url("billing_wallet", "change", wallet.pk))
    assert page.context["has_change_permission"] is True
    form = page.context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in form.initial.items()
        if name in form.fields
    }
    data.update({"credit_ceiling": "100", "credit_limit": "0"})
    response = client.post(url("billing_wallet", "change", wallet.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    wallet.refresh_from_db()
    assert wallet.credit_ceiling == 100
    assert client.get(url("tenancy_domain", "add")).status_code == 200


def test_a_domain_admin_cannot_open_the_admin(money):
    client = client_of(money.domain_admin)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/login/" in response["Location"]
    response = client.get(url("billing_transaction", "changelist"))
    assert response.status_code == 302
