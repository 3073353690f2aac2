"""Portal pages of billing (included into the "portal" namespace by teachcloud.portal_urls)."""

from django.urls import path

from billing import views

urlpatterns = [
    path("domains/<int:pk>/billing/", views.domain_billing, name="domain_billing"),
    path("domains/<int:pk>/billing/quote/", views.domain_quote, name="billing_domain_quote"),
    path(
        "domains/<int:pk>/billing/allocation/",
        views.domain_allocation,
        name="billing_domain_allocation",
    ),
    path("projects/<int:pk>/billing/", views.project_billing, name="project_billing"),
    path("projects/<int:pk>/billing/quote/", views.project_quote, name="billing_project_quote"),
    path(
        "projects/<int:pk>/billing/allocation/",
        views.project_allocation,
        name="billing_project_allocation",
    ),
    path(
        "projects/<int:pk>/billing/defaults/",
        views.project_defaults,
        name="billing_project_defaults",
    ),
    path("wallets/<int:pk>/recharge/", views.wallet_recharge, name="billing_wallet_recharge"),
    path(
        "wallets/<int:pk>/recharge-request/",
        views.recharge_request_create,
        name="billing_recharge_request",
    ),
    path("wallets/<int:pk>/credit/", views.wallet_credit, name="billing_wallet_credit"),
    path(
        "wallets/<int:pk>/billing-admin/",
        views.wallet_billing_admin,
        name="billing_wallet_billing_admin",
    ),
    path("wallets/<int:pk>/alerts/", views.wallet_alerts, name="billing_wallet_alerts"),
    path("wallets/<int:pk>/lock/", views.wallet_lock, name="billing_wallet_lock"),
    path("wallets/<int:pk>/unlock/", views.wallet_unlock, name="billing_wallet_unlock"),
    path(
        "recharge-requests/<int:pk>/decide/",
        views.recharge_request_decide,
        name="billing_recharge_request_decide",
    ),
    path("memberships/<int:pk>/limit/", views.member_limit, name="billing_member_limit"),
    path("memberships/<int:pk>/unlock/", views.member_unlock, name="billing_member_unlock"),
    path("usage/", views.my_usage, name="my_usage"),
    path(
        "projects/<int:pk>/billing/request/",
        views.project_allocation_request,
        name="billing_project_allocation_request",
    ),
    path(
        "usage/request/",
        views.member_allocation_request,
        name="billing_member_allocation_request",
    ),
    path(
        "allocation-requests/<int:pk>/decide/",
        views.allocation_request_decide,
        name="billing_allocation_request_decide",
    ),
    path("notifications/", views.my_notifications, name="my_notifications"),
    path("notifications/<int:pk>/", views.my_notification, name="my_notification"),
    path(
        "domains/<int:pk>/notifications/",
        views.domain_notifications,
        name="domain_notifications",
    ),
    path(
        "domains/<int:pk>/notifications/<int:nid>/",
        views.domain_notification,
        name="domain_notification",
    ),
    path(
        "projects/<int:pk>/notifications/",
        views.project_notifications,
        name="project_notifications",
    ),
    path(
        "projects/<int:pk>/notifications/<int:nid>/",
        views.project_notification,
        name="project_notification",
    ),
]
