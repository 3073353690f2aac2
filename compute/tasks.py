"""Celery tasks of the server lifecycle: thin wrappers around compute.services.

Each is sent by a service with `transaction.on_commit`, so it runs after the reservation or the
state change is committed, and calls the cloud outside any transaction. Expected cloud failures
are recorded on the rows by the services (fault, error status); a task never raises for them, so
an eager run (tests, `CELERY_TASK_ALWAYS_EAGER`) never breaks the request that sent it. The
periodic sync (compute.tasks_jobs) picks up whatever a lost task left behind.
"""

from __future__ import annotations

import logging

from celery import shared_task

from compute import services
from compute.backends.base import BackendError
from teachcloud.errors import ServiceError
from tenancy.models import Domain, Project

logger = logging.getLogger(__name__)


@shared_task(name="compute.tasks.server_build")
def server_build(server_id: int) -> str | None:
    """Create a reserved server in the cloud and record active or error."""
    server = services.server_build(server_id=server_id)
    return server.status if server is not None else None


@shared_task(name="compute.tasks.server_action")
def server_action(server_id: int, action: str, hard: bool = False) -> str | None:
    """start / stop / reboot / delete / rename a server in the cloud and record the outcome."""
    server = services.server_action(server_id=server_id, action=action, hard=hard)
    return server.status if server is not None else None


@shared_task(name="compute.tasks.quota_sync")
def quota_sync(project_id: int) -> bool:
    """Mirror a project's allocation into its Keystone project's compute quota."""
    project = Project.objects.select_related("domain").filter(pk=project_id).first()
    if project is None:
        return False
    try:
        services.quota_sync(project=project)
    except (BackendError, ServiceError) as exc:
        logger.warning("quota sync of project %s failed: %s", project_id, exc)
        return False
    return True


@shared_task(name="compute.tasks.cloud_tenant_ensure")
def cloud_tenant_ensure(domain_id: int | None = None, project_id: int | None = None) -> bool:
    """Create the Keystone domain (and project) of a new TeachCloud domain (or project)."""
    try:
        if project_id is not None:
            project = Project.objects.select_related("domain").filter(pk=project_id).first()
            if project is not None:
                services.cloud_project_ensure(project=project)
        elif domain_id is not None:
            domain = Domain.objects.filter(pk=domain_id).first()
            if domain is not None:
                services.cloud_domain_ensure(domain=domain)
    except (BackendError, ServiceError) as exc:
        logger.warning(
            "cloud tenant of domain %s / project %s not ensured: %s", domain_id, project_id, exc
        )
        return False
    return True


@shared_task(name="compute.tasks.keypair_cloud_delete")
def keypair_cloud_delete(name: str) -> bool:
    """Remove a deleted portal key pair's Nova key pair (compute.keypairs)."""
    from compute import keypairs

    return keypairs.keypair_cloud_delete(name=name)
