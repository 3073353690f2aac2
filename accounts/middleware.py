from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.selectors import user_has_mfa
from tenancy.permissions import requires_mfa

EXEMPT_PREFIXES = ("/accounts/", "/static/", "/i18n/", "/api/", "/media/", "/favicon")


class MfaEnrolmentMiddleware:
    """Users whose role requires MFA enrol at their next portal (or admin) visit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(EXEMPT_PREFIXES)
            and requires_mfa(user)
            and not user_has_mfa(user)
        ):
            messages.warning(
                request,
                _(
                    "Your role requires two-factor authentication. Set up an authenticator app "
                    "to continue."
                ),
            )
            return redirect(reverse("mfa_activate_totp"))
        return self.get_response(request)
