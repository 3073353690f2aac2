"""Mandatory MFA holds for the API too (issue 12.2): a user whom the policy requires to have a
second factor gets no API access — session or token — until enrolled, and a token only with the
second factor."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.tests.test_api import TOKEN_URL, current_totp, pinned
from teachcloud.testing.factories import PASSWORD, api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def enforced(settings):
    settings.TEACHCLOUD_MFA_ENFORCED = True
    settings.TEACHCLOUD_MFA_REQUIRED_ROLES = ["platform", "domain_admin", "project_admin"]


def test_no_token_for_a_password_alone_when_the_role_requires_mfa(world, enforced):
    client = APIClient()
    answer = client.post(TOKEN_URL, {"username": "platform", "password": PASSWORD}, format="json")
    assert answer.status_code == 403
    assert answer.json()["code"] == "mfa_enrolment_required"
    assert not AuthToken.objects.filter(user=world.platform).exists()
    # A member, whom the policy does not cover, still gets one.
    member = client.post(TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json")
    assert member.status_code == 200


def test_an_old_token_and_a_session_are_closed_until_enrolment(world, enforced):
    token = api_token(world.platform)  # made before the policy applied
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    answer = by_token.get("/api/v1/domains/")
    assert answer.status_code == 403 and answer.json()["code"] == "mfa_enrolment_required"
    recharge = by_token.post("/api/v1/domains/", {"name": "X", "code": "x1"}, format="json")
    assert recharge.status_code == 403

    by_session = APIClient()
    by_session.force_login(world.platform)
    assert by_session.get("/api/v1/domains/").status_code == 403
    # The portal sends the same session to enrolment.
    assert by_session.get(reverse("portal:dashboard"))["Location"] == reverse("mfa_activate_totp")


def test_once_enrolled_a_token_needs_the_second_factor(world, enforced):
    secret = generate_totp_secret()
    TOTP.activate(world.platform, secret)
    client = APIClient()
    payload = {"username": "platform", "password": PASSWORD}
    assert client.post(TOKEN_URL, payload, format="json").json()["code"] == "mfa_required"
    with pinned():
        answer = client.post(TOKEN_URL, {**payload, "otp": current_totp(secret)}, format="json")
    assert answer.status_code == 200
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
    assert api.get("/api/v1/domains/").status_code == 200
