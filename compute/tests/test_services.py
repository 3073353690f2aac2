"""The server lifecycle against the development cloud over real HTTP: build, start, stop, reboot,
rename, delete, console; who may do what; busy and locked servers; the system side used by
enforcement and course end; Keystone projects and their quota; the selectors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from billing.enforcement import tenant_lock, tenant_unlock
from billing.models import Holding
from billing.services import allocation_set, target_of, wallet_recharge
from compute import services
from compute.cloud import get_backend
from compute.models import CloudDomain, CloudProject, Server
from compute.selectors import (
    flavor_fits,
    flavors_for,
    images_for,
    member_room,
    project_overview,
    servers_visible_to,
)
from compute.services import (
    server_console_url,
    server_create,
    server_delete,
    server_reboot,
    server_rename,
    server_start,
    server_stop,
    servers_delete_for,
    servers_restart_for,
    servers_stop_for,
)
from compute.tests.support import flavor, image, prepare, set_limit
from teachcloud.errors import Conflict
from tenancy.models import AuditEvent, Membership
from tenancy.services import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(world, settings):
    return prepare(world, settings)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run the tasks a service enqueues on commit (Celery is eager in tests)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def cloud(server: Server):
    server.refresh_from_db()
    return get_backend().get_server(server_id=server.cloud_id)


def build(w, run, *, user=None, name="vm1", flavor_name="m1.tiny") -> Server:
    with run():
        server = server_create(
            actor=user or w.member,
            project=w.project,
            name=name,
            flavor=flavor(flavor_name),
            image=image(),
            key_name="",
        )
    server.refresh_from_db()
    return server


# -- Build ----------------------------------------------------------------------------------


def test_a_created_server_is_built_in_the_members_cloud_project(w, run):
    server = build(w, run, name="实验-1")
    assert server.status == "active" and server.task == ""
    assert server.cloud_status == "ACTIVE"
    assert server.active_at is not None and server.fault == ""
    assert server.ip_list and all(ip.startswith("10.") for ip in server.ip_list)
    there = cloud(server)
    assert there.status == "ACTIVE"
    assert there.name == "实验-1"
    assert there.metadata == {
        "teachcloud_server": str(server.pk),
        "teachcloud_owner": str(w.member.pk),
        "teachcloud_owner_name": "member",
        "teachcloud_project": "net101",
        "teachcloud_domain": "north",
    }
    cloud_project = CloudProject.objects.get(project=w.project)
    assert there.project_id == cloud_project.cloud_id
    assert there.flavor_id == flavor("m1.tiny").cloud_id
    actions = list(
        AuditEvent.objects.filter(target_type="compute.server", target_id=str(server.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["server.create", "server.status"]


def test_running_the_build_twice_creates_one_cloud_server(w):
    server = server_create(
        actor=w.member, project=w.project, name="twice", flavor=flavor("m1.tiny"), image=image()
    )  # the on-commit build never ran
    services.server_build(server_id=server.pk)
    services.server_build(server_id=server.pk)
    server.refresh_from_db()
    assert server.status == "active"
    mine = [
        s
        for s in get_backend().list_servers()
        if s.metadata.get("teachcloud_server") == str(server.pk)
    ]
    assert [s.id for s in mine] == [server.cloud_id]


def test_a_build_finds_the_cloud_server_an_earlier_attempt_created(w):
    """A worker that died after the cloud accepted the create but before recording the id:
    the next run finds the server by its metadata instead of booting a second one."""
    server = server_create(
        actor=w.member, project=w.project, name="lost", flavor=flavor("m1.tiny"), image=image()
    )
    cloud_project = services.cloud_project_ensure(project=w.project)
    earlier = get_backend().create_server(
        project_id=cloud_project.cloud_id, spec=services._spec(server)
    )
    services.server_build(server_id=server.pk)
    server.refresh_from_db()
    assert server.cloud_id == earlier.id and server.status == "active"
    assert [s.id for s in get_backend().list_servers(project_id=cloud_project.cloud_id)] == [
        earlier.id
    ]


def test_a_server_deleted_while_building_is_removed_from_the_cloud(w):
    server = server_create(
        actor=w.member, project=w.project, name="gone", flavor=flavor("m1.tiny"), image=image()
    )
    server_delete(actor=w.member, server=server)  # no cloud id yet: deleted at once
    services.server_build(server_id=server.pk)  # the build task runs late: does nothing
    server.refresh_from_db()
    assert server.status == "deleted" and server.cloud_id is None
    assert not [
        s
        for s in get_backend().list_servers()
        if s.metadata.get("teachcloud_server") == str(server.pk)
    ]


def test_a_build_that_finishes_after_a_lock_is_stopped(w, run):
    server = server_create(
        actor=w.member, project=w.project, name="late", flavor=flavor("m1.tiny"), image=image()
    )
    tenant_lock(actor=w.domain_admin, project=w.project, reason="unpaid")
    with run():
        services.server_build(server_id=server.pk)
    server.refresh_from_db()
    assert server.status == "stopped" and server.task == ""
    assert (server.stop_cause, server.running_at_lock) == ("lock", True)
    assert cloud(server).status == "SHUTOFF"


# -- Actions --------------------------------------------------------------------------------


def test_stop_start_reboot_rename_delete(w, run):
    server = build(w, run)

    with run():
        stopping = server_stop(actor=w.member, server=server)
    assert stopping.task == "stopping"  # what the API answers at once
    server.refresh_from_db()
    assert (server.status, server.task, server.stop_cause) == ("stopped", "", "user")
    assert cloud(server).status == "SHUTOFF"

    with run():
        server_start(actor=w.member, server=server)
    server.refresh_from_db()
    assert (server.status, server.task, server.stop_cause) == ("active", "", "")
    assert cloud(server).status == "ACTIVE"

    with run():
        assert server_reboot(actor=w.member, server=server, hard=True).task == "rebooting"
    server.refresh_from_db()
    assert (server.status, server.task) == ("active", "")
    assert cloud(server).status == "ACTIVE"

    with run():
        server_rename(actor=w.member, server=server, name="renamed")
    server.refresh_from_db()
    assert server.name == "renamed"
    assert cloud(server).name == "renamed"

    holding = server.holding
    with run():
        assert server_delete(actor=w.member, server=server).task == "deleting"
    server.refresh_from_db()
    assert (server.status, server.task) == ("deleted", "")
    holding.refresh_from_db()
    assert holding.end is not None and holding.end > holding.start
    assert server.cloud_id not in {s.id for s in get_backend().list_servers()}
    # Deleting again changes nothing.
    assert server_delete(actor=w.member, server=server).status == "deleted"
    actions = list(
        AuditEvent.objects.filter(target_type="compute.server", target_id=str(server.pk))
        .exclude(action="server.status")
        .order_by("id")
        .values_list("action", "actor__username")
    )
    assert actions == [
        ("server.create", "member"),
        ("server.stop", "member"),
        ("server.start", "member"),
        ("server.reboot", "member"),
        ("server.rename", "member"),
        ("server.delete", "member"),
        ("server.deleted", None),
    ]


def test_who_may_do_what(w, run):
    server = build(w, run)
    set_limit(w, w.project_admin, (1, 4, 20))
    # Only the owner starts, reboots, renames and opens the console.
    for actor in (w.project_admin, w.project_assistant, w.domain_admin, w.outsider):
        with pytest.raises(PermissionDenied):
            server_reboot(actor=actor, server=server)
        with pytest.raises(PermissionDenied):
            server_rename(actor=actor, server=server, name="x")
        with pytest.raises(PermissionDenied):
            server_console_url(actor=actor, server=server)
    # Other members, outsiders and other schools may not stop or delete it.
    for actor in (w.outsider, w.other_admin):
        with pytest.raises(PermissionDenied):
            server_stop(actor=actor, server=server)
        with pytest.raises(PermissionDenied):
            server_delete(actor=actor, server=server)
    # The project's admins and assistants (and the domain's) may stop and delete it.
    with run():
        server_stop(actor=w.project_assistant, server=server)
    server.refresh_from_db()
    assert (server.status, server.stop_cause) == ("stopped", "user")
    with pytest.raises(PermissionDenied):
        server_start(actor=w.project_assistant, server=server)
    with run():
        server_delete(actor=w.domain_admin, server=server)
    server.refresh_from_db()
    assert server.status == "deleted"


def test_busy_and_wrong_states_answer_server_busy(w, run):
    server = build(w, run)
    with pytest.raises(Conflict) as refused:
        server_start(actor=w.member, server=server)
    assert refused.value.code == "server_busy"
    assert "Only a stopped server can be started (this one is active)" in refused.value.detail

    server_stop(actor=w.member, server=server)  # the task is not run: still stopping
    for call in (
        lambda: server_stop(actor=w.member, server=server),
        lambda: server_reboot(actor=w.member, server=server),
        lambda: server_start(actor=w.member, server=server),
    ):
        with pytest.raises(Conflict) as refused:
            call()
        assert refused.value.code == "server_busy"
        assert "busy (Stopping)" in refused.value.detail
    # A task nobody finished for longer than TEACHCLOUD_COMPUTE_TASK_STALE is considered lost.
    Server.objects.filter(pk=server.pk).update(updated_at=server.updated_at - timedelta(hours=1))
    with run():
        server_stop(actor=w.member, server=server)
    server.refresh_from_db()
    assert (server.status, server.task) == ("stopped", "")


def test_start_and_reboot_are_refused_while_locked_but_stop_and_delete_are_not(w, run):
    running = build(w, run, name="running")
    stopped = build(w, run, name="stopped")
    with run():
        server_stop(actor=w.member, server=stopped)
    tenant_lock(actor=w.domain_admin, project=w.project, reason="unpaid")
    with pytest.raises(Conflict) as refused:
        server_start(actor=w.member, server=stopped)
    assert refused.value.code == "tenant_locked"
    with pytest.raises(Conflict) as refused:
        server_reboot(actor=w.member, server=running)
    assert refused.value.code == "tenant_locked"
    with pytest.raises(Conflict) as refused:
        server_rename(actor=w.member, server=running, name="other")
    assert refused.value.code == "tenant_locked"
    with run():
        server_stop(actor=w.member, server=running)
        server_delete(actor=w.member, server=stopped)
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert (running.status, stopped.status) == ("stopped", "deleted")

    Membership.objects.filter(project=w.project, user=w.member).update(locked=True)
    wallet = tenant_unlock_with_money(w)
    assert wallet.locked_at is None
    with pytest.raises(Conflict) as refused:
        server_start(actor=w.member, server=running)
    assert refused.value.code == "member_locked"


def tenant_unlock_with_money(w):
    from billing.models import Wallet

    wallet = Wallet.objects.get(project=w.project)
    wallet_recharge(actor=w.domain_admin, wallet=wallet, amount="100.00", method="bank")
    return tenant_unlock(actor=w.domain_admin, project=w.project)


def test_rename_rules(w, run):
    one = build(w, run, name="one")
    build(w, run, name="two")
    with pytest.raises(Conflict) as refused:
        server_rename(actor=w.member, server=one, name="two")
    assert refused.value.code == "name_taken"
    assert server_rename(actor=w.member, server=one, name="one").name == "one"  # unchanged


def test_console_url_for_a_running_server(w, run):
    server = build(w, run)
    url = server_console_url(actor=w.member, server=server)
    assert url.startswith("http") and "vnc" in url.lower()
    assert AuditEvent.objects.filter(action="server.console", target_id=str(server.pk)).exists()
    with run():
        server_stop(actor=w.member, server=server)
    with pytest.raises(Conflict) as refused:
        server_console_url(actor=w.member, server=server)
    assert refused.value.code == "server_not_running"


# -- Cloud state applied to rows ------------------------------------------------------------


def test_server_record_applies_what_happened_behind_the_portals_back(w, run):
    server = build(w, run)
    backend = get_backend()
    backend.stop_server(server_id=server.cloud_id)
    shutoff = services._poll(backend, server.cloud_id, services._reached({"SHUTOFF"}), 10)
    services.server_record(server=server, cloud=shutoff)
    server.refresh_from_db()
    assert (server.status, server.stop_cause, server.cloud_status) == (
        "stopped",
        "cloud",
        "SHUTOFF",
    )

    backend.start_server(server_id=server.cloud_id)
    active = services._poll(backend, server.cloud_id, services._reached({"ACTIVE"}), 10)
    services.server_record(server=server, cloud=active)
    server.refresh_from_db()
    assert (server.status, server.stop_cause) == ("active", "")

    backend.delete_server(server_id=server.cloud_id)
    services.server_record(server=server, cloud=services._gone(server))
    server.refresh_from_db()
    assert server.status == "deleted" and server.deleted_at is not None
    assert Holding.objects.get(pk=server.holding_id).end is not None


# -- System side ----------------------------------------------------------------------------


def test_stop_restart_delete_for_locks(w, run):
    """What enforcement does with a lock, an unlock with restart, and a purge."""
    running = build(w, run, name="running")
    by_user = build(w, run, name="by-user")
    with run():
        server_stop(actor=w.member, server=by_user)
    project_servers = Server.objects.filter(project=w.project)

    tenant_lock(actor=w.domain_admin, project=w.project, reason="unpaid")
    with run():
        assert servers_stop_for(servers=project_servers, cause="lock") == 1
    running.refresh_from_db()
    by_user.refresh_from_db()
    assert (running.status, running.stop_cause, running.running_at_lock) == (
        "stopped",
        "lock",
        True,
    )
    assert (by_user.status, by_user.stop_cause, by_user.running_at_lock) == (
        "stopped",
        "user",
        False,
    )
    assert cloud(running).status == "SHUTOFF"
    with run():  # nothing to stop twice
        assert servers_stop_for(servers=project_servers, cause="lock") == 0

    # Still locked: nothing is restarted.
    with run():
        assert servers_restart_for(servers=project_servers) == 0
    tenant_unlock_with_money(w)
    with run():
        assert servers_restart_for(servers=project_servers) == 1
    running.refresh_from_db()
    by_user.refresh_from_db()
    assert (running.status, running.stop_cause, running.running_at_lock) == ("active", "", False)
    assert by_user.status == "stopped"
    assert cloud(running).status == "ACTIVE"

    with run():
        assert servers_delete_for(servers=project_servers, reason="purged") == 2
    assert set(project_servers.values_list("status", flat=True)) == {"deleted"}
    assert not Holding.objects.filter(project=w.project, end__isnull=True).exists()
    cloud_project = CloudProject.objects.get(project=w.project)
    assert get_backend().list_servers(project_id=cloud_project.cloud_id) == []
    assert (
        AuditEvent.objects.filter(
            action="server.delete", actor=None, after__reason="purged"
        ).count()
        == 2
    )


# -- Keystone projects and quota ------------------------------------------------------------


def test_new_tenants_get_their_keystone_domain_and_project(world, run):
    with run():
        project = project_create(
            actor=world.domain_admin, domain=world.domain, name="OS", code="os"
        )
    cloud_domain = CloudDomain.objects.get(domain=world.domain)
    cloud_project = CloudProject.objects.get(project=project)
    assert cloud_domain.cloud_id and cloud_project.cloud_id
    # Idempotent: ensuring again changes nothing.
    again = services.cloud_project_ensure(project=project)
    assert again.cloud_id == cloud_project.cloud_id
    assert CloudProject.objects.count() == 1 and CloudDomain.objects.count() == 1


def test_the_project_allocation_is_the_keystone_quota(w, run):
    with run():
        allocation_set(
            actor=w.domain_admin,
            target=target_of(project=w.project),
            vcpus=6,
            ram_gib=12,
            disk_gib=100,
        )
    record = CloudProject.objects.get(project=w.project)
    assert (record.quota_vcpus, record.quota_ram_gib) == (6, 12)
    quota = get_backend().get_quota(project_id=record.cloud_id)
    assert (quota.cores, quota.ram_mib, quota.instances) == (6, 12 * 1024, 6)
    with run():
        allocation_set(
            actor=w.domain_admin,
            target=target_of(project=w.project),
            vcpus=2,
            ram_gib=4,
            disk_gib=20,
        )
    quota = get_backend().get_quota(project_id=record.cloud_id)
    assert (quota.cores, quota.ram_mib) == (2, 4096)


# -- Selectors ------------------------------------------------------------------------------


def test_servers_visible_to_each_role(w, run):
    mine = build(w, run, name="mine")
    set_limit(w, w.project_admin, (1, 4, 20))
    admins = build(w, run, user=w.project_admin, name="admins")
    both = {mine.pk, admins.pk}

    def seen(user):
        return set(servers_visible_to(user).values_list("pk", flat=True))

    assert seen(w.member) == {mine.pk}
    assert seen(w.project_admin) == both
    assert seen(w.project_assistant) == both
    assert seen(w.domain_admin) == both
    assert seen(w.domain_assistant) == both
    assert seen(w.platform) == both
    assert seen(w.outsider) == set()
    assert seen(w.other_admin) == set()


def test_flavors_for_and_member_room(w, run):
    names = list(flavors_for(w.project).values_list("name", flat=True))
    assert names[0] == "m1.tiny" and "c4.xlarge" in names
    flavor("c4.xlarge").projects.add(w.other_project)
    assert "c4.xlarge" not in set(flavors_for(w.project).values_list("name", flat=True))
    assert "c4.xlarge" in set(flavors_for(w.other_project).values_list("name", flat=True))
    assert "cirros-0.6" in set(images_for(w.project).values_list("name", flat=True))

    build(w, run, flavor_name="c2.medium")
    room = member_room(project=w.project, user=w.member)
    assert room["limit"] == {"vcpus": 4, "ram_gib": 16, "disk_gib": 200}
    assert room["held"] == {"vcpus": 2, "ram_gib": 4, "disk_gib": 20}
    assert room["remaining"] == {"vcpus": 2, "ram_gib": 12, "disk_gib": 180}
    assert room["project_allocation"] == {"vcpus": 16, "ram_gib": 64, "disk_gib": 1000}
    assert room["project_remaining"] == {"vcpus": 14, "ram_gib": 60, "disk_gib": 980}
    assert flavor_fits(flavor("c2.large"), room)
    assert not flavor_fits(flavor("m1.large"), room)
    nobody = member_room(project=w.project, user=w.project_assistant)
    assert nobody["limit"] is None and not flavor_fits(flavor("m1.tiny"), nobody)


def test_project_overview_in_constant_queries(w, run, django_assert_num_queries):
    for n in range(3):
        build(w, run, name=f"vm{n}")
    second = project_create(actor=w.domain_admin, domain=w.domain, name="Second", code="second")
    with django_assert_num_queries(4):
        overview = project_overview(w.domain)
    rows = {row["project"].code: row for row in overview}
    assert rows["net101"]["servers"] == {"active": 3}
    assert rows["net101"]["servers_live"] == 3
    assert rows["net101"]["held"] == {"vcpus": 3, "ram_gib": 3, "disk_gib": 3}
    assert rows["net101"]["allocation"] == {"vcpus": 16, "ram_gib": 64, "disk_gib": 1000}
    assert rows[second.code] == {
        "project": second,
        "servers": {},
        "servers_live": 0,
        "held": {"vcpus": 0, "ram_gib": 0, "disk_gib": 0},
        "allocation": None,
    }


def test_a_stop_of_a_server_already_stopped_in_the_cloud_is_recorded_as_done(w, run):
    """Nova answers 409 to stopping a SHUTOFF server: the action records the cloud's state."""
    server = build(w, run)
    backend = get_backend()
    backend.stop_server(server_id=server.cloud_id)
    services._poll(backend, server.cloud_id, services._reached({"SHUTOFF"}), 10)
    with run():
        server_stop(actor=w.member, server=server)  # our row still says active
    server.refresh_from_db()
    assert (server.status, server.task, server.fault, server.stop_cause) == (
        "stopped",
        "",
        "",
        "user",
    )


