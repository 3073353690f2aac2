"""The Django admin is for platform staff (operators, finance): is_staff alone opens nothing."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from tenancy.permissions import roles_of


class TeachCloudAdminSite(admin.AdminSite):
    site_header = _("TeachCloud platform administration")
    site_title = _("TeachCloud admin")
    index_title = _("Platform")

    def has_permission(self, request: HttpRequest) -> bool:
        roles = roles_of(request.user)
        return bool(
            request.user.is_active and request.user.is_staff and (roles.platform or roles.finance)
        )


class TeachCloudAdminConfig(AdminConfig):
    default_site = "teachcloud.admin_site.TeachCloudAdminSite"
