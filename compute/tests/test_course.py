"""Course end (SPEC Allocations 7) on real servers: reminded 7 days before, stopped on the date,
deleted 30 days later, then the allocation returns to the domain; each step once per end date;
moving the date re-arms. Time is driven by passing `now` (Asia/Shanghai dates)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from billing.models import Allocation, Holding, Notification
from compute.course import course_end_run
from compute.models import Server
from compute.services import server_start, server_stop
from compute.tests.test_enforcement import boot, cloud_status, cloud_world, fresh
from teachcloud.errors import Conflict
from tenancy.models import AuditEvent, Project

pytestmark = pytest.mark.django_db(transaction=True)
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTHING = {"reminded": 0, "stopped": 0, "deleting": 0, "closed": 0}


def at(day: date, hour: int = 0, minute: int = 30) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def today() -> date:
    return timezone.localdate()


def set_end(project: Project, end: date | None) -> None:
    """The teacher sets (or moves) the course's end date (the project edit form's field)."""
    Project.objects.filter(pk=project.pk).update(end_date=end)


def emails(event: str) -> list[Notification]:
    return list(Notification.objects.filter(event=event, channel="email").order_by("id"))


def open_allocations(project: Project, level: str) -> list[Allocation]:
    return list(Allocation.objects.filter(level=level, project=project, end__isnull=True))


@pytest.fixture
def cw(devcloud, settings):
    return cloud_world(settings)


def test_remind_stop_delete_then_return_the_allocation(cw):
    web = boot(cw, cw.member, "web")
    idle = boot(cw, cw.second, "idle")
    server_stop(actor=cw.second, server=idle)
    end = today() + timedelta(days=10)
    set_end(cw.project, end)

    assert course_end_run(now=at(end - timedelta(days=8), 23, 59)) == NOTHING
    assert course_end_run(now=at(end - timedelta(days=7), 0, 1)) == {**NOTHING, "reminded": 1}
    assert course_end_run(now=at(end - timedelta(days=6))) == NOTHING  # once per end date
    reminders = emails("course_ending")
    assert {n.recipient for n in reminders} == {
        cw.project_admin,
        cw.project_assistant,
        cw.member,
        cw.second,
    }
    assert f"{end:%Y-%m-%d}" in reminders[0].subject
    assert f"{end + timedelta(days=30):%Y-%m-%d}" in reminders[0].body
    assert fresh(cw.project).course_reminded_for == end

    assert course_end_run(now=at(end - timedelta(days=1), 23, 59)) == NOTHING
    assert course_end_run(now=at(end, 0, 0)) == {**NOTHING, "stopped": 1}
    web = fresh(web)
    assert (web.status, web.stop_cause, web.running_at_lock) == ("stopped", "course", True)
    assert cloud_status(web) == "SHUTOFF"
    assert (fresh(idle).status, fresh(idle).stop_cause) == ("stopped", "user")
    assert len(emails("course_ended")) == 4
    assert course_end_run(now=at(end, 12)) == NOTHING

    assert course_end_run(now=at(end + timedelta(days=29), 23, 59)) == NOTHING
    assert Server.objects.filter(project=cw.project, status="deleted").count() == 0
    before = open_allocations(cw.project, "project")
    assert [(a.vcpus, a.ram_gib, a.disk_gib) for a in before] == [(16, 64, 1000)]
    assert len(open_allocations(cw.project, "member")) == 2

    close_at = at(end + timedelta(days=30), 0, 5)
    assert course_end_run(now=close_at) == {**NOTHING, "deleting": 2, "closed": 1}
    for server in (web, idle):
        server = fresh(server)
        assert server.status == "deleted"
        assert Holding.objects.get(pk=server.holding_id).end is not None
        assert cloud_status(server) == "DELETED"
    # The allocation is back with the domain: the project's and the members' are ended.
    assert open_allocations(cw.project, "project") == []
    assert open_allocations(cw.project, "member") == []
    assert Allocation.objects.get(pk=before[0].pk).end == close_at
    assert Allocation.objects.filter(level="domain", domain=cw.domain, end__isnull=True).exists()
    assert fresh(cw.project).course_closed_for == end
    assert course_end_run(now=at(end + timedelta(days=31))) == NOTHING

    for action in ("course_remind", "course_stop", "course_delete", "course_close"):
        event = AuditEvent.objects.get(action=f"project.{action}", project=cw.project)
        assert event.actor is None and event.after["end_date"] == f"{end:%Y-%m-%d}"
    close = AuditEvent.objects.get(action="project.course_close")
    assert close.after["allocation_returned"] == {"vcpus": 16, "ram_gib": 64, "disk_gib": 1000}


def test_moving_the_date_rearms_every_step(cw):
    web = boot(cw, cw.member, "web")
    end = today() + timedelta(days=10)
    set_end(cw.project, end)
    course_end_run(now=at(end - timedelta(days=7)))
    assert course_end_run(now=at(end))["stopped"] == 1
    assert cloud_status(web) == "SHUTOFF"

    # The teacher extends the course by 20 days (still in the future: students may start VMs).
    later = end + timedelta(days=20)
    set_end(cw.project, later)
    server_start(actor=cw.member, server=web)
    assert fresh(web).status == "active" and cloud_status(web) == "ACTIVE"

    assert course_end_run(now=at(later - timedelta(days=8))) == NOTHING
    assert course_end_run(now=at(later - timedelta(days=7)))["reminded"] == 1
    assert len(emails("course_ending")) == 2 * 4  # once per end date, to the 4 members
    # The new end date stops it again.
    assert course_end_run(now=at(later))["stopped"] == 1
    assert fresh(web).stop_cause == "course" and cloud_status(web) == "SHUTOFF"
    # The old deletion day passes: nothing is deleted; 30 days after the new date it is.
    assert course_end_run(now=at(end + timedelta(days=30), 0, 0)) == NOTHING
    assert fresh(web).status == "stopped" and cloud_status(web) == "SHUTOFF"
    result = course_end_run(now=at(later + timedelta(days=30)))
    assert (result["deleting"], result["closed"]) == (1, 1)
    assert cloud_status(web) == "DELETED"
    assert AuditEvent.objects.filter(action="project.course_remind").count() == 2
    assert AuditEvent.objects.filter(action="project.course_stop").count() == 2
    assert AuditEvent.objects.filter(action="project.course_close").count() == 1

    # Removing the end date stops everything.
    set_end(cw.project, None)
    assert course_end_run(now=at(later + timedelta(days=400))) == NOTHING


def test_the_allocation_returns_only_once_the_cloud_deleted_every_server(cw, devcloud):
    web = boot(cw, cw.member, "web")
    end = today() + timedelta(days=3)
    set_end(cw.project, end)
    devcloud.fail("DELETE", r"/servers/", status=500)
    result = course_end_run(now=at(end + timedelta(days=30)))
    assert (result["stopped"], result["deleting"], result["closed"]) == (1, 1, 0)
    web = fresh(web)
    assert web.status == "stopped" and web.fault and web.task == ""
    assert cloud_status(web) == "SHUTOFF"
    assert len(open_allocations(cw.project, "project")) == 1
    assert fresh(cw.project).course_closed_for is None

    devcloud.clear_faults()
    result = course_end_run(now=at(end + timedelta(days=30), 1))
    assert (result["deleting"], result["closed"]) == (1, 1)
    assert cloud_status(web) == "DELETED" and fresh(web).status == "deleted"
    assert open_allocations(cw.project, "project") == []


def test_billing_run_runs_course_end_on_the_day(cw):
    from billing.charging import billing_run

    web = boot(cw, cw.member, "web")
    # The run up to the instant the domain's allocation began: no hour or month has ended in
    # between, so nothing is charged and no fee falls due (the wallets are empty: a charge would
    # lock them), whatever the time; the course ends that (Asia/Shanghai) day.
    until = Allocation.objects.get(level="domain", domain=cw.domain).start
    set_end(cw.project, timezone.localdate(until))
    summary = billing_run(until=until)
    assert summary["course_end"]["stopped"] == 1
    assert cloud_status(web) == "SHUTOFF"
    # Nothing starts once the course has ended (compute.services refuses).
    with pytest.raises(Conflict) as refused:
        server_start(actor=cw.member, server=web)
    assert refused.value.code == "course_ended"
    assert billing_run(until=until)["course_end"]["stopped"] == 0
