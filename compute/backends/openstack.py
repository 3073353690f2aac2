"""The OpenStack backend: `ComputeBackend` on openstacksdk. The ONLY module that imports
`openstack` (and keystoneauth1).

- One service-account `openstack.Connection` per backend (per process, see compute.cloud), built
  with `openstack.connect(**config, api_timeout=…)`; keystoneauth re-authenticates by itself when
  a token expires or is revoked (401 → new token → the call is sent again once).
- Servers are created inside the TeachCloud project's Keystone project through
  `conn.connect_as_project(...)` (the service account holds `project_role` there, granted by
  `ensure_project`); everything else uses the service account's admin token, which real Nova and
  the development cloud both accept for any project's servers.
- Every HTTP call has the timeout; idempotent calls (reads, start/stop/reboot/rename/delete,
  quota set, console) are retried with exponential backoff when the failure is retriable
  (timeout, connection refused, 5xx). `create_server` is never retried: a lost answer may still
  have booted a server, which the periodic sync finds by its metadata.
- Hypervisor statistics are read from Nova at microversion 2.87, the last one that reports them
  (2.88 removed vcpus/memory_mb/local_gb and their *_used from os-hypervisors).
- Errors become `compute.backends.base` exceptions with a translated message a student can
  read; the cloud's own text is kept in `detail` for operators.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa_exc
import openstack
import openstack.exceptions as os_exc
import requests
from django.utils.translation import gettext as _

from .base import (
    BackendError,
    BadRequest,
    CloudUnavailable,
    Conflict,
    Flavor,
    Hypervisor,
    Image,
    NotConfigured,
    NotFound,
    Quota,
    QuotaExceeded,
    Server,
    ServerSpec,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a cloud call may raise besides bugs: the SDK's, keystoneauth's and requests' errors.
CLIENT_ERRORS = (
    BackendError,
    os_exc.SDKException,
    ksa_exc.ClientException,
    ksa_exc.RetriableConnectionFailure,
    requests.exceptions.RequestException,
)
#: Nova's last microversion with hypervisor statistics (2.88 removed them).
HYPERVISOR_STATS_MICROVERSION = "2.87"
#: How many project-scoped connections a backend keeps (LRU).
PROJECT_CONNECTIONS = 64
FLAVOR_CACHE_SECONDS = 300.0


def _error_text(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if details and isinstance(details, str):
        return details
    return str(exc) or exc.__class__.__name__


def translate_error(exc: BaseException, *, what: str) -> BackendError:
    """Map an openstacksdk/keystoneauth failure to our exception types. `what` names the thing
    the call was about, already translated (e.g. _("server"))."""
    if isinstance(exc, BackendError):
        return exc
    detail = f"{exc.__class__.__name__}: {_error_text(exc)}"
    if isinstance(exc, ksa_exc.ConnectTimeout | requests.exceptions.Timeout):
        return CloudUnavailable(
            _("The cloud did not answer in time. Please try again in a few minutes."),
            detail=detail,
        )
    if isinstance(
        exc,
        ksa_exc.ConnectionError
        | ksa_exc.RetriableConnectionFailure
        | requests.exceptions.ConnectionError,
    ):
        return CloudUnavailable(
            _("The cloud cannot be reached right now. Please try again in a few minutes."),
            detail=detail,
        )
    if isinstance(exc, ksa_exc.DiscoveryFailure | os_exc.ServiceDiscoveryException):
        return CloudUnavailable(
            _("The cloud cannot be reached right now. Please try again in a few minutes."),
            detail=detail,
        )
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    text = _error_text(exc)
    if isinstance(status, int):
        if status >= 500:
            return CloudUnavailable(
                _("The cloud had an internal error (HTTP %(status)s). Please try again later.")
                % {"status": status},
                detail=detail,
                status=status,
            )
        if status == 401:
            return BackendError(
                _("The cloud refused TeachCloud's credentials. Please tell the platform operator."),
                detail=detail,
                status=status,
            )
        if status == 403 and "quota exceeded" in text.lower():
            return QuotaExceeded(
                _("The cloud project's quota does not allow this: %(reason)s") % {"reason": text},
                detail=detail,
                status=status,
            )
        if status == 403:
            return BackendError(
                _(
                    "TeachCloud is not allowed to do this in the cloud. "
                    "Please tell the platform operator."
                ),
                detail=detail,
                status=status,
            )
        if status == 404:
            return NotFound(
                _("The %(what)s does not exist in the cloud (any more).") % {"what": what},
                detail=detail,
                status=status,
            )
        if status == 409:
            return Conflict(
                _(
                    "The %(what)s is busy or in a state that does not allow this right now "
                    "(for example, it is already stopped)."
                )
                % {"what": what},
                detail=detail,
                status=status,
            )
        if status == 400:
            return BadRequest(
                _("The cloud refused the request: %(reason)s") % {"reason": text},
                detail=detail,
                status=status,
            )
        if status == 429:
            return CloudUnavailable(
                _("The cloud is too busy right now. Please try again in a few minutes."),
                detail=detail,
                status=status,
            )
    if isinstance(exc, os_exc.ConfigException | ksa_exc.AuthPluginException):
        return NotConfigured(
            _(
                "The cloud connection is not configured correctly. Please tell the platform "
                "operator."
            ),
            detail=detail,
        )
    if isinstance(exc, ksa_exc.EndpointNotFound | os_exc.EndpointNotFound):
        return BackendError(
            _(
                "The cloud does not offer a service TeachCloud needs. Please tell the platform "
                "operator."
            ),
            detail=detail,
        )
    return BackendError(_("The cloud call failed: %(reason)s") % {"reason": text}, detail=detail)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class OpenStackBackend:
    """`compute.backends.base.ComputeBackend` through openstacksdk."""

    def __init__(
        self,
        *,
        config: dict[str, Any],
        simulated: bool = False,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 1.0,
        network: str = "auto",
        project_role: str = "member",
        name_prefix: str = "tc-",
    ) -> None:
        self.simulated = simulated
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.network = network
        self.project_role = project_role
        self.name_prefix = name_prefix
        self._config = dict(config)
        self._lock = threading.RLock()
        self._conn: Any = None
        self._projects: OrderedDict[str, Any] = OrderedDict()
        self._role_id: str | None = None
        self._flavors: tuple[float, dict[str, str]] = (0.0, {})

    # -- Connections ------------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self._config)
        kwargs.setdefault("api_timeout", self.timeout)
        # We own the retry policy (idempotent calls only): no hidden retries underneath.
        for key in ("connect_retries", "status_code_retries", "image_status_code_retries"):
            kwargs.setdefault(key, 0)
        return kwargs

    @property
    def conn(self) -> Any:
        """The service account's connection (created on first use; authenticates lazily)."""
        with self._lock:
            if self._conn is None:
                try:
                    self._conn = openstack.connect(**self._connect_kwargs())
                except CLIENT_ERRORS as exc:
                    raise translate_error(exc, what=_("cloud")) from exc
            return self._conn

    def _project_conn(self, project_id: str) -> Any:
        with self._lock:
            conn = self._projects.get(project_id)
            if conn is not None:
                self._projects.move_to_end(project_id)
                return conn
            conn = self.conn.connect_as_project({"id": project_id})
            self._projects[project_id] = conn
            while len(self._projects) > PROJECT_CONNECTIONS:
                self._projects.popitem(last=False)
            return conn

    def _forget_project(self, project_id: str) -> None:
        with self._lock:
            self._projects.pop(project_id, None)

    def close(self) -> None:
        with self._lock:
            for conn in [self._conn, *self._projects.values()]:
                if conn is not None:
                    with contextlib.suppress(Exception):  # closing is best effort
                        conn.close()
            self._conn = None
            self._projects.clear()

    # -- Calling with timeouts, retries and error mapping ----------------------------------------

    def _call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        idempotent: bool,
        conflict_after_retry_ok: bool = False,
    ) -> T:
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            try:
                return fn()
            except CLIENT_ERRORS as exc:
                error = translate_error(exc, what=what)
                if attempt > 0 and conflict_after_retry_ok and isinstance(error, Conflict):
                    # The earlier attempt reached the cloud although its answer was lost.
                    return None  # type: ignore[return-value]
                if not error.retriable or attempt == attempts - 1:
                    if error is not exc:
                        raise error from exc
                    raise
                pause = self.backoff * (2**attempt)
                log.warning(
                    "cloud call failed (%s), retry %d/%d in %.2fs: %s",
                    what,
                    attempt + 1,
                    attempts - 1,
                    pause,
                    error.detail,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Identity -------------------------------------------------------------------------------

    def _domain_name(self, code: str) -> str:
        return f"{self.name_prefix}{code}"

    def ensure_domain(self, *, name: str, code: str) -> str:
        keystone_name = self._domain_name(code)
        identity = lambda: self.conn.identity  # noqa: E731

        def find() -> Any:
            return identity().find_domain(keystone_name, ignore_missing=True)

        domain = self._call(find, what=_("domain"), idempotent=True)
        if domain is None:
            try:
                domain = self._call(
                    lambda: identity().create_domain(
                        name=keystone_name, description=name, enabled=True
                    ),
                    what=_("domain"),
                    idempotent=False,
                )
            except Conflict:
                # Created meanwhile by another worker: use that one.
                domain = self._call(find, what=_("domain"), idempotent=True)
                if domain is None:
                    raise
        elif not domain.is_enabled:
            self._call(
                lambda: identity().update_domain(domain, enabled=True),
                what=_("domain"),
                idempotent=True,
            )
        return str(domain.id)

    def _role(self) -> str:
        if self._role_id is None:
            role = self._call(
                lambda: self.conn.identity.find_role(self.project_role, ignore_missing=True),
                what=_("role"),
                idempotent=True,
            )
            if role is None:
                raise NotConfigured(
                    _(
                        "The cloud has no role %(role)s for TeachCloud's service account. Please "
                        "tell the platform operator."
                    )
                    % {"role": self.project_role},
                    detail=f"role {self.project_role!r} not found",
                )
            self._role_id = str(role.id)
        return self._role_id

    def ensure_project(self, *, domain_id: str, name: str, code: str) -> str:
        identity = lambda: self.conn.identity  # noqa: E731

        def find() -> Any:
            return identity().find_project(code, domain_id=domain_id, ignore_missing=True)

        project = self._call(find, what=_("project"), idempotent=True)
        if project is None:
            try:
                project = self._call(
                    lambda: identity().create_project(
                        name=code, domain_id=domain_id, description=name, enabled=True
                    ),
                    what=_("project"),
                    idempotent=False,
                )
            except Conflict:
                project = self._call(find, what=_("project"), idempotent=True)
                if project is None:
                    raise
        role_id = self._role()
        user_id = self._call(lambda: self.conn.current_user_id, what=_("user"), idempotent=True)
        self._call(
            lambda: identity().assign_project_role_to_user(project.id, user_id, role_id),
            what=_("project"),
            idempotent=True,
        )
        return str(project.id)

    def delete_project(self, *, project_id: str) -> None:
        self._forget_project(project_id)
        self._call(
            lambda: self.conn.identity.delete_project(project_id, ignore_missing=True),
            what=_("project"),
            idempotent=True,
        )

    def delete_domain(self, *, domain_id: str) -> None:
        identity = lambda: self.conn.identity  # noqa: E731
        try:
            self._call(
                lambda: identity().update_domain(domain_id, enabled=False),
                what=_("domain"),
                idempotent=True,
            )
        except NotFound:
            return
        self._call(
            lambda: identity().delete_domain(domain_id, ignore_missing=True),
            what=_("domain"),
            idempotent=True,
        )

    # -- Quota -------------------------------------------------------------------------------

    @staticmethod
    def _quota(qs: Any) -> Quota:
        return Quota(cores=int(qs.cores), ram_mib=int(qs.ram), instances=int(qs.instances))

    def set_quota(self, *, project_id: str, quota: Quota) -> Quota:
        # force: the portal is the authority; a quota below what already runs is a ceiling for
        # new servers, not an error (Nova otherwise refuses limits below usage).
        qs = self._call(
            lambda: self.conn.compute.update_quota_set(
                project_id,
                cores=quota.cores,
                ram=quota.ram_mib,
                instances=quota.instances,
                force=True,
            ),
            what=_("project"),
            idempotent=True,
        )
        return self._quota(qs)

    def get_quota(self, *, project_id: str) -> Quota:
        qs = self._call(
            lambda: self.conn.compute.get_quota_set(project_id),
            what=_("project"),
            idempotent=True,
        )
        return self._quota(qs)

    # -- Catalogue and capacity ---------------------------------------------------------------

    def list_flavors(self) -> list[Flavor]:
        items = self._call(
            lambda: list(self.conn.compute.flavors(details=True)),
            what=_("flavor"),
            idempotent=True,
        )
        flavors = [
            Flavor(
                id=str(f.id),
                name=str(f.name),
                vcpus=int(f.vcpus),
                ram_mib=int(f.ram),
                disk_gib=int(f.disk),
                is_public=bool(f.is_public if f.is_public is not None else True),
            )
            for f in items
        ]
        with self._lock:
            self._flavors = (time.monotonic(), {f.name: f.id for f in flavors})
        return flavors

    def _flavor_id(self, flavor: Any) -> str:
        """Nova ≥ 2.47 embeds the flavor without its id: find it by its original name."""
        if flavor is None:
            return ""
        name = getattr(flavor, "original_name", None)
        if not name:  # before 2.47: {"id": ..., "links": [...]}
            return str(getattr(flavor, "id", None) or "")
        if not name:
            return ""
        with self._lock:
            fetched, by_name = self._flavors
        if name not in by_name or time.monotonic() - fetched > FLAVOR_CACHE_SECONDS:
            try:
                self.list_flavors()
            except BackendError:
                return ""
            with self._lock:
                by_name = self._flavors[1]
        return by_name.get(name, "")

    def list_images(self) -> list[Image]:
        items = self._call(lambda: list(self.conn.image.images()), what=_("image"), idempotent=True)
        return [
            Image(
                id=str(i.id),
                name=str(i.name or i.id),
                status=str(i.status or ""),
                min_disk_gib=int(i.min_disk or 0),
                min_ram_mib=int(i.min_ram or 0),
            )
            for i in items
        ]

    def list_hypervisors(self) -> list[Hypervisor]:
        def fetch() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            url: str | None = "/os-hypervisors/detail"
            while url:
                response = self.conn.compute.get(url, microversion=HYPERVISOR_STATS_MICROVERSION)
                os_exc.raise_from_response(response)
                body = response.json()
                rows.extend(body.get("hypervisors", []))
                url = next(
                    (
                        link["href"]
                        for link in body.get("hypervisors_links", [])
                        if link.get("rel") == "next"
                    ),
                    None,
                )
            return rows

        rows = self._call(fetch, what=_("hypervisor"), idempotent=True)
        return [
            Hypervisor(
                id=str(row.get("id")),
                name=str(row.get("hypervisor_hostname") or row.get("id")),
                state=str(row.get("state") or ""),
                status=str(row.get("status") or ""),
                vcpus=int(row.get("vcpus") or 0),
                vcpus_used=int(row.get("vcpus_used") or 0),
                ram_mib=int(row.get("memory_mb") or 0),
                ram_mib_used=int(row.get("memory_mb_used") or 0),
                disk_gib=int(row.get("local_gb") or 0),
                disk_gib_used=int(row.get("local_gb_used") or 0),
                running_vms=int(row.get("running_vms") or 0),
            )
            for row in rows
        ]

    # -- Servers ----------------------------------------------------------------------------

    def _server(self, s: Any) -> Server:
        addresses: dict[str, list[str]] = {}
        for network, entries in (s.addresses or {}).items():
            addresses[str(network)] = [str(e.get("addr")) for e in entries or [] if e.get("addr")]
        image = s.image
        image_id = ""
        if isinstance(image, dict):
            image_id = str(image.get("id") or "")
        elif image is not None:
            image_id = str(getattr(image, "id", "") or "")
        fault = s.fault or {}
        return Server(
            id=str(s.id),
            name=str(s.name or ""),
            status=str(s.status or "").upper(),
            project_id=str(s.project_id or ""),
            flavor_id=self._flavor_id(s.flavor),
            image_id=image_id,
            addresses=addresses,
            metadata={str(k): str(v) for k, v in (s.metadata or {}).items()},
            created_at=_parse_time(s.created_at),
            task_state=s.task_state,
            fault=str(fault.get("message") or "") if isinstance(fault, dict) else str(fault),
        )

    def _networks(self) -> Any:
        if self.network in ("auto", "none"):
            return self.network
        return [{"uuid": net.strip()} for net in self.network.split(",") if net.strip()]

    def create_server(self, *, project_id: str, spec: ServerSpec) -> Server:
        project_conn = self._call(
            lambda: self._project_conn(project_id), what=_("project"), idempotent=True
        )
        # Authenticating in the project is safe to retry; the boot itself is not.
        self._call(lambda: project_conn.session.get_token(), what=_("project"), idempotent=True)
        attrs: dict[str, Any] = {
            "name": spec.name,
            "flavor_id": spec.flavor_id,
            "image_id": spec.image_id,
            "networks": self._networks(),
            "metadata": dict(spec.metadata),
        }
        if spec.key_name:
            attrs["key_name"] = spec.key_name
        created = self._call(
            lambda: project_conn.compute.create_server(**attrs),
            what=_("server"),
            idempotent=False,
        )
        return Server(
            id=str(created.id),
            name=spec.name,
            status=str(created.status or "BUILD").upper(),
            project_id=project_id,
            flavor_id=spec.flavor_id,
            image_id=spec.image_id,
            metadata=dict(spec.metadata),
        )

    def get_server(self, *, server_id: str) -> Server:
        s = self._call(
            lambda: self.conn.compute.get_server(server_id), what=_("server"), idempotent=True
        )
        server = self._server(s)
        if server.status == "DELETED":
            # Nova shows a deleted instance as DELETED for a moment before it answers 404.
            raise NotFound(
                _("The server no longer exists in the cloud."), detail=server_id, status=404
            )
        return server

    def list_servers(self, *, project_id: str | None = None) -> list[Server]:
        query: dict[str, Any] = {"all_projects": True}
        if project_id:
            query["project_id"] = project_id

        def fetch() -> list[Any]:
            return list(self.conn.compute.servers(details=True, **query))

        items: Iterable[Any] = self._call(fetch, what=_("server"), idempotent=True)
        servers = [self._server(s) for s in items]
        return [s for s in servers if s.status != "DELETED"]

    def start_server(self, *, server_id: str) -> None:
        self._call(
            lambda: self.conn.compute.start_server(server_id),
            what=_("server"),
            idempotent=True,
            conflict_after_retry_ok=True,
        )

    def stop_server(self, *, server_id: str) -> None:
        self._call(
            lambda: self.conn.compute.stop_server(server_id),
            what=_("server"),
            idempotent=True,
            conflict_after_retry_ok=True,
        )

    def reboot_server(self, *, server_id: str, hard: bool = False) -> None:
        self._call(
            lambda: self.conn.compute.reboot_server(server_id, "HARD" if hard else "SOFT"),
            what=_("server"),
            idempotent=True,
            conflict_after_retry_ok=True,
        )

    def rename_server(self, *, server_id: str, name: str) -> None:
        self._call(
            lambda: self.conn.compute.update_server(server_id, name=name),
            what=_("server"),
            idempotent=True,
        )

    def delete_server(self, *, server_id: str) -> None:
        self._call(
            lambda: self.conn.compute.delete_server(server_id, ignore_missing=True),
            what=_("server"),
            idempotent=True,
        )

    def console_url(self, *, server_id: str) -> str:
        console = self._call(
            lambda: self.conn.compute.create_console(server_id, "novnc"),
            what=_("server"),
            idempotent=True,
        )
        url = (console or {}).get("url")
        if not url:
            raise BackendError(
                _("The cloud did not return a console address."), detail=repr(console)
            )
        return str(url)

    # -- Key pairs (of the service account; every server is booted by it) ---------------------

    def _find_keypair(self, name: str) -> Any:
        return self._call(
            lambda: self.conn.compute.find_keypair(name, ignore_missing=True),
            what=_("key pair"),
            idempotent=True,
        )

    def keypair_ensure(self, *, name: str, public_key: str) -> None:
        def same(existing: Any) -> bool:
            return str(existing.public_key or "").split()[:2] == public_key.split()[:2]

        existing = self._find_keypair(name)
        if existing is not None:
            if same(existing):
                return
            self.keypair_delete(name=name)
        try:
            self._call(
                lambda: self.conn.compute.create_keypair(name=name, public_key=public_key),
                what=_("key pair"),
                idempotent=False,
            )
        except (Conflict, CloudUnavailable):
            # Created meanwhile (another build with the same key), or a lost answer: look.
            existing = self._find_keypair(name)
            if existing is None or not same(existing):
                raise

    def keypair_delete(self, *, name: str) -> None:
        self._call(
            lambda: self.conn.compute.delete_keypair(name, ignore_missing=True),
            what=_("key pair"),
            idempotent=True,
        )

    def wait_for_status(
        self, *, server_id: str, statuses: set[str], timeout: float, interval: float = 0.5
    ) -> Server:
        wanted = {s.upper() for s in statuses}
        deadline = time.monotonic() + timeout
        last: Server | None = None
        while True:
            try:
                last = self.get_server(server_id=server_id)
            except NotFound:
                if "DELETED" in wanted:
                    return Server(
                        id=server_id,
                        name=last.name if last else "",
                        status="DELETED",
                        project_id=last.project_id if last else "",
                        flavor_id=last.flavor_id if last else "",
                        image_id=last.image_id if last else "",
                        metadata=dict(last.metadata) if last else {},
                        created_at=last.created_at if last else None,
                    )
                raise
            if last.status in wanted or last.status == "ERROR":
                return last
            if time.monotonic() >= deadline:
                return last
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
