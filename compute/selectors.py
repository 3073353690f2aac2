"""Scoped reads of compute: which servers a user sees, which flavors and images a project may
use, and how much room a member has left. Foreign servers are simply not in these querysets (the
API answers 404), using the same role facts as tenancy.permissions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from billing.models import Allocation, Holding, Level
from compute.models import Flavor, Image, KeyPair, Server
from tenancy.models import Domain, Project
from tenancy.permissions import roles_of

RESOURCES = ("vcpus", "ram_gib", "disk_gib")
ZERO = dict.fromkeys(RESOURCES, 0)


def servers_visible_to(user: Any) -> QuerySet[Server]:
    """Platform and finance staff: every server. Domain admins and assistants: every server of
    their domains' projects. Project admins and assistants: every server of their projects. A
    member: their own servers (also in a project they have left). Every status is included."""
    roles = roles_of(user)
    if not roles.active:
        return Server.objects.none()
    qs = Server.objects.select_related("project__domain", "owner", "flavor", "image")
    if roles.platform or roles.finance:
        return qs
    return qs.filter(
        Q(owner_id=user.pk)
        | Q(project__domain_id__in=roles.managed_domain_ids)
        | Q(project_id__in=roles.managed_project_ids)
    )


def _allowed_for(model: type[Flavor] | type[Image], project: Project) -> QuerySet[Any]:
    """Offered, still in the cloud, and either unrestricted (no domains and no projects chosen)
    or chosen for the project or its domain."""
    field = model._meta.model_name  # "flavor" | "image"
    domains = model.domains.through.objects.filter(**{f"{field}_id": OuterRef("pk")})
    projects = model.projects.through.objects.filter(**{f"{field}_id": OuterRef("pk")})
    unrestricted = ~Exists(domains) & ~Exists(projects)
    chosen = Exists(domains.filter(domain_id=project.domain_id)) | Exists(
        projects.filter(project_id=project.pk)
    )
    return model.objects.filter(enabled=True, removed=False).filter(unrestricted | chosen)


def flavors_for(project: Project) -> QuerySet[Flavor]:
    """The flavors members of `project` may boot (smallest first)."""
    return _allowed_for(Flavor, project)


def images_for(project: Project) -> QuerySet[Image]:
    """The images members of `project` may boot (by name)."""
    return _allowed_for(Image, project)


def _values(allocation: Allocation | None) -> dict[str, int] | None:
    if allocation is None:
        return None
    return {r: int(getattr(allocation, r)) for r in RESOURCES}


def _held(**filters: Any) -> dict[str, int]:
    totals = Holding.objects.filter(end__isnull=True, **filters).aggregate(
        **{r: Sum(r) for r in RESOURCES}
    )
    return {r: int(totals[r] or 0) for r in RESOURCES}


def _minus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {r: max(a[r] - b[r], 0) for r in RESOURCES}


def member_room(*, project: Project, user: Any) -> dict[str, Any]:
    """What `user` may still boot in `project`.

    `limit` is the member's current limit (None: no limit set, so nothing can be created),
    `held` what their live servers hold, `remaining` the smaller of what their limit and what
    the project's allocation leave, `project_remaining` what the project's allocation leaves
    (no project allocation counts as zero). Also `project_allocation`, `project_held`."""
    limit = _values(
        Allocation.objects.filter(
            level=Level.MEMBER, project=project, user=user, end__isnull=True
        ).first()
    )
    allocation = _values(
        Allocation.objects.filter(level=Level.PROJECT, project=project, end__isnull=True).first()
    )
    held = _held(project=project, user=user)
    project_held = _held(project=project)
    project_remaining = _minus(allocation or ZERO, project_held)
    member_remaining = _minus(limit, held) if limit is not None else dict(ZERO)
    remaining = {r: min(member_remaining[r], project_remaining[r]) for r in RESOURCES}
    return {
        "limit": limit,
        "held": held,
        "remaining": remaining,
        "project_allocation": allocation,
        "project_held": project_held,
        "project_remaining": project_remaining,
    }


def flavor_fits(flavor: Flavor, room: dict[str, Any]) -> bool:
    """Would a server of this flavor fit in `room` (a `member_room` answer)?"""
    asked = {"vcpus": flavor.vcpus, "ram_gib": flavor.ram_gib, "disk_gib": flavor.disk_gib}
    return room["limit"] is not None and all(asked[r] <= room["remaining"][r] for r in RESOURCES)


def project_overview(domain: Domain) -> list[dict[str, Any]]:
    """Per project of the domain (by code): servers counted by status, what live servers hold,
    and the project's current allocation (None when it has none). Four queries in all."""
    projects = list(Project.objects.filter(domain=domain).order_by("code"))
    by_status: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        Server.objects.filter(project__domain=domain)
        .values("project_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        by_status[row["project_id"]][row["status"]] = row["n"]
    held: dict[int, dict[str, int]] = {}
    for sums in (
        Holding.objects.filter(project__domain=domain, end__isnull=True)
        .values("project_id")
        .annotate(**{r: Sum(r) for r in RESOURCES})
        .order_by()
    ):
        values: dict[str, Any] = dict(sums)
        held[values["project_id"]] = {r: int(values[r] or 0) for r in RESOURCES}
    allocations = {
        a.project_id: _values(a)
        for a in Allocation.objects.filter(level=Level.PROJECT, domain=domain, end__isnull=True)
    }
    return [
        {
            "project": project,
            "servers": by_status.get(project.pk, {}),
            "servers_live": sum(
                n for status, n in by_status.get(project.pk, {}).items() if status != "deleted"
            ),
            "held": held.get(project.pk, dict(ZERO)),
            "allocation": allocations.get(project.pk),
        }
        for project in projects
    ]


def keypairs_of(user: Any) -> QuerySet[KeyPair]:
    """A user's own SSH key pairs, by name. Nobody sees anybody else's (platform staff
    included: a key is only its owner's to use)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return KeyPair.objects.none()
    return KeyPair.objects.filter(user_id=user.pk).order_by("name", "pk")
