from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import DefaultRouter

from accounts.api import AuthTokenView, UserViewSet
from tenancy.api import DomainRoleViewSet, DomainViewSet, MembershipViewSet, ProjectViewSet


@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse({"code": "not_found", "detail": _("Not found.")}, status=404)


router = DefaultRouter(trailing_slash=True)
router.register("domains", DomainViewSet, basename="domain")
router.register("projects", ProjectViewSet, basename="project")
router.register("users", UserViewSet, basename="user")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("domain-roles", DomainRoleViewSet, basename="domain-role")

urlpatterns = [
    path("auth/token/", AuthTokenView.as_view(), name="auth-token"),
    path("", include(router.urls)),
    # Keep this last: anything else under /api/v1/ (e.g. `users/1.5/`) is a JSON 404 in the
    # API's error shape, not the portal's HTML page.
    re_path(r"^", api_not_found),
]
