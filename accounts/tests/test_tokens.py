"""API tokens (issue 12.5): they expire, their owner revokes one or all of them, a password
change or a deactivation revokes them all, and the database keeps only a digest of each."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import user_password_set
from teachcloud.testing.factories import PASSWORD, UserFactory, api_token

pytestmark = pytest.mark.django_db

API = "/api/v1"
TOKEN_URL = f"{API}/auth/token/"
ME = f"{API}/users/me/"
LINK = re.compile(r"https?://[^\s]+")
NEW_PASSWORD = "Fresh-Staple-83"


def new_token(username: str, password: str = PASSWORD) -> str:
    answer = APIClient().post(
        TOKEN_URL, {"username": username, "password": password}, format="json"
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["token"]


def by_token(token: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="en")


def works(token: str) -> bool:
    answer = by_token(token).get(ME)
    assert answer.status_code in (200, 401), answer.content
    return answer.status_code == 200


# -- Expiry -----------------------------------------------------------------------------------


def test_a_token_answers_its_expiry_and_stops_working_after_it(world, settings):
    settings.TEACHCLOUD_TOKEN_TTL_HOURS = 6
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        answer = APIClient().post(
            TOKEN_URL, {"username": "member", "password": PASSWORD}, format="json"
        )
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"token", "expiry"}
        assert datetime.fromisoformat(body["expiry"]) == start + timedelta(hours=6)

        clock.move_to(start + timedelta(hours=6) - timedelta(minutes=1))
        assert works(body["token"])
        clock.move_to(start + timedelta(hours=6, minutes=1))
        expired = by_token(body["token"]).get(ME)
        assert expired.status_code == 401
        assert expired.json()["code"] == "authentication_failed"


# -- Revocation by the owner ------------------------------------------------------------------


def test_delete_revokes_the_token_it_carries_and_no_other(world):
    first, second = new_token("member"), new_token("member")
    someone_else = new_token("project_admin")

    answer = by_token(first).delete(TOKEN_URL)
    assert answer.status_code == 204
    assert not works(first)
    assert works(second)
    assert works(someone_else)
    # A revoked token cannot revoke anything any more.
    assert by_token(first).delete(TOKEN_URL).status_code == 401


def test_delete_all_revokes_every_token_of_the_caller(world):
    first, second = new_token("member"), new_token("member")
    someone_else = new_token("project_admin")

    assert by_token(first).delete(f"{TOKEN_URL}?all=1").status_code == 204
    assert not works(first)
    assert not works(second)
    assert works(someone_else)
    assert not AuthToken.objects.filter(user=world.member).exists()


def test_a_session_revokes_every_token_with_all_and_nothing_without(world):
    token = new_token("member")
    session = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    session.force_login(world.member)
    answer = session.delete(TOKEN_URL)
    assert answer.status_code == 400
    assert answer.json()["code"] == "no_token"
    assert works(token)
    assert session.delete(f"{TOKEN_URL}?all=1").status_code == 204
    assert not works(token)


@pytest.mark.parametrize(
    ("query", "body", "code"),
    [
        ("?all=true", None, "invalid"),
        ("?all=0", None, "invalid"),
        ("?all=", None, "invalid"),
        ("?ALL=1", None, "unknown_parameter"),
        ("?all=1&all=1", None, "repeated_parameter"),
        ("", {"all": 1}, "unknown_field"),
    ],
)
def test_revoking_takes_all_1_and_nothing_else(world, query, body, code):
    """A misspelt or misplaced `all` must not quietly revoke only this token (or everything)."""
    token, other = new_token("member"), new_token("member")
    answer = by_token(token).delete(f"{TOKEN_URL}{query}", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert works(token) and works(other)


def test_revoking_needs_a_signed_in_caller(world):
    answer = APIClient().delete(TOKEN_URL)
    assert answer.status_code == 401
    assert answer.json()["code"] == "not_authenticated"


def test_getting_a_token_refuses_query_parameters(world):
    answer = APIClient().post(
        f"{TOKEN_URL}?all=1", {"username": "member", "password": PASSWORD}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_parameter"
    assert not AuthToken.objects.exists()


# -- Revoked by a password change or a deactivation -------------------------------------------


def test_changing_the_password_in_the_portal_revokes_every_token(world, client):
    tokens = [new_token("member"), new_token("member")]
    someone_else = new_token("project_admin")
    client.force_login(world.member)
    answer = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert answer.status_code == 302
    assert not any(works(token) for token in tokens)
    assert works(someone_else)
    assert works(new_token("member", NEW_PASSWORD))


def test_a_password_reset_revokes_every_token(world, client, mailoutbox):
    token = new_token("member")
    client.post(reverse("account_reset_password"), {"email": world.member.email})
    [message] = mailoutbox
    url = next(u for u in LINK.findall(message.body) if "/password/reset/key/" in u)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    response = client.get(path, follow=True)
    form_path = response.redirect_chain[-1][0] if response.redirect_chain else path
    answer = client.post(form_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert answer.status_code == 302
    world.member.refresh_from_db()
    assert world.member.check_password(NEW_PASSWORD)
    assert not works(token)


def test_setting_a_first_password_revokes_every_token(world, client):
    user = UserFactory(username="no.password")
    user_password_set(user=user, password=None)
    token = api_token(user)  # e.g. made before the password was taken away
    client.force_login(user)
    answer = client.post(
        reverse("account_set_password"), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert answer.status_code == 302
    assert not works(token)


def test_the_admin_setting_or_disabling_a_password_revokes_every_token(world, client):
    client.force_login(world.platform)
    url = reverse("admin:auth_user_password_change", args=[world.member.pk])

    token = new_token("member")
    answer = client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert answer.status_code == 302, answer.content[:2000]
    assert not works(token)
    world.member.refresh_from_db()
    assert world.member.check_password(NEW_PASSWORD)

    token = new_token("member", NEW_PASSWORD)
    answer = client.post(url, {"usable_password": "false", "unset-password": "1"})
    assert answer.status_code == 302, answer.content[:2000]
    assert not works(token)
    world.member.refresh_from_db()
    assert not world.member.has_usable_password()


def test_deactivation_revokes_every_token_and_reactivation_brings_none_back(world):
    token = new_token("member")
    admin = by_token(api_token(world.domain_admin))
    user_url = f"{API}/users/{world.member.pk}/"
    assert admin.patch(user_url, {"is_active": False}, format="json").status_code == 200
    assert not works(token)
    assert not AuthToken.objects.filter(user=world.member).exists()
    assert admin.patch(user_url, {"is_active": True}, format="json").status_code == 200
    assert not works(token)
    assert works(new_token("member"))


# -- Stored hashed ----------------------------------------------------------------------------


def test_the_database_keeps_a_digest_of_each_token_never_the_token(world):
    token = new_token("member")
    columns = connection.cursor()
    columns.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')"
    )
    holding = []
    with connection.cursor() as cursor:
        for table, column in columns.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE position(%s in "{column}"::text) > 0',
                [token],
            )
            if cursor.fetchone()[0]:
                holding.append(f"{table}.{column}")
    assert holding == []
    [stored] = AuthToken.objects.filter(user=world.member)
    assert stored.digest == hashlib.sha512(token.encode()).hexdigest()
