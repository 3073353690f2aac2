"""Django admin for platform staff: real-name users, enrollment codes and requests, rosters.

Access and writes follow `tenancy.admin.PlatformAdminMixin`: permissions from
`tenancy.permissions`, every change through `accounts.services` (audited).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from accounts import services
from accounts.models import EnrollmentCode, EnrollmentRequest, EnrollmentStatus, RosterImport, User
from teachcloud.errors import ServiceError
from tenancy.admin import PlatformAdminMixin, pretty_json

csrf_protect_m = method_decorator(csrf_protect)
sensitive_post_parameters_m = method_decorator(sensitive_post_parameters())

USER_EDIT_FIELDS = [*services.REAL_NAME_FIELDS, "is_active"]


class UserCreationForm(forms.ModelForm):
    """A new real-name user of a domain, or a new platform account (no home domain)."""

    password1 = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Optional. Without a password the user receives an invitation email to choose one."
        ),
    )
    password2 = forms.CharField(
        label=_("Password confirmation"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = User
        fields = (
            "username",
            "real_name",
            "id_number",
            "email",
            "phone",
            "home_domain",
            "platform_role",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password1") != data.get("password2"):
            self.add_error("password2", gettext("The two passwords do not match."))
        if data.get("home_domain") and data.get("platform_role"):
            self.add_error(
                "platform_role",
                gettext("Platform staff have no home domain: leave one of the two empty."),
            )
        elif (
            not data.get("home_domain")
            and not data.get("platform_role")
            and ("home_domain" not in self.errors)
        ):
            self.add_error(
                "home_domain",
                gettext(
                    "Choose the user's home domain, or a platform role for a platform account."
                ),
            )
        return data


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = (
            "username",
            "password",
            "real_name",
            "id_number",
            "email",
            "phone",
            "home_domain",
            "platform_role",
            "is_active",
            "is_staff",
            "is_superuser",
        )


class PasswordForm(AdminPasswordChangeForm):
    """The admin's "change password" form: the password is set through the service, which also
    revokes the user's API tokens (as every password change does)."""

    def save(self, commit: bool = True) -> User:
        usable = self.cleaned_data["set_usable_password"]
        password = self.cleaned_data["password1"] if usable else None
        return services.user_password_set(user=self.user, password=password)


@admin.register(User)
class UserAdmin(PlatformAdminMixin, BaseUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    change_password_form = PasswordForm
    add_form_template = None
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Real name"), {"fields": ("real_name", "id_number", "email", "phone")}),
        (_("Tenancy"), {"fields": ("home_domain",)}),
        (
            _("Platform access"),
            {"fields": ("platform_role", "is_active", "is_staff", "is_superuser")},
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined", "purged_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "real_name",
                    "id_number",
                    "email",
                    "phone",
                    "home_domain",
                    "platform_role",
                    "password1",
                    "password2",
                ),
            },
        ),
    )
    list_display = (
        "username",
        "real_name",
        "id_number",
        "email",
        "home_domain",
        "platform_role",
        "is_active",
        "is_staff",
        "last_login",
    )
    list_filter = ("platform_role", "is_active", "is_staff", "is_superuser", "home_domain")
    search_fields = ("username", "real_name", "id_number", "email", "phone")
    list_select_related = ("home_domain",)
    autocomplete_fields = ("home_domain",)
    date_hierarchy = "date_joined"
    ordering = ("username",)
    filter_horizontal = ()
    service_field_map = {"password": "password1"}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        fields: tuple[str, ...] = (
            "username",
            "home_domain",
            "last_login",
            "date_joined",
            "purged_at",
        )
        if not request.user.is_superuser:
            fields += ("is_superuser",)
        return fields

    @sensitive_post_parameters_m
    @csrf_protect_m
    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # No outer transaction (Django's UserAdmin opens one): the service is durable.
        return self._add_view(request, form_url, extra_context)

    def service_save(self, request: HttpRequest, obj: User, form: Any, change: bool) -> User:
        data = form.cleaned_data
        actor = request.user
        if not change:
            if data.get("home_domain") is not None:
                return services.user_create(
                    actor=actor,
                    domain=data["home_domain"],
                    username=data["username"],
                    real_name=data["real_name"],
                    id_number=data["id_number"],
                    email=data["email"],
                    phone=data["phone"],
                    password=data.get("password1") or None,
                )
            return services.staff_user_create(
                actor=actor,
                username=data["username"],
                real_name=data["real_name"],
                email=data["email"],
                phone=data["phone"],
                password=data.get("password1") or None,
                platform_role=data["platform_role"],
                is_staff=True,
            )
        changed = set(form.changed_data)
        edits = {name: data[name] for name in USER_EDIT_FIELDS if name in changed}
        if edits:
            services.user_update(actor=actor, user=obj, **edits)
        if changed & set(services.PLATFORM_ACCESS_FIELDS):
            # `obj` carries the form's values; fields read-only here keep the stored value.
            services.user_platform_access_set(
                actor=actor,
                user=obj,
                platform_role=obj.platform_role,
                is_staff=obj.is_staff,
                is_superuser=obj.is_superuser,
            )
        return User.objects.get(pk=obj.pk)


