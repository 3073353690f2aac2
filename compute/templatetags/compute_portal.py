"""Template helpers of compute's portal pages: status badges of VMs."""

from __future__ import annotations

from django import template

from compute.models import ServerStatus

register = template.Library()

BADGES = {
    ServerStatus.BUILDING: "info",
    ServerStatus.ACTIVE: "success",
    ServerStatus.STOPPED: "secondary",
    ServerStatus.ERROR: "danger",
    ServerStatus.DELETED: "dark",
}


@register.filter
def server_badge(status: str) -> str:
    """The Bootstrap colour of a VM status badge (`text-bg-{{ status|server_badge }}`)."""
    return BADGES.get(status, "light")


@register.filter
def server_status_label(status: str) -> str:
    try:
        return str(ServerStatus(status).label)
    except ValueError:
        return status
