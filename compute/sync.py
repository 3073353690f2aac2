"""Reconcile the portal with the cloud (SPEC Compute 6), and mirror the cloud's catalogue.

`sync_run(*, apply=True, orphans=None) -> SyncReport` (Celery beat every 5 minutes;
`manage.py compute_sync [--apply] [--orphans report|adopt|delete]`):

- One listing of every server of the cloud (all projects), taken after the portal's live servers
  were read, so a server created meanwhile is never taken for a vanished one; a server missing
  from the listing is confirmed gone with one `get_server` before it is marked deleted.
- Each live server with a cloud id follows the cloud (`services.server_record`: status,
  addresses, fault; a vanished server becomes `deleted` and its holding ends). A server whose
  task (stopping, deleting …) is younger than `TEACHCLOUD_COMPUTE_TASK_STALE` seconds is left
  to that task; an older task is taken as lost: the server follows the cloud and the task is
  cleared (before the cloud's state is applied, so a stop asked for then stays).
- A live server that is active with no task while it may not run (its tenant is locked or
  purged, its member locked, or its course has ended — `services.block_cause`) gets a stop
  asked for again, so a stop lost with its task (a broker down at the course end) is retried.
- A server still `building` with a cloud id whose cloud server went to ERROR (the build task
  had stopped waiting), or is still in BUILD after `TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES`,
  fails like the build task's own failure (`services.build_abandon`): the cloud server is
  deleted, the row becomes `error` with the fault and its reservation is released.
- A server still `building` without a cloud id after `TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES`
  becomes `error` and its reservation is released (the holding ends at its start, as for any
  failed create) — unless the cloud has a server whose metadata names it (`teachcloud_server`):
  then that server is linked (the create reached the cloud but its answer was lost).
- A cloud server in one of OUR cloud projects that belongs to no live server is either a
  leftover (its metadata names a server the portal gave up on — failed, released or deleted —
  or the portal deleted it): deleted in the cloud; or unknown: an `UnknownServer` row, then per
  `orphans` (default settings.TEACHCLOUD_COMPUTE_ORPHANS): "report" only, "adopt" (its metadata
  names a member of the project and the flavor and image are in the catalogue → a Server and its
  Holding are created) or "delete" (deleted in the cloud). Servers in projects the portal did not
  create are none of its business. So after one applied sync no VM of our projects is in the
  cloud without a record (a Server or an UnknownServer row).
- `apply=False` reports what would change and writes nothing.
- Two syncs at once: a PostgreSQL advisory lock; the second returns at once with `busy`.

`catalogue_sync() -> dict`: flavors and (active) images as the cloud lists them: new ones are
created and offered, changed ones updated, gone ones marked `removed` (kept: servers refer to
them), ones that come back un-removed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from compute.backends import base
from compute.enforcement import LOCK_SYNC
from compute.models import (
    CloudProject,
    Flavor,
    Image,
    Server,
    ServerStatus,
    ServerTask,
    UnknownServer,
)
from compute.services import STATUS_MAP
from teachcloud.errors import ServiceError
from teachcloud.locks import session_lock
from tenancy.audit import audit_record
from tenancy.models import Membership, Project, TenantStatus
from tenancy.permissions import Action, require

log = logging.getLogger(__name__)

ORPHAN_POLICIES = ("report", "adopt", "delete")


@dataclass
class SyncReport:
    """What one sync found and did (or, with apply=False, would do)."""

    apply: bool
    orphans: str
    busy: bool = False
    error: str = ""
    cloud_servers: int = 0
    checked: int = 0
    #: One dict per change: {"kind", "server", "cloud_id", "detail"}; kinds: status, addresses,
    #: gone, stuck, build_failed, blocked, linked, task_cleared, leftover_deleted, unknown,
    #: adopted, orphan_deleted, vanished, failed.
    changes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, detail: str, *, server: int | None = None, cloud_id: str = "") -> None:
        self.changes.append(
            {"kind": kind, "server": server, "cloud_id": cloud_id, "detail": detail}
        )

    def count(self, kind: str) -> int:
        return sum(1 for change in self.changes if change["kind"] == kind)

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for change in self.changes:
            totals[change["kind"]] = totals.get(change["kind"], 0) + 1
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts()}

    def lines(self) -> list[str]:
        mode = _("applied") if self.apply else _("dry run, nothing written")
        if self.busy:
            return [_("Another sync is running; nothing done.")]
        head = _("Compute sync (%(mode)s, orphans: %(orphans)s): %(n)d cloud servers") % {
            "mode": mode,
            "orphans": self.orphans,
            "n": self.cloud_servers,
        }
        lines = [head]
        if self.error:
            lines.append(_("The cloud failed: %(error)s") % {"error": self.error})
        for change in self.changes:
            who = f"#{change['server']} " if change["server"] else ""
            lines.append(f"  {change['kind']:<17} {who}{change['cloud_id']} {change['detail']}")
        if not self.changes and not self.error:
            lines.append("  " + _("everything in step"))
        return lines


# -- Helpers ----------------------------------------------------------------------------------


def _differs(server: Server, cloud: base.Server) -> list[tuple[str, str]]:
    """(kind, detail) of every difference between the row and the cloud's view."""
    found = []
    mapped = STATUS_MAP.get(cloud.status.upper())
    if mapped is not None and mapped != server.status:
        found.append(("status", f"{server.status} → {mapped} ({cloud.status})"))
    addresses = {k: list(v) for k, v in (cloud.addresses or {}).items()}
    if addresses and addresses != (server.addresses or {}):
        found.append(("addresses", f"{server.addresses or {}} → {addresses}"))
    return found


