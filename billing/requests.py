"""Allocation requests (SPEC Allocations 6): a project admin asks the domain admins for a larger
project allocation, a member asks the project's staff for a larger limit. Justified, approved or
denied, recorded; approving applies the allocation through `billing.services._allocation_set`,
so every bound still applies.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import AllocationRequest, Level, RequestStatus
from billing.money import parse_amount
from billing.notify import notify
from billing.services import _allocation_set, _quantities, target_of
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record
from tenancy.models import Domain, DomainRole, Membership, Project
from tenancy.permissions import Action, require, roles_of

ADMIN = "admin"
ASSISTANT = "assistant"


def _deciders(request: AllocationRequest) -> list[Any]:
    """Who is told about a new request: the domain's admins for a project request, the
    project's admins and assistants for a member request."""
    if request.level == Level.PROJECT:
        roles = DomainRole.objects.filter(domain_id=request.domain_id, role=ADMIN)
        return [r.user for r in roles.select_related("user")]
    members = Membership.objects.active().filter(
        project_id=request.project_id, role__in=[ADMIN, ASSISTANT]
    )
    return [m.user for m in members.select_related("user")]


@transaction.atomic(durable=True)
def allocation_request_create(
    *,
    actor: Any,
    project: Project | None = None,
    membership: Membership | None = None,
    vcpus: Any,
    ram_gib: Any,
    disk_gib: Any,
    budget: Any = None,
    justification: str,
) -> AllocationRequest:
    """File a request for a larger project allocation (project admins) or a larger own limit
    (any member). One pending request per target at a time."""
    if (project is None) == (membership is None):
        raise ServiceError(_("Name exactly one of project or membership."), code="one_target")
    if membership is not None:
        project = membership.project
        if membership.user_id != getattr(actor, "pk", None):
            raise ServiceError(
                _("A member asks only for their own limit."), code="not_own_membership", status=403
            )
        require(actor, Action.REQUEST_LIMIT, project)
        level = Level.MEMBER
    else:
        require(actor, Action.REQUEST_ALLOCATION, project)
        level = Level.PROJECT
    assert project is not None
    new = _quantities(vcpus, ram_gib, disk_gib)
    text = (justification or "").strip()
    if not text:
        raise ServiceError(
            _("Say why more is needed."),
            code="justification_required",
            fields={"justification": [_("This field is required.")]},
        )
    money = None
    if budget is not None:
        if level != Level.MEMBER:
            raise ServiceError(
                _("Only a member's limit has a budget."),
                code="budget_not_member",
                fields={"budget": [_("Only for memberships.")]},
            )
        money = parse_amount(budget, field="budget", allow_zero=True)
    # Serialise requests inside the domain so two concurrent requests cannot both be pending.
    Domain.objects.select_for_update().get(pk=project.domain_id)
    pending = AllocationRequest.objects.filter(
        status=RequestStatus.PENDING, level=level, project=project
    )
    if membership is not None:
        pending = pending.filter(membership=membership)
    if pending.exists():
        raise Conflict(_("A request for this is already pending."), code="request_pending")
    request = AllocationRequest.objects.create(
        level=level,
        domain_id=project.domain_id,
        project=project,
        membership=membership,
        budget=money,
        justification=text,
        requested_by=actor,
        **new,
    )
    audit_record(
        actor=actor,
        action="allocation_request.create",
        target=request,
        project=project,
        after={
            "level": level,
            **new,
            "budget": str(money) if money is not None else None,
            "justification": text,
        },
    )
    if level == Level.PROJECT:
        subject = _("%(project)s asks for a larger allocation") % {"project": project.name}
    else:
        subject = _("%(user)s asks for a larger limit in %(project)s") % {
            "user": actor,
            "project": project.name,
        }
    body = _("Asked: %(vcpus)d vCPU, %(ram)d GiB RAM, %(disk)d GiB disk.\n\n%(why)s") % {
        "vcpus": new["vcpus"],
        "ram": new["ram_gib"],
        "disk": new["disk_gib"],
        "why": text,
    }
    notify(
        event="allocation_request.created",
        users=_deciders(request),
        subject=subject,
        body=body,
        project=project,
    )
    return request


