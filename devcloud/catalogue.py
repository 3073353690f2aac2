"""The default content of a fresh development cloud: identity seed, flavors, images, one host.

Ids are stable (uuid5 of the name) so a reset cloud, a restarted demo and a test run all see the
same flavor and image ids.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c2a52-3d0e-4c55-9a0f-7c3d1e2b9a10")

REGION = "RegionOne"
DESCRIPTION = "TeachCloud development cloud (simulated)"

ADMIN_USER = "admin"
ADMIN_PASSWORD = "devcloud"
ADMIN_PROJECT = "admin"
DEFAULT_DOMAIN_ID = "default"
ROLE_NAMES = ("admin", "member", "reader", "manager", "service")

#: Private network every "auto" server is attached to.
NETWORK_NAME = "private"
NETWORK_CIDR_PREFIX = "10.0"


def stable_id(kind: str, name: str, *, dashes: bool = True) -> str:
    value = uuid.uuid5(NAMESPACE, f"{kind}:{name}")
    return str(value) if dashes else value.hex


NETWORK_ID = stable_id("network", NETWORK_NAME)

# name, id, vcpus, ram MiB, disk GiB — m1.* as DevStack creates them, c*.* for teaching.
FLAVORS: list[tuple[str, str, int, int, int]] = [
    ("m1.tiny", "1", 1, 512, 1),
    ("m1.small", "2", 1, 2048, 20),
    ("m1.medium", "3", 2, 4096, 40),
    ("m1.large", "4", 4, 8192, 80),
    ("c1.small", stable_id("flavor", "c1.small"), 1, 4096, 20),
    ("c2.medium", stable_id("flavor", "c2.medium"), 2, 4096, 20),
    ("c2.large", stable_id("flavor", "c2.large"), 2, 8192, 40),
    ("c4.xlarge", stable_id("flavor", "c4.xlarge"), 4, 16384, 80),
]

# name, size in bytes, min_disk GiB, min_ram MiB, os_distro
IMAGES: list[tuple[str, int, int, int, str]] = [
    ("cirros-0.6", 21_430_272, 0, 0, "cirros"),
    ("ubuntu-24.04", 614_465_536, 10, 512, "ubuntu"),
    ("debian-12", 432_013_312, 10, 512, "debian"),
    ("rocky-9", 1_063_452_672, 10, 1024, "rocky"),
]

# One compute host: 2 sockets x 16 cores x 2 threads, 256 GiB, 2 TiB local disk.
HYPERVISOR = {
    "hypervisor_hostname": "devcloud-compute-1",
    "host_ip": "192.168.100.11",
    "hypervisor_type": "QEMU",
    "hypervisor_version": 8002002,
    "vcpus": 64,
    "memory_mb": 262144,
    "local_gb": 2048,
}

#: Nova's defaults for a project without its own quota.
DEFAULT_QUOTA = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "key_pairs": 100,
    "metadata_items": 128,
    "server_groups": 10,
    "server_group_members": 10,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
}
#: Dropped from quota sets at microversion 2.57.
QUOTA_PRE_257 = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
#: Network quotas shown only before 2.36 (always -1/unlimited here, proxied to Neutron in Nova).
QUOTA_PRE_236 = {
    "fixed_ips": -1,
    "floating_ips": 10,
    "security_group_rules": 20,
    "security_groups": 10,
}