def _record(server: Server, cloud: base.Server) -> None:
    from compute import services

    services.server_record(server=server, cloud=cloud)


def _gone(server: Server) -> base.Server:
    return base.Server(
        id=server.cloud_id or "",
        name=server.name,
        status="DELETED",
        project_id="",
    )


def _release_stuck(server_pk: int, *, fault: str) -> None:
    """A build that never reached the cloud: error, and the reservation released (its holding
    ends at its start, as for any failed create)."""
    from compute import services

    services.build_failed(server=Server.objects.get(pk=server_pk), fault=fault)


def _abandon_build(
    report: SyncReport, server: Server, cloud: base.Server, *, kind: str, fault: str
) -> None:
    """A build the cloud failed or never finished: delete it there and release (network)."""
    from compute import services

    report.add(kind, fault, server=server.pk, cloud_id=cloud.id)
    if not report.apply:
        return
    try:
        services.build_abandon(server_id=server.pk, cloud=cloud, fault=fault)
    except base.BackendError as exc:
        report.add("failed", str(exc), server=server.pk, cloud_id=cloud.id)


def _blocked(now: datetime) -> tuple[set[int], set[tuple[int, int]]]:
    """Projects where nothing may run (tenant locked or purged, course ended), and the
    (project, user) pairs of locked members: what `services.block_cause` decides per server."""
    today = timezone.localdate(now)
    projects = set(
        Project.objects.filter(
            ~Q(status=TenantStatus.ACTIVE)
            | ~Q(domain__status=TenantStatus.ACTIVE)
            | Q(end_date__lte=today)
        ).values_list("pk", flat=True)
    )
    members = set(
        Membership.objects.active().filter(locked=True).values_list("project_id", "user_id")
    )
    return projects, members


def _link(server_pk: int, cloud: base.Server) -> Server | None:
    """The cloud has the server a lost create answer never named: remember its id."""
    with transaction.atomic():
        server = Server.objects.select_for_update(of=("self",)).get(pk=server_pk)
        if server.status != ServerStatus.BUILDING or server.cloud_id:
            return None
        server.cloud_id = cloud.id
        server.save(update_fields=["cloud_id"])
    return server


def _upsert_unknown(cloud: base.Server, *, now: datetime, resolution: str | None = None) -> Any:
    defaults: dict[str, Any] = {
        "cloud_project_id": cloud.project_id,
        "name": (cloud.name or "")[:255],
        "cloud_status": cloud.status[:32],
        "metadata": dict(cloud.metadata or {}),
        "last_seen": now,
    }
    if resolution is not None:
        defaults["resolution"] = resolution
    row, _created = UnknownServer.objects.update_or_create(
        cloud_id=cloud.id, defaults=defaults, create_defaults={**defaults, "first_seen": now}
    )
    return row


def _flavor_of(cloud: base.Server) -> Flavor | None:
    if not cloud.flavor_id:
        return None
    return Flavor.objects.filter(Q(cloud_id=cloud.flavor_id) | Q(name=cloud.flavor_id)).first()


def _image_of(cloud: base.Server) -> Image | None:
    if not cloud.image_id:
        return None
    return Image.objects.filter(Q(cloud_id=cloud.image_id) | Q(name=cloud.image_id)).first()


