"""Billing's locks, unlocks, budget locks and purges carried out on real servers in the
development cloud (SPEC "Locking, credit, purge" 1–3, 5): compute.enforcement end to end.

Transactional tests: every service really commits, so the lifecycle tasks run on commit (Celery
is eager in tests) and call the development cloud over HTTP, as with a worker."""

from __future__ import annotations

import importlib
import logging
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from billing.enforcement import add_months, enforce, member_unlock, tenant_lock, tenant_unlock
from billing.models import Allocation, ComputeRequest, Holding, MemberConsumption
from billing.services import allocation_set, target_of, wallet_adjust, wallet_open, wallet_recharge
from compute.cloud import get_backend
from compute.enforcement import compute_requests_process
from compute.models import CloudDomain, CloudProject, Server, UnknownServer
from compute.services import server_create, server_start, server_stop
from compute.sync import catalogue_sync
from compute.tests.support import FAST, flavor, image, set_limit
from teachcloud.errors import Conflict
from teachcloud.testing.factories import UserFactory, make_world
from tenancy.models import AuditEvent, Membership
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db(transaction=True)
SHANGHAI = ZoneInfo("Asia/Shanghai")


# -- Shared helpers (test_course.py and test_sync.py use them too) ----------------------------


def cloud_world(settings: Any) -> Any:
    """The tenancy world after a transactional flush, with the cloud catalogue mirrored by
    `catalogue_sync`, capacity and allocations (domain 64/256/4000, project 16/64/1000), and two
    students (`member`, `second`) with a limit of 4 vCPU / 16 GiB / 200 GiB each."""
    for name, value in FAST.items():
        setattr(settings, name, value)
    # A transactional test starts from a flushed database: put back what migration 0002 wrote.
    importlib.import_module("billing.migrations.0002_defaults").forwards(apps, None)
    world = make_world()
    catalogue_sync()
    from billing.services import platform_capacity_set

    platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100000, overcommit="1.00"
    )
    allocation_set(
        actor=world.platform,
        target=target_of(domain=world.domain),
        vcpus=64,
        ram_gib=256,
        disk_gib=4000,
    )
    allocation_set(
        actor=world.domain_admin,
        target=target_of(project=world.project),
        vcpus=16,
        ram_gib=64,
        disk_gib=1000,
    )
    world.second = UserFactory(username="second", home_domain=world.domain)
    membership_add(actor=world.project_admin, project=world.project, user=world.second)
    for user in (world.member, world.second):
        set_limit(world, user, (4, 16, 200))
    return world


def boot(world: Any, user: Any, name: str, *, flavor_name: str = "m1.tiny") -> Server:
    """A server created by `user` through the service, built in the cloud (ACTIVE)."""
    server = server_create(
        actor=user, project=world.project, name=name, flavor=flavor(flavor_name), image=image()
    )
    server.refresh_from_db()
    assert server.status == "active", server.fault
    assert server.cloud_id
    return server


def cloud_status(server: Server) -> str:
    """The cloud's truth about a server ("DELETED" when it is gone)."""
    from compute.backends.base import NotFound

    server.refresh_from_db()
    try:
        return get_backend().get_server(server_id=server.cloud_id).status
    except NotFound:
        return "DELETED"


def fresh(obj: Any) -> Any:
    obj.refresh_from_db()
    return obj


@pytest.fixture
def cw(devcloud, settings):
    return cloud_world(settings)


# -- Lock → stop → unlock → restart -----------------------------------------------------------


