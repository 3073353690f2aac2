"""Portal pages of tenancy: dashboard, domains, projects, members, appointments, audit log.

Objects are fetched through the scoped selectors (a foreign object is a 404), permissions are
asked of tenancy.permissions (a visible but forbidden action is a 403), writes go to services.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import Case, Count, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import MemberCreateForm
from accounts.services import user_create_in_project
from teachcloud.errors import ServiceError
from tenancy import selectors, services
from tenancy.forms import (
    DomainRoleForm,
    MemberAddForm,
    MembershipRoleForm,
    ProjectCreateForm,
    apply_service_error,
)
from tenancy.models import Domain, Membership, Project
from tenancy.permissions import MEMBER, Action, can, require, roles_of

PAGE_SIZE = 25


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def paginate(request: HttpRequest, queryset: QuerySet | list, size: int = PAGE_SIZE) -> Page:
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def visible_domain(request: HttpRequest, pk: int) -> Domain:
    return get_object_or_404(selectors.domains_visible_to(request.user), pk=pk)


def visible_project(request: HttpRequest, pk: int) -> Project:
    return get_object_or_404(selectors.projects_visible_to(request.user), pk=pk)


def error_message(exc: ServiceError) -> str:
    """A service's refusal as one line, with its field messages."""
    parts = [exc.detail]
    for messages_ in (exc.fields or {}).values():
        parts.extend(str(m) for m in (messages_ if isinstance(messages_, list) else [messages_]))
    return " ".join(dict.fromkeys(parts))


# -- Dashboard --------------------------------------------------------------------------------


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    roles = roles_of(user)
    context: dict[str, Any] = {"roles": roles, "all_domains": None}
    if roles.platform or roles.finance:
        context["all_domains"] = (
            selectors.domains_visible_to(user)
            .annotate(
                project_count=Count("projects", distinct=True),
                user_count=Count("users", distinct=True),
            )
            .order_by("name")
        )
        if can(user, Action.REPORT_FINANCE):
            from reports.charts import platform_charts

            context["charts"] = platform_charts()
    if roles.domains:
        domains = list(
            selectors.domains_visible_to(user)
            .filter(pk__in=list(roles.domains))
            .annotate(user_count=Count("users", distinct=True))
            .prefetch_related(
                Prefetch(
                    "projects",
                    queryset=Project.objects.annotate(member_count=Count("memberships")).order_by(
                        "name"
                    ),
                )
            )
            .order_by("name")
        )
        for domain in domains:
            domain.my_role = roles.domains[domain.pk]
        context["my_domains"] = domains
    if roles.managed_project_ids:
        projects = list(
            selectors.projects_visible_to(user)
            .filter(pk__in=roles.managed_project_ids)
            .annotate(member_count=Count("memberships", filter=Q(memberships__role=MEMBER)))
            .prefetch_related(
                Prefetch(
                    "memberships",
                    queryset=Membership.objects.active()
                    .exclude(role=MEMBER)
                    .select_related("user")
                    .order_by("role", "user__username"),
                    to_attr="staff",
                )
            )
            .order_by("name")
        )
        for project in projects:
            project.my_role = roles.projects[project.pk]
        context["managed_projects"] = projects
    member_of = [pid for pid, role in roles.projects.items() if role == MEMBER]
    if member_of:
        context["member_projects"] = (
            selectors.projects_visible_to(user).filter(pk__in=member_of).order_by("name")
        )
    return render(request, "portal/dashboard.html", context)


# -- Domains ----------------------------------------------------------------------------------


def _domain_context(
    request: HttpRequest,
    domain: Domain,
    *,
    project_form: ProjectCreateForm | None = None,
    role_form: DomainRoleForm | None = None,
) -> dict[str, Any]:
    user = request.user
    return {
        "domain": domain,
        "tab": "overview",
        "projects": selectors.projects_visible_to(user)
        .filter(domain=domain)
        .annotate(member_count=Count("memberships"))
        .order_by("name"),
        "grants": selectors.domain_roles_visible_to(user)
        .filter(domain=domain)
        .order_by("role", "user__username"),
        "project_form": project_form or ProjectCreateForm(),
        "role_form": role_form
        or DomainRoleForm(candidates=selectors.users_visible_to(user), domain=domain),
        "may_create_project": can(user, Action.PROJECT_CREATE, domain),
        "may_appoint": can(user, Action.DOMAIN_APPOINT, domain),
    }


@login_required
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.DOMAIN_MANAGE, domain)
    return render(request, "tenancy/domain_detail.html", _domain_context(request, domain))


@login_required
@require_POST
def project_create(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.PROJECT_CREATE, domain)
    form = ProjectCreateForm(request.POST)
    if form.is_valid():
        try:
            project = services.project_create(
                actor=request.user, domain=domain, **form.cleaned_data
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request, _("The project %(name)s was created.") % {"name": project.name}
            )
            return redirect("portal:project_detail", project.pk)
    return render(
        request, "tenancy/domain_detail.html", _domain_context(request, domain, project_form=form)
    )


@login_required
@require_POST
def domain_role_appoint(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.DOMAIN_APPOINT, domain)
    form = DomainRoleForm(
        request.POST, candidates=selectors.users_visible_to(request.user), domain=domain
    )
    if form.is_valid():
        try:
            grant = services.domain_role_set(actor=request.user, domain=domain, **form.cleaned_data)
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                _("%(user)s is now %(role)s of %(domain)s.")
                % {"user": grant.user, "role": grant.get_role_display(), "domain": domain.name},
            )
            return redirect("portal:domain_detail", domain.pk)
    return render(
        request, "tenancy/domain_detail.html", _domain_context(request, domain, role_form=form)
    )


