"""REST API of the accounts app (/api/v1/): API tokens and real-name users."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services, signin_limits
from accounts.models import User
from accounts.selectors import user_has_mfa, verify_mfa_code
from accounts.serializers import (
    AuthTokenRequestSerializer,
    AuthTokenRevokeQuerySerializer,
    AuthTokenSerializer,
    UserCreateSerializer,
    UserFilterSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from teachcloud.api.parsers import StrictJSONParser
from teachcloud.api.permissions import mfa_enrolment_required
from teachcloud.api.throttling import SwitchableScopedRateThrottle
from teachcloud.errors import ServiceError
from tenancy import selectors
from tenancy.api import JsonApiMixin, refuse_unknown_query, validated_body, validated_query
from tenancy.permissions import requires_mfa


class AuthTokenView(APIView):
    """POST: exchange a username (or email), password and, with MFA, a one-time code for an
    expiring token. DELETE: revoke the token the request carries, or every token of the caller
    with `?all=1`."""

    parser_classes = [StrictJSONParser]
    throttle_scope = "auth_token"

    def _revoking(self) -> bool:
        request = getattr(self, "request", None)  # None while drf-spectacular builds its mock
        return request is not None and request.method == "DELETE"

    def get_authenticators(self) -> list:
        # Getting a token presents a password: a stale token header must not stand in the way
        # (and a session's CSRF rules do not apply). Revoking presents the token (or a session).
        return super().get_authenticators() if self._revoking() else []

    def get_permissions(self) -> list:
        # Revoking is open to a signed-in user the MFA policy has not let in yet: it only takes
        # access away.
        return [IsAuthenticated()] if self._revoking() else [AllowAny()]

    def get_throttles(self) -> list:
        return [] if self._revoking() else [SwitchableScopedRateThrottle()]

    @extend_schema(
        tags=["auth"],
        summary="Get an API token",
        description=gettext_lazy(
            "Every call makes a new token that expires after the configured lifetime "
            "(TEACHCLOUD_TOKEN_TTL_HOURS, 24 h unless the operator changed it). Only a digest "
            "of the token is stored: keep the answer. Failed attempts are counted per "
            "account, with the portal's: after too many the account is locked for a while "
            "(429 `account_locked`), whatever the password."
        ),
        request=AuthTokenRequestSerializer,
        responses={200: AuthTokenSerializer},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        refuse_unknown_query(request)
        data = validated_body(AuthTokenRequestSerializer, request)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if signin_limits.is_locked_out(request._request):
            raise signin_limits.account_locked()  # even with the right password
        if user is None or not user.is_active:
            raise ServiceError(
                _("Wrong username or password, or the account is not active."),
                code="invalid_credentials",
            )
        if requires_mfa(user) and not user_has_mfa(user):
            # The policy wants a second factor this account does not have: no token for a
            # password alone (enrol in the portal first).
            raise mfa_enrolment_required()
        if user_has_mfa(user):
            otp = data.get("otp", "")
            if not otp:
                raise ServiceError(
                    _(
                        "This account uses two-factor authentication: send the code from your "
                        "authenticator app (or a recovery code) as `otp`."
                    ),
                    code="mfa_required",
                    fields={"otp": [_("This field is required.")]},
                )
            if not verify_mfa_code(user, otp):
                signin_limits.signin_failed(request._request, username=data["username"])
                if signin_limits.is_locked_out(request._request):
                    raise signin_limits.account_locked()
                raise ServiceError(
                    _("The two-factor code is wrong or was already used."),
                    code="mfa_invalid",
                    fields={"otp": [_("Wrong code.")]},
                )
        signin_limits.signin_succeeded(request._request, username=data["username"])
        token, key = services.token_create(user=user)
        return Response(AuthTokenSerializer({"token": key, "expiry": token.expiry}).data)

    @extend_schema(
        tags=["auth"],
        summary="Revoke API tokens",
        description=gettext_lazy(
            "Revokes the token this request carries (`Authorization: Token <token>`), or with "
            "`?all=1` every token of yours (with a session too). Tokens are also revoked when "
            "your password changes and when your account is deactivated."
        ),
        parameters=[AuthTokenRevokeQuerySerializer],
        request=None,
        responses={204: OpenApiResponse(description=gettext_lazy("Revoked."))},
    )
    def delete(self, request: Request) -> Response:
        refuse_unknown_query(request, frozenset({"all"}))
        query = validated_query(AuthTokenRevokeQuerySerializer, request)
        validated_body(serializers.Serializer, request)  # no body fields: `{"all": 1}` is a 400
        if query.get("all") == "1":
            services.tokens_revoke(user=request.user)
        elif isinstance(request.auth, AuthToken):
            services.token_revoke(token=request.auth)
        else:
            raise ServiceError(
                _(
                    "This request carries no API token to revoke: send it as "
                    "`Authorization: Token <token>`, or revoke every token of yours with ?all=1."
                ),
                code="no_token",
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["users"])
class UserViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Real-name users. Real-name fields are changed only by admins, and every change is
    audited."""

    queryset = User.objects.none()  # for the schema; requests use get_queryset()
    serializer_class = UserSerializer

    def get_queryset(self):
        user = self.request.user
        return selectors.with_personal_data(selectors.users_visible_to(user), user)

    @extend_schema(
        summary="List the users you can see",
        parameters=[UserFilterSerializer],
        responses=UserSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(UserFilterSerializer, request)
        queryset = self.get_queryset()
        if "domain" in filters:
            queryset = queryset.filter(home_domain_id=filters["domain"])
        if filters.get("search"):
            term = filters["search"]
            personal = Q(id_number__icontains=term) | Q(email__icontains=term)
            queryset = queryset.filter(  # personal data only where the reader may see it
                Q(username__icontains=term)
                | Q(real_name__icontains=term)
                | (Q(personal=True) & personal)
            )
        return self.paginated(queryset, UserSerializer)

    @extend_schema(summary="Show yourself", responses=UserSerializer)
    @action(detail=False, methods=["get"], url_path="me")
    def me(self, request: Request) -> Response:
        return Response(UserSerializer(self._shown(request.user)).data)

    @extend_schema(
        summary="Create a real-name user of a domain",
        request=UserCreateSerializer,
        responses={201: UserSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(UserCreateSerializer, request)
        user = services.user_create(
            actor=request.user,
            domain=data["domain"],
            username=data["username"],
            real_name=data["real_name"],
            id_number=data["id_number"],
            email=data["email"],
            phone=data["phone"],
            password=data.get("password"),
        )
        user.personal = True  # the creator just typed these values
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a user", responses=UserSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(UserSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change real-name fields (audited) or (de)activate a user",
        request=UserUpdateSerializer,
        responses=UserSerializer,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        changes = validated_body(UserUpdateSerializer, request)
        user = services.user_update(actor=request.user, user=user, **changes)
        return Response(UserSerializer(self._shown(user)).data)

    def _shown(self, user: User) -> User:
        """The user as the reader may see them (the `personal` annotation): a write's answer
        must not show what a read would hide (an empty PATCH is a write that changes nothing)."""
        return self.get_queryset().get(pk=user.pk)
