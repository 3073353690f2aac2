"""Per-account sign-in limits (django-axes), the same for the portal, the admin and the API.

Failed sign-ins are counted per account, whatever the client's address (issue 12.3): after
AXES_FAILURE_LIMIT failures within AXES_COOLOFF_TIME the account is locked for the rest of that
time — even the right password is refused — from the portal's sign-in form, the admin's and
`POST /api/v1/auth/token/` alike. Addresses are not part of the key: an attacker who rotates
addresses (or forged X-Forwarded-For headers) still counts against the one account, and a whole
school behind one NAT address is not locked out by a few mistyped passwords. Addresses are
limited separately (DRF's throttle on the token endpoint, allauth's per-address rate limit).

The settings in teachcloud/settings/base.py point django-axes at the functions here: which
account an attempt names (`account_key`), the client address it records (`client_address`) and
the answer to a locked account (`lockout_response`). The token view tells axes about the
attempts `authenticate()` does not see (`signin_failed`, `signin_succeeded`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from axes.utils import reset
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import ngettext

from accounts.models import User
from teachcloud.errors import ServiceError
from teachcloud.net import client_ip


def account_key(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The account an attempt is for (AXES_USERNAME_CALLABLE), the same whichever identifier
    names it: the API's `username` and the portal's `login` may be a username or an email
    address, in any case. An identifier that names no account is counted as typed (lower
    case), so an unknown name is locked exactly like a known one and tells nothing."""
    identifier = ""
    if credentials:
        identifier = credentials.get("username") or credentials.get("email") or ""
    if not identifier and request is not None:
        identifier = request.POST.get("login") or request.POST.get("username") or ""
    identifier = str(identifier).strip()
    if not identifier:
        return None
    known: dict[str, str] = request.__dict__.setdefault("_signin_keys", {}) if request else {}
    if identifier not in known:
        user = (
            User.objects.filter(username__iexact=identifier).order_by("pk").first()
            or User.objects.filter(email__iexact=identifier).order_by("pk").first()
        )
        known[identifier] = (user.username if user else identifier).lower()[:255]
    return known[identifier]


def client_address(request: HttpRequest) -> str | None:
    """The client's address as teachcloud.net.client_ip finds it (trusted proxies only), for the
    record axes keeps (AXES_CLIENT_IP_CALLABLE); None when that is not an IP address (a
    forwarded header from a misconfigured proxy), which the database column would refuse."""
    address = client_ip(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def account_locked() -> ServiceError:
    minutes = max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))
    return ServiceError(
        ngettext(
            "Too many failed sign-ins for this account: signing in to it is blocked for up to "
            "%(minutes)d minute, even with the right password.",
            "Too many failed sign-ins for this account: signing in to it is blocked for up to "
            "%(minutes)d minutes, even with the right password.",
            minutes,
        )
        % {"minutes": minutes},
        code="account_locked",
        status=429,
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """What a locked account's sign-in gets (AXES_LOCKOUT_CALLABLE, called by axes' middleware):
    `{code: "account_locked", detail}` 429 on /api/, the portal's page elsewhere."""
    error = account_locked()
    if request.path.startswith("/api/"):
        return JsonResponse({"code": error.code, "detail": error.detail}, status=error.status)
    return render(request, "account/locked_out.html", {"detail": error.detail}, status=error.status)


def is_locked_out(request: HttpRequest) -> bool:
    """Whether axes refused (or has just locked) the account this request signs in to."""
    return bool(getattr(request, "axes_locked_out", False))


def signin_failed(request: HttpRequest, *, username: str) -> None:
    """Count a failed sign-in that `authenticate()` did not see: the right password with a wrong
    second factor is a failed sign-in too (else the one-time code could be guessed without
    limit, from as many addresses as an attacker has)."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)


def signin_succeeded(request: HttpRequest, *, username: str) -> None:
    """A token was issued: forget the account's failures (AXES_RESET_ON_SUCCESS), as a portal
    sign-in does through Django's user_logged_in signal."""
    if settings.AXES_ENABLED and settings.AXES_RESET_ON_SUCCESS:
        key = account_key(request, {"username": username})
        if key:
            reset(username=key)