def test_project_lock_stops_and_unlock_restarts_end_to_end(cw, devcloud):
    running = boot(cw, cw.member, "web")
    other = boot(cw, cw.second, "db")
    stopped_before = boot(cw, cw.second, "idle")
    server_stop(actor=cw.second, server=stopped_before)
    assert fresh(stopped_before).status == "stopped" and cloud_status(stopped_before) == "SHUTOFF"

    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="exam week")
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.done_at is None
    assert compute_requests_process() == {
        "done": 1,
        "obsolete": 0,
        "pending": 0,
        "failed": 0,
        "skipped": 0,
        "waiting": 0,
    }
    assert fresh(stop).done_at is not None
    for server in (running, other):
        server = fresh(server)
        assert (server.status, server.stop_cause, server.running_at_lock, server.task) == (
            "stopped",
            "lock",
            True,
            "",
        )
        assert cloud_status(server) == "SHUTOFF"
    # A server its owner had stopped stays as it was: not "running at lock".
    stopped_before = fresh(stopped_before)
    assert (stopped_before.stop_cause, stopped_before.running_at_lock) == ("user", False)
    event = AuditEvent.objects.get(action="compute.stop")
    assert event.project == cw.project and event.after["servers_asked"] == 2

    # Nothing can be started or created while locked.
    with pytest.raises(Conflict) as refused:
        server_start(actor=cw.member, server=running)
    assert refused.value.code == "tenant_locked"
    with pytest.raises(Conflict) as refused:
        server_create(
            actor=cw.member, project=cw.project, name="new", flavor=flavor("m1.tiny"), image=image()
        )
    assert refused.value.code == "tenant_locked"
    assert cloud_status(running) == "SHUTOFF"

    # A second run finds nothing to do.
    assert compute_requests_process()["done"] == 0

    wallet_recharge(
        actor=cw.domain_admin, wallet=wallet_open(project=cw.project), amount="50", method="bank"
    )
    tenant_unlock(actor=cw.domain_admin, project=cw.project, restart_servers=True)
    restart = ComputeRequest.objects.get(action="restart")
    assert compute_requests_process()["done"] == 1
    assert fresh(restart).done_at is not None
    for server in (running, other):
        server = fresh(server)
        assert (server.status, server.stop_cause, server.running_at_lock) == ("active", "", False)
        assert cloud_status(server) == "ACTIVE"
    assert fresh(stopped_before).status == "stopped" and cloud_status(stopped_before) == "SHUTOFF"
    assert AuditEvent.objects.filter(action="compute.restart").count() == 1


def test_domain_lock_stops_every_project_and_unlock_without_restart_keeps_them_off(cw, devcloud):
    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.platform, domain=cw.domain, reason="contract ended")
    assert compute_requests_process()["done"] == 1
    assert fresh(server).stop_cause == "lock" and cloud_status(server) == "SHUTOFF"
    with pytest.raises(Conflict) as refused:
        server_start(actor=cw.member, server=server)
    assert refused.value.code == "tenant_locked"

    wallet_recharge(
        actor=cw.platform, wallet=wallet_open(domain=cw.domain), amount="500", method="bank"
    )
    tenant_unlock(actor=cw.platform, domain=cw.domain)  # no restart asked
    assert not ComputeRequest.objects.filter(action="restart").exists()
    assert compute_requests_process()["done"] == 0
    assert fresh(server).status == "stopped" and cloud_status(server) == "SHUTOFF"
    # The owner may start it again now.
    server_start(actor=cw.member, server=server)
    assert fresh(server).status == "active" and cloud_status(server) == "ACTIVE"


def test_restart_leaves_servers_of_a_project_still_locked(cw, devcloud):
    """A domain unlock with restart does not start what a project lock still holds."""
    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.platform, domain=cw.domain, reason="audit")
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="teacher left")
    result = compute_requests_process()
    assert result["done"] == 2
    wallet_recharge(
        actor=cw.platform, wallet=wallet_open(domain=cw.domain), amount="500", method="bank"
    )
    tenant_unlock(actor=cw.platform, domain=cw.domain, restart_servers=True)
    assert compute_requests_process()["done"] == 1
    assert fresh(server).status == "stopped" and cloud_status(server) == "SHUTOFF"
    assert fresh(server).running_at_lock  # may still be restarted when the project is unlocked

    wallet_recharge(
        actor=cw.domain_admin, wallet=wallet_open(project=cw.project), amount="50", method="bank"
    )
    tenant_unlock(actor=cw.domain_admin, project=cw.project, restart_servers=True)
    assert compute_requests_process()["done"] == 1
    assert fresh(server).status == "active" and cloud_status(server) == "ACTIVE"


def test_a_stop_for_a_tenant_unlocked_meanwhile_is_obsolete(cw, devcloud):
    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="mistake")
    wallet_recharge(
        actor=cw.domain_admin, wallet=wallet_open(project=cw.project), amount="50", method="bank"
    )
    tenant_unlock(actor=cw.domain_admin, project=cw.project)
    result = compute_requests_process()
    assert result["obsolete"] == 1 and result["done"] == 0
    assert ComputeRequest.objects.filter(done_at__isnull=True).count() == 0
    assert fresh(server).status == "active" and cloud_status(server) == "ACTIVE"


# -- Member budgets ---------------------------------------------------------------------------


