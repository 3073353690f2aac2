"""Portal pages of compute (included into the "portal" namespace by teachcloud.portal_urls)."""

from django.urls import path, re_path

from compute import views

urlpatterns = [
    path("vms/", views.my_servers, name="my_servers"),
    path("vms/<int:pk>/", views.server_detail, name="server_detail"),
    path("vms/<int:pk>/rename/", views.server_rename, name="server_rename"),
    path("vms/<int:pk>/console/", views.server_console, name="server_console"),
    re_path(
        r"^vms/(?P<pk>[0-9]+)/(?P<action>start|stop|reboot|delete)/$",
        views.server_action,
        name="server_action",
    ),
    path("projects/<int:pk>/vms/", views.project_servers, name="project_servers"),
    path("projects/<int:pk>/vms/new/", views.server_create, name="server_create"),
    path("projects/<int:pk>/settings/", views.project_settings, name="project_settings"),
    path("domains/<int:pk>/vms/", views.domain_servers, name="domain_servers"),
    path("ssh-keys/", views.keypairs, name="keypairs"),
    path("ssh-keys/<int:pk>/delete/", views.keypair_delete, name="keypair_delete"),
]
