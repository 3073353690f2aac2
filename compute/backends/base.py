"""The OpenStack boundary: what compute needs from a cloud, in plain dataclasses.

`compute/backends/openstack.py` is the one implementation (openstacksdk, against real OpenStack
or the development cloud in `devcloud/`). Backends never touch models; services translate.

Errors: every failure is a `BackendError` subclass whose `str()` a student can read. `retriable`
says whether trying the same call later may succeed (timeouts, 5xx, connection refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# -- Errors ---------------------------------------------------------------------------------------


class BackendError(Exception):
    """A cloud call failed. `message` is readable by a student; `detail` is for operators."""

    code = "cloud_error"
    retriable = False

    def __init__(self, message: str, *, detail: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.status = status


class CloudUnavailable(BackendError):
    """Timeout, connection failure or 5xx: the cloud may answer later."""

    code = "cloud_unavailable"
    retriable = True


class NotFound(BackendError):
    code = "cloud_not_found"


class Conflict(BackendError):
    """The resource is in a state that does not allow the call (e.g. stop a stopped server)."""

    code = "cloud_conflict"


class QuotaExceeded(BackendError):
    """The cloud refused because the project's quota would be passed (Nova answers 403)."""

    code = "cloud_quota_exceeded"


class BadRequest(BackendError):
    """The cloud refused the input (unknown flavor or image, bad name …)."""

    code = "cloud_bad_request"


class NotConfigured(BackendError):
    """No cloud credentials are configured."""

    code = "cloud_not_configured"


# -- Data in and out --------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavor:
    id: str
    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int
    is_public: bool = True


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    status: str = "active"
    min_disk_gib: int = 0
    min_ram_mib: int = 0


@dataclass(frozen=True)
class Server:
    """A server as the cloud reports it. `status` is Nova's (BUILD, ACTIVE, SHUTOFF, REBOOT,
    HARD_REBOOT, ERROR, DELETED, …); `addresses` maps network name → list of IP strings."""

    id: str
    name: str
    status: str
    project_id: str
    flavor_id: str = ""
    image_id: str = ""
    addresses: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    task_state: str | None = None
    fault: str = ""


@dataclass(frozen=True)
class Quota:
    """Compute quota of a cloud project (-1 = unlimited)."""

    cores: int
    ram_mib: int
    instances: int


@dataclass(frozen=True)
class Hypervisor:
    id: str
    name: str
    state: str  # up | down
    status: str  # enabled | disabled
    vcpus: int
    vcpus_used: int
    ram_mib: int
    ram_mib_used: int
    disk_gib: int
    disk_gib_used: int
    running_vms: int = 0


@dataclass(frozen=True)
class ServerSpec:
    """What to boot. `metadata` names the owner (teachcloud_owner, teachcloud_server …)."""

    name: str
    flavor_id: str
    image_id: str
    key_name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# -- The interface ----------------------------------------------------------------------------


class ComputeBackend(Protocol):
    """Every call has a timeout; idempotent calls retry with backoff (the implementation's job).

    Project-scoped calls take the cloud project id; the service account must be able to act in
    every project it created (ensure_project grants it a role there)."""

    #: Shown in the portal ("simulated cloud") when the cloud is the development cloud.
    simulated: bool

    # Identity
    def ensure_domain(self, *, name: str, code: str) -> str:
        """Return the id of the Keystone domain for a TeachCloud domain, creating it once."""
        ...

    def ensure_project(self, *, domain_id: str, name: str, code: str) -> str:
        """Return the id of the Keystone project (unique by `code` inside the domain), creating
        it once; the service account gets a role on it."""
        ...

    def delete_project(self, *, project_id: str) -> None:
        """Delete the Keystone project (its servers must be gone). Missing is not an error."""
        ...

    def delete_domain(self, *, domain_id: str) -> None:
        """Disable and delete the Keystone domain. Missing is not an error."""
        ...

    # Quota
    def set_quota(self, *, project_id: str, quota: Quota) -> Quota: ...

    def get_quota(self, *, project_id: str) -> Quota: ...

    # Catalogue and capacity
    def list_flavors(self) -> list[Flavor]: ...

    def list_images(self) -> list[Image]: ...

    def list_hypervisors(self) -> list[Hypervisor]: ...

    # Servers
    def create_server(self, *, project_id: str, spec: ServerSpec) -> Server:
        """Ask the cloud to boot; returns at once (status BUILD). Not retried (not idempotent)."""
        ...

    def get_server(self, *, server_id: str) -> Server:
        """Raises NotFound when the server is gone."""
        ...

    def list_servers(self, *, project_id: str | None = None) -> list[Server]:
        """Every server of one project, or of all projects (the sync)."""
        ...

    def start_server(self, *, server_id: str) -> None: ...

    def stop_server(self, *, server_id: str) -> None: ...

    def reboot_server(self, *, server_id: str, hard: bool = False) -> None: ...

    def rename_server(self, *, server_id: str, name: str) -> None: ...

    def delete_server(self, *, server_id: str) -> None:
        """Missing is not an error."""
        ...

    def console_url(self, *, server_id: str) -> str:
        """A noVNC URL (compute.create_console, not the legacy action)."""
        ...

    # Key pairs (Nova key pairs of the service account; compute.keypairs names them)
    def keypair_ensure(self, *, name: str, public_key: str) -> None:
        """Make the key pair `name` hold `public_key`: created when missing, kept when it holds
        the same key, deleted and created again when it holds another. Idempotent."""
        ...

    def keypair_delete(self, *, name: str) -> None:
        """Missing is not an error."""
        ...

    def wait_for_status(
        self, *, server_id: str, statuses: set[str], timeout: float, interval: float = 0.5
    ) -> Server:
        """Poll until the server's status is one of `statuses` (or ERROR), or until timeout
        (then return the last seen state). A server that vanishes raises NotFound; waiting
        for {"DELETED"} returns a Server with status DELETED instead."""
        ...