def test_member_budget_lock_stops_only_that_members_servers(cw, devcloud):
    mine = boot(cw, cw.member, "mine")
    theirs = boot(cw, cw.second, "theirs")
    membership = Membership.objects.get(project=cw.project, user=cw.member)
    allocation_set(
        actor=cw.project_admin,
        target=target_of(membership=membership),
        vcpus=4,
        ram_gib=16,
        disk_gib=200,
        budget="10",
    )
    MemberConsumption.objects.create(
        project=cw.project,
        user=cw.member,
        hour=datetime(2024, 1, 1, tzinfo=SHANGHAI),
        amount=Decimal("10.0000"),
    )
    assert enforce(now=timezone.now())["members_locked"] == 1
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.membership == membership

    assert compute_requests_process()["done"] == 1
    mine = fresh(mine)
    assert (mine.status, mine.stop_cause, mine.running_at_lock) == ("stopped", "budget", True)
    assert cloud_status(mine) == "SHUTOFF"
    assert fresh(theirs).status == "active" and cloud_status(theirs) == "ACTIVE"
    with pytest.raises(Conflict) as refused:
        server_start(actor=cw.member, server=mine)
    assert refused.value.code == "member_locked"
    with pytest.raises(Conflict) as refused:
        server_create(
            actor=cw.member,
            project=cw.project,
            name="more",
            flavor=flavor("m1.tiny"),
            image=image(),
        )
    assert refused.value.code == "member_locked"
    # The other student is not affected.
    boot(cw, cw.second, "theirs-too")

    member_unlock(actor=cw.project_admin, membership=membership, budget="20")
    server_start(actor=cw.member, server=mine)
    assert fresh(mine).status == "active" and cloud_status(mine) == "ACTIVE"


# -- Purge ------------------------------------------------------------------------------------


def test_purge_deletes_servers_and_the_keystone_project(cw, devcloud):
    server = boot(cw, cw.member, "web")
    cloud_project = CloudProject.objects.get(project=cw.project)
    stray = devcloud.create_server_behind_back(
        project_id=cloud_project.cloud_id, name="made-in-horizon"
    )
    wallet = wallet_open(project=cw.project)
    wallet_adjust(actor=cw.platform, wallet=wallet, amount="-10", reason="fees owed")
    t0 = timezone.now()
    enforce(now=t0)
    assert compute_requests_process()["done"] == 1  # the lock's stop
    assert cloud_status(server) == "SHUTOFF"

    assert enforce(now=add_months(t0, 18))["purged"] == 1
    delete = ComputeRequest.objects.get(action="delete")
    assert compute_requests_process()["done"] == 1
    assert fresh(delete).done_at is not None
    server = fresh(server)
    assert server.status == "deleted" and server.deleted_at is not None
    assert Holding.objects.get(pk=server.holding_id).end is not None
    assert cloud_status(server) == "DELETED"
    cloud_ids = {s["id"] for s in devcloud.servers()}
    assert server.cloud_id not in cloud_ids and stray["id"] not in cloud_ids
    assert UnknownServer.objects.get(cloud_id=stray["id"]).resolution == "deleted"
    cloud_project = fresh(cloud_project)
    assert cloud_project.deleted_at is not None
    assert cloud_project.cloud_id not in {p["id"] for p in devcloud.projects()}
    # The domain lives on: its Keystone domain stays.
    assert CloudDomain.objects.get(domain=cw.domain).deleted_at is None
    assert AuditEvent.objects.filter(action="compute.delete", project=cw.project).count() == 1


def test_domain_purge_deletes_the_keystone_domain(cw, devcloud):
    server = boot(cw, cw.member, "web")
    wallet = wallet_open(domain=cw.domain)
    wallet_adjust(actor=cw.platform, wallet=wallet, amount="-10", reason="fees owed")
    t0 = timezone.now()
    enforce(now=t0)
    assert enforce(now=add_months(t0, 18))["purged"] == 1
    result = compute_requests_process()
    assert result["done"] == 2  # the lock's stop, then the purge's delete
    assert cloud_status(server) == "DELETED"
    cloud_domain = CloudDomain.objects.get(domain=cw.domain)
    assert cloud_domain.deleted_at is not None
    assert cloud_domain.cloud_id not in {d["id"] for d in devcloud.domains()}
    assert CloudProject.objects.get(project=cw.project).deleted_at is not None


# -- Faults and concurrency -------------------------------------------------------------------