def _adoption(cloud: base.Server) -> tuple[dict[str, Any] | None, str]:
    """What an adopted server would be (or why it cannot be adopted)."""
    from accounts.models import User

    cloud_project = (
        CloudProject.objects.filter(cloud_id=cloud.project_id, deleted_at__isnull=True)
        .select_related("project")
        .first()
    )
    if cloud_project is None:
        return None, _("not in a project of the portal")
    project = cloud_project.project
    meta = cloud.metadata or {}
    if meta.get("teachcloud_project") and meta["teachcloud_project"] != project.code:
        return None, _("its metadata names another project")
    owner = None
    if str(meta.get("teachcloud_owner", "")).isdigit():
        owner = User.objects.filter(pk=int(meta["teachcloud_owner"])).first()
    if owner is None and meta.get("teachcloud_owner_name"):
        owner = User.objects.filter(username=meta["teachcloud_owner_name"]).first()
    if owner is None:
        return None, _("its metadata names no known owner")
    membership = Membership.objects.filter(project=project, user=owner).first()
    if membership is None:
        return None, _("its owner is not a member of the project")
    flavor, image = _flavor_of(cloud), _image_of(cloud)
    if flavor is None:
        return None, _("its flavor is not in the catalogue")
    if image is None:
        return None, _("its image is not in the catalogue")
    return {
        "project": project,
        "owner": owner,
        "membership": membership,
        "flavor": flavor,
        "image": image,
    }, ""


def _adopt(cloud: base.Server, *, now: datetime, actor: Any = None) -> Server:
    """Create the Server and its Holding for a cloud server the portal did not know."""
    from billing.models import Holding

    plan, why = _adoption(cloud)
    if plan is None:
        raise ServiceError(
            _("Cannot adopt %(name)s: %(why)s.") % {"name": cloud.name, "why": why},
            code="cannot_adopt",
            status=409,
        )
    with transaction.atomic():
        if Server.objects.filter(cloud_id=cloud.id).exists():
            raise ServiceError(_("This server is already known."), code="already_known", status=409)
        flavor: Flavor = plan["flavor"]
        server = Server.objects.create(
            project=plan["project"],
            owner=plan["owner"],
            membership=plan["membership"],
            name=(cloud.name or cloud.id)[:64],
            flavor=flavor,
            image=plan["image"],
            vcpus=flavor.vcpus,
            ram_gib=flavor.ram_gib,
            disk_gib=flavor.disk_gib,
            status=STATUS_MAP.get(cloud.status.upper(), ServerStatus.BUILDING),
            cloud_id=cloud.id,
            cloud_status=cloud.status[:32],
            addresses={k: list(v) for k, v in (cloud.addresses or {}).items()},
            created_at=cloud.created_at or now,
            updated_at=now,
        )
        holding = Holding.objects.create(
            membership=plan["membership"],
            project=plan["project"],
            user=plan["owner"],
            server_ref=str(server.pk),
            vcpus=server.vcpus,
            ram_gib=server.ram_gib,
            disk_gib=server.disk_gib,
            start=now,
        )
        server.holding = holding
        server.save(update_fields=["holding"])
        UnknownServer.objects.filter(cloud_id=cloud.id).update(
            resolution=UnknownServer.Resolution.ADOPTED, last_seen=now
        )
        audit_record(
            actor=actor,
            action="server.adopt",
            target=server,
            project=server.project,
            after={"cloud_id": cloud.id, "owner": plan["owner"].username},
        )
    _record(server, cloud)
    return server


def _delete_in_cloud(backend: Any, cloud: base.Server, *, now: datetime) -> None:
    if cloud.status.upper() != "DELETED" and (cloud.task_state or "") != "deleting":
        backend.delete_server(server_id=cloud.id)
    _upsert_unknown(cloud, now=now, resolution=UnknownServer.Resolution.DELETED)


# -- Admin actions on unknown servers (platform staff) ----------------------------------------


def unknown_server_adopt(*, actor: Any, unknown: UnknownServer) -> Server:
    """Adopt one reported server (its metadata must name a member of the project). Network."""
    from compute.cloud import get_backend

    require(actor, Action.CLOUD_ADMIN, None)
    try:
        cloud = get_backend().get_server(server_id=unknown.cloud_id)
    except base.NotFound as exc:
        raise ServiceError(
            _("The server is gone from the cloud."), code="gone", status=409
        ) from exc
    except base.BackendError as exc:
        raise ServiceError(str(exc), code=exc.code, status=503) from exc
    return _adopt(cloud, now=timezone.now(), actor=actor)


