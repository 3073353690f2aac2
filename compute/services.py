"""Writes of compute: reservations, the server lifecycle, and the cloud side of tenants.

Every user-facing service checks permission through tenancy.permissions, validates, writes the
change and its audit event in one short transaction, and defers the cloud call to a Celery task
with `transaction.on_commit` (STYLE "Transactions": no network call inside a transaction). The
task bodies (`server_build`, `server_action`, `cloud_project_ensure`, `quota_sync`) call the
cloud outside any transaction and record the outcome in a second short transaction.

Rules decided here (the SPEC is silent):
- A server name is 1–64 letters (any script, so Chinese is fine), digits, `-`, `_` or `.`, and
  unique among the owner's live (not deleted) servers in the project (409 `name_taken`).
- Reservation (SPEC Compute 2–3): in one transaction, locks in the house order (domain row FOR
  SHARE on PostgreSQL — a domain lock, purge or allocation change waits for us and we for it,
  while creates in other projects do not queue —, then the project row, then the membership row),
  then: the member's limit (none → 409 `no_limit`), what the member's and the project's live
  servers hold (open `billing.Holding` rows) plus the flavor ≤ the limit (409
  `over_member_limit`) and ≤ the project's allocation (409 `over_project_allocation`; no project
  allocation counts as zero). The server row (`building`) and its Holding are written together.
- Nothing is created, started or rebooted while the domain or project is locked or purged (409
  `tenant_locked`), while the member is locked (409 `member_locked`) or once the project's end
  date has come (409 `course_ended`); a locked tenant is read-only, so rename is refused too.
  Stop and delete are always allowed.
- A server found active with no task while any of these holds (a build finishing after a lock,
  a lost course-end stop found by the sync) is stopped at once, with the matching stop cause and
  `running_at_lock`.
- Actions: start needs `stopped`, stop and reboot need `active`; while a task runs (for at most
  TEACHCLOUD_COMPUTE_TASK_STALE seconds, after which it counts as lost) they answer 409
  `server_busy`. Delete is accepted in any state but `deleted` (deleting twice is a no-op); a
  server that never reached the cloud is deleted at once, otherwise when the cloud confirms.
- A failed create (the cloud refused or was unreachable before it accepted the server, or the
  server went to ERROR while building) leaves the server `error` with a readable `fault`, nothing
  in the cloud (an errored build is deleted there) and its Holding ended at its start (held for
  zero seconds). A build still in BUILD after TEACHCLOUD_COMPUTE_BUILD_WAIT stays `building`;
  the sync finishes it, or fails it the same way (`build_abandon`) when the cloud reports ERROR
  or it is still in BUILD after TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES.
- A cloud failure of start/stop/reboot/delete clears the task, keeps the status and records the
  message in `fault`.
- `key_name` names one of the creator's key pairs (compute.keypairs; else 400
  `invalid_key_name`, nothing reserved). The build ensures it in Nova under its derived name and
  boots with that; a key pair deleted before the build fails the build (`error`, released).
- Keystone quota of a project: cores = vCPU allocation, RAM = GiB × 1024 MiB, instances = the
  vCPU allocation (each server has ≥ 1 vCPU, so it never binds first); no allocation = zero.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Allocation, Holding, Level
from billing.services import held_by_vms
from compute.backends import base
from compute.models import (
    CloudDomain,
    CloudProject,
    Flavor,
    Image,
    KeyPair,
    Server,
    ServerStatus,
    ServerTask,
    StopCause,
)
from compute.selectors import flavors_for, images_for
from teachcloud.errors import Conflict, ServiceError
from teachcloud.locks import session_lock
from tenancy.audit import audit_record, snapshot
from tenancy.models import Domain, Membership, Project, TenantStatus
from tenancy.permissions import Action, require

log = logging.getLogger(__name__)

RESOURCES = ("vcpus", "ram_gib", "disk_gib")
SERVER_FIELDS = ["name", "flavor", "image", "key_name", "status", "vcpus", "ram_gib", "disk_gib"]
NAME_RE = re.compile(r"[\w.-]{1,64}")  # \w is Unicode: letters of any script, digits, _
KEY_NAME_RE = re.compile(r"[\w .@-]{1,200}")

#: Nova status → ours. Statuses not listed (RESIZE, MIGRATING, …) keep our status.
STATUS_MAP = {
    "BUILD": ServerStatus.BUILDING,
    "ACTIVE": ServerStatus.ACTIVE,
    "REBOOT": ServerStatus.ACTIVE,
    "HARD_REBOOT": ServerStatus.ACTIVE,
    "RESCUE": ServerStatus.ACTIVE,
    "SHUTOFF": ServerStatus.STOPPED,
    "STOPPED": ServerStatus.STOPPED,
    "SUSPENDED": ServerStatus.STOPPED,
    "PAUSED": ServerStatus.STOPPED,
    "SHELVED": ServerStatus.STOPPED,
    "SHELVED_OFFLOADED": ServerStatus.STOPPED,
    "ERROR": ServerStatus.ERROR,
    "DELETED": ServerStatus.DELETED,
}
STOPPED_CLOUD = {k for k, v in STATUS_MAP.items() if v == ServerStatus.STOPPED}
#: The fields server_record may change.
RECORDED = (
    "status",
    "cloud_status",
    "cloud_id",
    "addresses",
    "active_at",
    "task",
    "fault",
    "stop_cause",
    "running_at_lock",
)

#: What each action waits for in the cloud, and the task it sets while it runs.
ACTIONS: dict[str, tuple[str | None, set[str]]] = {
    "start": (ServerTask.STARTING, {"ACTIVE"}),
    "stop": (ServerTask.STOPPING, {"SHUTOFF"}),
    "reboot": (ServerTask.REBOOTING, {"ACTIVE"}),
    "delete": (ServerTask.DELETING, {"DELETED"}),
    "rename": (None, set()),
}


# -- Settings and the backend -------------------------------------------------------------


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def build_wait() -> float:
    return _setting("TEACHCLOUD_COMPUTE_BUILD_WAIT", 120)


def action_wait() -> float:
    return _setting("TEACHCLOUD_COMPUTE_ACTION_WAIT", 60)


def task_stale_seconds() -> float:
    return _setting("TEACHCLOUD_COMPUTE_TASK_STALE", 600)


def _poll_interval(timeout: float) -> float:
    interval = _setting("TEACHCLOUD_COMPUTE_POLL_INTERVAL", 0.5)
    return max(min(interval, timeout / 10 if timeout > 0 else interval), 0.02)


def _backend() -> base.ComputeBackend:
    from compute.cloud import get_backend

    return get_backend()


def _enqueue(task_name: str, *args: Any) -> None:
    """Send a compute task once the current transaction commits (at once outside one). A broker
    that cannot be reached is logged, not raised: the change is committed, and the periodic
    sync finishes what the task would have done (a build never sent is released as stuck)."""

    def send() -> None:
        from kombu.exceptions import OperationalError

        from compute import tasks

        try:
            getattr(tasks, task_name).delay(*args)
        except OperationalError:
            log.exception("could not send compute task %s%r", task_name, args)

    transaction.on_commit(send)


def _cloud_error(exc: base.BackendError) -> ServiceError:
    """A cloud failure as a user sees it: 409 with the backend's readable message."""
    return Conflict(exc.message, code=exc.code)


