"""Failed sign-ins are limited per account across the portal and the API (issue 12.3, django-axes):
rotating client addresses — real ones or X-Forwarded-For — does not escape the limit, a locked
account is refused even the right password until the cool-off ends, and other accounts go on."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from axes.models import AccessAttempt
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.tests.test_api import current_totp, totp_codes
from teachcloud.testing.factories import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
LIMIT = 4
COOL_OFF = timedelta(minutes=15)
_addresses = count(1)


@pytest.fixture
def limits(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = COOL_OFF


def new_address() -> str:
    """Every attempt from another client address."""
    n = next(_addresses)
    return f"203.0.{n // 250}.{n % 250 + 1}"


def api_sign_in(username: str, password: str, **extra: str):
    extra.setdefault("REMOTE_ADDR", new_address())
    return APIClient(HTTP_ACCEPT_LANGUAGE="en").post(
        TOKEN_URL, {"username": username, "password": password}, format="json", **extra
    )


def portal_sign_in(client, login: str, password: str, **extra: str):
    extra.setdefault("REMOTE_ADDR", new_address())
    return client.post(reverse("account_login"), {"login": login, "password": password}, **extra)


def fail(where: str, client, login: str, **extra: str):
    if where == "api":
        return api_sign_in(login, "wrong-password-1", **extra)
    return portal_sign_in(client, login, "wrong-password-1", **extra)


def assert_api_locked(answer) -> None:
    assert answer.status_code == 429, answer.content
    assert answer.json()["code"] == "account_locked"
    assert "15 minutes" in answer.json()["detail"]


def assert_portal_locked(client, answer) -> None:
    assert answer.status_code == 429
    assert "Sign-in locked" in answer.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("where", ["api", "portal", "both"])
def test_failures_from_many_addresses_lock_the_account_for_portal_and_api(
    world, limits, client, where
):
    # The same account by username and by email address, in any case, from a new address
    # every time, through one door or both.
    logins = ["member", world.member.email.upper(), "Member", world.member.email]
    doors = {"api": ["api"], "portal": ["portal"], "both": ["api", "portal"]}[where]
    for n in range(LIMIT - 1):
        answer = fail(doors[n % len(doors)], client, logins[n % len(logins)])
        assert answer.status_code in (200, 400), answer.content  # a plain failure, not locked
    last = fail(doors[-1], client, "member")
    if doors[-1] == "api":
        assert_api_locked(last)
    else:
        assert_portal_locked(client, last)

    # Locked for both doors, even with the right password, from yet another address.
    assert_api_locked(api_sign_in("member", PASSWORD))
    assert not AuthToken.objects.filter(user=world.member).exists()
    assert_portal_locked(client, portal_sign_in(client, "member", PASSWORD))
    assert_portal_locked(client, portal_sign_in(client, world.member.email, PASSWORD))

    # Another account is not touched.
    assert api_sign_in("project_admin", PASSWORD).status_code == 200
    assert portal_sign_in(client, "project_admin", PASSWORD).status_code == 302


def test_rotating_x_forwarded_for_does_not_escape_the_limit(world, limits, settings):
    settings.TEACHCLOUD_TRUSTED_PROXIES = 1  # nginx in front: its address is REMOTE_ADDR
    forwarded = [f"198.51.100.{n}" for n in range(1, LIMIT + 2)]
    for n, address in enumerate(forwarded[:LIMIT]):
        answer = api_sign_in(
            "member", "wrong-password-1", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=address
        )
        assert answer.status_code == (429 if n == LIMIT - 1 else 400)
    # Each failure was recorded from the address the proxy saw; all of them count.
    recorded = set(AccessAttempt.objects.values_list("ip_address", flat=True))
    assert recorded == set(forwarded[:LIMIT])
    assert_api_locked(
        api_sign_in("member", PASSWORD, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded[-1])
    )


def test_the_lock_ends_after_the_cool_off(world, limits, client):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(LIMIT):
            api_sign_in("member", "wrong-password-1")
        assert_api_locked(api_sign_in("member", PASSWORD))

        clock.move_to(start + COOL_OFF - timedelta(minutes=1))
        assert_api_locked(api_sign_in("member", PASSWORD))
        assert_portal_locked(client, portal_sign_in(client, "member", PASSWORD))

        clock.move_to(start + COOL_OFF + timedelta(minutes=1))
        assert api_sign_in("member", PASSWORD).status_code == 200
        assert portal_sign_in(client, "member", PASSWORD).status_code == 302


def test_a_successful_sign_in_clears_the_failures(world, limits, client):
    for _ in range(LIMIT - 1):
        api_sign_in("member", "wrong-password-1")
    assert api_sign_in("member", PASSWORD).status_code == 200  # through the API
    for _ in range(LIMIT - 1):
        assert portal_sign_in(client, "member", "wrong-password-1").status_code == 200
    assert portal_sign_in(client, "member", PASSWORD).status_code == 302  # through the portal
    client.logout()
    # Counting starts again from nothing: the limit, not fewer, locks.
    for _ in range(LIMIT - 1):
        assert api_sign_in("member", "wrong-password-1").status_code == 400
    assert_api_locked(api_sign_in("member", "wrong-password-1"))


def test_wrong_second_factors_count_too(world, limits):
    secret = generate_totp_secret()
    TOTP.activate(world.project_admin, secret)
    wrong = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in totp_codes(secret))
    payload = {"username": "project_admin", "password": PASSWORD, "otp": wrong}
    for n in range(LIMIT):
        answer = APIClient().post(TOKEN_URL, payload, format="json", REMOTE_ADDR=new_address())
        assert answer.json()["code"] == ("account_locked" if n == LIMIT - 1 else "mfa_invalid")
    answer = APIClient().post(
        TOKEN_URL, {**payload, "otp": current_totp(secret)}, format="json", REMOTE_ADDR="1.2.3.4"
    )
    assert answer.status_code == 429
    assert not AuthToken.objects.filter(user=world.project_admin).exists()


def test_unknown_names_are_locked_like_known_ones(world, limits):
    for _ in range(LIMIT):
        last = api_sign_in("nobody.here", "wrong-password-1")
    assert_api_locked(last)


def test_the_lock_is_explained_in_chinese(world, limits, client):
    for _ in range(LIMIT):
        api_sign_in("member", "wrong-password-1")
    api = APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans").post(
        TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json"
    )
    assert api.status_code == 429
    assert "15 分钟" in api.json()["detail"]
    page = client.post(
        reverse("account_login"),
        {"login": "member", "password": PASSWORD},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert page.status_code == 429
    assert "登录已锁定" in page.content.decode()
