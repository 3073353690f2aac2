"""Course end (SPEC Allocations 7): a project's `end_date` reminds, stops, deletes, returns.

`course_end_run(*, now)` is called by `billing.charging.billing_run` (hourly by beat, and by
`manage.py billing_run`) like every other due job. Dates are Asia/Shanghai calendar dates
(settings.TIME_ZONE). For each project with an end date D that is not purged:

1. remind — from D − 7 days until the day before D: every member (any role) is emailed once that
   their VMs stop on D and are deleted on D + 30 days unless the date is moved;
2. stop — on D (or the first run after it): the project's running VMs are stopped (stop cause
   `course`; the lifecycle tasks call the cloud after commit) and the members are told;
3. close — on D + 30 days (or later): every VM of the project is deleted; once the cloud has
   confirmed every deletion (no server left, no open holding — usually the same run in tests, the
   next hourly run with a worker), the project allocation and every member limit are ended by
   the system (billing's allocation service), so the allocation returns to the domain.

Each step is done once per end date: `Project.course_reminded_for/stopped_for/closed_for`
remember the date the step was done for, so moving the date re-arms every step for the new date
(a course extended after its VMs were stopped keeps them stopped; once the date is moved into
the future, students may start them again — compute.services refuses starts once the date has
come).
Every step is audited (`project.course_remind`, `project.course_stop`, `project.course_delete`,
`project.course_close`). No network call runs here: the cloud calls are the lifecycle tasks.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils.translation import gettext as _

from billing.models import Allocation, Holding, Level
from billing.notify import notify, render
from compute.models import Server, ServerStatus, StopCause
from tenancy.audit import audit_record
from tenancy.models import Domain, Membership, Project, TenantStatus

log = logging.getLogger(__name__)

REMIND_DAYS = 7
DELETE_AFTER_DAYS = 30


def local_date(instant: datetime) -> date:
    return instant.astimezone(ZoneInfo(settings.TIME_ZONE)).date()


def course_dates(end_date: date) -> dict[str, date]:
    """When each step of a course ending on `end_date` is due."""
    return {
        "remind_on": end_date - timedelta(days=REMIND_DAYS),
        "stop_on": end_date,
        "delete_on": end_date + timedelta(days=DELETE_AFTER_DAYS),
    }


def _members(project: Project, now: datetime) -> list[Any]:
    grants = (
        Membership.objects.active(now)
        .filter(project=project)
        .select_related("user")
        .order_by("user_id")
    )
    return [grant.user for grant in grants if grant.user.is_active]


def _context(project: Project) -> dict[str, Any]:
    assert project.end_date is not None
    dates = course_dates(project.end_date)
    return {
        "project": project.name,
        "end_date": f"{project.end_date:%Y-%m-%d}",
        "delete_on": f"{dates['delete_on']:%Y-%m-%d}",
    }


def _locked_project(pk: int, *, with_domain: bool = False) -> Project:
    """The project row locked (after its domain's row when asked: lock order domain → project)."""
    if with_domain:
        domain_id = Project.objects.values_list("domain_id", flat=True).get(pk=pk)
        Domain.objects.select_for_update().get(pk=domain_id)
    return Project.objects.select_for_update(of=("self",)).select_related("domain").get(pk=pk)


# -- Steps ------------------------------------------------------------------------------------


def _remind(pk: int, *, end_date: date, now: datetime) -> bool:
    with transaction.atomic():
        project = _locked_project(pk)
        if project.end_date != end_date or project.course_reminded_for == end_date:
            return False
        project.course_reminded_for = end_date
        project.save(update_fields=["course_reminded_for"])
        context = _context(project)
        users = _members(project, now)
        notify(
            event="course_ending",
            users=users,
            subject=_("%(project)s ends on %(end_date)s: your VMs will be stopped") % context,
            body=render("course_ending", context),
            project=project,
            now=now,
        )
        audit_record(
            actor=None,
            action="project.course_remind",
            target=project,
            project=project,
            after={**context, "members": len(users)},
        )
    return True


def _stop(pk: int, *, end_date: date, now: datetime) -> bool:
    from compute import services

    with transaction.atomic():
        project = _locked_project(pk)
        if project.end_date != end_date or project.course_stopped_for == end_date:
            return False
        project.course_stopped_for = end_date
        project.save(update_fields=["course_stopped_for"])
        running = Server.objects.filter(project=project, status=ServerStatus.ACTIVE)
        count = services.servers_stop_for(servers=running, cause=StopCause.COURSE)
        context = _context(project)
        notify(
            event="course_ended",
            users=_members(project, now),
            subject=_("%(project)s has ended: its VMs are being stopped") % context,
            body=render("course_ended", context),
            project=project,
            now=now,
        )
        audit_record(
            actor=None,
            action="project.course_stop",
            target=project,
            project=project,
            after={**context, "servers": count},
        )
    return True


def _delete_servers(pk: int, *, end_date: date, now: datetime) -> int:
    """Ask for every live server of the project to be deleted (the tasks run after commit)."""
    from compute import services

    with transaction.atomic():
        project = _locked_project(pk)
        if project.end_date != end_date or project.course_closed_for == end_date:
            return 0
        live = Server.objects.filter(project=project).exclude(status=ServerStatus.DELETED)
        asked = live.exclude(task="deleting")
        if not asked.exists():
            return 0
        count = services.servers_delete_for(
            servers=asked, reason=_("The course ended on %(end_date)s") % _context(project)
        )
        audit_record(
            actor=None,
            action="project.course_delete",
            target=project,
            project=project,
            after={**_context(project), "servers": count},
        )
    return count


def _close(pk: int, *, end_date: date, now: datetime) -> bool:
    """Return the allocation to the domain once no server of the project is left."""
    from billing.services import RESOURCES, Target, _allocation_set

    with transaction.atomic():
        project = _locked_project(pk, with_domain=True)
        if project.end_date != end_date or project.course_closed_for == end_date:
            return False
        live = Server.objects.filter(project=project).exclude(status=ServerStatus.DELETED)
        if live.exists() or Holding.objects.filter(project=project, end__isnull=True).exists():
            return False  # deletions on their way: the next run closes
        ended: dict[str, Any] = {}
        for allocation in Allocation.objects.filter(
            level=Level.MEMBER, project=project, end__isnull=True
        ).select_related("membership", "user"):
            membership = allocation.membership or Membership(project=project, user=allocation.user)
            _allocation_set(
                actor=None,
                target=Target(Level.MEMBER, project.domain, project, membership),
                vcpus=0,
                ram_gib=0,
                disk_gib=0,
                budget=None,
                now=now,
            )
        current = Allocation.objects.filter(
            level=Level.PROJECT, project=project, end__isnull=True
        ).first()
        if current is not None:
            ended = {r: getattr(current, r) for r in RESOURCES}
            _allocation_set(
                actor=None,
                target=Target(Level.PROJECT, project.domain, project),
                vcpus=0,
                ram_gib=0,
                disk_gib=0,
                budget=None,
                now=now,
            )
        project.course_closed_for = end_date
        project.save(update_fields=["course_closed_for"])
        audit_record(
            actor=None,
            action="project.course_close",
            target=project,
            project=project,
            after={**_context(project), "allocation_returned": ended},
        )
    return True


# -- The run ----------------------------------------------------------------------------------


def course_end_run(*, now: datetime) -> dict[str, int]:
    """Every course-end step due at `now` (see the module docstring). Each step is its own
    short transaction; a failing project is logged and retried by the next run."""
    today = local_date(now)
    result = {"reminded": 0, "stopped": 0, "deleting": 0, "closed": 0}
    candidates: list[tuple[int, date, date | None, date | None]] = list(
        Project.objects.filter(end_date__isnull=False, end_date__lte=today + timedelta(REMIND_DAYS))
        .exclude(status=TenantStatus.PURGED)
        .exclude(Q(course_closed_for=F("end_date")))
        .order_by("end_date", "pk")
        .values_list("pk", "end_date", "course_reminded_for", "course_stopped_for")
    )
    for pk, end_date, reminded_for, stopped_for in candidates:
        dates = course_dates(end_date)
        try:
            if dates["remind_on"] <= today < end_date and reminded_for != end_date:
                result["reminded"] += _remind(pk, end_date=end_date, now=now)
            if today >= end_date and stopped_for != end_date:
                result["stopped"] += _stop(pk, end_date=end_date, now=now)
            if today >= dates["delete_on"]:
                result["deleting"] += _delete_servers(pk, end_date=end_date, now=now)
                result["closed"] += _close(pk, end_date=end_date, now=now)
        except Exception:
            log.exception("course end of project %s failed", pk)
    return result
