from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import DefaultRouter

from accounts.api import AuthTokenView, UserViewSet
from billing import api as billing_api
from compute import api as compute_api
from reports import api as reports_api
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
router.register("allocations", billing_api.AllocationViewSet, basename="allocation")
router.register("wallets", billing_api.WalletViewSet, basename="wallet")
router.register(
    "recharge-requests", billing_api.RechargeRequestViewSet, basename="recharge-request"
)
router.register(
    "allocation-requests", billing_api.AllocationRequestViewSet, basename="allocation-request"
)
router.register("transactions", billing_api.TransactionViewSet, basename="transaction")
router.register("prices", billing_api.PriceViewSet, basename="price")
router.register("notifications", billing_api.NotificationViewSet, basename="notification")
router.register("flavors", compute_api.FlavorViewSet, basename="flavor")
router.register("images", compute_api.ImageViewSet, basename="image")
router.register("servers", compute_api.ServerViewSet, basename="server")
router.register("keypairs", compute_api.KeyPairViewSet, basename="keypair")
router.register("statements", reports_api.StatementViewSet, basename="statement")
router.register("reports", reports_api.ReportViewSet, basename="report")

urlpatterns = [
    path("auth/token/", AuthTokenView.as_view(), name="auth-token"),
    path("", include(router.urls)),
    # Billing: per-wallet lists and lock/unlock of tenants (billing.api).
    re_path(
        r"^wallets/(?P<wallet_pk>[^/.]+)/recharges/$",
        billing_api.WalletRechargeViewSet.as_view({"get": "list", "post": "create"}),
        name="wallet-recharges",
    ),
    re_path(
        r"^wallets/(?P<wallet_pk>[^/.]+)/recharge-requests/$",
        billing_api.WalletRechargeRequestViewSet.as_view({"get": "list", "post": "create"}),
        name="wallet-recharge-requests",
    ),
    re_path(r"^domains/(?P<pk>[^/.]+)/lock/$", billing_api.DomainLockView.as_view()),
    re_path(r"^domains/(?P<pk>[^/.]+)/unlock/$", billing_api.DomainUnlockView.as_view()),
    re_path(r"^projects/(?P<pk>[^/.]+)/lock/$", billing_api.ProjectLockView.as_view()),
    re_path(r"^projects/(?P<pk>[^/.]+)/unlock/$", billing_api.ProjectUnlockView.as_view()),
    re_path(r"^memberships/(?P<pk>[^/.]+)/unlock/$", billing_api.MemberUnlockView.as_view()),
    # Compute: overview of a domain's projects, a member's room (compute.api).
    path("compute/overview/", compute_api.OverviewView.as_view(), name="compute-overview"),
    path("compute/room/", compute_api.RoomView.as_view(), name="compute-room"),
    # Keep this last: anything else under /api/v1/ (e.g. `users/1.5/`) is a JSON 404 in the
    # API's error shape, not the portal's HTML page.
    re_path(r"^", api_not_found),
]