def unknown_server_delete(*, actor: Any, unknown: UnknownServer) -> UnknownServer:
    """Delete one reported server in the cloud. Network."""
    from compute.cloud import get_backend

    require(actor, Action.CLOUD_ADMIN, None)
    try:
        get_backend().delete_server(server_id=unknown.cloud_id)
    except base.BackendError as exc:
        raise ServiceError(str(exc), code=exc.code, status=503) from exc
    with transaction.atomic():
        unknown.resolution = UnknownServer.Resolution.DELETED
        unknown.save(update_fields=["resolution"])
        audit_record(
            actor=actor,
            action="server.orphan_delete",
            target=unknown,
            after={"cloud_id": unknown.cloud_id, "name": unknown.name},
        )
    return unknown


# -- The sync ---------------------------------------------------------------------------------


def sync_run(
    *, apply: bool = True, orphans: str | None = None, now: datetime | None = None
) -> SyncReport:
    """Reconcile every server with the cloud (see the module docstring)."""
    orphans = orphans or settings.TEACHCLOUD_COMPUTE_ORPHANS
    if orphans not in ORPHAN_POLICIES:
        raise ValueError(f"orphans must be one of {ORPHAN_POLICIES}, not {orphans!r}")
    report = SyncReport(apply=apply, orphans=orphans)
    with session_lock(LOCK_SYNC) as taken:
        if not taken:
            report.busy = True
            return report
        _sync(report, now=now or timezone.now())
    if report.changes or report.error:
        log.info("compute sync: %s", report.counts() | {"error": report.error})
    return report


def _sync(report: SyncReport, *, now: datetime) -> None:
    from compute import services
    from compute.cloud import get_backend

    # The portal's view first, then the cloud's (see the module docstring).
    live = list(Server.objects.exclude(status=ServerStatus.DELETED).select_related("project"))
    deleted_ids: set[str] = set(
        Server.objects.filter(status=ServerStatus.DELETED, cloud_id__isnull=False).values_list(
            "cloud_id", flat=True
        )
    )
    ours = set(
        CloudProject.objects.filter(deleted_at__isnull=True)
        .exclude(cloud_id="")
        .values_list("cloud_id", flat=True)
    )
    try:
        backend = get_backend()
        cloud_servers = backend.list_servers()
    except base.BackendError as exc:
        report.error = str(exc)
        log.warning("compute sync: listing the cloud failed: %s %s", exc, exc.detail)
        return
    report.cloud_servers = len(cloud_servers)
    by_id = {cloud.id: cloud for cloud in cloud_servers}
    stale_task = now - timedelta(seconds=services.task_stale_seconds())
    stuck = now - timedelta(minutes=settings.TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES)
    blocked_projects, locked_members = _blocked(now)

    claimed: dict[str, base.Server] = {}  # local pk (str) → cloud server naming it
    for cloud in cloud_servers:
        pk = (cloud.metadata or {}).get("teachcloud_server")
        if pk and cloud.project_id in ours:
            claimed.setdefault(str(pk), cloud)

    accounted: set[str] = set()
    for server in live:
        report.checked += 1
        if server.cloud_id:
            accounted.add(server.cloud_id)
            if server.task and server.updated_at > stale_task:
                continue  # its task is on its way
            blocked = server.project_id in blocked_projects or (
                (server.project_id, server.owner_id) in locked_members
            )
            _follow(
                report,
                backend,
                server,
                by_id.get(server.cloud_id),
                now=now,
                stuck=stuck,
                blocked=blocked,
            )
        elif server.status == ServerStatus.BUILDING:
            claim: base.Server | None = claimed.get(str(server.pk))
            if claim is not None and Server.objects.filter(cloud_id=claim.id).exists():
                claim = None  # another row has it: a leftover, handled below
            if claim is not None:
                accounted.add(claim.id)
                report.add("linked", _("the cloud has it"), server=server.pk, cloud_id=claim.id)
                if report.apply:
                    linked = _link(server.pk, claim)
                    if linked is not None:
                        _record(linked, claim)
            elif server.created_at < stuck:
                fault = _("the cloud never confirmed the build")
                report.add("stuck", fault, server=server.pk)
                if report.apply:
                    _release_stuck(server.pk, fault=fault)

    for cloud in cloud_servers:
        if cloud.id in accounted or cloud.project_id not in ours:
            continue
        if cloud.status.upper() == "DELETED":
            continue
        kind = _classify(cloud, deleted_ids)
        if kind == "leftover":
            _leftover(report, backend, cloud, now=now)
        elif kind == "unknown":
            _unknown(report, backend, cloud, now=now)

    gone = UnknownServer.objects.filter(resolution=UnknownServer.Resolution.REPORTED).exclude(
        cloud_id__in=list(by_id)
    )
    for row in gone:
        report.add("vanished", row.name, cloud_id=row.cloud_id)
    if report.apply:
        gone.delete()


