"""Django admin for platform staff: domains, projects, appointments and the audit log.

Two rules hold for every admin of TeachCloud (see `PlatformAdminMixin`):
- who may see and change what is answered by `tenancy.permissions`, not by Django's model
  permissions, so `is_staff` alone opens nothing;
- every write goes through a service (`tenancy.services`, `accounts.services`), so it is checked,
  validated and audited exactly like the same write from the portal or the API. A ServiceError
  becomes a form error or a message, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Model, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from teachcloud.errors import ServiceError
from tenancy import services
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project, ProjectRole
from tenancy.permissions import roles_of

csrf_protect_m = method_decorator(csrf_protect)


def apply_service_error(
    form: forms.BaseForm,
    exc: ServiceError | PermissionDenied,
    field_map: dict[str, str] | None = None,
) -> None:
    """Show a service's refusal on the form: its field errors on the fields, the rest on top."""
    if isinstance(exc, PermissionDenied):
        form.add_error(None, str(exc) or gettext("You do not have permission to do this."))
        return
    field_map = field_map or {}
    leftovers = []
    for name, errors in (exc.fields or {}).items():
        target = field_map.get(name, name)
        if target in form.fields:
            form.add_error(target, list(errors))
        else:
            leftovers.append(f"{name}: {' '.join(str(e) for e in errors)}")
    form.add_error(None, [exc.detail, *leftovers])


class PlatformAdminMixin:
    """Admin access through `tenancy.permissions`, writes through services.

    Flags:
    - `read_only`: nobody adds, changes or deletes (the audit log; money views for finance);
    - `finance_can_view`: finance staff get a read-only view as well as platform staff;
    - `service_delete` defined on the admin: deleting an object calls it (else no deletion).

    An admin that allows adding or changing implements `service_save(request, obj, form, change)`:
    it calls one service with the form's values and returns the saved object. It runs while the
    form is validated, so a ServiceError is shown on the form and nothing is written.
    """

    read_only: bool = False
    finance_can_view: bool = False
    # Service field names → form field names, for placing a ServiceError's field errors.
    service_field_map: dict[str, str] = {}

    # -- Permissions ---------------------------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        roles = roles_of(request.user)
        return roles.platform or (self.finance_can_view and roles.finance)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return (
            not self.read_only
            and self._implements("service_save")
            and roles_of(request.user).platform
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.read_only and roles_of(request.user).platform

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            not self.read_only
            and self._implements("service_delete")
            and roles_of(request.user).platform
        )

    def _implements(self, name: str) -> bool:
        return callable(getattr(self, name, None))

    # -- Writes through services ---------------------------------------------------------------

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        model_admin = self
        is_change = obj is not None

        class ServiceForm(form_class):  # type: ignore[misc, valid-type]
            def _post_clean(self) -> None:
                super()._post_clean()
                if self._errors or not model_admin._implements("service_save"):
                    return
                if is_change and not self.has_changed():
                    return
                try:
                    saved = model_admin.service_save(request, self.instance, self, is_change)
                except (ServiceError, PermissionDenied) as exc:
                    apply_service_error(self, exc, model_admin.service_field_map)
                else:
                    self.instance = saved

        ServiceForm.__name__ = form_class.__name__
        return ServiceForm

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        """Nothing to do: the service saved (and audited) the object while validating the form."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Our admins have no inlines or many-to-many fields: nothing is saved around a service."""

    @csrf_protect_m
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # No outer transaction: each service is a durable transaction of its own.
        return self._changeform_view(request, object_id, form_url, extra_context)  # type: ignore[attr-defined]

    @csrf_protect_m
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method != "POST":
            return self._delete_view(request, object_id, extra_context)  # type: ignore[attr-defined]
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        if obj is None:
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request,
                self.opts,
                object_id,  # type: ignore[attr-defined]
            )
        obj_display, obj_id = str(obj), obj.pk
        try:
            self.service_delete(request, obj)  # type: ignore[attr-defined]
        except ServiceError as exc:
            messages.error(request, exc.detail)
            opts = self.opts  # type: ignore[attr-defined]
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj_id])
            )
        self.log_deletions(request, [obj])  # type: ignore[attr-defined]
        return self.response_delete(request, obj_display, obj_id)  # type: ignore[attr-defined]

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self.service_delete(request, obj)  # type: ignore[attr-defined]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.service_delete(request, obj)  # type: ignore[attr-defined]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if not getattr(self, "bulk_delete", False):
            # Deleting runs the service's rules (the last admin stays) one object at a time.
            actions.pop("delete_selected", None)
        return actions


def _readonly_on_change(
    obj: Any, always: tuple[str, ...], on_change: tuple[str, ...]
) -> tuple[str, ...]:
    return (*always, *on_change) if obj is not None else always


