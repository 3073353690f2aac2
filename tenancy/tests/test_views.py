"""The portal pages of tenancy, through the Django test client, for every role."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from teachcloud.testing.clock import local_today
from teachcloud.testing.factories import PASSWORD, UserFactory
from tenancy.models import AuditEvent, DomainRole, Membership, Project
from tenancy.services import domain_role_set, membership_add, membership_update

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def end_of(day):
    """An appointment "until" a date lasts through that day, Asia/Shanghai."""
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


# -- Dashboard --------------------------------------------------------------------------------


def test_dashboard_asks_anonymous_users_to_sign_in(client):
    response = client.get(reverse("portal:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_platform_staff_see_every_domain_with_counts(world, login):
    response = login(world.platform).get(reverse("portal:dashboard"))
    assert response.status_code == 200
    rows = {d.code: d for d in response.context["all_domains"]}
    assert set(rows) == {"north", "south"}
    assert rows["north"].project_count == 1
    assert rows["north"].user_count == 6  # the six users of the north domain
    assert rows["south"].user_count == 1
    assert "South School" in response.content.decode()


def test_domain_admin_sees_own_domain_with_projects_only(world, login):
    response = login(world.domain_admin).get(reverse("portal:dashboard"))
    body = response.content.decode()
    assert response.context["all_domains"] is None
    assert [d.code for d in response.context["my_domains"]] == ["north"]
    assert "Networks 101" in body
    assert "South School" not in body
    assert "Databases" not in body


def test_project_admin_sees_projects_with_members(world, login):
    response = login(world.project_admin).get(reverse("portal:dashboard"))
    projects = response.context["managed_projects"]
    assert [p.code for p in projects] == ["net101"]
    assert projects[0].member_count == 1
    assert {m.user.username for m in projects[0].staff} == {"project_admin", "project_assistant"}
    assert "my_domains" not in response.context


def test_student_sees_their_projects(world, login):
    response = login(world.member).get(reverse("portal:dashboard"))
    assert [p.code for p in response.context["member_projects"]] == ["net101"]
    assert "managed_projects" not in response.context
    assert "Networks 101" in response.content.decode()


def test_user_with_several_roles_sees_every_section(world, login):
    second = Project.objects.create(domain=world.domain, name="Security", code="sec")
    membership_add(actor=world.platform, project=second, user=world.project_admin, role="member")
    response = login(world.project_admin).get(reverse("portal:dashboard"))
    assert [p.code for p in response.context["managed_projects"]] == ["net101"]
    assert [p.code for p in response.context["member_projects"]] == ["sec"]


def test_navigation_follows_roles(world, login):
    body = login(world.domain_admin).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:domain_detail", args=[world.domain.pk]) in body
    assert reverse("portal:domain_detail", args=[world.other_domain.pk]) not in body
    body = login(world.member).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:domain_detail", args=[world.domain.pk]) not in body
    assert reverse("portal:project_detail", args=[world.project.pk]) in body


# -- Domain pages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("platform", 200),
        ("domain_admin", 200),
        ("domain_assistant", 200),
        ("other_admin", 404),
        ("project_admin", 403),
        ("member", 403),
    ],
)
@pytest.mark.parametrize("name", ["domain_detail", "domain_users", "domain_import", "domain_audit"])
def test_domain_pages_by_role(world, login, who, status, name):
    response = login(getattr(world, who)).get(reverse(f"portal:{name}", args=[world.domain.pk]))
    assert response.status_code == status


def test_foreign_domain_page_uses_the_portal_404(world, login):
    response = login(world.other_admin).get(reverse("portal:domain_detail", args=[world.domain.pk]))
    assert response.status_code == 404
    assert "404" in response.content.decode()
    assert "TeachCloud" in response.content.decode()


def test_assistant_sees_no_appoint_form(world, login):
    response = login(world.domain_assistant).get(
        reverse("portal:domain_detail", args=[world.domain.pk])
    )
    assert response.context["may_appoint"] is False
    assert reverse("portal:domain_role_appoint", args=[world.domain.pk]) not in (
        response.content.decode()
    )


def test_create_project(world, login):
    url = reverse("portal:project_create", args=[world.domain.pk])
    response = login(world.domain_assistant).post(
        url, {"name": "Operating Systems", "code": "os301", "description": "Kernels"}
    )
    project = Project.objects.get(domain=world.domain, code="os301")
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:project_detail", args=[project.pk])
    assert project.name == "Operating Systems"
    assert AuditEvent.objects.filter(action="project.create", project=project).count() == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "code": "x1"}, "name"),
        ({"name": "Dup", "code": "net101"}, "code"),
        ({"name": "Bad", "code": "not a slug"}, "code"),
    ],
)
def test_create_project_shows_errors_and_changes_nothing(world, login, data, field):
    before = Project.objects.count()
    response = login(world.domain_admin).post(
        reverse("portal:project_create", args=[world.domain.pk]), data
    )
    assert response.status_code == 200
    assert response.context["project_form"].errors[field]
    assert "is-invalid" in response.content.decode()
    assert Project.objects.count() == before


def test_create_project_forbidden_and_foreign(world, login):
    url = reverse("portal:project_create", args=[world.domain.pk])
    assert login(world.member).post(url, {"name": "X", "code": "x"}).status_code == 403
    assert login(world.other_admin).post(url, {"name": "X", "code": "x"}).status_code == 404
    assert not Project.objects.filter(code="x").exists()


def test_appoint_assistant_with_end_date(world, login):
    until = local_today() + timedelta(days=30)
    response = login(world.domain_admin).post(
        reverse("portal:domain_role_appoint", args=[world.domain.pk]),
        {"user": world.outsider.id_number, "role": "assistant", "expires_at": until.isoformat()},
    )
    assert response.status_code == 302
    grant = DomainRole.objects.get(domain=world.domain, user=world.outsider)
    assert grant.role == "assistant"
    assert grant.expires_at == end_of(until)
    page = login(world.domain_admin).get(reverse("portal:domain_detail", args=[world.domain.pk]))
    assert until.isoformat() in page.content.decode()


def test_appoint_admin_with_end_date_is_refused(world, login):
    until = local_today() + timedelta(days=30)
    response = login(world.domain_admin).post(
        reverse("portal:domain_role_appoint", args=[world.domain.pk]),
        {"user": "outsider", "role": "admin", "expires_at": until.isoformat()},
    )
    assert response.status_code == 200
    assert response.context["role_form"].errors["expires_at"]
    assert not DomainRole.objects.filter(user=world.outsider).exists()


def test_appoint_unknown_user_shows_error(world, login):
    response = login(world.domain_admin).post(
        reverse("portal:domain_role_appoint", args=[world.domain.pk]),
        {"user": "nobody", "role": "assistant"},
    )
    assert response.context["role_form"].errors["user"]
    assert DomainRole.objects.filter(domain=world.domain).count() == 2


def test_assistant_may_not_appoint(world, login):
    response = login(world.domain_assistant).post(
        reverse("portal:domain_role_appoint", args=[world.domain.pk]),
        {"user": "outsider", "role": "assistant"},
    )
    assert response.status_code == 403
    assert not DomainRole.objects.filter(user=world.outsider).exists()


def test_remove_domain_role_and_keep_the_last_admin(world, login):
    assistant = DomainRole.objects.get(user=world.domain_assistant)
    client = login(world.domain_admin)
    response = client.post(reverse("portal:domain_role_remove", args=[assistant.pk]))
    assert response.status_code == 302
    assert not DomainRole.objects.filter(pk=assistant.pk).exists()
    admin = DomainRole.objects.get(user=world.domain_admin)
    response = client.post(reverse("portal:domain_role_remove", args=[admin.pk]), follow=True)
    assert DomainRole.objects.filter(pk=admin.pk).exists()
    assert "at least one admin" in response.content.decode()


def test_domain_role_remove_foreign_is_404(world, login):
    grant = DomainRole.objects.get(user=world.domain_assistant)
    response = login(world.other_admin).post(reverse("portal:domain_role_remove", args=[grant.pk]))
    assert response.status_code == 404
    assert DomainRole.objects.filter(pk=grant.pk).exists()


def test_domain_audit_log_lists_the_domain_events(world, login):
    other_events = AuditEvent.objects.filter(domain=world.other_domain).count()
    assert other_events > 0
    response = login(world.domain_admin).get(reverse("portal:domain_audit", args=[world.domain.pk]))
    events = list(response.context["page"])
    assert events
    assert all(e.domain_id == world.domain.pk for e in events)
    assert "domain_role.appoint" in response.content.decode()


def test_audit_log_paginates(world, login):
    for n in range(30):
        Project.objects.create(domain=world.domain, name=f"P{n}", code=f"p{n}")
        domain_role_set(
            actor=world.platform,
            domain=world.domain,
            user=world.outsider,
            role="assistant" if n % 2 else "admin",
        )
    client = login(world.domain_admin)
    url = reverse("portal:domain_audit", args=[world.domain.pk])
    total = AuditEvent.objects.filter(domain=world.domain).count()
    first = client.get(url)
    assert first.context["page"].paginator.count == total
    assert len(first.context["page"]) == 25
    second = client.get(url, {"page": 2})
    assert len(second.context["page"]) == total - 25


# -- Project pages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("platform", 200),
        ("domain_admin", 200),
        ("domain_assistant", 200),
        ("project_admin", 200),
        ("project_assistant", 200),
        ("other_admin", 404),
        ("outsider", 404),
    ],
)
@pytest.mark.parametrize(
    "name", ["project_detail", "project_enrollment", "project_import", "project_audit"]
)
def test_project_pages_by_role(world, login, who, status, name):
    response = login(getattr(world, who)).get(reverse(f"portal:{name}", args=[world.project.pk]))
    assert response.status_code == status


def test_student_sees_a_plain_project_page_and_no_management(world, login):
    client = login(world.member)
    response = client.get(reverse("portal:project_detail", args=[world.project.pk]))
    assert response.status_code == 200
    assert "rows" not in response.context
    assert (
        client.get(reverse("portal:project_enrollment", args=[world.project.pk])).status_code == 403
    )
    assert client.get(reverse("portal:project_audit", args=[world.project.pk])).status_code == 403


def test_project_members_are_listed_with_roles(world, login):
    response = login(world.project_admin).get(
        reverse("portal:project_detail", args=[world.project.pk])
    )
    rows = response.context["rows"]
    assert [(r["membership"].user.username, r["membership"].role) for r in rows] == [
        ("project_admin", "admin"),
        ("project_assistant", "assistant"),
        ("member", "member"),
    ]


def test_add_member_by_number_plain_post(world, login):
    response = login(world.project_assistant).post(
        reverse("portal:member_add", args=[world.project.pk]),
        {"user": world.outsider.id_number, "role": "member"},
    )
    assert response.status_code == 302
    assert Membership.objects.get(project=world.project, user=world.outsider).role == "member"


def test_add_member_by_email_with_htmx_returns_the_members_partial(world, login):
    response = login(world.project_admin).post(
        reverse("portal:member_add", args=[world.project.pk]),
        {"user": world.outsider.email.upper(), "role": "member"},
        **HTMX,
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="members"')
    assert "<html" not in body
    assert world.outsider.username in body
    assert Membership.objects.filter(project=world.project, user=world.outsider).exists()


def test_appoint_project_assistant_with_end_date(world, login):
    until = local_today() + timedelta(days=10)
    login(world.project_admin).post(
        reverse("portal:member_add", args=[world.project.pk]),
        {"user": "outsider", "role": "assistant", "expires_at": until.isoformat()},
    )
    membership = Membership.objects.get(project=world.project, user=world.outsider)
    assert membership.role == "assistant"
    assert membership.expires_at == end_of(until)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"user": "nobody", "role": "member"}, "user"),
        ({"user": "other_admin", "role": "member"}, "user"),  # not a user of this domain
        ({"user": "outsider", "role": "admin"}, "role"),
    ],  # an assistant may not appoint
)
def test_add_member_errors_change_nothing(world, login, data, field):
    before = Membership.objects.count()
    response = login(world.project_assistant).post(
        reverse("portal:member_add", args=[world.project.pk]), data, **HTMX
    )
    assert response.status_code == 200
    assert response.context["add_form"].errors[field]
    assert "invalid-feedback" in response.content.decode()
    assert Membership.objects.count() == before


def test_add_existing_member_shows_service_detail(world, login):
    response = login(world.project_admin).post(
        reverse("portal:member_add", args=[world.project.pk]), {"user": "member", "role": "member"}
    )
    assert response.status_code == 200
    assert "already in the project" in response.content.decode()


def test_create_user_and_add(world, login, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = login(world.project_admin).post(
            reverse("portal:member_create", args=[world.project.pk]),
            {
                "new-real_name": "王小明",
                "new-id_number": "S-777",
                "new-email": "wxm@example.edu",
                "new-phone": "",
                "new-username": "",
            },
        )
    assert response.status_code == 302
    membership = Membership.objects.get(project=world.project, user__id_number="S-777")
    assert membership.user.username == "north-s-777"
    assert membership.user.home_domain == world.domain
    assert membership.role == "member"
    assert [m.to for m in mailoutbox] == [["wxm@example.edu"]]  # invitation to set a password


def test_create_user_and_add_shows_field_errors(world, login):
    response = login(world.project_admin).post(
        reverse("portal:member_create", args=[world.project.pk]),
        {
            "new-real_name": "Dup",
            "new-id_number": world.member.id_number,
            "new-email": "dup@example.edu",
        },
    )
    assert response.status_code == 200
    assert response.context["create_form"].errors["id_number"]
    assert not Membership.objects.filter(user__email="dup@example.edu").exists()


def test_change_member_role(world, login):
    membership = Membership.objects.get(user=world.member)
    until = local_today() + timedelta(days=5)
    response = login(world.project_admin).post(
        reverse("portal:membership_role", args=[membership.pk]),
        {f"m{membership.pk}-role": "assistant", f"m{membership.pk}-expires_at": until.isoformat()},
        **HTMX,
    )
    assert response.status_code == 200
    membership.refresh_from_db()
    assert (membership.role, membership.expires_at) == ("assistant", end_of(until))


def test_the_role_form_shows_the_end_date_as_a_shanghai_date(world, login):
    """An end date set through the API at 06:00 Asia/Shanghai is 22:00 UTC the day before:
    the members table's form offers the local date (saving the role unchanged keeps the day)."""
    membership = Membership.objects.get(user=world.member)
    day = local_today() + timedelta(days=5)
    early = timezone.make_aware(datetime.combine(day, time(6, 0)))  # 22:00 UTC on day - 1
    membership_update(
        actor=world.project_admin, membership=membership, role="assistant", expires_at=early
    )
    url = reverse("portal:project_detail", args=[world.project.pk])
    html = login(world.project_admin).get(url).content.decode()
    field = re.search(rf'<input[^>]*name="m{membership.pk}-expires_at"[^>]*>', html).group(0)
    assert f'value="{day.isoformat()}"' in field, field


