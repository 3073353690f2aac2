"""Django admin of compute for platform staff: cloud credentials (password write-only, stored
encrypted, "test connection"), the flavor and image catalogue (offered to whom; "sync from the
cloud"), the capacity page, servers (read-only; stop and delete through the services) and
servers found in the cloud that the portal does not know (adopt or delete).

Same rules as every TeachCloud admin (`tenancy.admin.PlatformAdminMixin`): access through
tenancy.permissions, every write through a service. Finance staff may look at servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from compute import platform, services
from compute.backends.base import BackendError
from compute.models import (
    CloudCredential,
    CloudDomain,
    CloudProject,
    Flavor,
    Image,
    Server,
    ServerStatus,
    UnknownServer,
)
from teachcloud.errors import ServiceError
from tenancy.admin import PlatformAdminMixin
from tenancy.permissions import roles_of


def _platform_only(request: HttpRequest) -> None:
    if not roles_of(request.user).platform:
        raise PermissionDenied


def _each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    perform: Callable[[Any], Any],
    done: str,
) -> None:
    """Run `perform` on every selected object; one message for the successes, one per refusal."""
    count = 0
    for obj in queryset:
        try:
            perform(obj)
        except (ServiceError, PermissionDenied, BackendError) as exc:
            text = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            model_admin.message_user(request, f"{obj}: {text}", messages.ERROR)
        else:
            count += 1
    if count:
        model_admin.message_user(request, done % {"count": count}, messages.SUCCESS)


# -- Cloud credentials ------------------------------------------------------------------------


class CloudCredentialForm(forms.ModelForm):
    auth_url = forms.URLField(
        label=_("Keystone URL"),
        max_length=300,
        assume_scheme="https",
        help_text=_("e.g. https://keystone.example.edu:5000/v3"),
    )
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "The service account's password. Stored encrypted and never shown again; leave "
            "empty to keep the stored one."
        ),
    )

    class Meta:
        model = CloudCredential
        fields = [*platform.CREDENTIAL_FIELDS]

    def _get_validation_exclusions(self) -> Any:
        # "Only one active credential" is the service's business: it deactivates the other.
        return {*super()._get_validation_exclusions(), "active"}


@admin.register(CloudCredential)
class CloudCredentialAdmin(PlatformAdminMixin, admin.ModelAdmin):
    form = CloudCredentialForm
    list_display = (
        "name",
        "auth_url",
        "username",
        "project_name",
        "region_name",
        "active",
        "simulated",
        "password_stored",
        "updated_at",
    )
    list_filter = ("active", "simulated")
    search_fields = ("name", "auth_url", "username")
    actions = ("test_connection",)
    fieldsets = (
        (None, {"fields": ("name", "active", "simulated")}),
        (
            _("Keystone"),
            {
                "fields": (
                    "auth_url",
                    "username",
                    "password",
                    "project_name",
                    "user_domain_name",
                    "project_domain_name",
                    "region_name",
                    "verify_tls",
                )
            },
        ),
    )

    @admin.display(description=_("password stored"), boolean=True)
    def password_stored(self, obj: CloudCredential) -> bool:
        return bool(obj.password_encrypted)

    def service_save(
        self, request: HttpRequest, obj: CloudCredential, form: Any, change: bool
    ) -> CloudCredential:
        data = form.cleaned_data
        return platform.cloud_credential_save(
            actor=request.user,
            credential=obj if change else None,
            values={name: data[name] for name in platform.CREDENTIAL_FIELDS if name in data},
            password=data.get("password") or "",
        )

    @admin.action(description=_("Test the connection with the selected credentials"))
    def test_connection(self, request: HttpRequest, queryset: QuerySet) -> None:
        _platform_only(request)
        for credential in queryset:
            result = platform.cloud_credential_test(actor=request.user, credential=credential)
            level = messages.SUCCESS if result["ok"] else messages.ERROR
            self.message_user(request, f"{credential.name}: {result['message']}", level)


# -- Catalogue ----------------------------------------------------------------------------------


class CatalogueAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Flavors and images mirror the cloud (no add, no delete); platform staff choose whether
    each is offered and to which domains and projects (none chosen: everybody)."""

    change_list_template = "compute/admin/catalogue_change_list.html"
    list_filter = ("enabled", "removed")
    search_fields = ("name", "cloud_id")
    autocomplete_fields = ("domains", "projects")
    actions = ("sync_catalogue", "offer", "withdraw")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                domain_total=Count("domains", distinct=True),
                project_total=Count("projects", distinct=True),
                live_servers=Count(
                    "servers", filter=~Q(servers__status=ServerStatus.DELETED), distinct=True
                ),
            )
        )

    @admin.display(description=_("offered to"))
    def offered_to(self, obj: Any) -> str:
        domains, projects = getattr(obj, "domain_total", 0), getattr(obj, "project_total", 0)
        if not domains and not projects:
            return gettext("everybody")
        return gettext("%(d)d domains, %(p)d projects") % {"d": domains, "p": projects}

    @admin.display(description=_("VMs"), ordering="live_servers")
    def server_count(self, obj: Any) -> int:
        return getattr(obj, "live_servers", 0)

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return platform.catalogue_item_update(
            actor=request.user,
            item=obj,
            enabled=data["enabled"],
            domains=data["domains"],
            projects=data["projects"],
        )

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "sync/",
                self.admin_site.admin_view(self.sync_view),
                name="{}_{}_sync".format(*info),
            ),
            *super().get_urls(),
        ]

    def _sync(self, request: HttpRequest) -> None:
        from compute.sync import catalogue_sync

        _platform_only(request)
        try:
            report = catalogue_sync()
        except (BackendError, ServiceError) as exc:
            text = getattr(exc, "message", None) or getattr(exc, "detail", str(exc))
            self.message_user(
                request,
                gettext("The catalogue could not be synced: %(error)s") % {"error": text},
                messages.ERROR,
            )
            return
        self.message_user(request, catalogue_summary(report), messages.SUCCESS)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        return require_POST(self._sync_and_back)(request)

    def _sync_and_back(self, request: HttpRequest) -> HttpResponse:
        self._sync(request)
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_changelist".format(*info)))

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        info = self.opts.app_label, self.opts.model_name
        extra_context = {
            **(extra_context or {}),
            "sync_url": reverse("admin:{}_{}_sync".format(*info)),
            "may_sync": roles_of(request.user).platform,
            "capacity_url": reverse("admin:compute_server_capacity"),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Sync the flavor and image catalogue from the cloud"))
    def sync_catalogue(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._sync(request)

    @admin.action(description=_("Offer the selected items"))
    def offer(self, request: HttpRequest, queryset: QuerySet) -> None:
        _platform_only(request)
        count = platform.catalogue_offer(actor=request.user, items=queryset, enabled=True)
        self.message_user(request, gettext("%(count)d now offered.") % {"count": count})

    @admin.action(description=_("Withdraw the selected items (existing VMs keep running)"))
    def withdraw(self, request: HttpRequest, queryset: QuerySet) -> None:
        _platform_only(request)
        count = platform.catalogue_offer(actor=request.user, items=queryset, enabled=False)
        self.message_user(request, gettext("%(count)d withdrawn.") % {"count": count})


def catalogue_summary(report: dict[str, Any]) -> str:
    """One line of what `compute.sync.catalogue_sync` did (its lists of names, counted)."""
    words = {
        "created": gettext("new"),
        "updated": gettext("changed"),
        "removed": gettext("gone"),
        "restored": gettext("back"),
    }
    parts = []
    unchanged = gettext("no change")
    for kind, label in (("flavors", gettext("flavors")), ("images", gettext("images"))):
        result = report.get(kind) or {}
        counts = ", ".join(
            f"{words.get(key, key)} {len(names)}" for key, names in result.items() if names
        )
        parts.append(f"{label}: {counts or unchanged}")
    return gettext("Catalogue synced from the cloud (%(parts)s).") % {"parts": "; ".join(parts)}


@admin.register(Flavor)
class FlavorAdmin(CatalogueAdmin):
    list_display = (
        "name",
        "vcpus",
        "ram_mib",
        "disk_gib",
        "enabled",
        "removed",
        "offered_to",
        "server_count",
        "synced_at",
    )
    fields = (
        "name",
        "cloud_id",
        "vcpus",
        "ram_mib",
        "disk_gib",
        "removed",
        "synced_at",
        "enabled",
        "domains",
        "projects",
    )
    readonly_fields = ("name", "cloud_id", "vcpus", "ram_mib", "disk_gib", "removed", "synced_at")


@admin.register(Image)
class ImageAdmin(CatalogueAdmin):
    list_display = (
        "name",
        "min_disk_gib",
        "min_ram_mib",
        "enabled",
        "removed",
        "offered_to",
        "server_count",
        "synced_at",
    )
    fields = (
        "name",
        "cloud_id",
        "min_disk_gib",
        "min_ram_mib",
        "removed",
        "synced_at",
        "enabled",
        "domains",
        "projects",
    )
    readonly_fields = ("name", "cloud_id", "min_disk_gib", "min_ram_mib", "removed", "synced_at")


# -- Servers ----------------------------------------------------------------------------------


@admin.register(Server)
class ServerAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Every VM, read-only; stop and delete through the same services as the portal. The
    capacity page (hypervisors, allocated vs held vs total) hangs off this list."""

    read_only = True
    finance_can_view = True
    change_list_template = "compute/admin/server_change_list.html"
    list_display = (
        "name",
        "project",
        "owner",
        "status",
        "task",
        "flavor",
        "resources",
        "ips",
        "cloud_id",
        "created_at",
    )
    list_filter = ("status", "task", "stop_cause", "project__domain", "flavor", "image")
    search_fields = (
        "name",
        "cloud_id",
        "owner__username",
        "owner__real_name",
        "project__code",
        "project__name",
    )
    list_select_related = ("project__domain", "owner", "flavor", "image")
    date_hierarchy = "created_at"
    actions = ("stop_servers", "delete_servers")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description=_("vCPU / RAM / disk"))
    def resources(self, obj: Server) -> str:
        return f"{obj.vcpus} / {obj.ram_gib} GiB / {obj.disk_gib} GiB"

    @admin.display(description=_("IP addresses"))
    def ips(self, obj: Server) -> str:
        return ", ".join(obj.ip_list) or "—"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)

    @admin.action(description=_("Stop the selected servers"))
    def stop_servers(self, request: HttpRequest, queryset: QuerySet) -> None:
        _platform_only(request)
        _each(
            self,
            request,
            queryset,
            lambda s: services.server_stop(actor=request.user, server=s),
            gettext("%(count)d servers are stopping."),
        )

    @admin.action(description=_("Delete the selected servers (their disks are lost)"))
    def delete_servers(self, request: HttpRequest, queryset: QuerySet) -> None:
        _platform_only(request)
        _each(
            self,
            request,
            queryset,
            lambda s: services.server_delete(actor=request.user, server=s),
            gettext("%(count)d servers are being deleted."),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "capacity/",
                self.admin_site.admin_view(self.capacity_view),
                name="compute_server_capacity",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "may_see_capacity": roles_of(request.user).platform,
        }
        return super().changelist_view(request, extra_context)

    def capacity_view(self, request: HttpRequest) -> HttpResponse:
        """The cloud's hypervisors and TeachCloud's allocated vs held vs total."""
        _platform_only(request)
        report = platform.capacity_report(actor=request.user)
        labels = {
            "vcpus": gettext("vCPUs"),
            "ram_gib": gettext("RAM (GiB)"),
            "disk_gib": gettext("disk (GiB)"),
        }
        for row in report["resources"]:
            row["label"] = labels[row["resource"]]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Capacity"),
            "subtitle": None,
            "opts": self.opts,
            "report": report,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "compute/admin/capacity.html", context)


# -- Unknown cloud servers ----------------------------------------------------------------------


@admin.register(UnknownServer)
class UnknownServerAdmin(PlatformAdminMixin, admin.ModelAdmin):
    """Servers the sync found in our cloud projects without a portal record: adopt them (their
    metadata names a member of the project) or delete them in the cloud."""

    read_only = True
    list_display = (
        "name",
        "cloud_id",
        "cloud_project_id",
        "cloud_status",
        "owner_hint",
        "resolution",
        "first_seen",
        "last_seen",
    )
    list_filter = ("resolution", "cloud_status")
    search_fields = ("name", "cloud_id", "cloud_project_id")
    actions = ("adopt", "delete_in_cloud")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description=_("owner (metadata)"))
    def owner_hint(self, obj: UnknownServer) -> str:
        meta = obj.metadata or {}
        return meta.get("teachcloud_owner_name") or meta.get("teachcloud_owner") or "—"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not roles_of(request.user).platform:
            return {}
        return super().get_actions(request)

    @admin.action(description=_("Adopt: record them as VMs of the member their metadata names"))
    def adopt(self, request: HttpRequest, queryset: QuerySet) -> None:
        from compute.sync import unknown_server_adopt

        _platform_only(request)
        _each(
            self,
            request,
            queryset,
            lambda u: unknown_server_adopt(actor=request.user, unknown=u),
            gettext("%(count)d servers adopted."),
        )

    @admin.action(description=_("Delete them in the cloud"))
    def delete_in_cloud(self, request: HttpRequest, queryset: QuerySet) -> None:
        from compute.sync import unknown_server_delete

        _platform_only(request)
        _each(
            self,
            request,
            queryset,
            lambda u: unknown_server_delete(actor=request.user, unknown=u),
            gettext("%(count)d servers deleted in the cloud."),
        )


# -- Cloud tenants (read-only) ------------------------------------------------------------------


@admin.register(CloudDomain)
class CloudDomainAdmin(PlatformAdminMixin, admin.ModelAdmin):
    read_only = True
    list_display = ("domain", "cloud_id", "created_at", "deleted_at")
    search_fields = ("domain__name", "domain__code", "cloud_id")
    list_select_related = ("domain",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]


@admin.register(CloudProject)
class CloudProjectAdmin(PlatformAdminMixin, admin.ModelAdmin):
    read_only = True
    list_display = (
        "project",
        "cloud_id",
        "quota_vcpus",
        "quota_ram_gib",
        "quota_synced_at",
        "error_state",
        "deleted_at",
    )
    search_fields = ("project__name", "project__code", "cloud_id")
    list_select_related = ("project__domain",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description=_("last error"))
    def error_state(self, obj: CloudProject) -> str:
        if not obj.last_error:
            return "—"
        return format_html('<span class="tc-error">{}</span>', obj.last_error[:120])