def pretty_json(value: Any) -> str:
    if value in (None, "", {}, []):
        return "—"
    return format_html(
        '<pre class="tc-json">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


# -- Domains ------------------------------------------------------------------------------------


class DomainWithAdminForm(forms.Form):
    name = forms.CharField(label=_("School name"), max_length=200)
    code = forms.SlugField(
        label=_("Code"),
        max_length=64,
        help_text=_("Short unique code, lower-case letters, digits and hyphens, e.g. north."),
    )
    admin_username = forms.CharField(label=_("Admin username"), max_length=150)
    admin_real_name = forms.CharField(label=_("Admin real name"), max_length=150)
    admin_id_number = forms.CharField(label=_("Admin staff number"), max_length=64)
    admin_email = forms.EmailField(label=_("Admin email address"))
    admin_password = forms.CharField(
        label=_("Admin password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Optional. Without a password the admin receives an invitation email to choose one."
        ),
    )

    field_map = {
        "username": "admin_username",
        "real_name": "admin_real_name",
        "id_number": "admin_id_number",
        "email": "admin_email",
        "password": "admin_password",
    }


@admin.register(Domain)
class DomainAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "code",
        "status",
        "admin_list",
        "project_count",
        "user_count",
        "created_at",
    )
    list_display_links = ("name", "code")
    list_filter = ("status", "created_at")
    search_fields = ("name", "code")
    date_hierarchy = "created_at"
    ordering = ("code",)
    list_select_related = ("created_by",)
    fields = ("name", "code", "status", "created_at", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _readonly_on_change(obj, ("status", "created_at", "created_by"), ("code",))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Domain]:
        admins = (
            DomainRole.objects.filter(role="admin")
            .select_related("user")
            .order_by("user__username")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                project_total=Count("projects", distinct=True),
                user_total=Count("users", distinct=True),
            )
            .prefetch_related(Prefetch("roles", queryset=admins, to_attr="admin_roles"))
        )

    @admin.display(description=_("Admins"))
    def admin_list(self, obj: Domain) -> str:
        roles = getattr(obj, "admin_roles", None)
        if roles is None:
            return "—"
        return ", ".join(str(role.user) for role in roles) or "—"

    @admin.display(description=_("Projects"), ordering="project_total")
    def project_count(self, obj: Domain) -> int:
        return getattr(obj, "project_total", 0)

    @admin.display(description=_("Users"), ordering="user_total")
    def user_count(self, obj: Domain) -> int:
        return getattr(obj, "user_total", 0)

    def service_save(self, request: HttpRequest, obj: Domain, form: Any, change: bool) -> Domain:
        data = form.cleaned_data
        if change:
            return services.domain_update(actor=request.user, domain=obj, name=data["name"])
        return services.domain_create(actor=request.user, name=data["name"], code=data["code"])

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "add-with-admin/",
                self.admin_site.admin_view(self.add_with_admin_view),
                name="{}_{}_add_with_admin".format(*info),
            ),
            *super().get_urls(),
        ]

    @method_decorator(sensitive_post_parameters("admin_password"))
    def add_with_admin_view(self, request: HttpRequest) -> HttpResponse:
        """Open a school together with its first admin (a new real-name user of the school)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = DomainWithAdminForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                domain = services.domain_create_with_admin(
                    actor=request.user,
                    name=data["name"],
                    code=data["code"],
                    admin_username=data["admin_username"],
                    admin_real_name=data["admin_real_name"],
                    admin_id_number=data["admin_id_number"],
                    admin_email=data["admin_email"],
                    admin_password=data["admin_password"] or None,
                )
            except (ServiceError, PermissionDenied) as exc:
                apply_service_error(form, exc, DomainWithAdminForm.field_map)
            else:
                self.log_addition(request, domain, [{"added": {}}])
                if data["admin_password"]:
                    text = gettext("The domain %(domain)s and its admin %(user)s were created.")
                else:
                    text = gettext(
                        "The domain %(domain)s and its admin %(user)s were created; "
                        "an invitation email was sent to %(email)s."
                    )
                messages.success(
                    request,
                    text
                    % {
                        "domain": domain.name,
                        "user": data["admin_username"],
                        "email": data["admin_email"],
                    },
                )
                return HttpResponseRedirect(
                    reverse("admin:tenancy_domain_change", args=[domain.pk])
                )
        fieldsets = [
            (_("School"), {"fields": ["name", "code"]}),
            (
                _("First admin"),
                {
                    "fields": [
                        "admin_username",
                        "admin_real_name",
                        "admin_id_number",
                        "admin_email",
                        "admin_password",
                    ]
                },
            ),
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Add a domain with its first admin"),
            "subtitle": None,
            "opts": self.opts,
            "form": form,
            "adminform": helpers.AdminForm(form, fieldsets, {}),
            "errors": helpers.AdminErrorList(form, []),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tenancy/domain/add_with_admin.html", context)


# -- Projects -----------------------------------------------------------------------------------


@admin.register(Project)
class ProjectAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = ("name", "code", "domain", "status", "member_count", "created_at")
    list_display_links = ("name", "code")
    list_filter = ("status", "domain", "created_at")
    search_fields = ("name", "code", "domain__name", "domain__code")
    list_select_related = ("domain",)
    date_hierarchy = "created_at"
    autocomplete_fields = ("domain",)
    fields = ("domain", "name", "code", "description", "status", "created_at", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _readonly_on_change(obj, ("status", "created_at", "created_by"), ("domain",))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(member_total=Count("memberships"))

    @admin.display(description=_("Members"), ordering="member_total")
    def member_count(self, obj: Project) -> int:
        return getattr(obj, "member_total", 0)

    def service_save(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> Project:
        data = form.cleaned_data
        if change:
            return services.project_update(
                actor=request.user,
                project=obj,
                name=data["name"],
                code=data["code"],
                description=data["description"],
            )
        return services.project_create(
            actor=request.user,
            domain=data["domain"],
            name=data["name"],
            code=data["code"],
            description=data["description"],
        )


# -- Appointments and memberships ---------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = (
        "user",
        "user_id_number",
        "project",
        "project_domain",
        "role",
        "expires_at",
        "locked",
        "created_at",
    )
    list_filter = ("role", "locked", "project__domain", "created_at")
    search_fields = (
        "user__username",
        "user__real_name",
        "user__id_number",
        "project__name",
        "project__code",
    )
    list_select_related = ("user", "project__domain")
    date_hierarchy = "created_at"
    autocomplete_fields = ("project", "user")
    fields = ("project", "user", "role", "expires_at", "locked", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _readonly_on_change(obj, ("locked", "created_at"), ("project", "user"))

    @admin.display(description=_("number"), ordering="user__id_number")
    def user_id_number(self, obj: Membership) -> str:
        return obj.user.id_number

    @admin.display(description=_("domain"), ordering="project__domain__code")
    def project_domain(self, obj: Membership) -> str:
        return obj.project.domain.code

    def service_save(
        self, request: HttpRequest, obj: Membership, form: Any, change: bool
    ) -> Membership:
        data = form.cleaned_data
        if change:
            return services.membership_update(
                actor=request.user, membership=obj, role=data["role"], expires_at=data["expires_at"]
            )
        return services.membership_add(
            actor=request.user,
            project=data["project"],
            user=data["user"],
            role=data["role"] or ProjectRole.MEMBER,
            expires_at=data["expires_at"],
        )

    def service_delete(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(actor=request.user, membership=obj)


@admin.register(DomainRole)
class DomainRoleAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = ("user", "domain", "role", "expires_at", "created_at")
    list_filter = ("role", "domain", "created_at")
    search_fields = (
        "user__username",
        "user__real_name",
        "user__id_number",
        "domain__name",
        "domain__code",
    )
    list_select_related = ("user", "domain")
    date_hierarchy = "created_at"
    autocomplete_fields = ("domain", "user")
    fields = ("domain", "user", "role", "expires_at", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _readonly_on_change(obj, ("created_at",), ("domain", "user"))

    def service_save(
        self, request: HttpRequest, obj: DomainRole, form: Any, change: bool
    ) -> DomainRole:
        data = form.cleaned_data
        return services.domain_role_set(
            actor=request.user,
            domain=obj.domain if change else data["domain"],
            user=obj.user if change else data["user"],
            role=data["role"],
            expires_at=data["expires_at"],
        )

    def service_delete(self, request: HttpRequest, obj: DomainRole) -> None:
        services.domain_role_remove(actor=request.user, grant=obj)


# -- Audit log ----------------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(PlatformAdminMixin, admin.ModelAdmin):
    read_only = True
    list_display = (
        "created_at",
        "actor_repr",
        "action",
        "target_type",
        "target_repr",
        "domain",
        "project",
        "ip",
    )
    list_filter = ("action", "target_type", "domain", "created_at")
    search_fields = (
        "actor_repr",
        "actor__username",
        "actor__real_name",
        "target_repr",
        "target_id",
        "action",
    )
    list_select_related = ("domain", "project__domain")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "actor",
        "actor_repr",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "domain",
        "project",
        "ip",
        "changes",
        "before_pretty",
        "after_pretty",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return super().get_queryset(request).select_related("actor", "domain", "project__domain")

    @admin.display(description=_("changes"))
    def changes(self, obj: AuditEvent) -> str:
        before, after = obj.before or {}, obj.after or {}
        if not isinstance(before, dict) or not isinstance(after, dict):
            return "—"
        keys = sorted(set(before) | set(after))
        if not keys:
            return "—"

        def show(data: dict[str, Any], key: str) -> str:
            return json.dumps(data[key], ensure_ascii=False, default=str) if key in data else "—"

        rows = format_html_join(
            "",
            '<tr class="{}"><th>{}</th><td>{}</td><td>{}</td></tr>',
            (
                (
                    "tc-changed"
                    if before.get(key) != after.get(key) and obj.before and obj.after
                    else "",
                    key,
                    show(before, key),
                    show(after, key),
                )
                for key in keys
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            gettext("field"),
            gettext("before"),
            gettext("after"),
            rows,
        )

    @admin.display(description=_("before"))
    def before_pretty(self, obj: AuditEvent) -> str:
        return pretty_json(obj.before)

    @admin.display(description=_("after"))
    def after_pretty(self, obj: AuditEvent) -> str:
        return pretty_json(obj.after)
