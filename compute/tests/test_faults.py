"""Cloud faults injected into the development cloud (5xx, timeouts, refusals, servers that go to
ERROR) leave no half state: a failed create is `error` with a readable fault, its reservation
released and nothing in the cloud; a failed action clears the task and records the fault."""

from __future__ import annotations

import pytest

from billing.models import Holding
from compute import services
from compute.backends.base import Quota
from compute.cloud import get_backend
from compute.models import CloudProject, Server
from compute.selectors import member_room
from compute.services import server_create, server_delete, server_start, server_stop
from compute.tests.support import eventually, flavor, image, prepare
from tenancy.models import AuditEvent

pytestmark = pytest.mark.django_db

NOTHING = {"vcpus": 0, "ram_gib": 0, "disk_gib": 0}
CREATE = r"/servers$"
ACTION = r"/servers/[^/]+/action$"


@pytest.fixture
def w(world, settings, devcloud):
    return prepare(world, settings)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def create(w, run=None, *, name="vm1", flavor_name="c1.small") -> Server:
    def call():
        return server_create(
            actor=w.member,
            project=w.project,
            name=name,
            flavor=flavor(flavor_name),
            image=image(),
        )

    if run is None:
        return call()
    with run():
        server = call()
    server.refresh_from_db()
    return server


def cloud_servers_of(server: Server) -> list:
    return [
        s
        for s in get_backend().list_servers()
        if s.metadata.get("teachcloud_server") == str(server.pk)
    ]


def assert_released(w, server: Server) -> None:
    holding = Holding.objects.get(pk=server.holding_id)
    assert holding.end == holding.start  # held for zero seconds
    assert member_room(project=w.project, user=w.member)["held"] == NOTHING


def test_create_refused_by_a_5xx_is_an_error_with_its_reservation_released(w, run, devcloud):
    devcloud.fail("POST", CREATE, status=500)
    server = create(w, run)
    assert (server.status, server.task, server.cloud_id) == ("error", "", None)
    assert server.fault.startswith("The server could not be created: ")
    assert_released(w, server)
    assert cloud_servers_of(server) == []
    assert AuditEvent.objects.filter(
        action="server.build_failed", target_id=str(server.pk)
    ).exists()
    # The student deletes the failed server; the name is free again and a create works.
    devcloud.clear_faults()
    assert server_delete(actor=w.member, server=server).status == "deleted"
    assert create(w, run).status == "active"


def test_create_that_times_out_leaves_no_half_state(w, run, devcloud, settings):
    """The cloud never answers the create: nothing was created, so the server is an error and
    its reservation is released; no cloud server exists for it."""
    devcloud.fail("POST", CREATE, status="timeout", times=1)
    server = create(w, run)
    assert server.status == "error"
    assert_released(w, server)
    assert cloud_servers_of(server) == []


def test_create_accepted_but_answered_by_a_timeout_is_found_and_kept(w, run, devcloud):
    """The cloud created the server but the answer was lost: the build finds it by its metadata,
    so the server is active and there is exactly one in the cloud."""
    devcloud.fail("POST", CREATE, status="timeout", times=1, apply=True)
    server = create(w, run)
    assert server.status == "active"
    assert [s.id for s in cloud_servers_of(server)] == [server.cloud_id]
    assert Holding.objects.get(pk=server.holding_id).end is None


def test_keystone_failure_fails_the_build_with_a_readable_message(w, run, devcloud):
    devcloud.fail("POST", r"/v3/projects$", status=503)
    server = create(w, run)
    assert server.status == "error"
    assert server.fault.startswith("The server could not be created: ")
    assert_released(w, server)
    assert CloudProject.objects.get(project=w.project).last_error


def test_the_clouds_own_quota_refusal_is_an_error_with_its_reservation_released(w, run):
    """Defence in depth: if Nova's quota refuses (our books said yes), nothing is half-built."""
    record = services.cloud_project_ensure(project=w.project)
    get_backend().set_quota(
        project_id=record.cloud_id, quota=Quota(cores=0, ram_mib=0, instances=0)
    )
    server = create(w, run)
    assert server.status == "error"
    assert "quota" in server.fault.lower()
    assert_released(w, server)