def test_cloud_failure_leaves_the_request_undone_until_the_next_run(cw, devcloud, caplog):
    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="unpaid")
    devcloud.fail("POST", r"/servers/[^/]+/action", status=500)
    with caplog.at_level(logging.WARNING, logger="compute.enforcement"):
        result = compute_requests_process()
    assert result["pending"] == 1 and result["done"] == 0
    stop = ComputeRequest.objects.get(action="stop")
    assert stop.done_at is None
    server = fresh(server)
    assert server.status == "active" and server.task == "" and server.fault
    assert cloud_status(server) == "ACTIVE"
    assert "not done yet" in caplog.text

    devcloud.clear_faults()
    assert compute_requests_process()["done"] == 1
    assert fresh(stop).done_at is not None
    server = fresh(server)
    assert (server.status, server.fault, server.stop_cause) == ("stopped", "", "lock")
    assert cloud_status(server) == "SHUTOFF"


def test_a_later_request_of_the_domain_waits_for_an_earlier_one(cw, devcloud):
    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="unpaid")
    wallet_recharge(
        actor=cw.domain_admin, wallet=wallet_open(project=cw.project), amount="50", method="bank"
    )
    tenant_unlock(actor=cw.domain_admin, project=cw.project, restart_servers=True)
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="unpaid again")
    # stop, restart, stop: the first stop fails in the cloud, so the other two wait for it
    # (a restart never overtakes its stop).
    devcloud.fail("POST", r"/servers/[^/]+/action", status=500)
    result = compute_requests_process()
    assert (result["pending"], result["waiting"], result["done"]) == (1, 2, 0)
    devcloud.clear_faults()
    result = compute_requests_process()
    # The stop is carried out; the restart finds the project locked again; the last stop finds
    # nothing left running.
    assert result["done"] == 3
    assert not ComputeRequest.objects.filter(done_at__isnull=True).exists()
    assert fresh(server).status == "stopped" and cloud_status(server) == "SHUTOFF"


def test_two_runners_never_carry_out_one_request_twice(cw, devcloud):
    servers = [boot(cw, cw.member, "a"), boot(cw, cw.second, "b")]
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="unpaid")
    devcloud.fail("POST", r"/servers/[^/]+/action", delay=0.5)  # slow stops: the runs overlap
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(compute_requests_process())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(r["done"] for r in results) == 1
    assert sum(r["skipped"] for r in results) == 1
    assert AuditEvent.objects.filter(action="compute.stop").count() == 1
    for server in servers:
        assert (
            AuditEvent.objects.filter(action="server.stop", target_id=str(server.pk)).count() == 1
        )
        assert cloud_status(server) == "SHUTOFF"


def test_billing_run_enqueues_the_processing(cw, devcloud):
    from billing.charging import billing_run

    server = boot(cw, cw.member, "web")
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="unpaid")
    # Up to the instant the domain's allocation began: no hour or month has ended since, so no
    # charge or fee can lock the empty wallets and add stop requests, whatever the time.
    until = Allocation.objects.get(level="domain", domain=cw.domain).start
    summary = billing_run(until=until)
    assert "course_end" in summary
    assert ComputeRequest.objects.get(action="stop").done_at is not None
    assert cloud_status(server) == "SHUTOFF"


def test_purge_is_retried_when_keystone_fails(cw, devcloud):
    server = boot(cw, cw.member, "web")
    cloud_project = CloudProject.objects.get(project=cw.project)
    wallet = wallet_open(project=cw.project)
    wallet_adjust(actor=cw.platform, wallet=wallet, amount="-10", reason="fees owed")
    t0 = timezone.now()
    enforce(now=t0)
    enforce(now=add_months(t0, 18))
    devcloud.fail("DELETE", r"/v3/projects/", status=503)
    result = compute_requests_process()
    assert (result["done"], result["failed"]) == (1, 1)  # the stop; the purge failed
    assert cloud_status(server) == "DELETED"  # the servers went first
    assert ComputeRequest.objects.get(action="delete").done_at is None
    cloud_project = fresh(cloud_project)
    assert cloud_project.deleted_at is None and "503" in cloud_project.last_error
    assert cloud_project.cloud_id in {p["id"] for p in devcloud.projects()}

    devcloud.clear_faults()
    assert compute_requests_process()["done"] == 1
    assert ComputeRequest.objects.get(action="delete").done_at is not None
    assert fresh(cloud_project).deleted_at is not None
    assert cloud_project.cloud_id not in {p["id"] for p in devcloud.projects()}