# -- Enrollment ---------------------------------------------------------------------------------


@admin.register(EnrollmentCode)
class EnrollmentCodeAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = (
        "code",
        "project",
        "label",
        "uses",
        "max_uses",
        "expires_at",
        "active",
        "created_by",
        "created_at",
    )
    list_filter = ("active", "project__domain", "created_at")
    search_fields = ("code", "label", "project__name", "project__code")
    list_select_related = ("project__domain", "created_by")
    date_hierarchy = "created_at"
    autocomplete_fields = ("project",)
    actions = ("deactivate",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("project", "label", "expires_at", "max_uses")
        return (
            "code",
            "project",
            "label",
            "uses",
            "max_uses",
            "expires_at",
            "active",
            "created_by",
            "created_at",
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A code is never edited, only deactivated (the action needs the list-level right).
        return obj is None and super().has_change_permission(request, obj)

    def service_save(
        self, request: HttpRequest, obj: EnrollmentCode, form: Any, change: bool
    ) -> EnrollmentCode:
        data = form.cleaned_data
        return services.enrollment_code_create(
            actor=request.user,
            project=data["project"],
            label=data["label"],
            expires_at=data["expires_at"],
            max_uses=data["max_uses"],
        )

    @admin.action(description=_("Deactivate the selected codes"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[EnrollmentCode]) -> None:
        done = 0
        for code in queryset.filter(active=True).select_related("project__domain"):
            try:
                services.enrollment_code_deactivate(actor=request.user, code=code)
            except (ServiceError, PermissionDenied) as exc:
                messages.error(request, f"{code}: {getattr(exc, 'detail', exc)}")
            else:
                done += 1
        messages.success(
            request,
            ngettext("%(n)d code deactivated.", "%(n)d codes deactivated.", done) % {"n": done},
        )


@admin.register(EnrollmentRequest)
class EnrollmentRequestAdmin(PlatformAdminMixin, admin.ModelAdmin):
    list_display = (
        "user",
        "user_id_number",
        "project",
        "status",
        "code",
        "created_at",
        "decided_at",
        "decided_by",
    )
    list_filter = ("status", "project__domain", "created_at")
    search_fields = (
        "user__username",
        "user__real_name",
        "user__id_number",
        "project__name",
        "project__code",
        "code__code",
    )
    list_select_related = ("user", "project__domain", "code", "decided_by")
    date_hierarchy = "created_at"
    fields = ("user", "project", "code", "status", "created_at", "decided_at", "decided_by")
    readonly_fields = fields
    actions = ("approve", "reject")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Requests are decided by the actions (through the service), never edited.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description=_("number"), ordering="user__id_number")
    def user_id_number(self, obj: EnrollmentRequest) -> str:
        return obj.user.id_number

    def _decide(self, request: HttpRequest, queryset: QuerySet, approve: bool) -> int:
        done = 0
        for enrollment in queryset.filter(status=EnrollmentStatus.PENDING):
            try:
                services.enrollment_decide(actor=request.user, request=enrollment, approve=approve)
            except (ServiceError, PermissionDenied) as exc:
                messages.error(request, f"{enrollment}: {getattr(exc, 'detail', exc)}")
            else:
                done += 1
        return done

    @admin.action(description=_("Approve the selected requests"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[EnrollmentRequest]) -> None:
        done = self._decide(request, queryset, approve=True)
        messages.success(
            request,
            ngettext("%(n)d request approved.", "%(n)d requests approved.", done) % {"n": done},
        )

    @admin.action(description=_("Reject the selected requests"), permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[EnrollmentRequest]) -> None:
        done = self._decide(request, queryset, approve=False)
        messages.success(
            request,
            ngettext("%(n)d request rejected.", "%(n)d requests rejected.", done) % {"n": done},
        )


@admin.register(RosterImport)
class RosterImportAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Roster imports are uploaded in the portal; here they are only looked at."""

    read_only = True
    list_display = (
        "filename",
        "domain",
        "project",
        "status",
        "total",
        "processed",
        "created",
        "added",
        "existing",
        "errors",
        "uploaded_by",
        "created_at",
    )
    list_filter = ("status", "domain", "created_at")
    search_fields = ("filename", "uploaded_by__username", "domain__code", "project__code")
    list_select_related = ("domain", "project__domain", "uploaded_by")
    date_hierarchy = "created_at"
    fields = (
        "filename",
        "domain",
        "project",
        "uploaded_by",
        "status",
        "total",
        "processed",
        "created",
        "added",
        "existing",
        "errors",
        "error",
        "created_at",
        "finished_at",
        "result_table",
    )
    readonly_fields = fields

    @admin.display(description=_("results"))
    def result_table(self, obj: RosterImport) -> str:
        rows = obj.results or []
        if not rows or not isinstance(rows, list):
            return pretty_json(rows)
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    r.get("row", ""),
                    r.get("id_number", ""),
                    r.get("real_name", ""),
                    r.get("result", ""),
                    r.get("detail", ""),
                )
                for r in rows
                if isinstance(r, dict)
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            gettext("row"),
            gettext("number"),
            gettext("real name"),
            gettext("result"),
            gettext("detail"),
            body,
        )
