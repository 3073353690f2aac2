"""The audit log: written by services inside the transaction of the change they record."""

from __future__ import annotations

import contextvars
from typing import Any

from django.db import models

from tenancy.models import AuditEvent, Domain, Project

# The client address of the current request, set by AuditContextMiddleware.
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_ip", default=None)


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """A JSON-safe copy of some fields of a model instance, for before/after."""
    data: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, models.Model):
            value = value.pk
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
            value = str(value)
        data[name] = value
    return data


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    domain: Domain | None = None,
    project: Project | None = None,
) -> AuditEvent:
    """Append one audit event. Call it inside the service's transaction."""
    if project is not None and domain is None:
        domain = project.domain
    real_actor = actor if getattr(actor, "pk", None) is not None else None
    return AuditEvent.objects.create(
        actor=real_actor,
        actor_repr=str(real_actor) if real_actor else "system",
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_repr=str(target)[:300],
        domain=domain,
        project=project,
        before=before,
        after=after,
        ip=current_ip.get(),
    )
