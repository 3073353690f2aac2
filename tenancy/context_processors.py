"""What every portal page needs: the role-based navigation of the signed-in user."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _

from tenancy.permissions import ADMIN, ASSISTANT, Action, can, roles_of

NAV_MENU_LIMIT = 15


def _navigation(user: Any) -> list[dict[str, Any]]:
    from tenancy.models import Domain, Project

    roles = roles_of(user)
    nav: list[dict[str, Any]] = [{"label": _("Dashboard"), "url": reverse("portal:dashboard")}]
    if not roles.active:
        return nav
    if roles.platform or roles.finance:
        domains = Domain.objects.all()
    else:
        domains = Domain.objects.filter(pk__in=list(roles.domains))
    domain_items = [
        {"label": d.name, "url": reverse("portal:domain_detail", args=[d.pk])}
        for d in domains.order_by("name")[:NAV_MENU_LIMIT]
    ]
    if domain_items and (roles.platform or roles.domains):
        nav.append({"label": _("Domains"), "children": domain_items})
    managed = [pid for pid, r in roles.projects.items() if r in (ADMIN, ASSISTANT)]
    joined = [pid for pid, r in roles.projects.items() if r not in (ADMIN, ASSISTANT)]
    if managed:
        nav.append(
            {
                "label": _("Projects I manage"),
                "children": [
                    {"label": p.name, "url": reverse("portal:project_detail", args=[p.pk])}
                    for p in Project.objects.filter(pk__in=managed).order_by("name")[
                        :NAV_MENU_LIMIT
                    ]
                ],
            }
        )
    if joined:
        nav.append(
            {
                "label": _("My projects"),
                "children": [
                    {"label": p.name, "url": reverse("portal:project_detail", args=[p.pk])}
                    for p in Project.objects.filter(pk__in=joined).order_by("name")[:NAV_MENU_LIMIT]
                ],
            }
        )
    nav.append({"label": _("Reports"), "url": reverse("portal:reports")})
    if can(user, Action.REPORT_TENANT):  # exactly those who see a wallet
        nav.append({"label": _("Statements"), "url": reverse("portal:statements")})
    if user.is_staff:
        nav.append({"label": _("Administration"), "url": reverse("admin:index")})
    return nav


def portal(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"portal_nav": []}
    return {
        "portal_nav": SimpleLazyObject(lambda: _navigation(user)),
        "portal_roles": SimpleLazyObject(lambda: roles_of(user)),
    }