# -- Validation and locks -----------------------------------------------------------------


def _clean_name(name: Any) -> str:
    name = str(name or "").strip()
    if not NAME_RE.fullmatch(name):
        raise ServiceError(
            _(
                "Use 1 to 64 letters, digits, hyphens, underscores or dots for the server name "
                "(Chinese characters are fine, spaces are not)."
            ),
            code="invalid_name",
            fields={"name": [_("Enter a valid server name.")]},
        )
    return name


def _clean_key_name(key_name: Any) -> str:
    key_name = str(key_name or "").strip()
    if key_name and not KEY_NAME_RE.fullmatch(key_name):
        raise ServiceError(
            _("The key pair name is not valid."),
            code="invalid_key_name",
            fields={"key_name": [_("Enter the name of one of your key pairs.")]},
        )
    return key_name


def _check_name_free(
    *, project: Project, owner: Any, name: str, exclude: int | None = None
) -> None:
    taken = Server.objects.filter(project=project, owner=owner, name=name).exclude(
        status=ServerStatus.DELETED
    )
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise Conflict(
            _("You already have a server called %(name)s in this project.") % {"name": name},
            code="name_taken",
            fields={"name": [_("Choose another name.")]},
        )


def _lock_project(project_id: int) -> Project:
    """Lock order domain → project: the domain row FOR SHARE, the project row FOR UPDATE.
    Returns the project with its domain, both read under the locks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM tenancy_domain WHERE id = "
            "(SELECT domain_id FROM tenancy_project WHERE id = %s) FOR SHARE",
            [project_id],
        )
    return (
        Project.objects.select_for_update(of=("self",)).select_related("domain").get(pk=project_id)
    )


def _lock_membership(*, project: Project, user: Any) -> Membership | None:
    return (
        Membership.objects.active()
        .select_for_update(of=("self",))
        .filter(project=project, user=user)
        .first()
    )


def _lock_server(server: Server | int) -> Server:
    pk = server if isinstance(server, int) else server.pk
    return (
        Server.objects.select_for_update(of=("self",))
        .select_related("project__domain", "owner", "flavor", "image")
        .get(pk=pk)
    )


def _course_ended(project: Project) -> bool:
    return project.end_date is not None and timezone.localdate() >= project.end_date


def block_cause(*, project: Project, membership: Membership | None) -> str | None:
    """Why nothing may run for this member in this project now (a StopCause), or None."""
    if project.status != TenantStatus.ACTIVE or project.domain.status != TenantStatus.ACTIVE:
        return StopCause.LOCK
    if membership is not None and membership.locked:
        return StopCause.BUDGET
    if _course_ended(project):
        return StopCause.COURSE
    return None


def _refuse_if_blocked(
    *, project: Project, membership: Membership | None, course: bool = True
) -> None:
    for tenant, locked, closed in (
        (
            project.domain,
            _(
                "The school %(name)s is locked: nothing can be created or started until its "
                "admin unlocks it."
            ),
            _("The school %(name)s has been closed."),
        ),
        (
            project,
            _(
                "The project %(name)s is locked: nothing can be created or started until its "
                "admin unlocks it."
            ),
            _("The project %(name)s has been closed."),
        ),
    ):
        if tenant.status != TenantStatus.ACTIVE:
            message = locked if tenant.status == TenantStatus.LOCKED else closed
            raise Conflict(message % {"name": tenant.name}, code="tenant_locked")
    if membership is not None and membership.locked:
        raise Conflict(
            _(
                "%(user)s is locked in %(project)s because the budget is used up: a project "
                "admin or assistant can unlock the member."
            )
            % {"user": membership.user, "project": project.name},
            code="member_locked",
        )
    if course and _course_ended(project):
        raise Conflict(
            _("The course ended on %(date)s: servers can no longer be created or started.")
            % {"date": project.end_date.isoformat()},  # type: ignore[union-attr]
            code="course_ended",
        )


def _resource_names() -> dict[str, str]:
    return {"vcpus": _("vCPU"), "ram_gib": _("RAM (GiB)"), "disk_gib": _("disk (GiB)")}


def _refuse_over(
    *,
    asked: dict[str, int],
    held: dict[str, int],
    limit: dict[str, int],
    message: str,
    code: str,
) -> None:
    over = [r for r in RESOURCES if held[r] + asked[r] > limit[r]]
    if not over:
        return
    names = _resource_names()
    parts = {
        r: _("%(held)d held + %(asked)d asked > %(limit)d")
        % {"held": held[r], "asked": asked[r], "limit": limit[r]}
        for r in over
    }
    raise Conflict(
        f"{message} ({'; '.join(f'{names[r]}: {parts[r]}' for r in over)})",
        code=code,
        fields={r: [parts[r]] for r in over},
    )


def _current(level: str, **filters: Any) -> dict[str, int] | None:
    allocation = Allocation.objects.filter(level=level, end__isnull=True, **filters).first()
    if allocation is None:
        return None
    return {r: int(getattr(allocation, r)) for r in RESOURCES}


def _asked(flavor: Flavor) -> dict[str, int]:
    return {"vcpus": flavor.vcpus, "ram_gib": flavor.ram_gib, "disk_gib": flavor.disk_gib}


# -- Create (the reservation) -------------------------------------------------------------


@transaction.atomic(durable=True)
def server_create(
    *, actor: Any, project: Project, name: str, flavor: Flavor, image: Image, key_name: str = ""
) -> Server:
    """Reserve the flavor's resources against the member's limit and the project's allocation
    and record the server `building`; the build runs in a task after commit."""
    require(actor, Action.SERVER_CREATE, project)
    name = _clean_name(name)
    key_name = _clean_key_name(key_name)
    if key_name and not KeyPair.objects.filter(user_id=actor.pk, name=key_name).exists():
        raise ServiceError(
            _("You have no key pair named %(name)s.") % {"name": key_name},
            code="invalid_key_name",
            fields={"key_name": [_("Choose one of your key pairs.")]},
        )
    if not flavors_for(project).filter(pk=flavor.pk).exists():
        raise ServiceError(
            _("The flavor %(name)s is not offered in this project.") % {"name": flavor.name},
            code="flavor_not_allowed",
            fields={"flavor": [_("Choose one of the flavors offered.")]},
        )
    if not images_for(project).filter(pk=image.pk).exists():
        raise ServiceError(
            _("The image %(name)s is not offered in this project.") % {"name": image.name},
            code="image_not_allowed",
            fields={"image": [_("Choose one of the images offered.")]},
        )
    if image.min_disk_gib > flavor.disk_gib or image.min_ram_mib > flavor.ram_mib:
        raise ServiceError(
            _(
                "The image %(image)s needs at least %(disk)d GiB of disk and %(ram)d MiB of RAM: "
                "choose a larger flavor."
            )
            % {"image": image.name, "disk": image.min_disk_gib, "ram": image.min_ram_mib},
            code="flavor_too_small",
            fields={"flavor": [_("Too small for this image.")]},
        )

    project = _lock_project(project.pk)
    membership = _lock_membership(project=project, user=actor)
    if membership is None:
        raise ServiceError(
            _("Only members of the project can create servers in it."),
            code="not_a_member",
            status=403,
        )
    _refuse_if_blocked(project=project, membership=membership)
    _check_name_free(project=project, owner=actor, name=name)

    asked = _asked(flavor)
    limit = _current(Level.MEMBER, project=project, user=actor)
    if limit is None:
        raise Conflict(
            _(
                "You have no resource limit in this project yet: a teacher (a project admin or "
                "assistant) must set your limit before you can create servers."
            ),
            code="no_limit",
        )
    _refuse_over(
        asked=asked,
        held=held_by_vms(project=project, user=actor),
        limit=limit,
        message=_("Your limit in this project would be exceeded"),
        code="over_member_limit",
    )
    _refuse_over(
        asked=asked,
        held=held_by_vms(project=project),
        limit=_current(Level.PROJECT, project=project) or dict.fromkeys(RESOURCES, 0),
        message=_("The project's allocation would be exceeded"),
        code="over_project_allocation",
    )

    now = timezone.now()
    server = Server.objects.create(
        project=project,
        owner=actor,
        membership=membership,
        name=name,
        flavor=flavor,
        image=image,
        key_name=key_name,
        status=ServerStatus.BUILDING,
        created_at=now,
        updated_at=now,
        **asked,
    )
    server.holding = Holding.objects.create(
        membership=membership,
        project=project,
        user=actor,
        server_ref=str(server.pk),
        start=now,
        **asked,
    )
    server.save(update_fields=["holding"])
    audit_record(
        actor=actor,
        action="server.create",
        target=server,
        project=project,
        after=snapshot(server, SERVER_FIELDS),
    )
    _enqueue("server_build", server.pk)
    return server


# -- The build (task body) ----------------------------------------------------------------


BUILD_LOCK = 0x7C0B  # advisory lock class of server builds


def _spec(server: Server, key_name: str | None = None) -> base.ServerSpec:
    return base.ServerSpec(
        name=server.name,
        flavor_id=server.flavor.cloud_id,
        image_id=server.image.cloud_id,
        key_name=key_name,
        metadata={
            "teachcloud_server": str(server.pk),
            "teachcloud_owner": str(server.owner_id),
            "teachcloud_owner_name": server.owner.username,
            "teachcloud_project": server.project.code,
            "teachcloud_domain": server.project.domain.code,
        },
    )


def _find_in_cloud(
    backend: base.ComputeBackend, project_cloud_id: str, server_pk: int
) -> base.Server | None:
    """The cloud server an earlier attempt created for this row (by metadata), if any."""
    for cloud in backend.list_servers(project_id=project_cloud_id):
        if cloud.metadata.get("teachcloud_server") == str(server_pk) and cloud.status != "DELETED":
            return cloud
    return None


def server_build(*, server_id: int) -> Server | None:
    """Create the reserved server in the cloud and wait for it (the `server_build` task).

    Idempotent: a server that already has a cloud id is only followed up, a cloud server an
    earlier attempt created is found by its metadata, and two runs at once do the work once."""
    with session_lock(BUILD_LOCK, server_id) as mine:
        if not mine:
            return Server.objects.filter(pk=server_id).first()
        return _build(server_id)


def _build(server_id: int) -> Server | None:
    server = (
        Server.objects.select_related("project__domain", "owner", "flavor", "image")
        .filter(pk=server_id)
        .first()
    )
    if server is None or server.status != ServerStatus.BUILDING:
        return server
    if not server.cloud_id:
        try:
            backend = _backend()
            cloud_project = cloud_project_ensure(project=server.project)
            cloud = _find_in_cloud(backend, cloud_project.cloud_id, server.pk)
            if cloud is None:
                key_name = _cloud_key_name(backend, server)
                try:
                    cloud = backend.create_server(
                        project_id=cloud_project.cloud_id, spec=_spec(server, key_name)
                    )
                except base.CloudUnavailable:
                    # A timeout may hide a create the cloud accepted: look before giving up.
                    cloud = _find_in_cloud(backend, cloud_project.cloud_id, server.pk)
                    if cloud is None:
                        raise
        except (base.BackendError, ServiceError) as exc:
            message = exc.message if isinstance(exc, base.BackendError) else exc.detail
            log.warning(
                "build of server %s failed before the cloud accepted it: %s", server_id, exc
            )
            return build_failed(server=server, fault=message)
        server = _record_cloud_id(server, cloud, backend)
        if server.status != ServerStatus.BUILDING:
            return server
    else:
        backend = _backend()
    try:
        cloud = _poll(backend, server.cloud_id or "", _reached({"ACTIVE"}), build_wait())
    except base.NotFound:
        return server_record(server=server, cloud=_gone(server))
    except base.BackendError as exc:  # the sync follows it up
        log.warning("server %s: waiting for the build failed: %s", server_id, exc)
        return Server.objects.get(pk=server_id)
    if cloud.status == "ERROR":
        return _build_errored(server, cloud, backend)
    return server_record(server=server, cloud=cloud)


def _cloud_key_name(backend: base.ComputeBackend, server: Server) -> str | None:
    """The Nova key pair to boot with: the owner's key pair named `server.key_name`, ensured
    in the cloud under its derived name (compute.keypairs). A key pair deleted since the
    create fails the build (ServiceError, recorded as the fault)."""
    if not server.key_name:
        return None
    from compute import keypairs

    keypair = KeyPair.objects.filter(user_id=server.owner_id, name=server.key_name).first()
    if keypair is None:
        raise ServiceError(
            _("the key pair %(name)s has been deleted: create the VM again with another key")
            % {"name": server.key_name},
            code="invalid_key_name",
        )
    name = keypairs.cloud_name(keypair)
    backend.keypair_ensure(name=name, public_key=keypair.public_key)
    return name


def _record_cloud_id(server: Server, cloud: base.Server, backend: base.ComputeBackend) -> Server:
    """Remember the cloud id at once; if the server was deleted meanwhile (or another run
    recorded a different cloud server), delete this one in the cloud."""
    with transaction.atomic():
        row = _lock_server(server)
        drop = (
            bool(row.cloud_id and row.cloud_id != cloud.id)
            or row.status == ServerStatus.DELETED
            or row.task == ServerTask.DELETING
        )
        if not drop:
            row.cloud_id, row.cloud_status = cloud.id, cloud.status
            row.updated_at = timezone.now()
            row.save(update_fields=["cloud_id", "cloud_status", "updated_at"])
    if drop:
        log.info("server %s: deleting cloud server %s nobody wants", server.pk, cloud.id)
        with contextlib.suppress(base.BackendError):
            backend.delete_server(server_id=cloud.id)
        if row.status != ServerStatus.DELETED and not row.cloud_id:
            with transaction.atomic():
                row = _lock_server(row)
                if row.status != ServerStatus.DELETED:
                    _mark_deleted(row, at_start=True)
    return row


def build_failed(*, server: Server, fault: str) -> Server:
    """A create failed before the cloud held anything: `error`, the reason in `fault`, the
    reservation released (its Holding ended at its start: held for zero seconds)."""
    with transaction.atomic():
        row = _lock_server(server)
        if row.status != ServerStatus.BUILDING:
            return row
        row.status, row.task = ServerStatus.ERROR, ServerTask.NONE
        row.fault = _("The server could not be created: %(reason)s") % {"reason": fault}
        row.cloud_id = None
        row.updated_at = timezone.now()
        row.save(update_fields=["status", "task", "fault", "cloud_id", "updated_at"])
        _end_holding(row, at_start=True)
        audit_record(
            actor=None,
            action="server.build_failed",
            target=row,
            project=row.project,
            after={"status": row.status, "fault": row.fault},
        )
    return row


def _build_errored(
    server: Server, cloud: base.Server, backend: base.ComputeBackend, *, fault: str = ""
) -> Server:
    """The cloud accepted the server but it went to ERROR (or never finished the build): delete
    it there, then release."""
    fault = fault or cloud.fault or _("the cloud reported an error while building it")
    try:
        backend.delete_server(server_id=cloud.id)
        _poll(backend, cloud.id, _deleted, action_wait(), until_error=False)
    except base.NotFound:
        pass
    except base.BackendError as exc:
        # Keep the cloud id: the server still exists there and may be deleted later.
        log.warning("server %s: deleting the errored build failed: %s", server.pk, exc)
        with transaction.atomic():
            row = _lock_server(server)
            if row.status == ServerStatus.BUILDING:
                row.status = ServerStatus.ERROR
                row.fault = _("The server could not be created: %(reason)s") % {"reason": fault}
                row.cloud_status = cloud.status
                row.updated_at = timezone.now()
                row.save(update_fields=["status", "fault", "cloud_status", "updated_at"])
                _end_holding(row, at_start=True)
        return row
    return build_failed(server=server, fault=fault)


def build_abandon(*, server_id: int, cloud: base.Server, fault: str = "") -> Server | None:
    """The sync's side of a failed build (the build task stopped waiting after
    TEACHCLOUD_COMPUTE_BUILD_WAIT): a server still `building` whose cloud server went to ERROR, or
    stayed in BUILD past TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES, is handled like the task's own
    failure (`_build_errored`): deleted in the cloud, `error` with `fault`, its reservation
    released. Network: call outside any transaction. Returns None (nothing done) while a build
    task holds the server; a row that is no longer building with that cloud id is left alone."""
    with session_lock(BUILD_LOCK, server_id) as mine:
        if not mine:
            return None
        server = (
            Server.objects.select_related("project__domain", "owner", "flavor", "image")
            .filter(pk=server_id)
            .first()
        )
        if (
            server is None
            or server.status != ServerStatus.BUILDING
            or server.cloud_id != cloud.id
            or server.task == ServerTask.DELETING
        ):
            return server
        return _build_errored(server, cloud, _backend(), fault=fault)


# -- Applying cloud state -----------------------------------------------------------------


def _gone(server: Server) -> base.Server:
    return base.Server(id=server.cloud_id or "", name=server.name, status="DELETED", project_id="")


def _end_holding(server: Server, *, at_start: bool = False) -> None:
    if server.holding_id is None:
        return
    Holding.objects.filter(pk=server.holding_id, end__isnull=True).update(
        end=F("start") if at_start else timezone.now()
    )


def _mark_deleted(row: Server, *, at_start: bool) -> None:
    """Deleted: holding ended, task cleared (caller holds the row lock)."""
    now = timezone.now()
    before = row.status
    row.status, row.task = ServerStatus.DELETED, ServerTask.NONE
    row.deleted_at, row.updated_at = now, now
    row.running_at_lock = False
    row.save(update_fields=["status", "task", "deleted_at", "updated_at", "running_at_lock"])
    _end_holding(row, at_start=at_start)
    audit_record(
        actor=None,
        action="server.deleted",
        target=row,
        project=row.project,
        before={"status": before},
        after={"status": row.status},
    )


def _task_done(task: str, cloud: base.Server) -> bool:
    settled = not cloud.task_state
    if task in (ServerTask.STARTING, ServerTask.REBOOTING):
        return cloud.status == "ACTIVE" and settled
    if task == ServerTask.STOPPING:
        return cloud.status in STOPPED_CLOUD and settled
    return False  # deleting ends only with DELETED


def server_record(
    *, server: Server, cloud: base.Server, stale_before: datetime | None = None
) -> Server:
    """Apply the cloud's view of a server to its row (used by the tasks and the sync).

    Status by STATUS_MAP; DELETED (or a 404 passed as DELETED) ends the holding; a task is
    cleared when the cloud shows it done, or (the sync, `stale_before`) when it was set before
    `stale_before` (lost); a server stopped with no task of ours gets stop cause `cloud`; a
    stopped server that runs again loses its stop cause and `running_at_lock`; a server that is
    active with no task while its member or tenant is blocked (or its course has ended) is
    stopped at once — the stop is asked for here, after the lost task was cleared, so nothing
    clears it again."""
    with transaction.atomic():
        row = _lock_server(server)
        if row.status == ServerStatus.DELETED:
            return row
        if cloud.status.upper() == "DELETED":
            _mark_deleted(row, at_start=False)
            return row
        now = timezone.now()
        before = {f: getattr(row, f) for f in RECORDED}
        previous, new = row.status, STATUS_MAP.get(cloud.status.upper(), row.status)
        ours = row.task
        if ours and stale_before is not None and row.updated_at <= stale_before:
            row.task = ServerTask.NONE  # lost: the cloud's state decides from here
        row.status = new
        row.cloud_status = cloud.status
        if not row.cloud_id and cloud.id:
            row.cloud_id = cloud.id
        if cloud.addresses or new != ServerStatus.BUILDING:
            row.addresses = cloud.addresses
        if new == ServerStatus.ACTIVE and row.active_at is None:
            row.active_at = now
        if ours and _task_done(ours, cloud):
            row.task = ServerTask.NONE
            row.fault = ""
        if new == ServerStatus.ERROR:
            row.fault = cloud.fault or _("The cloud reports an error for this server.")
            if row.task != ServerTask.DELETING:
                row.task = ServerTask.NONE
        stopped_now = new == ServerStatus.STOPPED and previous != ServerStatus.STOPPED
        if stopped_now and ours != ServerTask.STOPPING and not row.stop_cause:
            row.stop_cause = StopCause.CLOUD
        if new == ServerStatus.ACTIVE and previous == ServerStatus.STOPPED:
            row.stop_cause, row.running_at_lock = StopCause.NONE, False
        changed = [f for f in RECORDED if getattr(row, f) != before[f]]
        if changed:  # untouched rows keep updated_at, so a lost task still ages
            row.updated_at = now
            row.save(update_fields=[*changed, "updated_at"])
        if new != previous:
            audit_record(
                actor=None,
                action="server.status",
                target=row,
                project=row.project,
                before={"status": previous},
                after={"status": new, "cloud_status": cloud.status},
            )
        if new == ServerStatus.ACTIVE and not row.task:
            membership = (
                Membership.objects.active().filter(project=row.project, user=row.owner).first()
            )
            cause = block_cause(project=row.project, membership=membership)
            if cause is not None:
                _request_stop(row, cause=cause)
    return row


# -- Actions ------------------------------------------------------------------------------


def _busy(row: Server) -> bool:
    if not row.task:
        return False
    return (timezone.now() - row.updated_at).total_seconds() < task_stale_seconds()


def _refuse_busy(row: Server) -> None:
    if row.status == ServerStatus.DELETED:
        raise Conflict(_("The server has been deleted."), code="server_busy")
    if _busy(row):
        raise Conflict(
            _("The server is busy (%(task)s): wait until that is done.")
            % {"task": ServerTask(row.task).label},
            code="server_busy",
        )


def _refuse_status(row: Server, wanted: str, message: str) -> None:
    if row.status != wanted:
        raise Conflict(
            message % {"status": ServerStatus(row.status).label.lower()}, code="server_busy"
        )


def _locked_for_action(actor: Any, server: Server, action: Action) -> tuple[Server, Project]:
    require(actor, action, server)
    project = _lock_project(server.project_id)
    row = _lock_server(server)
    row.project = project
    return row, project


def _owner_membership(row: Server, project: Project) -> Membership:
    membership = _lock_membership(project=project, user=row.owner)
    if membership is None:
        raise ServiceError(
            _("%(user)s is no longer a member of the project.") % {"user": row.owner},
            code="not_a_member",
            status=403,
        )
    return membership


def _start_task(row: Server, task: str, **fields: Any) -> None:
    row.task, row.fault, row.updated_at = task, "", timezone.now()
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=["task", "fault", "updated_at", *fields])


def _audit_action(actor: Any, row: Server, action: str, **after: Any) -> None:
    audit_record(
        actor=actor,
        action=f"server.{action}",
        target=row,
        project=row.project,
        after={"status": row.status, "task": row.task, **after},
    )


@transaction.atomic(durable=True)
def server_start(*, actor: Any, server: Server) -> Server:
    row, project = _locked_for_action(actor, server, Action.SERVER_USE)
    _refuse_busy(row)
    _refuse_status(
        row,
        ServerStatus.STOPPED,
        _("Only a stopped server can be started (this one is %(status)s)."),
    )
    _refuse_if_blocked(project=project, membership=_owner_membership(row, project))
    _start_task(row, ServerTask.STARTING)
    _audit_action(actor, row, "start")
    _enqueue("server_action", row.pk, "start")
    return row


@transaction.atomic(durable=True)
def server_stop(*, actor: Any, server: Server) -> Server:
    row, _project = _locked_for_action(actor, server, Action.SERVER_STOP)
    _refuse_busy(row)
    _refuse_status(
        row,
        ServerStatus.ACTIVE,
        _("Only a running server can be stopped (this one is %(status)s)."),
    )
    _start_task(row, ServerTask.STOPPING, stop_cause=StopCause.USER, running_at_lock=False)
    _audit_action(actor, row, "stop", cause=StopCause.USER)
    _enqueue("server_action", row.pk, "stop")
    return row


@transaction.atomic(durable=True)
def server_reboot(*, actor: Any, server: Server, hard: bool = False) -> Server:
    row, project = _locked_for_action(actor, server, Action.SERVER_USE)
    _refuse_busy(row)
    _refuse_status(
        row,
        ServerStatus.ACTIVE,
        _("Only a running server can be rebooted (this one is %(status)s)."),
    )
    _refuse_if_blocked(project=project, membership=_owner_membership(row, project))
    _start_task(row, ServerTask.REBOOTING)
    _audit_action(actor, row, "reboot", hard=bool(hard))
    _enqueue("server_action", row.pk, "reboot", bool(hard))
    return row


@transaction.atomic(durable=True)
def server_rename(*, actor: Any, server: Server, name: str) -> Server:
    row, project = _locked_for_action(actor, server, Action.SERVER_USE)
    name = _clean_name(name)
    if row.status == ServerStatus.DELETED or row.task == ServerTask.DELETING:
        raise Conflict(_("The server is being deleted."), code="server_busy")
    _refuse_if_blocked(project=project, membership=None, course=False)
    if name == row.name:
        return row
    _check_name_free(project=project, owner=row.owner, name=name, exclude=row.pk)
    before = snapshot(row, ["name"])
    row.name, row.updated_at = name, timezone.now()
    row.save(update_fields=["name", "updated_at"])
    audit_record(
        actor=actor,
        action="server.rename",
        target=row,
        project=project,
        before=before,
        after=snapshot(row, ["name"]),
    )
    if row.cloud_id:
        _enqueue("server_action", row.pk, "rename")
    return row


@transaction.atomic(durable=True)
def server_delete(*, actor: Any, server: Server) -> Server:
    """Delete: at once when the server never reached the cloud, else when the cloud confirms.
    Deleting a deleted server or one being deleted changes nothing."""
    row, _project = _locked_for_action(actor, server, Action.SERVER_DELETE)
    if row.status == ServerStatus.DELETED or (row.task == ServerTask.DELETING and _busy(row)):
        return row
    _delete(row, actor=actor)
    return row


def _delete(row: Server, *, actor: Any, reason: str = "") -> None:
    after = {"reason": reason} if reason else {}
    if not row.cloud_id:
        _audit_action(actor, row, "delete", **after)
        # Never reached the cloud: nothing held there (a build in flight deletes its server
        # when it records the cloud id and finds the row deleted).
        _mark_deleted(row, at_start=True)
        return
    _start_task(row, ServerTask.DELETING)
    _audit_action(actor, row, "delete", **after)
    _enqueue("server_action", row.pk, "delete")


def server_console_url(*, actor: Any, server: Server) -> str:
    """A noVNC URL for the owner of a running server (a cloud call: outside any transaction)."""
    require(actor, Action.SERVER_USE, server)
    row = Server.objects.select_related("project__domain").get(pk=server.pk)
    if row.status != ServerStatus.ACTIVE or not row.cloud_id:
        raise Conflict(
            _("The console is available only while the server is running."),
            code="server_not_running",
        )
    try:
        url = _backend().console_url(server_id=row.cloud_id)
    except base.BackendError as exc:
        raise _cloud_error(exc) from exc
    with transaction.atomic():
        audit_record(actor=actor, action="server.console", target=row, project=row.project)
    return url


def _poll(
    backend: base.ComputeBackend,
    server_id: str,
    done: Callable[[base.Server], bool],
    timeout: float,
    *,
    until_error: bool = True,
) -> base.Server:
    """Read the server until `done(server)` (or ERROR, unless `until_error` is False), or until
    `timeout` (then the last state seen). A server that is gone raises NotFound."""
    deadline = time.monotonic() + timeout
    interval = _poll_interval(timeout)
    while True:
        cloud = backend.get_server(server_id=server_id)
        if done(cloud) or (until_error and cloud.status == "ERROR"):
            return cloud
        if time.monotonic() >= deadline:
            return cloud
        time.sleep(interval)


def _reached(goal: set[str]) -> Callable[[base.Server], bool]:
    return lambda cloud: cloud.status in goal and not cloud.task_state


def _deleted(cloud: base.Server) -> bool:
    return cloud.status == "DELETED"  # the backend answers NotFound first, as Nova does


def _settled(cloud: base.Server) -> bool:
    return not cloud.task_state


def _call(backend: base.ComputeBackend, row: Server, action: str, hard: bool) -> None:
    cloud_id = row.cloud_id or ""
    if action == "start":
        backend.start_server(server_id=cloud_id)
    elif action == "stop":
        backend.stop_server(server_id=cloud_id)
    elif action == "reboot":
        backend.reboot_server(server_id=cloud_id, hard=hard)
    elif action == "delete":
        backend.delete_server(server_id=cloud_id)
    else:
        backend.rename_server(server_id=cloud_id, name=row.name)


def server_action(*, server_id: int, action: str, hard: bool = False) -> Server | None:
    """Carry out a start/stop/reboot/delete/rename in the cloud (the `server_action` task) and
    record the outcome. A failure clears the task, keeps the status and records the fault.

    When the cloud answers 409 (the server is between states, e.g. still powering on), wait
    until it settles and try once more."""
    task, goal = ACTIONS[action]
    row = Server.objects.select_related("project__domain", "owner").filter(pk=server_id).first()
    if row is None or row.status == ServerStatus.DELETED:
        return row
    if task is not None and row.task != task:
        return row  # superseded (e.g. deleted meanwhile) or already done
    if not row.cloud_id:
        if action == "delete":
            with transaction.atomic():
                locked = _lock_server(row)
                if locked.status != ServerStatus.DELETED:
                    _mark_deleted(locked, at_start=True)
                return locked
        return _action_failed(row, task, _("The server is not in the cloud yet."))
    cloud_id = row.cloud_id
    try:
        backend = _backend()
        try:
            _call(backend, row, action, hard)
        except base.Conflict:
            if action == "rename":
                raise
            cloud = _poll(backend, cloud_id, _settled, action_wait())
            if cloud.status not in goal:
                _call(backend, row, action, hard)
        if action == "rename":
            return row
        if action == "delete":
            cloud = _poll(backend, cloud_id, _deleted, action_wait(), until_error=False)
        else:
            cloud = _poll(backend, cloud_id, _reached(goal), action_wait())
    except base.NotFound:
        return server_record(server=row, cloud=_gone(row))
    except base.BackendError as exc:
        log.warning("server %s: %s failed: %s", server_id, action, exc)
        if task is not None:
            fresh = Server.objects.get(pk=server_id)
            if fresh.task == task and _accepted(backend, cloud_id, goal):
                return fresh  # the cloud did it after all; the sync records the rest
        return _action_failed(row, task, exc.message)
    return server_record(server=row, cloud=cloud)


def _accepted(backend: base.ComputeBackend, cloud_id: str, goal: set[str]) -> bool:
    """After an error: is the server on its way to `goal` anyway (a timeout that hid success)?"""
    try:
        cloud = backend.get_server(server_id=cloud_id)
    except base.NotFound:
        return "DELETED" in goal
    except base.BackendError:
        return False
    return cloud.status in goal or bool(cloud.task_state)


def _action_failed(row: Server, task: str | None, message: str) -> Server:
    """Clear the task we set (if it is still ours), keep the status, record the fault."""
    with transaction.atomic():
        locked = _lock_server(row)
        if task is None:  # rename: nothing to clear; remember why the cloud disagrees
            locked.fault = message
            locked.save(update_fields=["fault"])
            return locked
        if locked.task != task:
            return locked
        fields = ["task", "fault", "updated_at"]
        locked.task, locked.fault, locked.updated_at = ServerTask.NONE, message, timezone.now()
        if task == ServerTask.STOPPING and locked.status == ServerStatus.ACTIVE:
            locked.stop_cause = StopCause.NONE
            fields.append("stop_cause")
        locked.save(update_fields=fields)
        audit_record(
            actor=None,
            action="server.action_failed",
            target=locked,
            project=locked.project,
            after={"task": task, "fault": message},
        )
    return locked


# -- System side (enforcement, course end, sync) ------------------------------------------


def _request_stop(row: Server, *, cause: str) -> None:
    """Stop a running server for a lock, budget or course end (caller holds the row lock)."""
    _start_task(row, ServerTask.STOPPING, stop_cause=cause, running_at_lock=True)
    _audit_action(None, row, "stop", cause=cause)
    _enqueue("server_action", row.pk, "stop")


def servers_stop_for(*, servers: QuerySet[Server], cause: str) -> int:
    """Stop every running server in `servers` (a lock, budget lock or course end); each
    remembers it was running (`running_at_lock`) and why it stopped. Servers still building
    are stopped when they become active (server_record). Usable inside the caller's
    transaction; the cloud calls run after commit. Returns how many stops were issued."""
    count = 0
    with transaction.atomic():
        rows = (
            Server.objects.select_for_update(of=("self",))
            .select_related("project__domain", "owner")
            .filter(pk__in=servers.values("pk"))
            .filter(status__in=[ServerStatus.ACTIVE, ServerStatus.STOPPED])
            .order_by("pk")
        )
        for row in rows:
            running = row.status == ServerStatus.ACTIVE and row.task != ServerTask.STOPPING
            starting = row.status == ServerStatus.STOPPED and row.task == ServerTask.STARTING
            if (running and row.task != ServerTask.DELETING) or starting:
                _request_stop(row, cause=cause)
                count += 1
    return count


def servers_restart_for(*, servers: QuerySet[Server]) -> int:
    """Start again the servers in `servers` that a lock, budget or course end stopped while
    they were running, unless their member or tenant is still blocked. Returns how many."""
    count = 0
    with transaction.atomic():
        rows = (
            Server.objects.select_for_update(of=("self",))
            .select_related("project__domain", "owner")
            .filter(pk__in=servers.values("pk"), running_at_lock=True)
            .exclude(status=ServerStatus.DELETED)
            .order_by("pk")
        )
        for row in rows:
            if row.status == ServerStatus.ACTIVE and not row.task:
                row.running_at_lock = False
                row.save(update_fields=["running_at_lock"])
                continue
            if row.status != ServerStatus.STOPPED or _busy(row):
                continue
            membership = (
                Membership.objects.active().filter(project=row.project, user=row.owner).first()
            )
            if membership is None or block_cause(project=row.project, membership=membership):
                continue
            _start_task(row, ServerTask.STARTING)
            _audit_action(None, row, "start", restart=True)
            _enqueue("server_action", row.pk, "start")
            count += 1
    return count


def servers_delete_for(*, servers: QuerySet[Server], reason: str) -> int:
    """Delete every server in `servers` (purge, course end): at once when it never reached the
    cloud, else in the cloud after commit. Returns how many deletions were started."""
    count = 0
    with transaction.atomic():
        rows = (
            Server.objects.select_for_update(of=("self",))
            .select_related("project__domain", "owner")
            .filter(pk__in=servers.values("pk"))
            .exclude(status=ServerStatus.DELETED)
            .order_by("pk")
        )
        for row in rows:
            if row.task == ServerTask.DELETING and _busy(row):
                continue
            _delete(row, actor=None, reason=reason)
            count += 1
    return count


# -- Cloud tenants and quota --------------------------------------------------------------


def cloud_domain_ensure(*, domain: Domain) -> CloudDomain:
    """The Keystone domain of `domain`, created once (network; not inside a transaction)."""
    record, _created = CloudDomain.objects.get_or_create(domain=domain)
    if record.cloud_id:
        return record
    cloud_id = _backend().ensure_domain(name=domain.name, code=domain.code)
    with transaction.atomic():
        record = CloudDomain.objects.select_for_update().get(pk=record.pk)
        if not record.cloud_id:
            record.cloud_id = cloud_id
            record.save(update_fields=["cloud_id"])
            audit_record(
                actor=None,
                action="cloud.domain_create",
                target=record,
                domain=domain,
                after={"cloud_id": cloud_id},
            )
    return record


def cloud_project_ensure(*, project: Project) -> CloudProject:
    """The Keystone project of `project` (and its domain), created once, with its compute quota
    in step with the project's allocation. Idempotent; network; called by tasks."""
    project = Project.objects.select_related("domain").get(pk=project.pk)
    if project.status == TenantStatus.PURGED:
        raise Conflict(
            _("The project %(name)s has been closed.") % {"name": project.name},
            code="tenant_locked",
        )
    record, _created = CloudProject.objects.get_or_create(project=project)
    if not record.cloud_id:
        domain_record = cloud_domain_ensure(domain=project.domain)
        try:
            cloud_id = _backend().ensure_project(
                domain_id=domain_record.cloud_id, name=project.name, code=project.code
            )
        except base.BackendError as exc:
            CloudProject.objects.filter(pk=record.pk).update(last_error=exc.message)
            raise
        with transaction.atomic():
            record = CloudProject.objects.select_for_update().get(pk=record.pk)
            if not record.cloud_id:
                record.cloud_id, record.last_error = cloud_id, ""
                record.save(update_fields=["cloud_id", "last_error"])
                audit_record(
                    actor=None,
                    action="cloud.project_create",
                    target=record,
                    project=project,
                    after={"cloud_id": cloud_id},
                )
    wanted = _wanted_quota(project)
    if (
        record.quota_synced_at is None
        or record.quota_vcpus != wanted["vcpus"]
        or record.quota_ram_gib != wanted["ram_gib"]
    ):
        quota_sync(project=project)
        record.refresh_from_db()
    return record


def _wanted_quota(project: Project) -> dict[str, int]:
    return _current(Level.PROJECT, project=project) or dict.fromkeys(RESOURCES, 0)


def quota_sync(*, project: Project) -> None:
    """Set the Keystone project's compute quota to the project's allocation (SPEC Compute 5):
    cores = vCPUs, RAM = GiB × 1024, instances = vCPUs. Creates the cloud project if needed."""
    record = CloudProject.objects.filter(project=project).first()
    if record is None or not record.cloud_id:
        cloud_project_ensure(project=project)  # sets the quota once the project exists
        return
    wanted = _wanted_quota(project)
    quota = base.Quota(
        cores=wanted["vcpus"], ram_mib=wanted["ram_gib"] * 1024, instances=wanted["vcpus"]
    )
    try:
        _backend().set_quota(project_id=record.cloud_id, quota=quota)
    except base.BackendError as exc:
        CloudProject.objects.filter(pk=record.pk).update(last_error=exc.message)
        raise
    CloudProject.objects.filter(pk=record.pk).update(
        quota_vcpus=wanted["vcpus"],
        quota_ram_gib=wanted["ram_gib"],
        quota_synced_at=timezone.now(),
        last_error="",
    )