def _follow(
    report: SyncReport,
    backend: Any,
    server: Server,
    cloud: base.Server | None,
    *,
    now: datetime,
    stuck: datetime,
    blocked: bool = False,
) -> None:
    """Apply the cloud's state to one live server that has a cloud id: a build the cloud failed
    or never finished is released, a server that may not run is stopped (see the module
    docstring)."""
    if cloud is None:
        try:  # missing from the listing: make sure before marking it deleted
            cloud = backend.get_server(server_id=server.cloud_id)
        except base.NotFound:
            cloud = None
        except base.BackendError as exc:
            report.add("failed", str(exc), server=server.pk, cloud_id=server.cloud_id or "")
            return
    stale = bool(server.task)
    if cloud is None or cloud.status.upper() == "DELETED":
        report.add(
            "gone",
            _("deleted outside the portal"),
            server=server.pk,
            cloud_id=server.cloud_id or "",
        )
        if report.apply:
            _apply(server, _gone(server), stale=stale, now=now)
        return
    if server.status == ServerStatus.BUILDING and server.task != ServerTask.DELETING:
        status = cloud.status.upper()
        if status == "ERROR":
            fault = cloud.fault or _("the cloud reported an error while building it")
            _abandon_build(report, server, cloud, kind="build_failed", fault=fault)
            return
        if status == "BUILD" and server.created_at < stuck:
            fault = _("the cloud never finished the build")
            _abandon_build(report, server, cloud, kind="stuck", fault=fault)
            return
    differences = _differs(server, cloud)
    for kind, detail in differences:
        report.add(kind, detail, server=server.pk, cloud_id=cloud.id)
    if stale:
        report.add("task_cleared", server.task, server=server.pk, cloud_id=cloud.id)
    # Running while it may not (a lost stop, e.g. at the course end): server_record asks for
    # the stop again once any lost task is cleared.
    stop = blocked and STATUS_MAP.get(cloud.status.upper(), server.status) == ServerStatus.ACTIVE
    if stop:
        report.add(
            "blocked",
            _("running while it may not: stop asked for"),
            server=server.pk,
            cloud_id=cloud.id,
        )
    if report.apply and (differences or stale or stop or server.cloud_status != cloud.status):
        _apply(server, cloud, stale=stale, now=now)


def _apply(server: Server, cloud: base.Server, *, stale: bool, now: datetime) -> None:
    """Record the cloud's view (services.server_record); a lost task (older than the stale
    threshold) is cleared there, under the row lock, before a stop may be asked for."""
    from compute import services

    stale_before = now - timedelta(seconds=services.task_stale_seconds()) if stale else None
    try:
        services.server_record(server=server, cloud=cloud, stale_before=stale_before)
    except Exception:
        log.exception("compute sync: recording server %s failed", server.pk)


def _classify(cloud: base.Server, deleted_ids: set[str]) -> str:
    """A cloud server no live server row accounted for: "leftover" (the portal gave up on it:
    deleted here, or its metadata names a server that failed, was deleted or holds another
    cloud server), "pending" (its metadata names a live server created after this sync read the
    portal: the next sync sees it) or "unknown"."""
    if cloud.id in deleted_ids:
        return "leftover"
    pk = str((cloud.metadata or {}).get("teachcloud_server", ""))
    if not pk.isdigit():
        return "unknown"
    row = Server.objects.filter(pk=int(pk)).values("status", "cloud_id").first()
    if row is None:
        return "unknown"  # not ours after all (another database?)
    if row["status"] in (ServerStatus.ERROR, ServerStatus.DELETED):
        return "leftover"
    if row["cloud_id"] and row["cloud_id"] != cloud.id:
        return "leftover"
    return "pending"