def test_change_role_of_the_last_admin_is_refused(world, login):
    membership = Membership.objects.get(user=world.project_admin)
    response = login(world.project_admin).post(
        reverse("portal:membership_role", args=[membership.pk]),
        {f"m{membership.pk}-role": "member"},
        follow=True,
    )
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert "at least one admin" in response.content.decode()


def test_remove_member_inline(world, login):
    membership = Membership.objects.get(user=world.member)
    response = login(world.project_assistant).post(
        reverse("portal:membership_remove", args=[membership.pk]), **HTMX
    )
    assert response.status_code == 200
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert [r["membership"].user.username for r in response.context["rows"]] == [
        "project_admin",
        "project_assistant",
    ]


def test_assistant_may_not_remove_an_admin(world, login):
    membership = Membership.objects.get(user=world.project_admin)
    response = login(world.project_assistant).post(
        reverse("portal:membership_remove", args=[membership.pk])
    )
    assert response.status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_foreign_membership_is_404(world, login):
    membership = Membership.objects.get(user=world.member)
    response = login(world.other_admin).post(
        reverse("portal:membership_remove", args=[membership.pk])
    )
    assert response.status_code == 404
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_project_audit_log(world, login):
    login(world.project_admin).post(
        reverse("portal:member_add", args=[world.project.pk]),
        {"user": "outsider", "role": "member"},
    )
    response = login(world.project_assistant).get(
        reverse("portal:project_audit", args=[world.project.pk])
    )
    actions = [e.action for e in response.context["page"]]
    assert actions[0] == "membership.add"
    assert all(e.project_id == world.project.pk for e in response.context["page"])


