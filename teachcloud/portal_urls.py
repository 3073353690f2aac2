"""The server-rendered portal (namespace "portal")."""

from django.urls import include, path

from accounts import views as accounts_views
from tenancy import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    # Domains
    path("domains/<int:pk>/", views.domain_detail, name="domain_detail"),
    path("domains/<int:pk>/projects/new/", views.project_create, name="project_create"),
    path("domains/<int:pk>/roles/appoint/", views.domain_role_appoint, name="domain_role_appoint"),
    path("domains/<int:pk>/users/", accounts_views.domain_users, name="domain_users"),
    path("domains/<int:pk>/import/", accounts_views.domain_import, name="domain_import"),
    path("domains/<int:pk>/audit/", views.domain_audit, name="domain_audit"),
    path("domain-roles/<int:pk>/remove/", views.domain_role_remove, name="domain_role_remove"),
    # Projects
    path("projects/<int:pk>/", views.project_detail, name="project_detail"),
    path("projects/<int:pk>/members/add/", views.member_add, name="member_add"),
    path("projects/<int:pk>/members/new/", views.member_create, name="member_create"),
    path(
        "projects/<int:pk>/enrollment/",
        accounts_views.project_enrollment,
        name="project_enrollment",
    ),
    path("projects/<int:pk>/import/", accounts_views.project_import, name="project_import"),
    path("projects/<int:pk>/audit/", views.project_audit, name="project_audit"),
    path("memberships/<int:pk>/role/", views.membership_role, name="membership_role"),
    path("memberships/<int:pk>/remove/", views.membership_remove, name="membership_remove"),
    # Enrollment
    path(
        "enrollment-codes/<int:pk>/deactivate/",
        accounts_views.enrollment_code_deactivate,
        name="enrollment_code_deactivate",
    ),
    path(
        "enrollment-requests/<int:pk>/decide/",
        accounts_views.enrollment_decide,
        name="enrollment_decide",
    ),
    path("join/<str:code>/", accounts_views.join, name="join"),
    path("join/<str:code>/waiting/", accounts_views.join_waiting, name="join_waiting"),
    # Users and roster imports
    path("users/<int:pk>/", accounts_views.user_detail, name="user_detail"),
    path("imports/<int:pk>/", accounts_views.roster_import, name="roster_import"),
    path(
        "imports/<int:pk>/progress/",
        accounts_views.roster_import_progress,
        name="roster_import_progress",
    ),
    # Billing: wallets, allocations, member limits, usage
    path("", include("billing.urls")),
    # Compute: VMs, the create form, a domain's overview, project settings (course end)
    path("", include("compute.urls")),
    # Reports: report pages, background exports, monthly statements
    path("", include("reports.urls")),
]
