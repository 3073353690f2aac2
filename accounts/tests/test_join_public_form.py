"""The public enrollment form /join/<code>/ (anyone holding the link): it never tells whether a
student number, email address or username has an account, and it is throttled per client
address (issue 12.10)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import EnrollmentRequest, User
from accounts.services import enrollment_code_create

pytestmark = pytest.mark.django_db

PASSWORD = "Blue-Kettle-Orbit-77"


def form(**overrides: str) -> dict[str, str]:
    return {
        "real_name": "韩梅梅",
        "id_number": "20268001",
        "email": "han@example.edu",
        "username": "",
        "password1": PASSWORD,
        "password2": PASSWORD,
    } | overrides


def main(page) -> str:
    """The page's content (outside it only the per-request CSRF token differs)."""
    return page.content.decode().split("<main", 1)[1].split("</main>", 1)[0]


def answer(client, code, **overrides):
    response = client.post(reverse("portal:join", args=[code.code]), form(**overrides))
    waiting = client.get(response["Location"]) if response.status_code == 302 else None
    return response, waiting


def test_taken_and_new_identities_get_the_same_answer(world, client):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    users = User.objects.count()
    taken = [
        {"id_number": world.outsider.id_number},  # the number has an account
        {"id_number": "20268002", "email": world.outsider.email},  # the address has one
        {"id_number": "20268003", "email": world.member.email.upper()},
    ]
    answers = [answer(client, code, **fields) for fields in taken]
    assert User.objects.count() == users and EnrollmentRequest.objects.count() == 0
    new, new_waiting = answer(client, code, id_number="20268004", email="new@example.edu")
    assert EnrollmentRequest.objects.count() == 1
    for response, waiting in answers:
        assert response.status_code == new.status_code == 302
        assert response["Location"] == new["Location"]
        assert main(waiting) == main(new_waiting)  # not a byte apart
    assert "sign in and open this link again" in new_waiting.content.decode()


def test_a_taken_username_is_replaced_not_revealed(world, client):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    response, _waiting = answer(client, code, username=world.outsider.username)
    assert response.status_code == 302
    request = EnrollmentRequest.objects.get()
    assert request.user.username != world.outsider.username


def test_the_form_is_throttled_per_client_address(world, client, settings):
    settings.TEACHCLOUD_JOIN_RATE = (3, 600)
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    url = reverse("portal:join", args=[code.code])
    for number in range(3):
        response = client.post(url, form(id_number=f"2026810{number}", email=f"s{number}@x.edu"))
        assert response.status_code == 302
    refused = client.post(url, form(id_number="20268199", email="late@x.edu"))
    assert refused.status_code == 429
    assert "Too many attempts" in refused.content.decode()
    assert not User.objects.filter(id_number="20268199").exists()
    # Another address has its own allowance; X-Forwarded-For is not believed without proxies.
    spoofed = client.post(
        url, form(id_number="20268198", email="spoof@x.edu"), HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert spoofed.status_code == 429
    other = client.post(
        url, form(id_number="20268197", email="other@x.edu"), REMOTE_ADDR="198.51.100.7"
    )
    assert other.status_code == 302


def test_behind_one_trusted_proxy_the_forwarded_client_counts(settings, rf):
    from teachcloud.net import client_ip

    settings.TEACHCLOUD_TRUSTED_PROXIES = 1
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7", REMOTE_ADDR="10.0.0.2")
    assert client_ip(request) == "198.51.100.7"  # what nginx saw; the client's own claim ignored
    settings.TEACHCLOUD_TRUSTED_PROXIES = 0
    assert client_ip(request) == "10.0.0.2"