def _require_decide(actor: Any, request: AllocationRequest) -> None:
    if request.level == Level.PROJECT:
        require(actor, Action.ALLOCATE_PROJECT, request.project)
    else:
        require(actor, Action.SET_MEMBER_LIMIT, request.project)


def may_decide(actor: Any, request: AllocationRequest) -> bool:
    """For pages: may `actor` approve or deny `request` (permission and not their own)?"""
    from tenancy.permissions import can

    action = Action.ALLOCATE_PROJECT if request.level == Level.PROJECT else Action.SET_MEMBER_LIMIT
    return request.requested_by_id != getattr(actor, "pk", None) and can(
        actor, action, request.project
    )


@transaction.atomic(durable=True)
def allocation_request_decide(
    *, actor: Any, request: AllocationRequest, approve: bool, note: str = ""
) -> AllocationRequest:
    """Approve (the allocation is applied, every bound checked) or deny a pending request."""
    Domain.objects.select_for_update().get(pk=request.domain_id)
    request = (
        AllocationRequest.objects.select_for_update(of=("self",))
        .select_related("project", "membership", "membership__project", "requested_by")
        .get(pk=request.pk)
    )
    _require_decide(actor, request)
    if request.requested_by_id == getattr(actor, "pk", None):
        raise ServiceError(_("Nobody decides their own request."), code="own_request", status=403)
    if request.status != RequestStatus.PENDING:
        raise Conflict(_("This request has already been decided."), code="already_decided")
    if approve:
        if request.level == Level.PROJECT:
            target = target_of(project=request.project)
        else:
            target = target_of(membership=request.membership)
        _allocation_set(
            actor=actor,
            target=target,
            vcpus=request.vcpus,
            ram_gib=request.ram_gib,
            disk_gib=request.disk_gib,
            budget=request.budget,
        )
    request.status = RequestStatus.APPROVED if approve else RequestStatus.DENIED
    request.decided_by, request.decided_at = actor, timezone.now()
    request.decision_note = (note or "").strip()
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    audit_record(
        actor=actor,
        action=f"allocation_request.{request.status}",
        target=request,
        project=request.project,
        after={"status": request.status, "note": request.decision_note},
    )
    if approve:
        subject = _("Your allocation request was approved")
    else:
        subject = _("Your allocation request was denied")
    body = _("%(project)s: %(vcpus)d vCPU, %(ram)d GiB RAM, %(disk)d GiB disk.") % {
        "project": request.project.name,
        "vcpus": request.vcpus,
        "ram": request.ram_gib,
        "disk": request.disk_gib,
    }
    if request.decision_note:
        body += "\n\n" + request.decision_note
    notify(
        event=f"allocation_request.{request.status}",
        users=[request.requested_by],
        subject=subject,
        body=body,
        project=request.project,
    )
    return request


def allocation_requests_visible_to(user: Any) -> QuerySet[AllocationRequest]:
    """Platform and finance staff: all. Otherwise your own requests, project requests of the
    domains you administer, member requests of the projects you manage (or their domain's)."""
    roles = roles_of(user)
    if not roles.active:
        return AllocationRequest.objects.none()
    qs = AllocationRequest.objects.select_related(
        "project", "membership__user", "requested_by", "decided_by"
    )
    if roles.platform or roles.finance:
        return qs
    admin_domains = [d for d, role in roles.domains.items() if role == ADMIN]
    return qs.filter(
        Q(requested_by_id=user.pk)
        | Q(level=Level.PROJECT, domain_id__in=admin_domains)
        | Q(
            Q(project_id__in=roles.managed_project_ids) | Q(domain_id__in=roles.managed_domain_ids),
            level=Level.MEMBER,
        )
    )
