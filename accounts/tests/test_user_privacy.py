"""Who may change whose identity, and whose personal data the API shows.

An email change is an account takeover (a password reset goes to the new address), so admins
change the identity of — or deactivate — only users below them. Users a project's staff can see
only to add them (their domain's people) show without personal data."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from teachcloud.testing.factories import UserFactory, make_world
from tenancy.services import domain_role_set, membership_add

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def w():
    return make_world()


def api(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_authenticate(user)
    return client


def patch(actor, target, **body):
    return api(actor).patch(f"{API}/users/{target.pk}/", body, format="json")


def email_of(user) -> str:
    return User.objects.get(pk=user.pk).email


def test_a_teacher_cannot_take_over_the_school_staff_in_their_course(w):
    membership_add(actor=w.platform, project=w.project, user=w.domain_assistant, role="member")
    before = email_of(w.domain_assistant)
    response = patch(w.project_admin, w.domain_assistant, email="attacker@example.com")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert email_of(w.domain_assistant) == before


def test_a_teacher_cannot_change_a_co_teacher_or_another_courses_teacher(w):
    co_admin = UserFactory(home_domain=w.domain)
    membership_add(actor=w.platform, project=w.project, user=co_admin, role="admin")
    assert patch(w.project_admin, co_admin, email="x@example.com").status_code == 403
    # a student of this course who teaches another course is a teacher too
    from teachcloud.testing.factories import ProjectFactory

    other_course = ProjectFactory(domain=w.domain, code="os202")
    membership_add(actor=w.platform, project=other_course, user=w.member, role="admin")
    assert patch(w.project_admin, w.member, email="x@example.com").status_code == 403


def test_a_teacher_changes_their_assistants_and_students(w):
    assert patch(w.project_admin, w.project_assistant, real_name="助教").status_code == 200
    assert patch(w.project_admin, w.member, email="new@example.edu").status_code == 200
    assert email_of(w.member) == "new@example.edu"


def test_a_school_admin_commands_assistants_and_teachers_but_not_peers_or_platform_staff(w):
    assert patch(w.domain_admin, w.domain_assistant, real_name="新名字").status_code == 200
    assert patch(w.domain_admin, w.project_admin, real_name="新名字").status_code == 200
    peer = UserFactory(home_domain=w.domain)
    domain_role_set(actor=w.platform, domain=w.domain, user=peer, role="admin")
    assert patch(w.domain_admin, peer, email="x@example.com").status_code == 403
    assert patch(w.domain_admin, peer, is_active=False).status_code == 403
    # platform staff with this school as home domain: not the school's to deactivate
    staff = UserFactory(home_domain=w.domain, platform_role="operator", is_staff=True)
    assert patch(w.domain_admin, staff, is_active=False).status_code == 403
    assert User.objects.get(pk=staff.pk).is_active
    assert patch(w.platform, peer, email="peer@example.edu").status_code == 200


def test_an_admin_still_edits_their_own_real_name(w):
    assert patch(w.domain_admin, w.domain_admin, real_name="我自己").status_code == 200


def test_a_course_assistant_sees_the_schools_people_without_their_personal_data(w):
    client = api(w.project_assistant)
    outsider = client.get(f"{API}/users/{w.outsider.pk}/").json()
    assert outsider["username"] == "outsider"
    assert outsider["id_number"] is outsider["email"] is outsider["phone"] is None
    member = client.get(f"{API}/users/{w.member.pk}/").json()
    assert member["id_number"] == w.member.id_number and member["email"] == w.member.email
    # the list alike, and personal data cannot be searched for either
    rows = {row["username"]: row for row in client.get(f"{API}/users/").json()["results"]}
    assert rows["outsider"]["id_number"] is None and rows["member"]["id_number"]
    found = client.get(f"{API}/users/", {"search": w.outsider.id_number}).json()["results"]
    assert found == []
    found = client.get(f"{API}/users/", {"search": "outsider"}).json()["results"]
    assert [row["username"] for row in found] == ["outsider"]
    # the school's staff see it all
    full = api(w.domain_assistant).get(f"{API}/users/{w.outsider.pk}/").json()
    assert full["id_number"] == w.outsider.id_number


def test_the_user_list_has_a_constant_number_of_queries(w, django_assert_max_num_queries):
    for _ in range(10):
        UserFactory(home_domain=w.domain)
    with django_assert_max_num_queries(8):
        response = api(w.project_admin).get(f"{API}/users/")
    assert response.status_code == 200 and response.json()["count"] == 16  # the school's people


def test_an_empty_patch_does_not_reveal_what_a_read_hides(w):
    """A write's answer shows no more than a read: PATCH {} changes nothing and used to answer
    with the full personal data."""
    response = api(w.project_assistant).patch(f"{API}/users/{w.outsider.pk}/", {}, format="json")
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        body = response.json()
        assert body["email"] is body["id_number"] is body["phone"] is None


def test_own_and_created_users_show_in_full(w):
    me = api(w.member).get(f"{API}/users/me/").json()
    assert me["email"] == w.member.email and me["id_number"] == w.member.id_number
    created = api(w.project_admin).post(
        f"{API}/users/",
        {
            "username": "newcomer",
            "real_name": "新同学",
            "id_number": "S-9001",
            "email": "newcomer@example.edu",
            "domain": w.domain.pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["id_number"] == "S-9001"


def test_the_replaced_address_is_told_about_an_email_change(
    w, mailoutbox, django_capture_on_commit_callbacks
):
    old = w.member.email
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(w.project_admin, w.member, email="new@example.edu").status_code == 200
    [notice] = [m for m in mailoutbox if m.to == [old]]
    assert "new@example.edu" in notice.body and "reset your password" in notice.body
    from billing.models import Notification

    row = Notification.objects.get(event="email_changed", recipient=w.member)
    assert row.address == old and row.status == "sent"


def test_a_change_of_case_only_is_no_email_change(
    w, mailoutbox, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=w.member.pk).update(email="Member.One@Example.edu")
    with django_capture_on_commit_callbacks(execute=True):
        response = patch(w.project_admin, w.member, email="member.one@example.edu")
    assert response.status_code == 200
    assert mailoutbox == []
