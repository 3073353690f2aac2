"""What every portal page needs from compute: the VM entries of the navigation and whether the
cloud is the simulated development cloud (a badge in the layout)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _

from tenancy.permissions import ADMIN, ASSISTANT, roles_of

NAV_MENU_LIMIT = 15


def _simulated() -> bool:
    try:
        from compute.cloud import cloud_is_simulated

        return bool(cloud_is_simulated())
    except Exception:
        return False


def _navigation(user: Any) -> list[dict[str, Any]]:
    """Students: "My VMs". Staff: a "VMs" menu with their own VMs, every VM of the projects
    they manage and the overview of the domains they manage."""
    from tenancy.models import Domain, Project

    roles = roles_of(user)
    if not roles.active:
        return []
    mine = {"label": _("My VMs"), "url": reverse("portal:my_servers")}
    managed = [pid for pid, r in roles.projects.items() if r in (ADMIN, ASSISTANT)]
    if roles.platform:
        domains = Domain.objects.all()
    else:
        domains = Domain.objects.filter(pk__in=list(roles.domains))
    children: list[dict[str, Any]] = [mine] if roles.projects else []
    if managed:
        children += [
            {
                "label": _("VMs of %(project)s") % {"project": p.name},
                "url": reverse("portal:project_servers", args=[p.pk]),
            }
            for p in Project.objects.filter(pk__in=managed).order_by("name")[:NAV_MENU_LIMIT]
        ]
    if roles.platform or roles.domains:
        children += [
            {
                "label": _("VM overview of %(domain)s") % {"domain": d.name},
                "url": reverse("portal:domain_servers", args=[d.pk]),
            }
            for d in domains.order_by("name")[:NAV_MENU_LIMIT]
        ]
    if children == [mine]:
        return [mine]
    if not children:
        return []
    return [{"label": _("VMs"), "children": children}]


def compute(request: HttpRequest) -> dict[str, Any]:
    context: dict[str, Any] = {"cloud_simulated": SimpleLazyObject(_simulated)}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        context["compute_nav"] = []
    else:
        context["compute_nav"] = SimpleLazyObject(lambda: _navigation(user))
    return context