def test_a_build_that_goes_to_error_is_deleted_in_the_cloud_and_released(w, devcloud):
    server = create(w)  # reserved; the build has not run
    record = services.cloud_project_ensure(project=w.project)
    accepted = get_backend().create_server(project_id=record.cloud_id, spec=services._spec(server))
    devcloud.set_status(accepted.id, "ERROR")
    services.server_build(server_id=server.pk)  # finds it by its metadata, sees ERROR
    server.refresh_from_db()
    assert (server.status, server.cloud_id) == ("error", None)
    assert "No valid host" in server.fault
    assert_released(w, server)
    assert cloud_servers_of(server) == []


def test_a_build_still_in_build_after_the_wait_stays_building(w, devcloud, settings):
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = 0
    server = create(w)
    services.server_build(server_id=server.pk)
    server.refresh_from_db()
    assert server.status == "building" and server.cloud_id
    assert Holding.objects.get(pk=server.holding_id).end is None
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = 10
    services.server_build(server_id=server.pk)  # a second run follows it up, creates nothing
    server.refresh_from_db()
    assert server.status == "active"
    assert len(cloud_servers_of(server)) == 1


def test_a_failed_stop_clears_the_task_and_records_the_fault(w, run, devcloud):
    server = create(w, run)
    devcloud.fail("POST", ACTION, status=500)
    with run():
        assert server_stop(actor=w.member, server=server).task == "stopping"
    server.refresh_from_db()
    assert (server.status, server.task, server.stop_cause) == ("active", "", "")
    assert server.fault
    assert get_backend().get_server(server_id=server.cloud_id).status == "ACTIVE"
    assert AuditEvent.objects.filter(
        action="server.action_failed", target_id=str(server.pk)
    ).exists()
    devcloud.clear_faults()
    with run():
        server_stop(actor=w.member, server=server)
    server.refresh_from_db()
    assert (server.status, server.task, server.fault) == ("stopped", "", "")


def test_a_failed_start_keeps_the_server_stopped(w, run, devcloud):
    server = create(w, run)
    with run():
        server_stop(actor=w.member, server=server)
    devcloud.fail("POST", ACTION, status=502)
    with run():
        server_start(actor=w.member, server=server)
    server.refresh_from_db()
    assert (server.status, server.task) == ("stopped", "")
    assert server.fault


def test_a_failed_delete_keeps_the_server_and_its_holding(w, run, devcloud):
    server = create(w, run)
    devcloud.fail("DELETE", r"/servers/[^/]+$", status=500)
    with run():
        server_delete(actor=w.member, server=server)
    server.refresh_from_db()
    assert (server.status, server.task) == ("active", "")
    assert server.fault
    assert Holding.objects.get(pk=server.holding_id).end is None
    devcloud.clear_faults()
    with run():
        server_delete(actor=w.member, server=server)
    server.refresh_from_db()
    assert server.status == "deleted"
    assert Holding.objects.get(pk=server.holding_id).end is not None


def test_the_console_of_an_unreachable_cloud_is_a_clear_error(w, run, devcloud):
    from teachcloud.errors import Conflict

    server = create(w, run)
    devcloud.fail("POST", r"/remote-consoles$", status=503)
    with pytest.raises(Conflict) as refused:
        services.server_console_url(actor=w.member, server=server)
    assert refused.value.code == "cloud_unavailable"
    assert refused.value.detail


def test_a_lost_create_answer_that_cannot_be_checked_is_cleaned_up_by_one_sync(w, run, devcloud):
    """The cloud created the server, the answer was lost and the cloud could not even be asked
    afterwards: the create is failed and released at once; the server the cloud did create is
    deleted by the next sync, so no VM is left without a record."""
    from compute.sync import sync_run

    devcloud.fail("GET", r"/servers/detail$", status=None, delay=0.01, times=1)  # first look: ok
    devcloud.fail("POST", CREATE, status="timeout", times=1, apply=True)
    devcloud.fail("GET", r"/servers/detail$", status=503)  # the look after the timeout fails
    server = create(w, run)
    assert server.status == "error"
    assert_released(w, server)
    devcloud.clear_faults()
    assert len(cloud_servers_of(server)) == 1  # the half the portal could not see
    assert sync_run(apply=True)
    eventually(lambda: cloud_servers_of(server) == [])  # deleting takes the cloud a moment
    server.refresh_from_db()
    assert server.status == "error"
    assert Holding.objects.get(pk=server.holding_id).end == server.holding.start