def _leftover(report: SyncReport, backend: Any, cloud: base.Server, *, now: datetime) -> None:
    """A cloud server the portal gave up on (failed create, deleted): delete it."""
    report.add(
        "leftover_deleted",
        _("%(name)s: the portal no longer holds it") % {"name": cloud.name},
        cloud_id=cloud.id,
    )
    if report.apply:
        try:
            _delete_in_cloud(backend, cloud, now=now)
        except base.BackendError as exc:
            report.add("failed", str(exc), cloud_id=cloud.id)


def _unknown(report: SyncReport, backend: Any, cloud: base.Server, *, now: datetime) -> None:
    """A server in one of our projects the portal never made: record it, then the policy."""
    existing = UnknownServer.objects.filter(cloud_id=cloud.id).first()
    if existing is not None and existing.resolution == UnknownServer.Resolution.DELETED:
        report.add("orphan_deleted", _("deletion on its way"), cloud_id=cloud.id)
        if report.apply:
            try:
                _delete_in_cloud(backend, cloud, now=now)
            except base.BackendError as exc:
                report.add("failed", str(exc), cloud_id=cloud.id)
        return
    if existing is None:
        report.add("unknown", cloud.name, cloud_id=cloud.id)
    if report.apply:
        _upsert_unknown(cloud, now=now)
    if report.orphans == "adopt":
        plan, why = _adoption(cloud)
        if plan is None:
            report.add("unknown", _("not adopted: %(why)s") % {"why": why}, cloud_id=cloud.id)
            return
        report.add(
            "adopted",
            _("for %(owner)s in %(project)s")
            % {"owner": plan["owner"].username, "project": plan["project"].code},
            cloud_id=cloud.id,
        )
        if report.apply:
            try:
                _adopt(cloud, now=now)
            except ServiceError as exc:
                report.add("failed", exc.detail, cloud_id=cloud.id)
    elif report.orphans == "delete":
        report.add("orphan_deleted", cloud.name, cloud_id=cloud.id)
        if report.apply:
            try:
                _delete_in_cloud(backend, cloud, now=now)
            except base.BackendError as exc:
                report.add("failed", str(exc), cloud_id=cloud.id)


# -- Catalogue --------------------------------------------------------------------------------


def _mirror(model: Any, items: list[Any], fields: dict[str, Any], *, now: datetime) -> dict:
    """Upsert `items` (cloud dataclasses) into `model` by cloud_id; mark the rest removed."""
    result: dict[str, list[str]] = {"created": [], "updated": [], "removed": [], "restored": []}
    seen = set()
    for item in items:
        values = {name: getter(item) for name, getter in fields.items()}
        seen.add(item.id)
        row = model.objects.filter(cloud_id=item.id).first()
        if row is None:
            model.objects.create(cloud_id=item.id, synced_at=now, **values)
            result["created"].append(values["name"])
            continue
        changed = [name for name, value in values.items() if getattr(row, name) != value]
        if row.removed:
            result["restored"].append(values["name"])
        elif changed:
            result["updated"].append(values["name"])
        for name in changed:
            setattr(row, name, values[name])
        row.removed, row.synced_at = False, now
        row.save(update_fields=[*changed, "removed", "synced_at"])
    for row in model.objects.filter(removed=False).exclude(cloud_id__in=seen):
        row.removed, row.synced_at = True, now
        row.save(update_fields=["removed", "synced_at"])
        result["removed"].append(row.name)
    return result


def catalogue_sync(*, now: datetime | None = None) -> dict[str, Any]:
    """Mirror the cloud's flavors and active images (see the module docstring). The listing is
    outside the transaction; raises BackendError when the cloud fails (nothing written)."""
    from compute.cloud import get_backend

    now = now or timezone.now()
    backend = get_backend()
    flavors = backend.list_flavors()
    images = [image for image in backend.list_images() if image.status.lower() == "active"]
    with transaction.atomic():
        report = {
            "flavors": _mirror(
                Flavor,
                flavors,
                {
                    "name": lambda f: f.name[:200],
                    "vcpus": lambda f: f.vcpus,
                    "ram_mib": lambda f: f.ram_mib,
                    "disk_gib": lambda f: f.disk_gib,
                },
                now=now,
            ),
            "images": _mirror(
                Image,
                images,
                {
                    "name": lambda i: i.name[:200],
                    "min_disk_gib": lambda i: i.min_disk_gib,
                    "min_ram_mib": lambda i: i.min_ram_mib,
                },
                now=now,
            ),
        }
    changed = {kind: {k: v for k, v in result.items() if v} for kind, result in report.items()}
    if any(changed.values()):
        log.info("catalogue sync: %s", changed)
    return report
