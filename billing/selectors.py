"""Scoped reads of billing: what each user may see. Foreign objects are simply not in these
querysets (the API answers 404), using the same role facts as tenancy.permissions."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from billing.models import (
    Allocation,
    Entry,
    Holding,
    Level,
    MemberConsumption,
    Notification,
    PriceVersion,
    RechargeRequest,
    Transaction,
    Wallet,
)
from tenancy.permissions import roles_of


def _sees_everything(user: Any) -> bool:
    roles = roles_of(user)
    return roles.platform or roles.finance


def wallets_visible_to(user: Any) -> QuerySet[Wallet]:
    """Platform and finance staff: every wallet. Domain admins and assistants: their domain's
    wallet and its projects' wallets. Project admins and assistants: their project's wallet.
    Members see no wallet (students pay nothing)."""
    roles = roles_of(user)
    if not roles.active:
        return Wallet.objects.none()
    qs = Wallet.objects.select_related("project")
    if _sees_everything(user):
        return qs
    domains = roles.managed_domain_ids
    return qs.filter(
        Q(domain_id__in=domains)
        | Q(project__domain_id__in=domains)
        | Q(project_id__in=roles.managed_project_ids)
    )


def allocations_visible_to(user: Any) -> QuerySet[Allocation]:
    """Platform and finance staff: all. Domain staff: every level inside their domain. Project
    staff: their project's project and member allocations. A member: their own limits."""
    roles = roles_of(user)
    if not roles.active:
        return Allocation.objects.none()
    qs = Allocation.objects.all()
    if _sees_everything(user):
        return qs
    return qs.filter(
        Q(domain_id__in=roles.managed_domain_ids)
        | Q(
            level__in=[Level.PROJECT, Level.MEMBER],
            project_id__in=roles.managed_project_ids,
        )
        | Q(level=Level.MEMBER, user_id=user.pk)
    )


def transactions_visible_to(user: Any) -> QuerySet[Transaction]:
    """Transactions with an entry on a wallet the user sees; entries prefetched (no N+1)."""
    roles = roles_of(user)
    if not roles.active:
        return Transaction.objects.none()
    qs = Transaction.objects.prefetch_related(
        Prefetch("entries", queryset=Entry.objects.order_by("id"))
    )
    if _sees_everything(user):
        return qs
    visible = wallets_visible_to(user).values("pk")
    return qs.filter(
        Exists(Entry.objects.filter(transaction_id=OuterRef("pk"), wallet_id__in=visible))
    )


def recharge_requests_visible_to(user: Any) -> QuerySet[RechargeRequest]:
    """Requests for the wallets the user sees: the tenant's staff and the receiving side."""
    roles = roles_of(user)
    if not roles.active:
        return RechargeRequest.objects.none()
    qs = RechargeRequest.objects.select_related("wallet", "wallet__project")
    if _sees_everything(user):
        return qs
    return qs.filter(wallet_id__in=wallets_visible_to(user).values("pk"))


def holdings_visible_to(user: Any) -> QuerySet[Holding]:
    """VM holdings (reports): platform and finance staff all; domain staff their domains'
    projects; project staff their projects; anyone their own (also in a project they left)."""
    return _own_or_managed(Holding.objects.all(), user)


def consumption_visible_to(user: Any) -> QuerySet[MemberConsumption]:
    """Members' rated hours (reports), scoped like holdings: a plain member sees their own."""
    return _own_or_managed(MemberConsumption.objects.all(), user)


def _own_or_managed(queryset: QuerySet, user: Any) -> QuerySet:
    """Rows with `user` and `project`: everything for platform and finance staff, else the
    user's own rows and those of the projects and domains they manage."""
    roles = roles_of(user)
    if not roles.active:
        return queryset.none()
    if _sees_everything(user):
        return queryset
    return queryset.filter(
        Q(user_id=user.pk)
        | Q(project__domain_id__in=roles.managed_domain_ids)
        | Q(project_id__in=roles.managed_project_ids)
    )


def prices() -> QuerySet[PriceVersion]:
    """The price plan, newest version first: public to every signed-in user."""
    return PriceVersion.objects.order_by("-effective_from")


def notifications_of(user: Any) -> QuerySet[Notification]:
    """The user's own notifications, newest first."""
    if not roles_of(user).active:
        return Notification.objects.none()
    return Notification.objects.filter(recipient_id=user.pk).order_by("-created_at", "-id")


def notifications_of_tenant(*, domain: Any = None, project: Any = None) -> QuerySet[Notification]:
    """Every notification recorded for one tenant (all recipients and webhook deliveries),
    newest first; recipient and tenant fetched with the rows. A domain's list includes its
    projects' notifications (`notify` records the project's domain with them). The caller
    asks tenancy.permissions whether the user may see the tenant's billing (Action.WALLET_VIEW)."""
    if (domain is None) == (project is None):
        raise ValueError("name exactly one of domain or project")
    scope = {"project": project} if project is not None else {"domain": domain}
    return (
        Notification.objects.filter(**scope)
        .select_related("recipient", "domain", "project")
        .order_by("-created_at", "-id")
    )