@login_required
@require_POST
def domain_role_remove(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_object_or_404(selectors.domain_roles_visible_to(request.user), pk=pk)
    try:
        services.domain_role_remove(actor=request.user, grant=grant)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        messages.success(
            request,
            _("%(user)s is no longer %(role)s of %(domain)s.")
            % {"user": grant.user, "role": grant.get_role_display(), "domain": grant.domain.name},
        )
    return redirect("portal:domain_detail", grant.domain_id)


@login_required
def domain_audit(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.AUDIT_VIEW, domain)
    events = selectors.audit_events_visible_to(request.user).filter(domain=domain)
    return render(
        request,
        "tenancy/domain_audit.html",
        {"domain": domain, "tab": "audit", "page": paginate(request, events)},
    )


# -- Projects ---------------------------------------------------------------------------------

_ROLE_ORDER = Case(
    When(role="admin", then=Value(0)),
    When(role="assistant", then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _members_context(
    request: HttpRequest,
    project: Project,
    *,
    add_form: MemberAddForm | None = None,
    create_form: MemberCreateForm | None = None,
) -> dict[str, Any]:
    user = request.user
    may_appoint = can(user, Action.PROJECT_APPOINT, project)
    memberships = (
        selectors.memberships_visible_to(user)
        .filter(project=project)
        .annotate(role_order=_ROLE_ORDER)
        .order_by("role_order", "user__username")
    )
    rows = [
        {
            "membership": m,
            "may_change": can(user, Action.MEMBERSHIP_CHANGE, m),
            "may_remove": can(user, Action.MEMBERSHIP_REMOVE, m),
            "role_form": MembershipRoleForm(
                prefix=f"m{m.pk}",
                initial={
                    "role": m.role,
                    "expires_at": m.expires_at.date() if m.expires_at else None,
                },
            ),
        }
        for m in memberships
    ]
    return {
        "project": project,
        "rows": rows,
        "may_appoint": may_appoint,
        "may_create_user": can(user, Action.USER_CREATE, project.domain),
        "add_form": add_form
        or MemberAddForm(
            candidates=selectors.users_visible_to(user),
            domain=project.domain,
            may_appoint=may_appoint,
        ),
        "create_form": create_form or MemberCreateForm(prefix="new"),
    }


def _members_response(request: HttpRequest, project: Project, **forms: Any) -> HttpResponse:
    context = _members_context(request, project, **forms)
    if is_htmx(request):
        return render(request, "tenancy/partials/members.html", context)
    return render(request, "tenancy/project_detail.html", {**context, "tab": "members"})


@login_required
def project_detail(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_VIEW, project)
    if not can(request.user, Action.PROJECT_MANAGE, project):
        membership = Membership.objects.filter(project=project, user=request.user).first()
        return render(
            request, "tenancy/project_member.html", {"project": project, "membership": membership}
        )
    return _members_response(request, project)


@login_required
@require_POST
def member_add(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_MANAGE, project)
    form = MemberAddForm(
        request.POST,
        candidates=selectors.users_visible_to(request.user),
        domain=project.domain,
        may_appoint=can(request.user, Action.PROJECT_APPOINT, project),
    )
    if form.is_valid():
        try:
            membership = services.membership_add(
                actor=request.user, project=project, **form.cleaned_data
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                _("%(user)s was added as %(role)s.")
                % {"user": membership.user, "role": membership.get_role_display()},
            )
            if not is_htmx(request):
                return redirect("portal:project_detail", project.pk)
            return _members_response(request, project)
    return _members_response(request, project, add_form=form)


@login_required
@require_POST
def member_create(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_MANAGE, project)
    form = MemberCreateForm(request.POST, prefix="new")
    if form.is_valid():
        try:
            membership = user_create_in_project(
                actor=request.user, project=project, **form.cleaned_data
            )
        except ServiceError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                _("%(user)s was created and added to the project.") % {"user": membership.user},
            )
            if not is_htmx(request):
                return redirect("portal:project_detail", project.pk)
            return _members_response(request, project)
    return _members_response(request, project, create_form=form)


def _membership(request: HttpRequest, pk: int) -> Membership:
    return get_object_or_404(selectors.memberships_visible_to(request.user), pk=pk)


@login_required
@require_POST
def membership_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership(request, pk)
    project = membership.project
    require(request.user, Action.MEMBERSHIP_CHANGE, membership)
    form = MembershipRoleForm(request.POST, prefix=f"m{membership.pk}")
    if form.is_valid():
        try:
            membership = services.membership_update(
                actor=request.user, membership=membership, **form.cleaned_data
            )
        except ServiceError as exc:
            messages.error(request, error_message(exc))
        else:
            messages.success(
                request,
                _("%(user)s is now %(role)s.")
                % {"user": membership.user, "role": membership.get_role_display()},
            )
    else:
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    if is_htmx(request):
        return _members_response(request, project)
    return redirect("portal:project_detail", project.pk)


@login_required
@require_POST
def membership_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership(request, pk)
    project = membership.project
    require(request.user, Action.MEMBERSHIP_REMOVE, membership)
    try:
        services.membership_remove(actor=request.user, membership=membership)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        messages.success(
            request, _("%(user)s was removed from the project.") % {"user": membership.user}
        )
    if is_htmx(request):
        return _members_response(request, project)
    return redirect("portal:project_detail", project.pk)


@login_required
def project_audit(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.AUDIT_VIEW, project)
    events = selectors.audit_events_visible_to(request.user).filter(project=project)
    return render(
        request,
        "tenancy/project_audit.html",
        {"project": project, "tab": "audit", "page": paginate(request, events)},
    )
