"""Conformance of the portal's whole compute path against whatever cloud the suite points at.

Nothing here uses the development cloud's controls: changes "behind the portal's back" are made
through the backend directly, the catalogue is whatever the cloud lists (the smallest flavor with
an image that boots on it), and every tenant has codes of its own so a real cloud's leftovers
never meet another test's. The normal suite runs it against the development cloud; CI's
real-OpenStack stage (`.ci/openstack_stage.sh`) runs it against Keystone, Nova, Glance, Neutron
and Placement:

    OS_CLIENT_CONFIG_FILE=…/clouds.yaml OS_CLOUD=openstack-ci TEACHCLOUD_COMPUTE_NETWORK=none \\
        .venv/bin/pytest compute/tests/test_conformance.py compute/tests/test_backend.py
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import pytest
from django.apps import apps
from django.utils import timezone
from rest_framework.test import APIClient

from billing.enforcement import add_months, enforce, tenant_lock, tenant_unlock
from billing.models import ComputeRequest, Holding
from billing.services import (
    allocation_set,
    platform_capacity_set,
    target_of,
    wallet_adjust,
    wallet_open,
    wallet_recharge,
)
from compute.backends.base import BadRequest, NotFound
from compute.cloud import get_backend, reset_backend_cache
from compute.enforcement import compute_requests_process
from compute.models import CloudDomain, CloudProject, Flavor, Image, Server
from compute.services import cloud_project_ensure, server_create
from compute.sync import catalogue_sync, sync_run
from compute.tests.support import eventually
from teachcloud.testing.factories import make_world
from tenancy.models import Domain, Membership, Project

pytestmark = pytest.mark.django_db(transaction=True)

#: Real clouds move slower than the development cloud (≈ 2.5 s to ACTIVE on CI's).
WAIT = 90.0


@pytest.fixture
def cw(settings) -> Any:
    """A world with codes of its own, the cloud's catalogue, allocations and a member limit that
    fits two of the smallest bootable flavor; everything it made in the cloud is removed after."""
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = WAIT
    settings.TEACHCLOUD_COMPUTE_ACTION_WAIT = WAIT
    settings.TEACHCLOUD_COMPUTE_POLL_INTERVAL = 0.2
    reset_backend_cache()
    # A transactional test starts from a flushed database: put back what migration 0002 wrote.
    importlib.import_module("billing.migrations.0002_defaults").forwards(apps, None)
    world = make_world()
    suffix = uuid.uuid4().hex[:8]
    Domain.objects.filter(pk=world.domain.pk).update(code=f"cf{suffix}")
    Project.objects.filter(pk=world.project.pk).update(code=f"cf{suffix}p")
    world.domain.refresh_from_db()
    world.project.refresh_from_db()
    catalogue_sync()
    world.flavor, world.image = _smallest_bootable()
    f = world.flavor
    platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100000, overcommit="1.00"
    )
    allocation_set(
        actor=world.platform,
        target=target_of(domain=world.domain),
        vcpus=8 * f.vcpus,
        ram_gib=8 * f.ram_gib,
        disk_gib=8 * f.disk_gib,
    )
    allocation_set(
        actor=world.domain_admin,
        target=target_of(project=world.project),
        vcpus=4 * f.vcpus,
        ram_gib=4 * f.ram_gib,
        disk_gib=4 * f.disk_gib,
    )
    allocation_set(
        actor=world.project_admin,
        target=target_of(
            membership=Membership.objects.get(project=world.project, user=world.member)
        ),
        vcpus=2 * f.vcpus,
        ram_gib=2 * f.ram_gib,
        disk_gib=2 * f.disk_gib,
    )
    yield world
    _clean_cloud(world)
    reset_backend_cache()


def _smallest_bootable() -> tuple[Flavor, Image]:
    for flavor in Flavor.objects.filter(removed=False, disk_gib__gt=0).order_by(
        "vcpus", "ram_mib", "disk_gib"
    ):
        images = Image.objects.filter(
            removed=False, min_disk_gib__lte=flavor.disk_gib, min_ram_mib__lte=flavor.ram_mib
        ).order_by("name")
        preferred = [i for i in images if "cirros" in i.name or "tiny" in i.name]
        if preferred or images:
            return flavor, (preferred or list(images))[0]
    pytest.fail("the cloud lists no flavor with an image that boots on it")


def _clean_cloud(world: Any) -> None:
    backend = get_backend()
    for cloud_project in CloudProject.objects.filter(deleted_at__isnull=True):
        for server in backend.list_servers(project_id=cloud_project.cloud_id):
            backend.delete_server(server_id=server.id)
            backend.wait_for_status(server_id=server.id, statuses={"DELETED"}, timeout=WAIT)
        backend.delete_project(project_id=cloud_project.cloud_id)
    for cloud_domain in CloudDomain.objects.filter(deleted_at__isnull=True).exclude(cloud_id=""):
        backend.delete_domain(domain_id=cloud_domain.cloud_id)


def _cloud_status(server: Server) -> str:
    server.refresh_from_db()
    try:
        return get_backend().get_server(server_id=server.cloud_id).status
    except NotFound:
        return "DELETED"


def _settled(server: Server, status: str) -> Server:
    """Wait until the portal's row shows `status` with no task running."""

    def check() -> Server | None:
        server.refresh_from_db()
        return server if server.status == status and not server.task else None

    return eventually(check, timeout=WAIT, interval=0.2)


def _boot(world: Any, name: str) -> Server:
    server = server_create(
        actor=world.member, project=world.project, name=name, flavor=world.flavor, image=world.image
    )
    server = _settled(server, "active")
    assert server.cloud_id and _cloud_status(server) == "ACTIVE"
    return server


