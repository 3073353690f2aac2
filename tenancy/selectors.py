"""Scoped reads: what each user may see. Foreign objects are simply not in these querysets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import BooleanField, Case, Exists, OuterRef, Q, QuerySet, Value, When

from accounts.models import User
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project
from tenancy.permissions import roles_of


def _sees_everything(user: Any) -> bool:
    roles = roles_of(user)
    return roles.platform or roles.finance


def domains_visible_to(user: Any) -> QuerySet[Domain]:
    roles = roles_of(user)
    if not roles.active:
        return Domain.objects.none()
    if _sees_everything(user):
        return Domain.objects.all()
    ids = set(roles.domains) | set(roles.project_domains.values())
    if roles.home_domain_id is not None:
        ids.add(roles.home_domain_id)
    return Domain.objects.filter(pk__in=ids)


def projects_visible_to(user: Any) -> QuerySet[Project]:
    roles = roles_of(user)
    if not roles.active:
        return Project.objects.none()
    qs = Project.objects.select_related("domain")
    if _sees_everything(user):
        return qs
    return qs.filter(Q(domain_id__in=roles.domains) | Q(pk__in=roles.projects))


def projects_managed_by(user: Any) -> QuerySet[Project]:
    """Projects whose daily work (members, enrollment, imports) the user may do."""
    roles = roles_of(user)
    if not roles.active:
        return Project.objects.none()
    qs = Project.objects.select_related("domain")
    if roles.platform:
        return qs
    return qs.filter(Q(domain_id__in=roles.domains) | Q(pk__in=roles.managed_project_ids))


def users_visible_to(user: Any) -> QuerySet[User]:
    """Self; for admins and assistants, the users of their domains and of their projects.

    A project admin also sees the users of the project's domain, so they can add them.
    """
    roles = roles_of(user)
    if not roles.active:
        return User.objects.none()
    qs = User.objects.select_related("home_domain")
    if _sees_everything(user):
        return qs
    domain_ids = set(roles.domains)
    domain_ids |= {roles.project_domains[pid] for pid in roles.managed_project_ids}
    visible = Q(pk=user.pk) | Q(home_domain_id__in=domain_ids)
    if domain_ids:
        visible |= Q(memberships__project__domain_id__in=set(roles.domains))
        visible |= Q(memberships__project_id__in=roles.managed_project_ids)
    return qs.filter(pk__in=User.objects.filter(visible).values("pk"))


def with_personal_data(queryset: QuerySet[User], viewer: Any) -> QuerySet[User]:
    """Annotate `personal`: may the viewer read the user's personal data (student/staff number,
    email, phone)? The rows of `users_visible_to` include the users of a managed project's
    domain (a project admin adds them) whose personal data is not the viewer's business: this
    is exactly `can(viewer, USER_VIEW, user)` (self; platform and finance staff; staff of the
    user's home domain; staff of a project the user is in, or of that project's domain),
    computed in the query."""
    roles = roles_of(viewer)
    if _sees_everything(viewer):
        return queryset.annotate(personal=Value(True, output_field=BooleanField()))
    domains, projects = set(roles.domains), roles.managed_project_ids
    in_scope = Membership.objects.filter(user_id=OuterRef("pk")).filter(
        Q(project__domain_id__in=domains) | Q(project_id__in=projects)
    )
    return queryset.annotate(
        personal=Case(
            When(Q(pk=viewer.pk) | Q(home_domain_id__in=domains) | Exists(in_scope), then=True),
            default=False,
            output_field=BooleanField(),
        )
    )


def memberships_visible_to(user: Any) -> QuerySet[Membership]:
    roles = roles_of(user)
    if not roles.active:
        return Membership.objects.none()
    qs = Membership.objects.select_related("project", "project__domain", "user")
    if _sees_everything(user):
        return qs
    return qs.filter(
        Q(user_id=user.pk)
        | Q(project__domain_id__in=roles.domains)
        | Q(project_id__in=roles.managed_project_ids)
    )


def domain_roles_visible_to(user: Any) -> QuerySet[DomainRole]:
    roles = roles_of(user)
    if not roles.active:
        return DomainRole.objects.none()
    qs = DomainRole.objects.select_related("domain", "user")
    if _sees_everything(user):
        return qs
    return qs.filter(Q(user_id=user.pk) | Q(domain_id__in=roles.domains))


def audit_events_visible_to(user: Any) -> QuerySet[AuditEvent]:
    """Platform staff see everything; admins and assistants see their own scope."""
    roles = roles_of(user)
    if not roles.active:
        return AuditEvent.objects.none()
    qs = AuditEvent.objects.select_related("actor", "domain", "project")
    if roles.platform:
        return qs
    return qs.filter(Q(domain_id__in=roles.domains) | Q(project_id__in=roles.managed_project_ids))


def project_admins(project: Project) -> QuerySet[Membership]:
    return Membership.objects.active().filter(project=project, role__in=["admin", "assistant"])


def with_consumption(queryset: QuerySet[Membership]) -> QuerySet[Membership]:
    """Annotate each membership with its rated consumption (one subquery, no N+1)."""
    from django.db.models import DecimalField, OuterRef, Subquery, Sum
    from django.db.models.functions import Coalesce

    from billing.models import MemberConsumption

    total = (
        MemberConsumption.objects.filter(
            project_id=OuterRef("project_id"), user_id=OuterRef("user_id")
        )
        .values("project_id")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return queryset.annotate(
        consumption_total=Coalesce(
            Subquery(total, output_field=DecimalField(max_digits=18, decimal_places=4)),
            Decimal("0"),
            output_field=DecimalField(max_digits=18, decimal_places=4),
        )
    )


def membership_consumption(membership: Membership) -> Decimal:
    """The member's rated consumption in the project (CNY, 4 places, Charging 3)."""
    annotated = getattr(membership, "consumption_total", None)
    if annotated is None:
        from django.db.models import Sum

        from billing.models import MemberConsumption

        annotated = MemberConsumption.objects.filter(
            project_id=membership.project_id, user_id=membership.user_id
        ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return Decimal(annotated).quantize(Decimal("0.0001"))
