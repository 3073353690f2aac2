"""Billing's decisions carried out on real servers (SPEC "Locking, credit, purge" 1–3, 5).

Billing records what has to happen as `billing.ComputeRequest` rows in the transaction of the
decision (lock → stop, unlock → restart, budget used up → stop the member's VMs, purge → delete);
`compute_requests_process` carries them out. It runs every minute (Celery beat) and right after
each billing run (enqueued on commit).

Rules:
- Requests are taken oldest first, one domain's requests strictly in order: while an older
  request of a domain is not done, the newer ones wait (a restart never overtakes its stop).
- Two runners never carry out one request at once: each request is held by a PostgreSQL
  advisory lock for the whole of its processing (also across the cloud calls, which run outside
  any transaction) and its row is claimed with `select_for_update(skip_locked=True)`.
- A request is done (`done_at`) only when the servers' state says so — stop: no server in scope
  is running or building; restart: every server in scope that was running at lock time and may
  run again is running; delete: every server in scope is deleted, and so are the cloud
  project(s) (and, for a domain, the Keystone domain). The cloud calls themselves are the
  lifecycle tasks of compute.services; a failed call clears the server's task and records its
  fault, so the request stays undone (logged) and the next run issues what is still missing.
- stop: domain → every server of its projects, project → its servers, membership → the member's
  servers in the project; cause `lock` (tenant) or `budget` (member). A stop whose target is no
  longer locked when it is processed (unlocked meanwhile) is obsolete: done without action.
- restart: the servers in scope stopped by a lock or a budget that were running at lock time,
  whose project and domain are not locked or purged, whose owner is still an unlocked member,
  and whose course has not ended.
- delete (purge): every server in scope, then any server left in the cloud project(s) (unknown
  to the portal), then the Keystone project(s) and, for a domain, the Keystone domain;
  CloudProject/CloudDomain get `deleted_at`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from billing.models import ComputeAction, ComputeRequest
from compute.backends.base import BackendError, NotFound
from compute.models import CloudDomain, CloudProject, Server, ServerStatus, StopCause
from teachcloud.locks import session_lock
from tenancy.audit import audit_record
from tenancy.models import Domain, Membership, Project, TenantStatus

log = logging.getLogger(__name__)

#: Advisory lock namespaces (billing uses 73_001–73_003).
LOCK_REQUEST = 74_001
LOCK_SYNC = 74_002

BLOCKED: tuple[str, ...] = (TenantStatus.LOCKED, TenantStatus.PURGED)


# -- Scope ------------------------------------------------------------------------------------


def scope_servers(request: ComputeRequest) -> QuerySet[Server]:
    """Every server (any status) the request is about."""
    servers = Server.objects.all()
    if request.membership_id is not None:
        membership = Membership.objects.get(pk=request.membership_id)
        return servers.filter(project_id=membership.project_id, owner_id=membership.user_id)
    if request.project_id is not None:
        return servers.filter(project_id=request.project_id)
    return servers.filter(project__domain_id=request.domain_id)


def _target_locked(request: ComputeRequest) -> bool:
    """Is what the stop was for still locked (member, project or its domain)?"""
    if request.membership_id is not None:
        membership = Membership.objects.select_related("project__domain").get(
            pk=request.membership_id
        )
        project = membership.project
        return membership.locked or project.status in BLOCKED or project.domain.status in BLOCKED
    if request.project_id is not None:
        project = Project.objects.select_related("domain").get(pk=request.project_id)
        return project.status in BLOCKED or project.domain.status in BLOCKED
    return Domain.objects.get(pk=request.domain_id).status in BLOCKED


def _today() -> Any:
    return timezone.now().astimezone(ZoneInfo(settings.TIME_ZONE)).date()


def restartable(servers: QuerySet[Server]) -> QuerySet[Server]:
    """Of `servers`, those a restart may start: stopped by a lock or a budget while running,
    project and domain not locked, owner an unlocked member, course not ended."""
    unlocked_member = Membership.objects.filter(
        project_id=OuterRef("project_id"), user_id=OuterRef("owner_id"), locked=False
    )
    return (
        servers.filter(
            status=ServerStatus.STOPPED,
            running_at_lock=True,
            stop_cause__in=[StopCause.LOCK, StopCause.BUDGET],
        )
        .exclude(project__status__in=BLOCKED)
        .exclude(project__domain__status__in=BLOCKED)
        .exclude(project__end_date__lte=_today())
        .filter(Exists(unlocked_member))
    )


def _outstanding(request: ComputeRequest) -> QuerySet[Server]:
    """The servers in scope whose state does not yet say the request is carried out."""
    servers = scope_servers(request)
    if request.action == ComputeAction.STOP:
        return servers.filter(status__in=[ServerStatus.BUILDING, ServerStatus.ACTIVE])
    if request.action == ComputeAction.RESTART:
        return restartable(servers)
    return servers.exclude(status=ServerStatus.DELETED)


def _stop_cause(request: ComputeRequest) -> str:
    return StopCause.BUDGET if request.membership_id is not None else StopCause.LOCK


def _issue(request: ComputeRequest) -> int:
    """Ask the lifecycle services for what is still missing (inside the claiming transaction;
    they call the cloud after commit and leave servers whose task is in flight alone)."""
    from compute import services

    outstanding = _outstanding(request)
    if request.action == ComputeAction.STOP:
        return services.servers_stop_for(servers=outstanding, cause=_stop_cause(request))
    if request.action == ComputeAction.RESTART:
        return services.servers_restart_for(servers=outstanding)
    return services.servers_delete_for(servers=outstanding, reason=request.reason_text)


# -- Purge: the cloud projects and domain -----------------------------------------------------


def _cloud_projects(request: ComputeRequest) -> QuerySet[CloudProject]:
    projects = CloudProject.objects.filter(deleted_at__isnull=True)
    if request.project_id is not None:
        return projects.filter(project_id=request.project_id)
    return projects.filter(project__domain_id=request.domain_id)


def _purge_cloud(request: ComputeRequest, *, now: datetime) -> None:
    """Delete what is left in the cloud project(s) of a purged tenant, then the project(s) and,
    for a domain, the Keystone domain. Network calls, outside any transaction; idempotent."""
    from compute.cloud import get_backend
    from compute.models import UnknownServer
    from compute.services import action_wait

    backend = None
    for cloud_project in list(_cloud_projects(request)):
        if cloud_project.cloud_id:
            backend = backend or get_backend()
            leftovers = backend.list_servers(project_id=cloud_project.cloud_id)
            for leftover in leftovers:
                backend.delete_server(server_id=leftover.id)
                UnknownServer.objects.update_or_create(
                    cloud_id=leftover.id,
                    defaults={
                        "cloud_project_id": cloud_project.cloud_id,
                        "name": leftover.name[:255],
                        "cloud_status": leftover.status,
                        "metadata": dict(leftover.metadata),
                        "last_seen": now,
                        "resolution": UnknownServer.Resolution.DELETED,
                    },
                )
            for leftover in leftovers:  # gone before their project goes (NotFound: gone)
                with suppress(NotFound):
                    backend.wait_for_status(
                        server_id=leftover.id, statuses={"DELETED"}, timeout=action_wait()
                    )
            backend.delete_project(project_id=cloud_project.cloud_id)
        CloudProject.objects.filter(pk=cloud_project.pk).update(deleted_at=now, last_error="")
    if request.project_id is None:
        cloud_domain = CloudDomain.objects.filter(
            domain_id=request.domain_id, deleted_at__isnull=True
        ).first()
        if cloud_domain is not None:
            if cloud_domain.cloud_id:
                backend = backend or get_backend()
                backend.delete_domain(domain_id=cloud_domain.cloud_id)
            CloudDomain.objects.filter(pk=cloud_domain.pk).update(deleted_at=now)


# -- The run ----------------------------------------------------------------------------------


def _claim_and_issue(pk: int) -> tuple[ComputeRequest | None, int, bool]:
    """One short transaction: claim the row (skip it if another holds it), issue what is
    missing. Returns (request or None, servers asked, obsolete)."""
    with transaction.atomic():
        request = (
            ComputeRequest.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, done_at__isnull=True)
            .first()
        )
        if request is None:
            return None, 0, False
        if request.action == ComputeAction.STOP and not _target_locked(request):
            return request, 0, True
        return request, _issue(request), False


def _mark_done(request: ComputeRequest, *, now: datetime, asked: int, note: str = "") -> bool:
    with transaction.atomic():
        updated = ComputeRequest.objects.filter(pk=request.pk, done_at__isnull=True).update(
            done_at=now
        )
        if not updated:
            return False
        project = Project.objects.filter(pk=request.project_id).first()
        audit_record(
            actor=None,
            action=f"compute.{request.action}",
            target=request,
            domain=Domain.objects.filter(pk=request.domain_id).first(),
            project=project,
            after={
                "reason": request.reason_text,
                "membership": request.membership_id,
                "servers_asked": asked,
                **({"note": note} if note else {}),
            },
        )
    return True


def _process_one(pk: int) -> str:
    """Carry out one request as far as possible now: "done", "obsolete", "pending" (the
    servers' tasks are on their way or failed: the next run continues), "failed" (the cloud
    refused; logged) or "skipped" (another runner has it, or it is done)."""
    request, asked, obsolete = _claim_and_issue(pk)
    if request is None:
        return "skipped"
    now = timezone.now()
    if obsolete:
        _mark_done(request, now=now, asked=0, note="target no longer locked")
        return "obsolete"
    # After commit the lifecycle tasks ran (eager) or are queued (worker): look again.
    outstanding = _outstanding(request)
    if outstanding.exists():
        faults = list(outstanding.exclude(fault="").values_list("pk", "fault")[:5])
        if faults:
            log.warning(
                "compute request %s (%s) not done yet, cloud faults: %s",
                request.pk,
                request.action,
                faults,
            )
        return "pending"
    if request.action == ComputeAction.DELETE:
        try:
            _purge_cloud(request, now=now)
        except BackendError as exc:
            log.warning(
                "compute request %s (purge): the cloud failed, retried next run: %s %s",
                request.pk,
                exc,
                exc.detail,
            )
            CloudProject.objects.filter(pk__in=_cloud_projects(request).values("pk")).update(
                last_error=str(exc)[:2000]
            )
            return "failed"
    _mark_done(request, now=now, asked=asked)
    return "done"


def compute_requests_process(*, limit: int = 100) -> dict[str, int]:
    """Carry out undone ComputeRequests, oldest first (see the module docstring)."""
    result = {"done": 0, "obsolete": 0, "pending": 0, "failed": 0, "skipped": 0, "waiting": 0}
    candidates = list(
        ComputeRequest.objects.filter(done_at__isnull=True)
        .order_by("created_at", "pk")
        .values_list("pk", "domain_id")[:limit]
    )
    blocked: set[Any] = set()  # domains with an older request not done
    for pk, domain_id in candidates:
        if domain_id in blocked:
            result["waiting"] += 1
            continue
        try:
            with session_lock(LOCK_REQUEST, pk) as taken:
                outcome = _process_one(pk) if taken else "skipped"
        except Exception:
            log.exception("compute request %s failed", pk)
            outcome = "failed"
        result[outcome] += 1
        if outcome not in ("done", "obsolete"):
            blocked.add(domain_id)
    if any(result[k] for k in ("pending", "failed")):
        log.info("compute requests: %s", result)
    return result


def requests_waiting() -> bool:
    """Is any ComputeRequest not done (billing_run enqueues the processing only then)?"""
    return ComputeRequest.objects.filter(done_at__isnull=True).exists()


__all__ = [
    "LOCK_REQUEST",
    "LOCK_SYNC",
    "compute_requests_process",
    "requests_waiting",
    "restartable",
    "scope_servers",
]
