"""Review fixes of the sync (SPEC Compute 6, Allocations 7) against the development cloud:

- a build that fails (ERROR) or never finishes (BUILD past the stuck threshold) after the build
  task stopped waiting is released by the sync: holding ended, cloud instance deleted, fault;
- a course-end stop that was lost (no worker) is asked for again by the sync, which never clears
  the task it has just set; an active server of an ended course with no stop pending is stopped.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Holding
from billing.services import held_by_vms
from compute import services
from compute.course import course_end_run
from compute.models import Server
from compute.services import server_create
from compute.sync import sync_run
from compute.tests.support import eventually, flavor, image
from compute.tests.test_enforcement import boot, cloud_status, cloud_world, fresh
from compute.tests.test_sync import worker_stopped
from tenancy.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cw(devcloud, settings):
    return cloud_world(settings)


def slow_build(cw, settings, name: str) -> Server:
    """A server whose build task stopped waiting: `building`, with a cloud id."""
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = 0.001
    server = server_create(
        actor=cw.member, project=cw.project, name=name, flavor=flavor("m1.tiny"), image=image()
    )
    server = fresh(server)
    assert server.status == "building" and server.cloud_id
    return server


# -- Bug 4: a build that fails after the build task stopped waiting ---------------------------


def test_a_build_that_errors_after_the_task_stopped_waiting_is_released(cw, devcloud, settings):
    server = slow_build(cw, settings, "doomed")
    cloud_id = server.cloud_id
    devcloud.set_status(cloud_id, "ERROR", fault="No valid host was found")
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 1

    dry = sync_run(apply=False)
    assert dry.count("build_failed") == 1
    assert fresh(server).status == "building"  # a dry run writes nothing

    report = sync_run()
    assert report.count("build_failed") == 1
    server = fresh(server)
    assert server.status == "error" and "No valid host" in server.fault
    assert server.task == ""
    holding = Holding.objects.get(pk=server.holding_id)
    assert holding.end is not None and holding.end == holding.start  # released
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 0
    eventually(lambda: devcloud.server(cloud_id) is None)  # gone from Nova
    assert sync_run().changes == []


def test_a_build_stuck_in_build_with_a_cloud_id_is_released(cw, devcloud, settings):
    server = slow_build(cw, settings, "frozen")
    cloud_id = server.cloud_id
    devcloud.set_status(cloud_id, "BUILD")  # and it stays there

    assert sync_run(now=timezone.now() + timedelta(minutes=5)).changes == []
    assert fresh(server).status == "building"

    report = sync_run(now=timezone.now() + timedelta(minutes=16))
    assert report.count("stuck") == 1
    server = fresh(server)
    assert server.status == "error" and server.fault
    holding = Holding.objects.get(pk=server.holding_id)
    assert holding.end == holding.start
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 0
    eventually(lambda: devcloud.server(cloud_id) is None)


# -- Bug 5: a lost course-end stop -------------------------------------------------------------


def test_a_lost_course_end_stop_is_asked_for_again_by_the_sync(cw, devcloud):
    server = boot(cw, cw.member, "web")
    Project.objects.filter(pk=cw.project.pk).update(end_date=timezone.localdate())

    with worker_stopped():  # the stop task is sent and nobody runs it
        assert course_end_run(now=timezone.now())["stopped"] == 1
        server = fresh(server)
        assert (server.status, server.task, server.stop_cause) == ("active", "stopping", "course")

        # Ten minutes later the stop counts as lost: the sync asks for it again and keeps the
        # task it has just set (a real worker would otherwise find its task superseded).
        report = sync_run(now=timezone.now() + timedelta(minutes=11))
    assert report.count("task_cleared") == 1
    server = fresh(server)
    assert (server.status, server.task, server.stop_cause) == ("active", "stopping", "course")
    assert server.running_at_lock

    # The queued task, run by a worker, stops it.
    services.server_action(server_id=server.pk, action="stop")
    server = fresh(server)
    assert (server.status, server.task, server.stop_cause) == ("stopped", "", "course")
    assert cloud_status(server) == "SHUTOFF"


def test_an_active_server_of_an_ended_course_without_a_stop_is_stopped_by_the_sync(cw, devcloud):
    server = boot(cw, cw.member, "web")
    end = timezone.localdate()
    # The course's stop step ran (but this server was never stopped: e.g. a failed cloud call).
    Project.objects.filter(pk=cw.project.pk).update(end_date=end, course_stopped_for=end)

    dry = sync_run(apply=False)
    assert dry.count("blocked") == 1
    assert fresh(server).task == ""

    report = sync_run()
    assert report.count("blocked") == 1
    server = fresh(server)  # the eager worker carried the stop out
    assert (server.status, server.stop_cause, server.running_at_lock) == ("stopped", "course", True)
    assert cloud_status(server) == "SHUTOFF"
    assert sync_run().changes == []
