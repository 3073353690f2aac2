"""The accounts API: tokens (with MFA and throttling) and real-name users under /api/v1/."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import User
from teachcloud.testing.clock import pinned
from teachcloud.testing.factories import PASSWORD, UserFactory, api_token
from tenancy.models import AuditEvent

API = "/api/v1"
TOKEN_URL = f"{API}/auth/token/"


def client_for(user=None) -> APIClient:
    """A client that authenticates like an API user (`Authorization: Token <key>`), in English."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def totp_codes(secret: str) -> set[str]:
    """Every code the authenticator app could show right now (allauth's tolerance window)."""
    return {format_hotp_value(hotp_value(secret, c)) for c in yield_hotp_counters_from_time()}


def current_totp(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


# -- Tokens -----------------------------------------------------------------------------------


def test_token_by_username_then_use_it(world):
    anonymous = client_for()
    response = anonymous.post(
        TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert AuthToken.objects.filter(user=world.member).count() == 1

    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = anonymous.get(f"{API}/users/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "member"


def test_token_by_email_too_each_call_a_new_token(world):
    client = client_for()
    first = client.post(TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json")
    second = client.post(
        TOKEN_URL, {"username": world.member.email.upper(), "password": PASSWORD}, format="json"
    )
    assert second.status_code == 200
    assert first.json()["token"] != second.json()["token"]
    for token in (first.json()["token"], second.json()["token"]):
        api = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
        assert api.get(f"{API}/users/me/").json()["username"] == "member"


@pytest.mark.parametrize(
    ("username", "password"),
    [("member", "wrong-password"), ("nobody", PASSWORD), ("member@nowhere.test", PASSWORD)],
)
def test_wrong_credentials(world, username, password):
    response = client_for().post(
        TOKEN_URL, {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert not AuthToken.objects.exists()


def test_inactive_user_gets_no_token(world):
    User.objects.filter(pk=world.member.pk).update(is_active=False)
    response = client_for().post(
        TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"


def test_token_request_validation(world):
    response = client_for().post(TOKEN_URL, {"username": "member"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert set(response.json()["fields"]) == {"password"}


def test_mfa_totp(world):
    secret = generate_totp_secret()
    TOTP.activate(world.project_admin, secret)
    client = client_for()
    payload = {"username": "project_admin", "password": PASSWORD}

    response = client.post(TOKEN_URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "mfa_required"
    assert set(response.json()["fields"]) == {"otp"}

    wrong = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in totp_codes(secret))
    response = client.post(TOKEN_URL, {**payload, "otp": wrong}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "mfa_invalid"

    with pinned():  # the code's 30-second window cannot end before it is checked
        code = current_totp(secret)
        response = client.post(TOKEN_URL, {**payload, "otp": code}, format="json")
    assert response.status_code == 200
    assert AuthToken.objects.filter(user=world.project_admin).count() == 1

    # A code works once.
    response = client.post(TOKEN_URL, {**payload, "otp": code}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "mfa_invalid"


def test_mfa_recovery_code_works_once(world):
    TOTP.activate(world.domain_admin, generate_totp_secret())
    codes = RecoveryCodes.activate(world.domain_admin).generate_codes()
    client = client_for()
    payload = {"username": "domain_admin", "password": PASSWORD, "otp": codes[3]}

    assert client.post(TOKEN_URL, payload, format="json").status_code == 200
    response = client.post(TOKEN_URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "mfa_invalid"
    recovery = RecoveryCodes(
        Authenticator.objects.get(user=world.domain_admin, type=Authenticator.Type.RECOVERY_CODES)
    )
    assert len(recovery.get_unused_codes()) == len(codes) - 1


def test_mfa_wrong_password_says_nothing_about_mfa(world):
    TOTP.activate(world.project_admin, generate_totp_secret())
    response = client_for().post(
        TOKEN_URL, {"username": "project_admin", "password": "nope"}, format="json"
    )
    assert response.json()["code"] == "invalid_credentials"


def test_token_endpoint_is_throttled_when_enabled(world):
    client = client_for()
    payload = {"username": "member", "password": "wrong-password"}
    with override_settings(TEACHCLOUD_THROTTLE_ENABLED=True):
        statuses = [client.post(TOKEN_URL, payload, format="json").status_code for _ in range(10)]
        assert statuses == [400] * 10
        response = client.post(
            TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json"
        )
        assert response.status_code == 429
        assert response.json()["code"] == "throttled"
        assert "Retry-After" in response.headers
    # Switched off (the test settings), nothing is counted.
    response = client.post(TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json")
    assert response.status_code == 200


def test_anonymous_is_401_everywhere_but_the_token(world):
    client = client_for()
    for url in (
        "users/",
        "users/me/",
        f"users/{world.member.pk}/",
        "domains/",
        "projects/",
        "memberships/",
        "domain-roles/",
    ):
        response = client.get(f"{API}/{url}")
        assert response.status_code == 401, url
        assert response.json()["code"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_401(world):
    client = APIClient(HTTP_AUTHORIZATION="Token nope")
    response = client.get(f"{API}/users/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


# -- Users ------------------------------------------------------------------------------------


NEW_USER = {
    "username": "li.lei",
    "real_name": "李雷",
    "id_number": "20260001",
    "email": "Li.Lei@Example.edu",
    "phone": "+86 138 0000 0000",
}


def test_domain_admin_creates_a_user_with_password(world):
    response = client_for(world.domain_admin).post(
        f"{API}/users/",
        {**NEW_USER, "domain": world.domain.pk, "password": "Sturdy-Pass-91"},
        format="json",
    )
    assert response.status_code == 201
    user = User.objects.get(username="li.lei")
    assert response.json() == {
        "id": user.pk,
        "username": "li.lei",
        "real_name": "李雷",
        "id_number": "20260001",
        "email": "li.lei@example.edu",
        "phone": "+86 138 0000 0000",
        "domain": world.domain.pk,
        "is_active": True,
    }
    assert AuditEvent.objects.filter(action="user.create", target_id=str(user.pk)).exists()
    # The new user can get a token with their password.
    response = client_for().post(
        TOKEN_URL, {"username": "li.lei", "password": "Sturdy-Pass-91"}, format="json"
    )
    assert response.status_code == 200


def test_project_admin_creates_a_user_without_password(
    world, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.project_admin).post(
            f"{API}/users/", {**NEW_USER, "domain": world.domain.pk}, format="json"
        )
    assert response.status_code == 201
    assert not User.objects.get(username="li.lei").has_usable_password()
    # The user is invited by email to choose a password.
    assert [m.to for m in mailoutbox] == [["li.lei@example.edu"]]


def _counts():
    return User.objects.count(), AuditEvent.objects.count(), AuthToken.objects.count()


@pytest.mark.parametrize(
    ("changes", "code", "fields"),
    [
        ({"username": "member"}, "invalid_user", {"username"}),
        ({"email": "MEMBER@example.edu"}, "invalid_user", {"email"}),
        ({"email": "not-an-address"}, "invalid", {"email"}),
        ({"id_number": "taken"}, "invalid_user", {"id_number"}),
        ({"password": "123"}, "invalid_user", {"password"}),
        ({"username": "has space"}, "invalid_user", {"username"}),
        ({"real_name": ""}, "invalid", {"real_name"}),
        ({"real_name": "x" * 151}, "invalid", {"real_name"}),
        ({"domain": "south"}, "invalid", {"domain"}),
        ({"domain": None}, "invalid", {"domain"}),
    ],
)
def test_user_create_errors_write_nothing(world, changes, code, fields):
    User.objects.filter(pk=world.member.pk).update(id_number="taken")
    if changes.get("domain") == "south":
        changes = {**changes, "domain": world.other_domain.pk}
    payload = {**NEW_USER, "domain": world.domain.pk, **changes}
    client = client_for(world.domain_admin)
    before = _counts()
    response = client.post(f"{API}/users/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert set(body["fields"]) == fields
    assert body["detail"]
    assert _counts() == before


def test_member_may_not_create_users(world):
    before = _counts()
    response = client_for(world.member).post(
        f"{API}/users/", {**NEW_USER, "domain": world.domain.pk}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert _counts()[0] == before[0]


def test_real_name_change_is_audited(world):
    client = client_for(world.project_admin)
    response = client.patch(
        f"{API}/users/{world.member.pk}/", {"real_name": "韩梅梅", "phone": "123"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["real_name"] == "韩梅梅"
    event = AuditEvent.objects.get(action="user.real_name_change")
    assert event.actor == world.project_admin
    assert event.target_id == str(world.member.pk)
    assert event.before["real_name"] == world.member.real_name
    assert event.after["real_name"] == "韩梅梅"
    assert event.after["phone"] == "123"
    assert event.domain == world.domain


def test_user_update_errors_write_nothing(world):
    client = client_for(world.domain_admin)
    url = f"{API}/users/{world.member.pk}/"
    before = AuditEvent.objects.count()
    for payload, code, fields in [
        ({"email": world.outsider.email, "real_name": "New"}, "invalid_user", {"email"}),
        ({"id_number": world.outsider.id_number}, "invalid_user", {"id_number"}),
        ({"real_name": ""}, "invalid", {"real_name"}),
        ({"is_active": "maybe"}, "invalid", {"is_active"}),
    ]:
        response = client.patch(url, payload, format="json")
        assert response.status_code == 400, payload
        assert response.json()["code"] == code
        assert set(response.json()["fields"]) == fields
    member = User.objects.get(pk=world.member.pk)
    assert (member.real_name, member.email, member.id_number) == (
        world.member.real_name,
        world.member.email,
        world.member.id_number,
    )
    assert AuditEvent.objects.count() == before


def test_only_admins_change_real_names(world):
    for who in ("member", "project_assistant", "domain_assistant"):
        response = client_for(getattr(world, who)).patch(
            f"{API}/users/{world.member.pk}/", {"real_name": "Me"}, format="json"
        )
        assert response.status_code == 403, who
    assert User.objects.get(pk=world.member.pk).real_name == world.member.real_name


def test_deactivation_by_domain_admin_only(world):
    url = f"{API}/users/{world.member.pk}/"
    assert (
        client_for(world.domain_assistant)
        .patch(url, {"is_active": False}, format="json")
        .status_code
        == 403
    )
    member_client = client_for(world.member)
    response = client_for(world.domain_admin).patch(url, {"is_active": False}, format="json")
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    # The deactivated user's token stops working.
    assert member_client.get(f"{API}/users/me/").status_code == 401
    response = client_for(world.domain_admin).patch(
        f"{API}/users/{world.domain_admin.pk}/", {"is_active": False}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "self_deactivate"


def test_user_list_scope_filter_and_search(world):
    client = client_for(world.platform)
    assert client.get(f"{API}/users/").json()["count"] == 9  # make_world's users, finance too
    domain_users = client.get(f"{API}/users/", {"domain": world.other_domain.pk}).json()
    assert [u["username"] for u in domain_users["results"]] == ["other_admin"]
    UserFactory(
        username="zhang.san",
        real_name="张三",
        id_number="S-778",
        email="zs@school.example",
        home_domain=world.domain,
    )
    for term in ("zhang", "张三", "s-778", "SCHOOL.example"):
        body = client.get(f"{API}/users/", {"search": term}).json()
        assert [u["username"] for u in body["results"]] == ["zhang.san"], term
    assert client.get(f"{API}/users/", {"search": ""}).json()["count"] == 10
    response = client.get(f"{API}/users/", {"search": "\x00"})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"search"}

    member_view = client_for(world.member).get(f"{API}/users/").json()
    assert [u["username"] for u in member_view["results"]] == ["member"]
    assert client_for(world.member).get(f"{API}/users/{world.outsider.pk}/").status_code == 404
    admin_view = client_for(world.other_admin).get(f"{API}/users/").json()
    assert [u["username"] for u in admin_view["results"]] == ["other_admin"]


def test_me_for_platform_staff_has_no_domain(world):
    body = client_for(world.platform).get(f"{API}/users/me/").json()
    assert body["username"] == "platform"
    assert body["domain"] is None


@pytest.mark.parametrize("viewer", ["platform", "domain_admin", "project_admin"])
def test_user_list_query_count_does_not_grow(world, django_assert_max_num_queries, viewer):
    client = client_for(getattr(world, viewer))
    UserFactory.create_batch(5, home_domain=world.domain)
    with CaptureQueriesContext(connection) as small:
        first = client.get(f"{API}/users/", {"size": 100})
    UserFactory.create_batch(45, home_domain=world.domain)
    with django_assert_max_num_queries(len(small.captured_queries)):
        second = client.get(f"{API}/users/", {"size": 100})
    assert second.json()["count"] == first.json()["count"] + 45


def test_is_active_must_be_a_json_boolean(world):
    response = client_for(world.domain_admin).patch(
        f"{API}/users/{world.member.pk}/", {"is_active": "no"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"is_active"}
    assert User.objects.get(pk=world.member.pk).is_active