def test_a_tenant_gets_its_keystone_project_and_its_allocation_as_quota(cw):
    first = cloud_project_ensure(project=cw.project)
    again = cloud_project_ensure(project=cw.project)
    assert first.cloud_id and again.cloud_id == first.cloud_id
    quota = get_backend().get_quota(project_id=first.cloud_id)
    assert (quota.cores, quota.ram_mib) == (4 * cw.flavor.vcpus, 4 * cw.flavor.ram_gib * 1024)


def test_a_student_runs_a_vm_through_the_api(cw):
    api = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    api.force_authenticate(cw.member)
    created = api.post(
        "/api/v1/servers/",
        {
            "project": cw.project.pk,
            "name": "lab-1",
            "flavor": cw.flavor.pk,
            "image": cw.image.pk,
        },
        format="json",
    )
    assert created.status_code == 202, created.json()
    server = Server.objects.get(pk=created.json()["id"])
    server = _settled(server, "active")
    assert _cloud_status(server) == "ACTIVE"
    shown = api.get(f"/api/v1/servers/{server.pk}/").json()
    assert (shown["status"], shown["owner"], shown["name"]) == ("active", cw.member.pk, "lab-1")

    assert api.post(f"/api/v1/servers/{server.pk}/stop/").status_code == 202
    assert _cloud_status(_settled(server, "stopped")) == "SHUTOFF"
    assert api.post(f"/api/v1/servers/{server.pk}/start/").status_code == 202
    assert _cloud_status(_settled(server, "active")) == "ACTIVE"
    assert api.post(f"/api/v1/servers/{server.pk}/reboot/").status_code == 202
    assert _cloud_status(_settled(server, "active")) == "ACTIVE"
    renamed = api.patch(f"/api/v1/servers/{server.pk}/", {"name": "实验-1"}, format="json")
    assert renamed.status_code == 200
    assert get_backend().get_server(server_id=server.cloud_id).name == "实验-1"
    console = api.get(f"/api/v1/servers/{server.pk}/console/")
    assert console.status_code == 200 and console.json()["url"].startswith("http")

    assert api.delete(f"/api/v1/servers/{server.pk}/").status_code == 202
    server = _settled(server, "deleted")
    assert _cloud_status(server) == "DELETED"
    assert Holding.objects.get(pk=server.holding_id).end is not None


def test_the_member_limit_refuses_before_the_cloud_is_asked(cw):
    _boot(cw, "one")
    _boot(cw, "two")
    api = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    api.force_authenticate(cw.member)
    refused = api.post(
        "/api/v1/servers/",
        {"project": cw.project.pk, "name": "three", "flavor": cw.flavor.pk, "image": cw.image.pk},
        format="json",
    )
    assert refused.status_code == 409 and refused.json()["code"] == "over_member_limit"
    cloud_project = CloudProject.objects.get(project=cw.project)
    assert len(get_backend().list_servers(project_id=cloud_project.cloud_id)) == 2


def test_lock_stops_every_vm_and_unlock_restarts_them(cw):
    servers = [_boot(cw, "web"), _boot(cw, "db")]
    tenant_lock(actor=cw.domain_admin, project=cw.project, reason="conformance")
    assert compute_requests_process()["done"] == 1
    for server in servers:
        assert _cloud_status(_settled(server, "stopped")) == "SHUTOFF"

    wallet_recharge(
        actor=cw.domain_admin, wallet=wallet_open(project=cw.project), amount="50", method="bank"
    )
    tenant_unlock(actor=cw.domain_admin, project=cw.project, restart_servers=True)
    assert compute_requests_process()["done"] == 1
    for server in servers:
        assert _cloud_status(_settled(server, "active")) == "ACTIVE"


def test_purge_deletes_the_vms_and_the_keystone_project(cw):
    server = _boot(cw, "web")
    cloud_project = CloudProject.objects.get(project=cw.project)
    wallet_adjust(
        actor=cw.platform, wallet=wallet_open(project=cw.project), amount="-10", reason="owed"
    )
    t0 = timezone.now()
    enforce(now=t0)
    assert enforce(now=add_months(t0, 18))["purged"] == 1
    eventually(lambda: compute_requests_process() and not _undone(), timeout=WAIT, interval=0.5)
    assert _cloud_status(_settled(server, "deleted")) == "DELETED"
    cloud_project.refresh_from_db()
    assert cloud_project.deleted_at is not None
    # Nova checks the project with Keystone: a deleted project's quota is refused (400).
    with pytest.raises(BadRequest):
        get_backend().get_quota(project_id=cloud_project.cloud_id)


def _undone() -> int:
    return ComputeRequest.objects.filter(done_at__isnull=True).count()


def test_the_sync_sees_what_happened_behind_the_portals_back(cw):
    stopped, deleted = _boot(cw, "stopped-outside"), _boot(cw, "deleted-outside")
    backend = get_backend()
    backend.stop_server(server_id=stopped.cloud_id)
    backend.wait_for_status(server_id=stopped.cloud_id, statuses={"SHUTOFF"}, timeout=WAIT)
    backend.delete_server(server_id=deleted.cloud_id)
    backend.wait_for_status(server_id=deleted.cloud_id, statuses={"DELETED"}, timeout=WAIT)

    report = sync_run(apply=True)
    assert not report.busy and not report.error
    stopped.refresh_from_db()
    deleted.refresh_from_db()
    assert stopped.status == "stopped"
    assert deleted.status == "deleted" and deleted.deleted_at is not None
    assert Holding.objects.get(pk=deleted.holding_id).end is not None
