"""Portal pages of compute: a member's VMs and what remains of their limit, the create form that
only offers what fits, a VM's page (polled while the cloud works on it) and its actions; every
VM of a project for its staff; the per-project overview of a domain; a project's settings with
the course end date.

Objects come from the scoped selectors (a foreign VM is a 404), permissions from
tenancy.permissions (a visible but forbidden action is a 403), writes from compute.services,
whose refusals are shown in plain words as messages or on the form.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from compute import keypairs as keypair_services
from compute import selectors, services
from compute.backends.base import BackendError
from compute.forms import KeyPairForm, ServerCreateForm, ServerFilterForm, ServerRenameForm
from compute.models import Server, ServerStatus, ServerTask
from teachcloud.errors import ServiceError
from tenancy import selectors as tenancy_selectors
from tenancy import services as tenancy_services
from tenancy.forms import ProjectEditForm, apply_service_error
from tenancy.models import Domain, Project
from tenancy.permissions import Action, can, require, roles_of
from tenancy.views import error_message, is_htmx, paginate

RESOURCES = ("vcpus", "ram_gib", "disk_gib")
SERVER_PAGE_SIZE = 25


def resource_labels() -> dict[str, str]:
    return {"vcpus": _("vCPU"), "ram_gib": _("GiB RAM"), "disk_gib": _("GiB disk")}


# -- Lookups ----------------------------------------------------------------------------------


def visible_servers(request: HttpRequest):
    return selectors.servers_visible_to(request.user).select_related(
        "project__domain", "owner", "flavor", "image"
    )


def visible_server(request: HttpRequest, pk: int) -> Server:
    server = get_object_or_404(visible_servers(request), pk=pk)
    require(request.user, Action.SERVER_VIEW, server)
    return server


def visible_project(request: HttpRequest, pk: int) -> Project:
    return get_object_or_404(tenancy_selectors.projects_visible_to(request.user), pk=pk)


def visible_domain(request: HttpRequest, pk: int) -> Domain:
    return get_object_or_404(tenancy_selectors.domains_visible_to(request.user), pk=pk)


def is_member(user: Any, project: Project) -> bool:
    return roles_of(user).project_role(project.pk) is not None


# -- What remains of a limit, and which flavors fit -------------------------------------------


def _as_dict(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        value = {r: getattr(value, r) for r in RESOURCES}
    return {r: int(value[r]) for r in RESOURCES}


def bar_colour(percent: int) -> str:
    if percent < 50:
        return "success"
    if percent < 80:
        return "info"
    if percent < 90:
        return "warning"
    return "danger"


def room_rows(room: dict[str, Any]) -> list[dict[str, Any]]:
    """One bar per resource: held of the limit, and what can still be created (which the
    project's allocation may make smaller than the limit)."""
    limit = _as_dict(room.get("limit"))
    held = _as_dict(room["held"]) or {}
    remaining = _as_dict(room["remaining"]) or {}
    project_remaining = _as_dict(room.get("project_remaining")) or {}
    rows = []
    for resource, label in resource_labels().items():
        cap = limit[resource] if limit is not None else None
        percent = 100 if not cap else min(100, round(100 * held[resource] / cap))
        rows.append(
            {
                "resource": resource,
                "label": label,
                "held": held[resource],
                "limit": cap,
                "remaining": remaining[resource],
                "project_bound": (
                    cap is not None
                    and resource in project_remaining
                    and project_remaining[resource] < cap - held[resource]
                ),
                "percent": percent,
                "colour": bar_colour(percent),
            }
        )
    return rows


def flavor_options(flavors: Any, room: dict[str, Any]) -> list[dict[str, Any]]:
    """Every flavor of the project with whether it fits and, if not, why (in plain words)."""
    remaining = _as_dict(room["remaining"]) or dict.fromkeys(RESOURCES, 0)
    project_remaining = _as_dict(room.get("project_remaining"))
    limit = _as_dict(room.get("limit"))
    labels = resource_labels()
    options = []
    for flavor in flavors:
        fits = bool(selectors.flavor_fits(flavor, room))
        reasons = []
        if not fits:
            if limit is None:
                reasons.append(_("you have no limit in this project yet"))
            else:
                for r in RESOURCES:
                    need = getattr(flavor, r)
                    if need > remaining[r]:
                        if project_remaining is not None and project_remaining[r] < need:
                            reasons.append(
                                _("needs %(need)d %(unit)s, the project has %(left)d left")
                                % {"need": need, "unit": labels[r], "left": project_remaining[r]}
                            )
                        else:
                            reasons.append(
                                _("needs %(need)d %(unit)s, %(left)d left of your limit")
                                % {"need": need, "unit": labels[r], "left": remaining[r]}
                            )
            if not reasons:
                reasons.append(_("does not fit what remains"))
        options.append({"flavor": flavor, "fits": fits, "why": "; ".join(reasons)})
    return options


def resource_bars(held: dict[str, int], allocation: dict[str, int] | None) -> list[dict[str, Any]]:
    """What VMs hold against an allocation, one bar per resource."""
    bars = []
    for r, label in resource_labels().items():
        cap = allocation[r] if allocation is not None else None
        percent = min(100, round(100 * held[r] / cap)) if cap else (100 if held[r] else 0)
        bars.append(
            {
                "label": label,
                "held": held[r],
                "allocation": cap,
                "percent": percent,
                "colour": bar_colour(percent),
            }
        )
    return bars


def project_bars(project: Project) -> list[dict[str, Any]]:
    from billing import services as billing

    allocation = billing.current_allocation(billing.target_of(project=project))
    return resource_bars(billing.held_by_vms(project=project), _as_dict(allocation))


def member_room_context(project: Project, user: Any) -> dict[str, Any]:
    room = selectors.member_room(project=project, user=user)
    return {"room": room, "room_rows": room_rows(room), "has_limit": room.get("limit") is not None}


# -- Rows with what the viewer may do ---------------------------------------------------------


def server_row(user: Any, server: Server) -> dict[str, Any]:
    settled = server.status in (ServerStatus.ACTIVE, ServerStatus.STOPPED) and not server.task
    live = server.status != ServerStatus.DELETED and server.task != ServerTask.DELETING
    may_use = can(user, Action.SERVER_USE, server)
    return {
        "server": server,
        "may_start": may_use and settled and server.status == ServerStatus.STOPPED,
        "may_stop": settled
        and server.status == ServerStatus.ACTIVE
        and can(user, Action.SERVER_STOP, server),
        "may_reboot": may_use and settled and server.status == ServerStatus.ACTIVE,
        "may_console": may_use and settled and server.status == ServerStatus.ACTIVE,
        "may_rename": may_use and live,
        "may_delete": live and not server.task and can(user, Action.SERVER_DELETE, server),
        "busy": server.status == ServerStatus.BUILDING or bool(server.task),
    }


def filtered_servers(request: HttpRequest, queryset: Any) -> tuple[Any, ServerFilterForm]:
    form = ServerFilterForm(request.GET or None)
    status = form.cleaned_data["status"] if form.is_valid() else ""
    if status:
        queryset = queryset.filter(status=status)
    else:
        queryset = queryset.exclude(status=ServerStatus.DELETED)
    return queryset.order_by("-created_at", "-pk"), form


# -- A member's VMs ---------------------------------------------------------------------------


@login_required
def my_servers(request: HttpRequest) -> HttpResponse:
    """Every VM of the signed-in user, per project, with what remains of each limit."""
    user = request.user
    roles = roles_of(user)
    projects = list(
        tenancy_selectors.projects_visible_to(user)
        .filter(pk__in=list(roles.projects))
        .order_by("name")
    )
    servers, filter_form = filtered_servers(request, visible_servers(request).filter(owner=user))
    by_project: dict[int, list[dict[str, Any]]] = {}
    for server in servers:
        by_project.setdefault(server.project_id, []).append(server_row(user, server))
    sections = [
        {
            "project": project,
            "rows": by_project.get(project.pk, []),
            "may_create": can(user, Action.SERVER_CREATE, project),
            "manages": can(user, Action.PROJECT_MANAGE, project),
            **member_room_context(project, user),
        }
        for project in projects
    ]
    context = {"sections": sections, "filter_form": filter_form}
    return render(request, "compute/my_servers.html", context)


# -- A project's VMs --------------------------------------------------------------------------


@login_required
def project_servers(request: HttpRequest, pk: int) -> HttpResponse:
    """Staff: every VM of the project (stop, delete). Members: their own and their room."""
    user = request.user
    project = visible_project(request, pk)
    require(user, Action.PROJECT_VIEW, project)
    manages = can(user, Action.PROJECT_MANAGE, project)
    member = is_member(user, project)
    queryset = visible_servers(request).filter(project=project)
    if not manages:
        queryset = queryset.filter(owner=user)
    servers, filter_form = filtered_servers(request, queryset)
    page = paginate(request, servers, SERVER_PAGE_SIZE)
    context: dict[str, Any] = {
        "project": project,
        "tab": "vms" if manages else None,
        "manages": manages,
        "member": member,
        "page": page,
        "rows": [server_row(user, s) for s in page.object_list],
        "filter_form": filter_form,
        "may_create": member and can(user, Action.SERVER_CREATE, project),
    }
    if member:
        context.update(member_room_context(project, user))
    if manages:
        context["project_bars"] = project_bars(project)
    return render(request, "compute/project_servers.html", context)


@login_required
def server_create(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    project = visible_project(request, pk)
    require(user, Action.SERVER_CREATE, project)
    flavors = selectors.flavors_for(project)
    images = selectors.images_for(project)
    own_keys = selectors.keypairs_of(user)
    form = ServerCreateForm(request.POST or None, flavors=flavors, images=images, keypairs=own_keys)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            server = services.server_create(
                actor=user,
                project=project,
                name=data["name"],
                flavor=data["flavor"],
                image=data["image"],
                key_name=data["key_name"],
            )
        except ServiceError as exc:
            if set(exc.fields or {}) <= set(form.fields):
                apply_service_error(form, exc)
            else:  # resources over a limit: the detail names them in plain words
                form.add_error(None, exc.detail)
        else:
            messages.success(
                request,
                _("%(name)s is being created. This page shows when it is ready.")
                % {"name": server.name},
            )
            return redirect("portal:server_detail", server.pk)
    room_context = member_room_context(project, user)
    options = flavor_options(flavors, room_context["room"])
    chosen = form["flavor"].value()
    if chosen in (None, "") and any(o["fits"] for o in options):
        chosen = next(o["flavor"].pk for o in options if o["fits"])
    context = {
        "project": project,
        "form": form,
        "flavor_options": options,
        "chosen_flavor": str(chosen or ""),
        "any_fits": any(o["fits"] for o in options),
        "manages": can(user, Action.PROJECT_MANAGE, project),
        "has_keypairs": own_keys.exists(),
        **room_context,
    }
    return render(request, "compute/server_create.html", context)


# -- One VM -----------------------------------------------------------------------------------


@login_required
def server_detail(request: HttpRequest, pk: int) -> HttpResponse:
    server = visible_server(request, pk)
    context = {
        "server": server,
        "row": server_row(request.user, server),
        "rename_form": ServerRenameForm(initial={"name": server.name}),
    }
    if is_htmx(request):
        return render(request, "compute/partials/server_state.html", context)
    return render(request, "compute/server_detail.html", context)


def _back(request: HttpRequest, server: Server) -> HttpResponse:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    if server.status == ServerStatus.DELETED:
        return redirect("portal:project_servers", server.project_id)
    return redirect("portal:server_detail", server.pk)


ACTIONS = {
    "start": (
        lambda actor, server: services.server_start(actor=actor, server=server),
        gettext_lazy("%(name)s is starting."),
    ),
    "stop": (
        lambda actor, server: services.server_stop(actor=actor, server=server),
        gettext_lazy("%(name)s is stopping."),
    ),
    "reboot": (
        lambda actor, server: services.server_reboot(actor=actor, server=server),
        gettext_lazy("%(name)s is rebooting."),
    ),
    "delete": (
        lambda actor, server: services.server_delete(actor=actor, server=server),
        gettext_lazy(
            "%(name)s is being deleted; its resources are released when the cloud confirms."
        ),
    ),
}


@login_required
@require_POST
def server_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    server = visible_server(request, pk)
    perform, text = ACTIONS[action]
    try:
        server = perform(request.user, server)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    except BackendError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, str(text) % {"name": server.name})
    return _back(request, server)


@login_required
@require_POST
def server_rename(request: HttpRequest, pk: int) -> HttpResponse:
    server = visible_server(request, pk)
    form = ServerRenameForm(request.POST)
    if form.is_valid():
        try:
            server = services.server_rename(
                actor=request.user, server=server, name=form.cleaned_data["name"]
            )
        except ServiceError as exc:
            messages.error(request, error_message(exc))
        else:
            messages.success(request, _("Renamed to %(name)s.") % {"name": server.name})
    else:
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return redirect("portal:server_detail", server.pk)


@login_required
def server_console(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the cloud for a noVNC URL (a network call, outside any transaction) and go there."""
    server = visible_server(request, pk)
    try:
        url = services.server_console_url(actor=request.user, server=server)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    except BackendError as exc:
        messages.error(request, exc.message)
    else:
        return HttpResponseRedirect(url)
    return redirect("portal:server_detail", server.pk)


# -- Domain overview --------------------------------------------------------------------------


@login_required
def domain_servers(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.COMPUTE_OVERVIEW, domain)
    rows = []
    totals = dict.fromkeys(("building", "active", "stopped", "error"), 0)
    for row in selectors.project_overview(domain):
        counts = row.get("servers") or {}
        for status in totals:
            totals[status] += int(counts.get(status, 0))
        held = _as_dict(row["held"]) or dict.fromkeys(RESOURCES, 0)
        bars = resource_bars(held, _as_dict(row.get("allocation")))
        rows.append({"project": row["project"], "servers": counts, "bars": bars})
    context = {"domain": domain, "tab": "vms", "rows": rows, "totals": totals}
    return render(request, "compute/domain_servers.html", context)


# -- Project settings (course end date) -------------------------------------------------------


@login_required
def project_settings(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_EDIT, project)
    initial = {
        "name": project.name,
        "code": project.code,
        "description": project.description,
        "end_date": project.end_date,
    }
    form = ProjectEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenancy_services.project_update(
                actor=request.user,
                project=project,
                name=data["name"],
                code=data["code"],
                description=data["description"],
                end_date=data["end_date"],
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, _("The project's settings were saved."))
            return redirect(reverse("portal:project_settings", args=[project.pk]))
    context = {"project": project, "tab": "settings", "form": form, "course": course_state(project)}
    return render(request, "compute/project_settings.html", context)


def course_state(project: Project) -> dict[str, Any] | None:
    """What the course end has done for the current end date (SPEC Allocations 7)."""
    end = project.end_date
    if end is None:
        return None
    today = timezone.localdate()
    return {
        "end": end,
        "remind_on": end - timedelta(days=7),
        "delete_on": end + timedelta(days=30),
        "reminded": project.course_reminded_for == end,
        "stopped": project.course_stopped_for == end,
        "closed": project.course_closed_for == end,
        "days_left": (end - today).days,
    }


# -- SSH key pairs ----------------------------------------------------------------------------


@login_required
def keypairs(request: HttpRequest) -> HttpResponse:
    """The signed-in user's SSH public keys (with fingerprints) and a form to add one."""
    user = request.user
    form = KeyPairForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            keypair = keypair_services.keypair_create(
                actor=user,
                name=form.cleaned_data["name"],
                public_key=form.cleaned_data["public_key"],
            )
        except ServiceError as exc:
            shown = False
            for name, errors in (exc.fields or {}).items():
                if name in form.fields:
                    for error in errors:
                        form.add_error(name, str(error))
                        shown = shown or str(error) == exc.detail
            if not shown:
                form.add_error(None, exc.detail)
        else:
            messages.success(
                request,
                _("The key pair %(name)s was added. Choose it when you create a VM.")
                % {"name": keypair.name},
            )
            return redirect("portal:keypairs")
    context = {"form": form, "keypairs": selectors.keypairs_of(user)}
    return render(request, "compute/keypairs.html", context)


@login_required
@require_POST
def keypair_delete(request: HttpRequest, pk: int) -> HttpResponse:
    keypair = get_object_or_404(selectors.keypairs_of(request.user), pk=pk)
    try:
        keypair_services.keypair_delete(actor=request.user, keypair=keypair)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        messages.success(
            request,
            _("The key pair %(name)s was deleted. VMs created with it keep the key.")
            % {"name": keypair.name},
        )
    return redirect("portal:keypairs")
