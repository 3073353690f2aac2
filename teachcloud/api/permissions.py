"""The API's default permission: signed in, and enrolled in MFA where the policy requires it."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.permissions import IsAuthenticated

from accounts.selectors import user_has_mfa
from teachcloud.errors import ServiceError
from tenancy.permissions import requires_mfa


def mfa_enrolment_required() -> ServiceError:
    return ServiceError(
        _(
            "Your role requires two-factor authentication: set up an authenticator app in the "
            "portal first. Until then the API is closed to you."
        ),
        code="mfa_enrolment_required",
        status=403,
    )


class IsAuthenticatedAndEnrolled(IsAuthenticated):
    """A user whom the MFA policy (TEACHCLOUD_MFA_ENFORCED, …_REQUIRED_ROLES) requires to have
    a second factor gets no API access — by session or by token — until enrolled: the portal
    sends them to enrolment (accounts.middleware), the API answers 403 mfa_enrolment_required."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if requires_mfa(request.user) and not user_has_mfa(request.user):
            raise mfa_enrolment_required()
        return True