# -- MFA enforcement and the layout -----------------------------------------------------------


@override_settings(TEACHCLOUD_MFA_ENFORCED=True)
def test_mfa_is_enforced_for_admins_not_students(world, client):
    signed_in = client.post(
        reverse("account_login"), {"login": "domain_admin", "password": PASSWORD}
    )
    assert signed_in["Location"] == reverse("portal:dashboard")
    response = client.get(reverse("portal:dashboard"))
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_activate_totp")
    activation = client.get(response["Location"])
    # allauth asks for the password again before an authenticator can be added.
    assert activation["Location"].startswith(reverse("account_reauthenticate"))
    assert 'class="navbar' in client.get(activation["Location"]).content.decode()
    client.post(activation["Location"], {"password": PASSWORD})
    activation = client.get(reverse("mfa_activate_totp"))
    assert activation.status_code == 200
    body = activation.content.decode()
    assert "data:image/svg+xml" in body  # the QR code
    assert 'class="totp-qr' in body
    assert "two-factor" in body.lower() or "双因素" in body or "TOTP" in body or "验证" in body
    client.logout()
    client.force_login(world.member)
    assert client.get(reverse("portal:dashboard")).status_code == 200


def test_language_switch_to_english(world, client):
    client.force_login(world.member)
    response = client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert response.status_code == 302
    body = client.get(reverse("portal:dashboard")).content.decode()
    assert '<html lang="en">' in body
    assert "Sign out" in body


def test_login_page_has_no_sign_up_link(client):
    body = client.get(reverse("account_login")).content.decode()
    assert "signup" not in body
    assert reverse("account_reset_password") in body
    assert "bootstrap.min.css" in body


def test_sign_in_with_email_through_the_login_page(world, client):
    response = client.post(
        reverse("account_login"), {"login": world.member.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:dashboard")


@pytest.mark.parametrize(
    "name", ["account_change_password", "account_email", "mfa_index", "account_logout"]
)
def test_account_pages_use_the_portal_layout(world, login, name):
    body = login(world.member).get(reverse(name)).content.decode()
    assert 'class="navbar' in body
    assert "btn btn-primary" in body or "btn btn-" in body


def test_users_of_other_tenants_are_not_listed_in_the_lookup(world, login):
    stranger = UserFactory(home_domain=world.other_domain, username="stranger")
    response = login(world.domain_admin).post(
        reverse("portal:domain_role_appoint", args=[world.domain.pk]),
        {"user": stranger.username, "role": "assistant"},
    )
    assert response.context["role_form"].errors["user"]
