"""The periodic sync against the development cloud (SPEC Compute 6): servers deleted or stopped
behind the portal's back, stuck builds, lost create answers, unknown servers (reported, adopted,
deleted), two syncs at once, fault injection — and after one sync no VM of our projects is in the
cloud without a record. Also the catalogue mirror and both management commands."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.models import Holding
from billing.services import held_by_vms
from compute import services
from compute.models import CloudProject, Flavor, Image, Server, UnknownServer
from compute.services import server_create
from compute.sync import catalogue_sync, sync_run, unknown_server_adopt, unknown_server_delete
from compute.tests.support import eventually, flavor, image
from compute.tests.test_enforcement import boot, cloud_status, cloud_world, fresh
from teachcloud.celery import app
from teachcloud.errors import ServiceError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cw(devcloud, settings):
    return cloud_world(settings)


@contextmanager
def worker_stopped() -> Iterator[None]:
    """Celery tasks are sent to the broker and nobody runs them (a lost build)."""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


@pytest.fixture
def worker_down():
    with worker_stopped():
        yield


def our_project_id(cw) -> str:
    return services.cloud_project_ensure(project=cw.project).cloud_id


def reserve(cw, user, name: str) -> Server:
    """A reservation whose build task never runs (use with `worker_down`)."""
    server = server_create(
        actor=user, project=cw.project, name=name, flavor=flavor("m1.tiny"), image=image()
    )
    server.refresh_from_db()
    assert server.status == "building" and not server.cloud_id
    return server


def unrecorded(devcloud) -> list[str]:
    """Cloud servers of our projects with neither a live Server row nor an UnknownServer row."""
    ours = set(CloudProject.objects.exclude(cloud_id="").values_list("cloud_id", flat=True))
    missing = []
    for vm in devcloud.servers():
        if vm["project_id"] not in ours:
            continue
        known = Server.objects.filter(cloud_id=vm["id"]).exclude(status="deleted").exists()
        reported = UnknownServer.objects.filter(cloud_id=vm["id"]).exists()
        if not known and not reported:
            missing.append(vm["id"])
    return missing


# -- Following the cloud ----------------------------------------------------------------------


def test_server_deleted_behind_the_portals_back(cw, devcloud):
    server = boot(cw, cw.member, "web")
    devcloud.delete_server_behind_back(server.cloud_id)

    dry = sync_run(apply=False)
    assert dry.count("gone") == 1 and dry.changes[0]["server"] == server.pk
    assert fresh(server).status == "active"  # a dry run writes nothing
    assert Holding.objects.get(pk=server.holding_id).end is None

    report = sync_run()
    assert report.count("gone") == 1
    server = fresh(server)
    assert server.status == "deleted" and server.deleted_at is not None
    assert Holding.objects.get(pk=server.holding_id).end is not None
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 0
    assert sync_run().changes == []


def test_server_stopped_and_started_behind_the_portals_back(cw, devcloud):
    server = boot(cw, cw.member, "web")
    devcloud.set_status(server.cloud_id, "SHUTOFF")
    report = sync_run()
    assert [c["kind"] for c in report.changes] == ["status"]
    assert "active → stopped" in report.changes[0]["detail"]
    server = fresh(server)
    assert (server.status, server.stop_cause, server.cloud_status) == (
        "stopped",
        "cloud",
        "SHUTOFF",
    )

    devcloud.set_status(server.cloud_id, "ACTIVE")
    sync_run()
    server = fresh(server)
    assert (server.status, server.stop_cause) == ("active", "")

    devcloud.set_status(server.cloud_id, "ERROR", fault="disk failure")
    sync_run()
    server = fresh(server)
    assert server.status == "error" and "disk failure" in server.fault


def test_a_stuck_build_is_released(cw, devcloud, worker_down):
    server = reserve(cw, cw.member, "stuck")
    holding = Holding.objects.get(pk=server.holding_id)
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 1

    assert sync_run(now=timezone.now() + timedelta(minutes=5)).changes == []
    assert fresh(server).status == "building"

    report = sync_run(now=timezone.now() + timedelta(minutes=16))
    assert report.count("stuck") == 1
    server = fresh(server)
    assert server.status == "error" and "never confirmed" in server.fault
    holding.refresh_from_db()
    assert holding.end == holding.start  # released: held for zero seconds
    assert held_by_vms(project=cw.project, user=cw.member)["vcpus"] == 0


def test_a_lost_create_answer_is_linked_and_followed(cw, devcloud, worker_down):
    project_id = our_project_id(cw)
    server = reserve(cw, cw.member, "lost")
    # The cloud created it, the answer never reached the portal (its build task died).
    vm = devcloud.create_server_behind_back(
        project_id=project_id,
        name="lost",
        status="BUILD",
        metadata={"teachcloud_server": str(server.pk), "teachcloud_owner": str(cw.member.pk)},
    )
    report = sync_run()
    assert report.count("linked") == 1
    server = fresh(server)
    assert server.cloud_id == vm["id"]
    eventually(lambda: devcloud.server(vm["id"])["status"] == "ACTIVE")  # BUILD → ACTIVE
    sync_run()
    server = fresh(server)
    assert server.status == "active" and server.ip_list
    assert not UnknownServer.objects.exists()


def test_a_leftover_of_a_failed_create_is_deleted(cw, devcloud):
    project_id = our_project_id(cw)
    devcloud.fail("POST", r"/compute/v2\.1/servers$", status=500)
    server = server_create(
        actor=cw.member, project=cw.project, name="failed", flavor=flavor("m1.tiny"), image=image()
    )
    server = fresh(server)
    assert server.status == "error" and not server.cloud_id
    devcloud.clear_faults()
    # Yet the cloud has a server naming it (a create that went through after all).
    vm = devcloud.create_server_behind_back(
        project_id=project_id, name="failed", metadata={"teachcloud_server": str(server.pk)}
    )
    report = sync_run(orphans="report")
    assert report.count("leftover_deleted") == 1
    eventually(lambda: devcloud.server(vm["id"]) is None)
    assert UnknownServer.objects.get(cloud_id=vm["id"]).resolution == "deleted"


# -- Unknown servers --------------------------------------------------------------------------


def test_unknown_servers_reported_adopted_deleted(cw, devcloud):
    project_id = our_project_id(cw)
    named = devcloud.create_server_behind_back(
        project_id=project_id,
        name="from-horizon",
        flavor="m1.small",
        metadata={"teachcloud_owner": str(cw.member.pk), "teachcloud_project": cw.project.code},
    )
    anonymous = devcloud.create_server_behind_back(project_id=project_id, name="who-knows")
    foreign_project = next(
        p["id"] for p in devcloud.projects() if p["id"] != project_id and p["name"] == "admin"
    )
    foreign = devcloud.create_server_behind_back(project_id=foreign_project, name="not-ours")

    report = sync_run(orphans="report")
    assert report.count("unknown") == 2
    rows = {row.cloud_id: row for row in UnknownServer.objects.all()}
    assert set(rows) == {named["id"], anonymous["id"]}  # the other project is none of ours
    assert {row.resolution for row in rows.values()} == {"reported"}
    assert rows[named["id"]].metadata["teachcloud_owner"] == str(cw.member.pk)
    assert not Server.objects.filter(cloud_id__in=rows).exists()
    assert sync_run(orphans="report").count("unknown") == 0  # already reported

    report = sync_run(orphans="adopt")
    assert report.count("adopted") == 1
    adopted = Server.objects.get(cloud_id=named["id"])
    assert (adopted.owner, adopted.project, adopted.flavor.name) == (
        cw.member,
        cw.project,
        "m1.small",
    )
    assert adopted.status == "active" and adopted.holding.end is None
    assert held_by_vms(project=cw.project, user=cw.member)["ram_gib"] == 2
    assert UnknownServer.objects.get(cloud_id=named["id"]).resolution == "adopted"
    assert UnknownServer.objects.get(cloud_id=anonymous["id"]).resolution == "reported"

    report = sync_run(orphans="delete")
    assert report.count("orphan_deleted") == 1
    eventually(lambda: devcloud.server(anonymous["id"]) is None)
    assert devcloud.server(named["id"]) is not None
    assert devcloud.server(foreign["id"]) is not None
    assert UnknownServer.objects.get(cloud_id=anonymous["id"]).resolution == "deleted"
    assert sync_run(orphans="delete").changes == []


def test_platform_staff_adopt_or_delete_one_reported_server(cw, devcloud):
    project_id = our_project_id(cw)
    vm = devcloud.create_server_behind_back(
        project_id=project_id, name="lab", metadata={"teachcloud_owner_name": "second"}
    )
    other = devcloud.create_server_behind_back(project_id=project_id, name="junk")
    sync_run(orphans="report")
    row = UnknownServer.objects.get(cloud_id=vm["id"])
    with pytest.raises(PermissionDenied):
        unknown_server_adopt(actor=cw.domain_admin, unknown=row)
    server = unknown_server_adopt(actor=cw.platform, unknown=row)
    assert server.owner == cw.second and server.holding.end is None
    junk = UnknownServer.objects.get(cloud_id=other["id"])
    with pytest.raises(ServiceError) as refused:
        unknown_server_adopt(actor=cw.platform, unknown=junk)
    assert refused.value.code == "cannot_adopt"
    unknown_server_delete(actor=cw.platform, unknown=junk)
    eventually(lambda: devcloud.server(other["id"]) is None)
    assert fresh(junk).resolution == "deleted"


# -- Safety -----------------------------------------------------------------------------------


def test_two_syncs_at_once_one_runs_one_is_busy(cw, devcloud):
    boot(cw, cw.member, "web")
    devcloud.fail("GET", r"/servers/detail", delay=1.5, times=1)  # the first listing is slow
    reports = []
    started = threading.Event()

    def first() -> None:
        try:
            started.set()
            reports.append(("first", sync_run()))
        finally:
            connection.close()

    def second() -> None:
        try:
            started.wait(5)
            time.sleep(0.5)  # the first holds the lock by now, waiting for the cloud
            reports.append(("second", sync_run()))
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    outcome = dict(reports)
    assert outcome["second"].busy and outcome["second"].changes == []
    assert not outcome["first"].busy and outcome["first"].cloud_servers >= 1
    # Once the first is done, a sync runs again.
    assert not sync_run().busy


def test_a_cloud_failure_changes_nothing(cw, devcloud):
    server = boot(cw, cw.member, "web")
    devcloud.fail("GET", r"/servers/detail", status=503)
    report = sync_run()
    assert report.error and report.changes == []
    assert fresh(server).status == "active"
    devcloud.clear_faults()
    assert not sync_run().error


def test_no_vm_in_the_cloud_without_a_record_after_one_sync(cw, devcloud):
    project_id = our_project_id(cw)
    normal = boot(cw, cw.member, "normal")
    # A create the portal recorded as failed (released) that the cloud carried out after all.
    devcloud.fail("POST", r"/compute/v2\.1/servers$", status=500, times=1)
    lost = server_create(
        actor=cw.second, project=cw.project, name="lost", flavor=flavor("m1.tiny"), image=image()
    )
    lost = fresh(lost)
    assert lost.status == "error" and not lost.cloud_id
    holding = Holding.objects.get(pk=lost.holding_id)
    assert holding.end == holding.start
    leftover = devcloud.create_server_behind_back(
        project_id=project_id, name="lost", metadata={"teachcloud_server": str(lost.pk)}
    )
    # A build whose task died after the cloud accepted it.
    with worker_stopped():
        dying = reserve(cw, cw.member, "dying")
    devcloud.create_server_behind_back(
        project_id=project_id, name="dying", metadata={"teachcloud_server": str(dying.pk)}
    )
    # Someone used the cloud directly.
    outsider = devcloud.create_server_behind_back(project_id=project_id, name="outsider")
    assert len(unrecorded(devcloud)) == 3

    report = sync_run(orphans="report")
    assert unrecorded(devcloud) == []
    assert report.counts() == {"leftover_deleted": 1, "linked": 1, "unknown": 1}
    eventually(lambda: devcloud.server(leftover["id"]) is None)
    assert fresh(dying).cloud_id and fresh(dying).status == "active"
    assert UnknownServer.objects.get(cloud_id=outsider["id"]).resolution == "reported"
    assert fresh(normal).status == "active"
    assert sync_run(orphans="report").changes == []


def test_a_build_the_task_stopped_waiting_for_is_finished_by_the_sync(cw, devcloud, settings):
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = 0.001
    server = server_create(
        actor=cw.member, project=cw.project, name="slow", flavor=flavor("m1.tiny"), image=image()
    )
    server = fresh(server)
    assert server.status == "building" and server.cloud_id
    eventually(lambda: devcloud.server(server.cloud_id)["status"] == "ACTIVE")
    report = sync_run()
    assert report.count("status") == 1
    server = fresh(server)
    assert server.status == "active" and server.ip_list and server.active_at


# -- Catalogue and commands -------------------------------------------------------------------


def test_catalogue_sync_creates_updates_and_marks_removed(cw, devcloud):
    flavors = {f.name: f for f in Flavor.objects.all()}
    assert {"m1.tiny", "m1.small"} <= set(flavors)
    assert all(f.enabled and not f.removed for f in flavors.values())
    assert Image.objects.filter(name="cirros-0.6", removed=False).exists()

    Flavor.objects.filter(name="m1.tiny").update(name="renamed", vcpus=9)
    Flavor.objects.create(cloud_id="gone-flavor", name="old", vcpus=1, ram_mib=512, disk_gib=1)
    Image.objects.filter(name="cirros-0.6").update(removed=True)
    report = catalogue_sync()
    assert report["flavors"]["updated"] == ["m1.tiny"]
    assert report["flavors"]["removed"] == ["old"]
    assert report["images"]["restored"] == ["cirros-0.6"]
    tiny = Flavor.objects.get(cloud_id=flavors["m1.tiny"].cloud_id)
    assert (tiny.name, tiny.vcpus) == ("m1.tiny", 1)
    assert Flavor.objects.get(cloud_id="gone-flavor").removed
    assert not Image.objects.get(name="cirros-0.6").removed
    assert catalogue_sync()["flavors"] == {
        "created": [],
        "updated": [],
        "removed": [],
        "restored": [],
    }

    out = StringIO()
    call_command("compute_catalogue", stdout=out)
    assert "catalogue in step" in out.getvalue()


def test_compute_sync_command_dry_run_and_apply(cw, devcloud):
    server = boot(cw, cw.member, "web")
    devcloud.set_status(server.cloud_id, "SHUTOFF")
    out = StringIO()
    call_command("compute_sync", stdout=out)
    assert "dry run" in out.getvalue() and "active → stopped" in out.getvalue()
    assert fresh(server).status == "active"
    out = StringIO()
    call_command("compute_sync", "--apply", "--orphans", "report", stdout=out)
    assert "applied" in out.getvalue()
    assert fresh(server).status == "stopped"
    assert cloud_status(server) == "SHUTOFF"
