"""Portal pages of accounts: users of a domain, user detail, enrollment codes and requests,
roster imports, and the public enrollment page /join/<code>/."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import services
from accounts.forms import (
    EnrollmentCodeForm,
    EnrollmentRedeemForm,
    RosterUploadForm,
    UserCreateForm,
    UserEditForm,
)
from accounts.models import (
    EnrollmentCode,
    EnrollmentRequest,
    EnrollmentStatus,
    ImportStatus,
    RosterImport,
)
from accounts.roster import parse_roster
from teachcloud.errors import ServiceError
from teachcloud.net import client_ip
from tenancy import selectors
from tenancy.forms import UserSearchForm, apply_service_error
from tenancy.models import Domain, Project
from tenancy.permissions import Action, can, require
from tenancy.views import error_message, is_htmx, paginate, visible_domain, visible_project

# -- Users of a domain ------------------------------------------------------------------------


@login_required
def domain_users(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.DOMAIN_MANAGE, domain)
    may_create = can(request.user, Action.USER_CREATE, domain)
    form = UserCreateForm()
    if request.method == "POST":
        require(request.user, Action.USER_CREATE, domain)
        form = UserCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                user = services.user_create(
                    actor=request.user,
                    domain=domain,
                    username=data["username"].strip()
                    or services.default_username(domain, data["id_number"]),
                    real_name=data["real_name"],
                    id_number=data["id_number"],
                    email=data["email"],
                    phone=data["phone"],
                    password=data["password"] or None,
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, _("The user %(user)s was created.") % {"user": user})
                return redirect("portal:domain_users", domain.pk)
    search = UserSearchForm(request.GET)
    users = selectors.users_visible_to(request.user).filter(home_domain=domain)
    query = search.cleaned_data.get("q", "").strip() if search.is_valid() else ""
    if query:
        users = users.filter(
            Q(username__icontains=query)
            | Q(real_name__icontains=query)
            | Q(id_number__icontains=query)
            | Q(email__icontains=query)
        )
    return render(
        request,
        "accounts/domain_users.html",
        {
            "domain": domain,
            "tab": "users",
            "search": search,
            "query": query,
            "page": paginate(request, users.order_by("username")),
            "form": form,
            "may_create": may_create,
        },
    )


@login_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    subject = get_object_or_404(selectors.users_visible_to(request.user), pk=pk)
    require(request.user, Action.USER_VIEW, subject)
    may_edit = can(request.user, Action.USER_EDIT_REAL_NAME, subject)
    may_deactivate = can(request.user, Action.USER_DEACTIVATE, subject)
    initial = {f: getattr(subject, f) for f in services.REAL_NAME_FIELDS}
    form = UserEditForm(initial=initial)
    if request.method == "POST":
        if "active" in request.POST:
            require(request.user, Action.USER_DEACTIVATE, subject)
            active = request.POST["active"] == "1"
            try:
                services.user_update(actor=request.user, user=subject, is_active=active)
            except ServiceError as exc:
                messages.error(request, error_message(exc))
            else:
                messages.success(
                    request,
                    _("The account was activated.")
                    if active
                    else _("The account was deactivated."),
                )
            return redirect("portal:user_detail", subject.pk)
        require(request.user, Action.USER_EDIT_REAL_NAME, subject)
        form = UserEditForm(request.POST, initial=initial)
        if form.is_valid():
            changes = {k: v for k, v in form.cleaned_data.items() if v != initial.get(k)}
            if not changes:
                messages.info(request, _("Nothing was changed."))
                return redirect("portal:user_detail", subject.pk)
            try:
                services.user_update(actor=request.user, user=subject, **changes)
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request, _("The changes were saved and recorded in the audit log.")
                )
                return redirect("portal:user_detail", subject.pk)
    memberships = selectors.memberships_visible_to(request.user).filter(user=subject)
    events = selectors.audit_events_visible_to(request.user).filter(
        target_type=subject._meta.label_lower, target_id=str(subject.pk)
    )[:20]
    return render(
        request,
        "accounts/user_detail.html",
        {
            "subject": subject,
            "form": form,
            "may_edit": may_edit,
            "may_deactivate": may_deactivate and subject.pk != request.user.pk,
            "memberships": memberships,
            "events": events,
        },
    )


# -- Enrollment codes and requests ------------------------------------------------------------


def _enrollment_context(
    request: HttpRequest, project: Project, *, form: EnrollmentCodeForm | None = None
) -> dict[str, Any]:
    codes = list(EnrollmentCode.objects.filter(project=project))
    for code in codes:
        code.link = request.build_absolute_uri(reverse("portal:join", args=[code.code]))
    return {
        "project": project,
        "tab": "enrollment",
        "codes": codes,
        "form": form or EnrollmentCodeForm(),
        "pending": EnrollmentRequest.objects.filter(
            project=project, status=EnrollmentStatus.PENDING
        )
        .select_related("user", "code")
        .order_by("created_at"),
        "decided": EnrollmentRequest.objects.filter(project=project)
        .exclude(status=EnrollmentStatus.PENDING)
        .select_related("user", "decided_by")
        .order_by("-decided_at")[:20],
    }


@login_required
def project_enrollment(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_MANAGE, project)
    form = None
    if request.method == "POST":
        form = EnrollmentCodeForm(request.POST)
        if form.is_valid():
            try:
                code = services.enrollment_code_create(
                    actor=request.user, project=project, **form.cleaned_data
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request, _("The enrollment code %(code)s was created.") % {"code": code.code}
                )
                return redirect("portal:project_enrollment", project.pk)
    return render(
        request,
        "accounts/project_enrollment.html",
        _enrollment_context(request, project, form=form),
    )


@login_required
@require_POST
def enrollment_code_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    code = get_object_or_404(
        EnrollmentCode.objects.select_related("project__domain").filter(
            project__in=selectors.projects_visible_to(request.user)
        ),
        pk=pk,
    )
    require(request.user, Action.PROJECT_MANAGE, code.project)
    try:
        services.enrollment_code_deactivate(actor=request.user, code=code)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        messages.success(request, _("The code %(code)s no longer works.") % {"code": code.code})
    return redirect("portal:project_enrollment", code.project_id)


@login_required
@require_POST
def enrollment_decide(request: HttpRequest, pk: int) -> HttpResponse:
    enrollment = get_object_or_404(
        EnrollmentRequest.objects.select_related("project__domain", "user").filter(
            project__in=selectors.projects_visible_to(request.user)
        ),
        pk=pk,
    )
    require(request.user, Action.PROJECT_MANAGE, enrollment.project)
    approve = request.POST.get("decision") == "approve"
    try:
        services.enrollment_decide(actor=request.user, request=enrollment, approve=approve)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
    else:
        text = (
            _("%(user)s was approved and added to the project.")
            if approve
            else _("The request of %(user)s was rejected.")
        )
        messages.success(request, text % {"user": enrollment.user})
    return redirect("portal:project_enrollment", enrollment.project_id)


# -- Public enrollment page -------------------------------------------------------------------


def _join_allowed(request: HttpRequest) -> bool:
    """At most TEACHCLOUD_JOIN_RATE submissions of the public enrollment form per client address
    (a link holder must not try numbers and addresses at speed)."""
    limit, window = settings.TEACHCLOUD_JOIN_RATE
    key = f"join-rate:{client_ip(request)}"
    cache.add(key, 0, timeout=window)
    try:
        used = cache.incr(key)
    except ValueError:  # expired in between
        cache.set(key, 1, timeout=window)
        used = 1
    return used <= limit


def join(request: HttpRequest, code: str) -> HttpResponse:
    found = EnrollmentCode.objects.select_related("project__domain").filter(code=code).first()
    if found is None or not found.usable():
        return render(request, "accounts/join_invalid.html", status=404)
    project = found.project
    form = EnrollmentRedeemForm()
    if request.method == "POST":
        if request.user.is_authenticated:
            try:
                services.enrollment_redeem_as_user(code=code, user=request.user)
            except ServiceError as exc:
                messages.error(request, error_message(exc))
                return redirect("portal:join", code)
            return redirect("portal:join_waiting", code)
        form = EnrollmentRedeemForm(request.POST)
        if not _join_allowed(request):
            messages.error(request, _("Too many attempts from your address; try again later."))
            response = render(
                request, "accounts/join.html", {"code": found, "project": project, "form": form}
            )
            response.status_code = 429
            return response
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.enrollment_redeem(
                    code=code,
                    real_name=data["real_name"],
                    id_number=data["id_number"],
                    email=data["email"],
                    username=data["username"],
                    password=data["password1"],
                )
            except ServiceError as exc:
                apply_service_error(form, exc, field_map={"password": "password1"})
            else:
                return redirect("portal:join_waiting", code)
    return render(request, "accounts/join.html", {"code": found, "project": project, "form": form})


def join_waiting(request: HttpRequest, code: str) -> HttpResponse:
    found = get_object_or_404(EnrollmentCode.objects.select_related("project__domain"), code=code)
    return render(request, "accounts/join_waiting.html", {"project": found.project})


# -- Roster imports ---------------------------------------------------------------------------


def _roster_upload(
    request: HttpRequest,
    *,
    domain: Domain,
    project: Project | None,
    template: str,
    context: dict[str, Any],
) -> HttpResponse:
    form = RosterUploadForm()
    if request.method == "POST":
        form = RosterUploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            upload.seek(0)
            try:
                rows = parse_roster(upload, upload.name)
                roster = services.roster_import_create(
                    actor=request.user,
                    rows=rows,
                    filename=upload.name,
                    domain=domain,
                    project=project,
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                if roster.total <= settings.TEACHCLOUD_ROSTER_INLINE_ROWS:
                    services.roster_import_run(roster_import_id=roster.pk)
                return redirect("portal:roster_import", roster.pk)
    imports = RosterImport.objects.filter(domain=domain, project=project).select_related(
        "uploaded_by"
    )[:10]
    return render(request, template, {**context, "form": form, "imports": imports, "tab": "import"})


@login_required
def domain_import(request: HttpRequest, pk: int) -> HttpResponse:
    domain = visible_domain(request, pk)
    require(request.user, Action.DOMAIN_MANAGE, domain)
    return _roster_upload(
        request,
        domain=domain,
        project=None,
        template="accounts/domain_import.html",
        context={"domain": domain},
    )


@login_required
def project_import(request: HttpRequest, pk: int) -> HttpResponse:
    project = visible_project(request, pk)
    require(request.user, Action.PROJECT_MANAGE, project)
    return _roster_upload(
        request,
        domain=project.domain,
        project=project,
        template="accounts/project_import.html",
        context={"project": project},
    )


def _visible_import(request: HttpRequest, pk: int) -> RosterImport:
    user = request.user
    roster = get_object_or_404(
        RosterImport.objects.select_related("domain", "project", "uploaded_by").filter(
            Q(project__in=selectors.projects_visible_to(user))
            | Q(project__isnull=True, domain__in=selectors.domains_visible_to(user))
        ),
        pk=pk,
    )
    if roster.project is not None:
        require(user, Action.PROJECT_MANAGE, roster.project)
    else:
        require(user, Action.DOMAIN_MANAGE, roster.domain)
    return roster


@login_required
def roster_import(request: HttpRequest, pk: int) -> HttpResponse:
    roster = _visible_import(request, pk)
    return render(
        request,
        "accounts/roster_import.html",
        {
            "roster": roster,
            "running": roster.status in (ImportStatus.PENDING, ImportStatus.RUNNING),
        },
    )


@login_required
def roster_import_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx partial polled every second while an import runs."""
    roster = _visible_import(request, pk)
    response = render(
        request,
        "accounts/partials/roster_progress.html",
        {
            "roster": roster,
            "running": roster.status in (ImportStatus.PENDING, ImportStatus.RUNNING),
        },
    )
    if not is_htmx(request):
        response["Cache-Control"] = "no-store"
    return response


# -- Own email address --------------------------------------------------------------------------


RESEND_SECONDS = 180  # one verification email per user per 3 minutes (as allauth's own)


@login_required
def my_email(request: HttpRequest) -> HttpResponse:
    """The signed-in user's email address, read-only, replacing allauth's email management at the
    same URL: the address is a real-name field that only admins change, audited (SPEC Tenancy and
    people 2) — letting a user add and make primary another address would bypass both. A user
    may ask for the verification email again."""
    user = request.user
    address = EmailAddress.objects.filter(user=user, email__iexact=user.email).first()
    if request.method == "POST":
        if address is None or address.verified:
            messages.info(request, _("Your email address is already verified."))
        elif not cache.add(f"teachcloud:verify-again:{user.pk}", 1, RESEND_SECONDS):
            messages.warning(
                request,
                _(
                    "A verification email was sent a few minutes ago: look in your inbox (and "
                    "the spam folder) or try again later."
                ),
            )
        else:
            address.send_confirmation(request)
            messages.success(
                request,
                _("A verification email was sent to %(email)s.") % {"email": address.email},
            )
        return redirect("account_email")
    return render(request, "accounts/my_email.html", {"address": address})