def test_listing_visible_servers_takes_the_same_queries_for_more_servers(w, run):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            shown = [
                (s.project.domain.code, s.owner.username, s.flavor.name, s.image.name, s.ip_list)
                for s in servers_visible_to(w.domain_admin)
            ]
        assert shown
        return len(queries)

    build(w, run, name="a")
    count()  # the viewer's roles are computed once and cached
    few = count()
    assert few == 1
    for name in ("b", "c", "d"):
        build(w, run, name=name)
    assert count() == few


# -- Leaving a project ------------------------------------------------------------------------


def test_a_member_with_vms_is_removed_only_after_their_vms_are_deleted(w, run):
    from tenancy.services import membership_remove

    server = build(w, run)
    membership = Membership.objects.get(project=w.project, user=w.member)
    with pytest.raises(Conflict) as refused:
        membership_remove(actor=w.project_admin, membership=membership)
    assert refused.value.code == "member_has_servers"
    assert "1 VM(s)" in refused.value.detail
    assert Membership.objects.filter(pk=membership.pk).exists()  # nothing changed

    with run():
        server_delete(actor=w.project_admin, server=server)
    server.refresh_from_db()
    assert server.status == "deleted"
    membership_remove(actor=w.project_admin, membership=membership)
    assert not Membership.objects.filter(pk=membership.pk).exists()
