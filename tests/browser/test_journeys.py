"""The five end-to-end journeys of the portal in a real browser (headless Chromium against a live
server on PostgreSQL and the development cloud). Each drives the UI as its user would — clicks,
form fills, htmx updates — and asserts both what the user sees and what the database holds
afterwards. Preconditions that are not part of a journey are built with the services.
A failing journey leaves a full-page screenshot in test-artifacts/ (tests/browser/conftest.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts import services as accounts_services
from accounts.models import EnrollmentCode, EnrollmentRequest, PlatformRole, User
from billing.charging import billing_run
from billing.enforcement import enforce
from billing.ledger import post
from billing.models import (
    Allocation,
    ChargeLine,
    LockPeriod,
    MemberConsumption,
    PriceVersion,
    ProjectDefaults,
    TransactionKind,
)
from billing.services import (
    allocation_set,
    platform_capacity_set,
    recharge_request_create,
    target_of,
    wallet_open,
    wallet_recharge,
    wallet_update,
)
from billing.tests import oracle
from compute import services as compute_services
from compute.enforcement import compute_requests_process
from compute.models import Server
from compute.tests.support import FAST, allocate, flavor, image, mirror_catalogue, set_limit
from reports.models import Statement
from reports.statements import statement_issue
from teachcloud.testing.factories import UserFactory, make_world
from tenancy.models import Membership
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def fast_cloud(settings):
    """The lifecycle tasks wait for the development cloud only briefly (it moves in ~0.1 s)."""
    for name, value in FAST.items():
        setattr(settings, name, value)


def project_allocation(project) -> Allocation:
    return Allocation.objects.get(level="project", project=project, end__isnull=True)


def member_limit(project, user) -> Allocation | None:
    return Allocation.objects.filter(
        level="member", project=project, user=user, end__isnull=True
    ).first()


def charge(wallet, amount: str, *, at: datetime) -> None:
    """An hourly resource charge of `amount` to the wallet's payee, posted through the ledger
    (what the billing run books)."""
    payee = wallet_open(domain=wallet.project.domain)
    value = Decimal(amount)
    post(
        kind=TransactionKind.RESOURCE_CHARGE,
        wallet=wallet,
        legs=[(wallet, -value), (payee, value)],
        period_start=at,
        memo="VM hours",
    )


def chart_drawn(page, canvas_id: str) -> bool:
    """Chart.js drew a chart on the canvas, and the canvas has a size."""
    return page.evaluate(
        """(id) => {
            const canvas = document.getElementById(id);
            return !!(canvas && window.Chart && window.Chart.getChart(canvas)
                      && canvas.width > 0 && canvas.height > 0);
        }""",
        canvas_id,
    )


def flavor_radio(page, name: str):
    return page.locator("label.list-group-item", has_text=name).locator("input[name=flavor]")


# -- 1. A student and their VMs ---------------------------------------------------------------


def test_student_creates_uses_is_refused_beyond_the_limit_stops_and_deletes(
    page, live_server, fast_cloud
):
    world = make_world()
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    base = live_server.url

    sign_in(page, base, "member")
    page.goto(base + reverse("portal:my_servers"))
    section = page.locator(f"#project-{world.project.pk}")
    expect(section).to_contain_text("0 / 4")
    section.get_by_role("link", name="New VM").click()

    # The create form: a 4-vCPU size fits the fresh limit; create a 2-vCPU VM.
    expect(flavor_radio(page, "m1.large")).to_be_enabled()
    page.fill("input[name=name]", "lab-1")
    flavor_radio(page, "m1.medium").check()
    page.select_option("select[name=image]", label="cirros-0.6")
    page.get_by_role("button", name="Create VM").click()

    # The VM page polls until the cloud reports it running.
    expect(page.locator("h1")).to_have_text("lab-1")
    expect(page.locator("#server-state")).to_contain_text("Active", timeout=20000)
    lab1 = Server.objects.get(project=world.project, owner=world.member, name="lab-1")
    assert lab1.status == "active" and lab1.cloud_id and lab1.vcpus == 2

    # The console link opens the cloud's console in a new tab.
    with page.context.expect_page() as popup:
        page.locator("#server-state").get_by_role("link", name="Console").click()
    console = popup.value
    console.wait_for_load_state()
    expect(console.locator("body")).to_contain_text("lab-1 login:")
    console.close()

    # A second form, opened while 2 vCPU remain, offers 2-vCPU sizes but no 4-vCPU one.
    page.goto(base + reverse("portal:server_create", args=[world.project.pk]))
    large = page.locator("label.list-group-item", has_text="m1.large")
    expect(large.locator("input")).to_be_disabled()
    expect(large).to_contain_text("needs 4 vCPU, 2 left of your limit")
    page.fill("input[name=name]", "lab-3")
    flavor_radio(page, "m1.medium").check()

    # Meanwhile, in another tab, the student uses up the remaining 2 vCPU.
    other = page.context.new_page()
    other.goto(base + reverse("portal:server_create", args=[world.project.pk]))
    other.fill("input[name=name]", "lab-2")
    flavor_radio(other, "c2.medium").check()
    other.get_by_role("button", name="Create VM").click()
    expect(other.locator("#server-state")).to_contain_text("Active", timeout=20000)
    other.close()

    # The stale form is refused by the server with the reason, and nothing is created.
    page.get_by_role("button", name="Create VM").click()
    refusal = page.locator("#server-create-form .alert-danger")
    expect(refusal).to_contain_text("Your limit in this project would be exceeded")
    expect(refusal).to_contain_text("vCPU: 4 held + 2 asked > 4")
    expect(refusal).not_to_contain_text("vcpus")
    assert not Server.objects.filter(name="lab-3").exists()
    # Reloaded, the form offers no size at all and says why.
    page.goto(base + reverse("portal:server_create", args=[world.project.pk]))
    expect(page.get_by_role("button", name="Create VM")).to_be_disabled()
    expect(page.locator("#server-create-form")).to_contain_text(
        "No size fits what remains of your limit"
    )
    assert page.locator("input[name=flavor]:enabled").count() == 0

    # Stop lab-1 from its page (confirming the question), then delete it.
    page.goto(base + reverse("portal:server_detail", args=[lab1.pk]))
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#server-state").get_by_role("button", name="Stop").click()
    expect(page.locator(".alert-success")).to_contain_text("lab-1 is stopping.")
    expect(page.locator("#server-state")).to_contain_text("Stopped", timeout=20000)
    lab1.refresh_from_db()
    assert lab1.status == "stopped" and lab1.stop_cause == "user"

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#server-state").get_by_role("button", name="Delete").click()
    expect(page.locator(".alert-success")).to_contain_text("lab-1 is being deleted")
    expect(page.locator("#server-state")).to_contain_text("Deleted", timeout=20000)
    lab1.refresh_from_db()
    assert lab1.status == "deleted" and lab1.deleted_at is not None

    # Its 2 vCPU are free again: the list shows only lab-2 and 2 of 4 vCPU in use.
    page.goto(base + reverse("portal:my_servers"))
    rows = page.locator(f"#project-{world.project.pk} table.server-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("lab-2")
    expect(page.locator(f"#room-{world.project.pk}")).to_contain_text(re.compile(r"2\s*/\s*4"))
    live = Server.objects.filter(owner=world.member).exclude(status="deleted")
    assert list(live.values_list("name", "status")) == [("lab-2", "active")]


# -- 2. A teacher runs the class ----------------------------------------------------------------

ROSTER = (
    "real_name,id_number,email\n"
    "王小明,2026900001,xiaoming@example.edu\n"
    "陈美玲,2026900002,meiling@example.edu\n"
    "李四,2026900003,lisi@example.edu\n"
)


def test_teacher_imports_sets_defaults_approves_raises_a_budget_and_unlocks(page, live_server):
    world = make_world()
    allocate(world)
    base = live_server.url
    project = world.project
    # Preconditions: a student waits for approval; the member used up a ¥100 budget and is
    # locked by the hourly enforcement.
    code = EnrollmentCode.objects.create(project=project, created_by=world.project_admin)
    accounts_services.enrollment_redeem(
        code=code.code,
        real_name="赵敏",
        id_number="2026900099",
        email="zhaomin@example.edu",
        username="",
        password="Dragon-Pass-88",
    )
    waiting = EnrollmentRequest.objects.get(project=project, status="pending")
    locked = Membership.objects.get(project=project, user=world.member)
    allocation_set(
        actor=world.project_admin,
        target=target_of(membership=locked),
        vcpus=2,
        ram_gib=4,
        disk_gib=20,
        budget="100",
    )
    MemberConsumption.objects.create(
        project=project,
        user=world.member,
        hour=datetime(2026, 3, 2, 9, tzinfo=SHANGHAI),
        amount=Decimal("100.0000"),
    )
    enforce(now=datetime(2026, 3, 2, 10, tzinfo=SHANGHAI))
    locked.refresh_from_db()
    assert locked.locked

    sign_in(page, base, "project_admin")
    page.goto(base + reverse("portal:project_detail", args=[project.pk]))

    # Import a roster: three new students become users of the school and members.
    page.get_by_role("link", name="Roster import").click()
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "class-3.csv", "mimeType": "text/csv", "buffer": ROSTER.encode()}],
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("h1")).to_contain_text("class-3.csv")
    results = page.locator("table.roster-results tbody tr")
    expect(results).to_have_count(3)
    expect(page.locator("table.roster-results")).to_contain_text("王小明")
    assert page.locator("[data-result=created]").count() == 3
    imported = User.objects.filter(id_number__in=["2026900001", "2026900002", "2026900003"])
    assert imported.count() == 3
    assert all(u.home_domain_id == world.domain.pk for u in imported)
    assert Membership.objects.filter(project=project, user__in=imported, role="member").count() == 3

    # Default limit and budget for members from now on.
    page.goto(base + reverse("portal:project_billing", args=[project.pk]))
    defaults = page.locator("#member-defaults")
    defaults.locator("input[name=defaults-vcpus]").fill("2")
    defaults.locator("input[name=defaults-ram_gib]").fill("4")
    defaults.locator("input[name=defaults-disk_gib]").fill("40")
    defaults.locator("input[name=defaults-budget]").fill("50")
    defaults.get_by_role("button", name="Save defaults").click()
    expect(page.locator(".alert-success")).to_contain_text("New members get this limit")
    saved = ProjectDefaults.objects.get(project=project)
    assert (saved.vcpus, saved.ram_gib, saved.disk_gib, saved.budget) == (
        2,
        4,
        40,
        Decimal("50.0000"),
    )

    # Approve the waiting student: they join with the default limit and budget.
    page.get_by_role("link", name="Enrollment").click()
    row = page.locator("tr", has_text="赵敏")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator(".alert-success")).to_contain_text("was approved and added to the project")
    expect(page.locator("body")).to_contain_text("No requests are waiting.")
    waiting.refresh_from_db()
    assert waiting.status == "approved" and waiting.decided_by == world.project_admin
    joined = member_limit(project, waiting.user)
    assert joined is not None and (joined.vcpus, joined.budget) == (2, Decimal("50.0000"))

    # Raise one imported student's budget (the edit row opens in place).
    student = imported.get(id_number="2026900002")
    membership = Membership.objects.get(project=project, user=student)
    page.goto(base + reverse("portal:project_billing", args=[project.pk]))
    page.locator(f"#limit-{membership.pk}").get_by_role("button", name="Edit").click()
    edit = page.locator(f"#edit-{membership.pk}")
    expect(edit).to_be_visible()
    edit.locator(f"input[name=m{membership.pk}-vcpus]").fill("2")
    edit.locator(f"input[name=m{membership.pk}-ram_gib]").fill("4")
    edit.locator(f"input[name=m{membership.pk}-disk_gib]").fill("40")
    edit.locator(f"input[name=m{membership.pk}-budget]").fill("80")
    edit.get_by_role("button", name="Save limit").click()
    expect(page.locator(".alert-success")).to_contain_text("was saved")
    expect(page.locator(f"#limit-{membership.pk}")).to_contain_text("¥80.0000")
    raised = member_limit(project, student)
    assert raised.budget == Decimal("80.0000") and raised.vcpus == 2

    # The locked member: unlocking without a higher budget is refused with the numbers…
    row = page.locator(f"#limit-{locked.pk}")
    expect(row.locator(".badge", has_text="locked")).to_be_visible()
    row.get_by_role("button", name="Unlock").click()
    expect(page.locator(".alert-danger")).to_contain_text(
        "has consumed ¥100.0000 of a ¥100.0000 budget"
    )
    locked.refresh_from_db()
    assert locked.locked
    # … and done with a new budget above the consumption.
    row = page.locator(f"#limit-{locked.pk}")
    row.locator("input[name=budget]").fill("150")
    row.get_by_role("button", name="Unlock").click()
    expect(page.locator(".alert-success")).to_contain_text("is unlocked")
    row = page.locator(f"#limit-{locked.pk}")
    expect(row).to_contain_text("¥150.0000")
    expect(row.locator(".badge", has_text="locked")).to_have_count(0)
    locked.refresh_from_db()
    assert not locked.locked
    assert member_limit(project, world.member).budget == Decimal("150.0000")


# -- 3. A school admin allocates and confirms a recharge ------------------------------------------


def test_school_admin_allocates_with_the_live_quote_confirms_a_recharge_and_sees_charts(
    page, live_server
):
    world = make_world()
    project = world.project
    base = live_server.url
    # Preconditions: the price plan in force, the platform's and the domain's allocation, a
    # project allocation of 4 vCPU / 16 GiB / 100 GiB, a funded project wallet that paid ¥12.5
    # of VM hours yesterday, and a recharge the teacher declared.
    PriceVersion.objects.create(
        effective_from=timezone.now() - timedelta(days=60),
        vcpu_hour="0.05",
        ram_gib_hour="0.02",
        disk_gib_hour="0.0005",
        domain_fee="0",
        project_fee="0",
        user_fee="0",
    )
    allocate(world, project_alloc=(4, 16, 100), domain_alloc=(64, 256, 4000))
    wallet = wallet_open(project=project)
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="100", method="bank")
    yesterday = timezone.localtime(timezone.now(), SHANGHAI).replace(
        hour=9, minute=0, second=0, microsecond=0
    ) - timedelta(days=1)
    charge(wallet, "12.5", at=yesterday)
    declared = recharge_request_create(
        actor=world.project_admin, wallet=wallet, amount="500", method="bank", reference="TX-881"
    )

    sign_in(page, base, "domain_admin")
    page.goto(base + reverse("portal:domain_detail", args=[world.domain.pk]))
    page.get_by_role("link", name="Billing").click()
    expect(page.locator("h1")).to_contain_text(world.domain.name)

    # Allocate to the project: every change of a number asks for a quote (htmx, nothing saved).
    form = page.locator("#allocation-form")
    form.locator("select[name=project]").select_option(label=str(project))
    form.locator("input[name=vcpus]").fill("8")
    form.locator("input[name=ram_gib]").fill("32")
    form.locator("input[name=disk_gib]").fill("500")
    quote = page.locator("#quote [data-testid=quote]")
    # 8 × 0.05 + 32 × 0.02 + 500 × 0.0005 = 1.29 an hour (0.57 now: +0.72), × 720 for 30 days.
    expect(quote).to_contain_text("¥1.2900")
    expect(quote).to_contain_text("¥928.8000")
    expect(quote).to_contain_text("+¥0.7200")
    expect(quote).to_contain_text("Now: 4 vCPU, 16 GiB RAM, 100 GiB disk.")
    assert (
        project_allocation(project).vcpus,
        project_allocation(project).disk_gib,
    ) == (4, 100)  # a quote is a dry run
    # Too much for the domain: the quote says so before anything is saved.
    form.locator("input[name=vcpus]").fill("100")
    expect(page.locator("#quote .quote-refusal")).to_be_visible()
    form.locator("input[name=vcpus]").fill("8")
    expect(quote).to_contain_text("¥1.2900")
    form.get_by_role("button", name="Save allocation").click()
    expect(page.locator(".alert-success")).to_contain_text(
        f"The allocation of {project} is now 8 vCPU, 32 GiB RAM, 500 GiB disk."
    )
    row = page.locator("#allocations tr", has_text=project.name)
    expect(row).to_contain_text("8")
    expect(row).to_contain_text("500")
    current = project_allocation(project)
    assert (current.vcpus, current.ram_gib, current.disk_gib) == (8, 32, 500)

    # Confirm the teacher's recharge on the project's billing page.
    row.get_by_role("link", name=project.name).click()
    pending = page.locator("#pending-requests")
    expect(pending).to_contain_text("¥500.0000")
    expect(pending).to_contain_text("TX-881")
    pending.get_by_role("button", name="Confirm").click()
    expect(page.locator(".alert-success")).to_contain_text(
        "The recharge of ¥500.0000 was confirmed and credited."
    )
    expect(page.get_by_test_id("balance")).to_have_text("¥587.5000")
    expect(page.locator("#pending-requests")).to_have_count(0)
    declared.refresh_from_db()
    wallet.refresh_from_db()
    assert declared.status == "approved" and declared.decided_by == world.domain_admin
    assert wallet.balance == Decimal("587.5000")

    # The domain's charts: balance, spending, spending by project, allocation — drawn.
    page.goto(base + reverse("portal:domain_billing", args=[world.domain.pk]))
    charts = ("chart-balance", "chart-spending", "chart-spending-by-project", "chart-allocation")
    for canvas_id in charts:
        expect(page.locator(f"canvas#{canvas_id}")).to_be_visible()
        page.wait_for_function(
            """(id) => { const c = document.getElementById(id);
                         return !!(c && window.Chart && window.Chart.getChart(c)); }""",
            arg=canvas_id,
        )
        assert chart_drawn(page, canvas_id), canvas_id
    by_project = page.locator("#chart-spending-by-project-card")
    by_project.locator("summary").click()
    expect(by_project.locator("table")).to_contain_text(project.name)
    expect(by_project.locator("table")).to_contain_text("12.5")


# -- 4. A locked project ------------------------------------------------------------------------


def test_locked_project_admin_sees_why_sets_credit_unlocks_and_restarts_vms(
    page, live_server, fast_cloud
):
    world = make_world()
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    project = world.project
    base = live_server.url
    # Preconditions: two running VMs; the domain admin allows up to ¥200 of credit; a charge of
    # ¥30 takes the project's available amount below zero, the hourly enforcement locks the
    # project and its VMs are stopped.
    servers = [
        compute_services.server_create(
            actor=world.member, project=project, name=name, flavor=flavor("m1.small"), image=image()
        )
        for name in ("web-1", "db-1")
    ]
    for server in servers:
        server.refresh_from_db()
        assert server.status == "active", server.fault
    wallet = wallet_open(project=project)
    wallet_update(actor=world.domain_admin, wallet=wallet, credit_ceiling="200")
    charge(wallet, "30", at=datetime(2026, 3, 2, 9, tzinfo=SHANGHAI))
    enforce(now=datetime(2026, 3, 2, 10, tzinfo=SHANGHAI))
    compute_requests_process()
    for server in servers:
        server.refresh_from_db()
        assert (server.status, server.stop_cause) == ("stopped", "lock")

    sign_in(page, base, "project_admin")
    page.goto(base + reverse("portal:project_detail", args=[project.pk]))
    expect(page.locator(".badge", has_text="Locked")).to_be_visible()
    page.get_by_role("link", name="Billing").click()

    # Why: the state card says locked and gives the reason; the numbers are on the page.
    summary = page.locator("#wallet-summary")
    expect(summary.get_by_test_id("lock-state")).to_have_text("Locked")
    expect(summary).to_contain_text("Available amount ¥-30.0000 reached zero")
    expect(summary.get_by_test_id("balance")).to_have_text("¥-30.0000")
    expect(summary).to_contain_text("ceiling ¥200.0000")
    # Unlocking right away is refused, with what is missing.
    unlock = page.locator("#unlock")
    unlock.get_by_role("button", name="Unlock").click()
    expect(page.locator("#unlock")).to_contain_text("Cannot unlock: the available amount is")
    wallet.refresh_from_db()
    assert wallet.locked

    # Credit above the ceiling is refused; within it, it is saved.
    page.goto(base + reverse("portal:project_billing", args=[project.pk]))
    credit = page.locator("#credit")
    credit.locator("input[name=credit-credit_limit]").fill("250")
    credit.get_by_role("button", name="Save").click()
    expect(page.locator("#credit")).to_contain_text("is above the ceiling")
    wallet.refresh_from_db()
    assert wallet.credit_limit == Decimal("0.0000")
    credit = page.locator("#credit")
    credit.locator("input[name=credit-credit_limit]").fill("100")
    credit.get_by_role("button", name="Save").click()
    expect(page.locator(".alert-success")).to_contain_text(
        "Credit limit ¥100.0000, ceiling ¥200.0000."
    )
    expect(page.get_by_test_id("available")).to_have_text("¥70.0000")

    # Unlock, asking for the VMs that ran at lock time to be restarted.
    unlock = page.locator("#unlock")
    unlock.get_by_label("Restart the VMs that were running when it was locked").check()
    unlock.get_by_role("button", name="Unlock").click()
    expect(page.locator(".alert-success")).to_contain_text(f"{project} is unlocked.")
    expect(page.get_by_test_id("lock-state")).to_have_text("Active")
    expect(page.locator("#unlock")).to_have_count(0)
    wallet.refresh_from_db()
    project.refresh_from_db()
    assert not wallet.locked and project.status == "active"
    assert wallet.credit_limit == Decimal("100.0000")
    period = LockPeriod.objects.get(wallet=wallet)
    assert period.end is not None and period.unlocked_by == world.project_admin

    # The next run of the compute requests (Celery beat, every minute) restarts them.
    compute_requests_process()
    page.get_by_role("link", name="VMs").click()
    for server in servers:
        row = page.locator(f"#server-{server.pk}")
        expect(row).to_contain_text("Active")
        server.refresh_from_db()
        assert server.status == "active" and not server.stop_cause


# -- 5. Finance staff ---------------------------------------------------------------------------


def test_finance_exports_a_month_of_charges_to_xlsx_and_downloads_a_statement_pdf(
    page, live_server, tmp_path
):
    from openpyxl import load_workbook

    world = make_world()
    project = world.project
    base = live_server.url
    finance = UserFactory(
        home_domain=None,
        id_number="",
        platform_role=PlatformRole.FINANCE,
        is_staff=True,
    )
    # Preconditions: allocations from 22:00 on the last day of a past month, billed up to 02:00
    # of the next: two hours in the month (to export) and two after it (filtered out); then
    # the month's statements are issued.
    now = timezone.localtime(timezone.now(), SHANGHAI)
    # The exported month is the one before last, so that every billed hour is in the past.
    next_month = (
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    ).replace(day=1)
    month = (next_month - timedelta(days=1)).replace(day=1)
    last_day = (next_month - timedelta(days=1)).date()
    start = next_month - timedelta(hours=2)
    PriceVersion.objects.create(
        effective_from=month - timedelta(days=31),
        vcpu_hour="0.05",
        ram_gib_hour="0.02",
        disk_gib_hour="0.0005",
        domain_fee="0",
        project_fee="0",
        user_fee="0",
    )
    platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100000, overcommit="1.00"
    )
    oracle.allocate(world.platform, start, (8, 32, 400), domain=world.domain)
    oracle.allocate(world.platform, start, (4, 16, 100), project=project)
    wallet_recharge(
        actor=world.platform, wallet=wallet_open(domain=world.domain), amount="1000", method="bank"
    )
    wallet = wallet_open(project=project)
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="1000", method="bank")
    billing_run(until=next_month + timedelta(hours=2))
    month_lines = ChargeLine.objects.filter(
        transaction__period_start__gte=month, transaction__period_start__lt=next_month
    )
    assert month_lines.count() >= 4  # two hours of the domain's and of the project's charges
    assert ChargeLine.objects.filter(transaction__period_start__gte=next_month).exists()
    statement = statement_issue(wallet=wallet, month=month.date())
    assert statement is not None

    sign_in(page, base, finance.username)

    # The charges report, filtered to the month, exported to XLSX.
    page.get_by_role("link", name="Reports", exact=True).first.click()
    page.locator(".report-card[data-report=charges] a").click()
    filters = page.locator("#report-filters")
    filters.locator("input[name=start]").fill(f"{month:%Y-%m-%d}")
    filters.locator("input[name=end]").fill(f"{last_day:%Y-%m-%d}")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("table.report-table tbody tr")).to_have_count(month_lines.count())
    expect(page.locator("table.report-table")).to_contain_text(project.name)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export XLSX").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    xlsx = tmp_path / download.suggested_filename
    download.save_as(xlsx)
    rows = list(load_workbook(xlsx, read_only=True).active.iter_rows(values_only=True))
    header, data = rows[0], rows[1:]
    assert header[0] == "Transaction" and "Amount (CNY)" in header
    assert len(data) == month_lines.count()
    assert {row[0] for row in data} == set(month_lines.values_list("transaction_id", flat=True))
    assert all(row[1].startswith(f"{last_day:%Y-%m-%d}T2") for row in data)  # 22:00 and 23:00
    amount = header.index("Amount (CNY)")
    assert sum(Decimal(str(row[amount])) for row in data) == sum(
        line.amount for line in month_lines
    )

    # The project's statement for the month, as a PDF.
    page.get_by_role("link", name="Statements", exact=True).first.click()
    page.locator("#statement-filters input[name=month]").fill(f"{month:%Y-%m}")
    page.locator("#statement-filters").get_by_role("button", name="Apply").click()
    row = page.locator(f"#statement-list tr[data-statement='{statement.pk}']")
    expect(row).to_contain_text(project.name)
    expect(row).to_contain_text(f"{month:%Y-%m}")
    with page.expect_download() as download_info:
        row.get_by_role("link", name="PDF").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".pdf")
    pdf = tmp_path / download.suggested_filename
    download.save_as(pdf)
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF") and len(content) > 1000
    assert Statement.objects.filter(wallet=wallet, month=month.date()).count() == 1
