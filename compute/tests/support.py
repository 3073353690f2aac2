"""Test helpers for compute: the catalogue mirrored from the development cloud, allocations and
member limits set through billing's services, and a short wait for the cloud's truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from billing.services import allocation_set, platform_capacity_set, target_of
from compute.models import Flavor, Image
from tenancy.models import Membership

#: Seconds the lifecycle tasks wait for the development cloud in tests (it moves in ~0.1 s).
FAST = {
    "TEACHCLOUD_COMPUTE_BUILD_WAIT": 10,
    "TEACHCLOUD_COMPUTE_ACTION_WAIT": 10,
    "TEACHCLOUD_COMPUTE_POLL_INTERVAL": 0.05,
}


def mirror_catalogue() -> None:
    """Flavor and Image rows for everything the cloud lists (offered to everybody)."""
    from compute.cloud import get_backend

    backend = get_backend()
    for flavor in backend.list_flavors():
        Flavor.objects.update_or_create(
            cloud_id=flavor.id,
            defaults={
                "name": flavor.name,
                "vcpus": flavor.vcpus,
                "ram_mib": flavor.ram_mib,
                "disk_gib": flavor.disk_gib,
            },
        )
    for image in backend.list_images():
        Image.objects.update_or_create(
            cloud_id=image.id,
            defaults={
                "name": image.name,
                "min_disk_gib": image.min_disk_gib,
                "min_ram_mib": image.min_ram_mib,
            },
        )


def flavor(name: str) -> Flavor:
    return Flavor.objects.get(name=name)


def image(name: str = "cirros-0.6") -> Image:
    return Image.objects.get(name=name)


def allocate(
    world: Any,
    *,
    project: Any = None,
    project_alloc: tuple[int, int, int] = (16, 64, 1000),
    domain_alloc: tuple[int, int, int] = (64, 256, 4000),
) -> None:
    """Platform capacity, the domain's and the project's allocation (platform staff, then the
    domain admin)."""
    project = project or world.project
    platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100000, overcommit="1.00"
    )
    allocation_set(
        actor=world.platform,
        target=target_of(domain=project.domain),
        **dict(zip(("vcpus", "ram_gib", "disk_gib"), domain_alloc, strict=True)),
    )
    allocation_set(
        actor=world.platform,
        target=target_of(project=project),
        **dict(zip(("vcpus", "ram_gib", "disk_gib"), project_alloc, strict=True)),
    )


def set_limit(world: Any, user: Any, limit: tuple[int, int, int], *, project: Any = None) -> None:
    """A member's limit, set by the project admin."""
    project = project or world.project
    membership = Membership.objects.get(project=project, user=user)
    allocation_set(
        actor=world.project_admin,
        target=target_of(membership=membership),
        **dict(zip(("vcpus", "ram_gib", "disk_gib"), limit, strict=True)),
    )


def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy (then return it) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


def prepare(world: Any, settings: Any) -> Any:
    """The tenancy world with the cloud catalogue, a domain and a project allocation (16 vCPU /
    64 GiB / 1000 GiB), fast waits, and the member given a limit of 4 vCPU / 16 GiB / 200 GiB."""
    for name, value in FAST.items():
        setattr(settings, name, value)
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    return world
