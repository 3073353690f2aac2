"""Sign-in, password reset, email verification and MFA through the real allauth views, with mail
sent over SMTP to a real (aiosmtpd) server on loopback."""

import re

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
from django.urls import reverse

from accounts.models import User
from accounts.services import user_create
from teachcloud.testing.clock import pinned
from teachcloud.testing.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://[^\s]+")


def totp_now(secret: str) -> str:
    import time

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def login(client, login: str, password: str = PASSWORD):
    return client.post(reverse("account_login"), {"login": login, "password": password})


def test_login_by_username_or_email(client):
    user = UserFactory(username="li.lei")
    assert login(client, "li.lei").status_code == 302
    assert client.get(reverse("portal:dashboard")).wsgi_request.user == user
    client.logout()
    response = login(client, user.email.upper())
    assert response.status_code == 302
    assert "_auth_user_id" in client.session


def test_wrong_password_is_refused(client):
    UserFactory(username="han.meimei")
    response = login(client, "han.meimei", "nope-nope-nope")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_open_signup_is_closed(client):
    response = client.post(
        reverse("account_signup"),
        {
            "username": "walkin",
            "email": "walkin@example.edu",
            "password1": "Walk-In-Pass-9",
            "password2": "Walk-In-Pass-9",
        },
    )
    assert response.status_code == 200
    assert not User.objects.filter(username="walkin").exists()


def test_login_rate_limit(client, settings):
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "3/m/ip,3/5m/key"}
    UserFactory(username="zhang.san")
    for _ in range(3):
        login(client, "zhang.san", "wrong-password-1")
    # Locked out now, even with the right password.
    response = login(client, "zhang.san")
    assert "_auth_user_id" not in client.session
    assert response.status_code in (200, 429)


def test_password_reset_by_email_over_smtp(client, smtp):
    user = UserFactory(username="wang.wu")
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response.status_code == 302
    [message] = smtp.to(user.email)
    url = next(u for u in LINK.findall(smtp.body(message)) if "/password/reset/key/" in u)
    path = url.split("://", 1)[1].split("/", 1)[1]
    response = client.get("/" + path, follow=True)
    form_path = response.redirect_chain[-1][0] if response.redirect_chain else "/" + path
    response = client.post(form_path, {"password1": "New-Secret-77", "password2": "New-Secret-77"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("New-Secret-77")


def test_unverified_email_gets_a_verification_mail_over_smtp(client, smtp):
    user = UserFactory(username="zhao.liu")
    EmailAddress.objects.filter(user=user).update(verified=False)
    login(client, "zhao.liu")
    assert "_auth_user_id" not in client.session
    [message] = smtp.to(user.email)
    url = next(u for u in LINK.findall(smtp.body(message)) if "/confirm-email/" in u)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    client.post(path)
    assert EmailAddress.objects.get(user=user).verified
    login(client, "zhao.liu")
    assert "_auth_user_id" in client.session


def test_invitation_over_smtp_lets_a_new_user_choose_a_password(
    client, smtp, world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user = user_create(
            actor=world.domain_admin,
            domain=world.domain,
            username="new.student",
            real_name="新同学",
            id_number="20269999",
            email="new@example.edu",
        )
    assert not user.has_usable_password()
    [message] = smtp.to("new@example.edu")
    url = next(u for u in LINK.findall(smtp.body(message)) if "/password/reset/key/" in u)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    response = client.get(path, follow=True)
    form_path = response.redirect_chain[-1][0] if response.redirect_chain else path
    client.post(form_path, {"password1": "Chosen-Pass-31", "password2": "Chosen-Pass-31"})
    user.refresh_from_db()
    assert user.check_password("Chosen-Pass-31")
    # The link reached the address, so the address counts as verified: no second email.
    assert EmailAddress.objects.get(user=user).verified
    client.logout()
    login(client, "new.student", "Chosen-Pass-31")
    assert "_auth_user_id" in client.session


def test_mfa_login_asks_for_the_code(client):
    user = UserFactory(username="mfa.user")
    secret = "JBSWY3DPEHPK3PXP"
    TOTP.activate(user, secret)
    response = login(client, "mfa.user")
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session
    response = client.post(reverse("mfa_authenticate"), {"code": "000000"})
    assert "_auth_user_id" not in client.session
    with pinned():  # the code's 30-second window cannot end before it is checked
        response = client.post(reverse("mfa_authenticate"), {"code": totp_now(secret)})
    assert response.status_code == 302
    assert "_auth_user_id" in client.session
