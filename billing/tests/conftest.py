"""Fixtures shared by the billing tests."""

import pytest

from billing import services


@pytest.fixture
def w(world):
    """The world with its wallets open (the factories bypass the tenancy services that open
    them) and a platform capacity to allocate from."""
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world
