"""A user's email address is read-only for them (a real-name field admins change, audited):
allauth's add / make-primary page is replaced at the same URL."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.urls import reverse

from accounts.models import User
from teachcloud.testing.factories import make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def w():
    return make_world()


def signed_in(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_the_page_shows_the_address_and_who_changes_it(w):
    EmailAddress.objects.update_or_create(
        user=w.member, email=w.member.email, defaults={"primary": True, "verified": True}
    )
    page = signed_in(w.member).get(reverse("account_email"))
    assert page.status_code == 200
    text = page.content.decode()
    assert w.member.email in text and "ask an admin" in text and "not verified" not in text


def test_a_user_cannot_add_or_switch_to_another_address(w):
    before = w.member.email
    client = signed_in(w.member)
    # what allauth's own email page accepts: add an address, then make it primary
    client.post(reverse("account_email"), {"action_add": "", "email": "mine@example.com"})
    client.post(reverse("account_email"), {"action_primary": "", "email": "mine@example.com"})
    assert User.objects.get(pk=w.member.pk).email == before
    assert not EmailAddress.objects.filter(email="mine@example.com").exists()


def test_an_unverified_address_can_get_its_verification_again(w, mailoutbox):
    EmailAddress.objects.filter(user=w.member).delete()
    EmailAddress.objects.create(user=w.member, email=w.member.email, primary=True, verified=False)
    client = signed_in(w.member)
    response = client.post(reverse("account_email"), follow=True)
    assert response.status_code == 200
    assert [m.to for m in mailoutbox] == [[w.member.email]]
    assert "verification email was sent" in response.content.decode()
    again = client.post(reverse("account_email"), follow=True)  # a loop would flood the SMTP
    assert len(mailoutbox) == 1 and "a few minutes ago" in again.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in():
    response = Client().get(reverse("account_email"))
    assert response.status_code == 302 and "login" in response["Location"]
