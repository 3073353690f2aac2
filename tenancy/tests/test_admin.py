"""The Django admin for platform staff: access through tenancy.permissions, writes through
services (audited), the create-domain-with-admin view, and a read-only audit log."""

import pytest
from django.contrib import messages
from django.contrib.auth import authenticate
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts import services as account_services
from accounts.models import EnrollmentRequest, RosterImport, User
from teachcloud.testing.factories import PASSWORD, UserFactory, platform_staff
from tenancy import services
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project

ADD_WITH_ADMIN = "admin:tenancy_domain_add_with_admin"


@pytest.fixture
def staff_client(client, world):
    client.force_login(world.platform)
    return client


@pytest.fixture
def objects(world):
    """One object of every admin-registered model, built through the services."""
    code = account_services.enrollment_code_create(
        actor=world.project_admin, project=world.project, label="Week 1"
    )
    enrollment = account_services.enrollment_redeem(
        code=code.code,
        real_name="王小明",
        id_number="20269999",
        email="wxm@example.edu",
        password="Another-Horse-42",
    )
    roster = account_services.roster_import_create(
        actor=world.domain_admin,
        domain=world.domain,
        project=world.project,
        filename="class.csv",
        rows=[{"real_name": "李四", "id_number": "20268888", "email": "lisi@example.edu"}],
    )
    roster = account_services.roster_import_run(roster_import_id=roster.pk)
    return {
        "user": world.member,
        "enrollmentcode": code,
        "enrollmentrequest": enrollment,
        "rosterimport": roster,
        "domain": world.domain,
        "project": world.project,
        "membership": Membership.objects.get(user=world.member),
        "domainrole": DomainRole.objects.get(user=world.domain_admin),
        "auditevent": AuditEvent.objects.filter(action="domain_role.appoint").first(),
    }


# (app, model, search, filter) — the filter must keep the object of `objects[model]`.
CASES = [
    ("accounts", "user", "member", "is_active__exact=1&home_domain__id__exact={domain}"),
    ("accounts", "enrollmentcode", "Week", "active__exact=1"),
    ("accounts", "enrollmentrequest", "20269999", "status__exact=pending"),
    ("accounts", "rosterimport", "class.csv", "status__exact=done"),
    ("tenancy", "domain", "north", "status__exact=active"),
    ("tenancy", "project", "net101", "domain__id__exact={domain}"),
    ("tenancy", "membership", "member", "role__exact=member"),
    ("tenancy", "domainrole", "domain_admin", "role__exact=admin"),
    ("tenancy", "auditevent", "platform", "action__exact=domain_role.appoint"),
]


@pytest.mark.parametrize(("app", "model", "search", "filter_"), CASES)
def test_changelist_and_change_page_load_for_platform_staff(
    staff_client, world, objects, app, model, search, filter_
):
    obj = objects[model]
    url = reverse(f"admin:{app}_{model}_changelist")
    query = f"q={search}&" + filter_.format(domain=world.domain.pk)
    response = staff_client.get(f"{url}?{query}")
    assert response.status_code == 200
    assert obj.pk in [row.pk for row in response.context["cl"].result_list]

    response = staff_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("app", "model"), [("tenancy", "membership"), ("tenancy", "domain"), ("accounts", "user")]
)
def test_changelists_do_not_query_per_row(staff_client, world, app, model):
    url = reverse(f"admin:{app}_{model}_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    before = queries()
    for n in range(4):
        domain = services.domain_create(actor=world.platform, name=f"Extra {n}", code=f"x{n}")
        user = UserFactory(username=f"extra{n}", home_domain=domain)
        services.domain_role_set(actor=world.platform, domain=domain, user=user, role="admin")
        project = services.project_create(
            actor=world.platform, domain=domain, name="P", code="p", admin=user
        )
        services.membership_add(
            actor=world.platform, project=project, user=UserFactory(home_domain=domain)
        )
    assert queries() == before


def test_domain_admin_with_is_staff_is_refused(client, world):
    account_services.user_platform_access_set(
        actor=world.platform,
        user=world.domain_admin,
        platform_role="",
        is_staff=True,
        is_superuser=False,
    )
    client.force_login(world.domain_admin)
    # The admin site itself is closed to them: every page sends them to the admin login.
    for app, model, _search, _filter in CASES:
        response = client.get(reverse(f"admin:{app}_{model}_changelist"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert client.get(reverse("admin:tenancy_domain_add")).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 302
    response = client.post(reverse(ADD_WITH_ADMIN), _domain_form(code="east"))
    assert response.status_code in (302, 403)
    assert not Domain.objects.filter(code="east").exists()


def test_plain_staff_user_without_platform_role_is_refused(client, db):
    user = UserFactory(home_domain=None, id_number="", is_staff=True)
    client.force_login(user)
    response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def _domain_form(**overrides):
    data = {
        "name": "东方理工大学",
        "code": "east",
        "admin_username": "east-admin",
        "admin_real_name": "钱学文",
        "admin_id_number": "E0001",
        "admin_email": "east-admin@east.example.edu",
        "admin_password": "",
    }
    return data | overrides


def test_create_domain_with_admin_writes_domain_user_role_and_audit(
    staff_client, world, django_capture_on_commit_callbacks
):
    assert (
        staff_client.get(reverse("admin:tenancy_domain_changelist")).content.count(
            reverse(ADD_WITH_ADMIN).encode()
        )
        == 1
    )
    assert staff_client.get(reverse(ADD_WITH_ADMIN)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(ADD_WITH_ADMIN), _domain_form())
    domain = Domain.objects.get(code="east")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tenancy_domain_change", args=[domain.pk])
    admin = User.objects.get(username="east-admin")
    assert (admin.home_domain, admin.real_name, admin.id_number) == (domain, "钱学文", "E0001")
    assert not admin.has_usable_password()
    assert DomainRole.objects.filter(domain=domain, user=admin, role="admin").count() == 1
    actions = set(
        AuditEvent.objects.filter(domain=domain, actor=world.platform).values_list(
            "action", flat=True
        )
    )
    assert actions == {"domain.create", "user.create", "domain_role.appoint"}
    # Without a password the new admin is invited to choose one.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["east-admin@east.example.edu"]
    assert "钱学文" in mail.outbox[0].body
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


def test_create_domain_with_admin_and_password(staff_client, world):
    response = staff_client.post(
        reverse(ADD_WITH_ADMIN), _domain_form(admin_password="Sturdy-Cloud-77")
    )
    assert response.status_code == 302
    assert authenticate(username="east-admin", password="Sturdy-Cloud-77") is not None
    assert len(mail.outbox) == 0


def test_create_domain_with_duplicate_code_shows_error_and_writes_nothing(staff_client, world):
    counts = (
        Domain.objects.count(),
        User.objects.count(),
        DomainRole.objects.count(),
        AuditEvent.objects.count(),
    )
    response = staff_client.post(reverse(ADD_WITH_ADMIN), _domain_form(code="north"))
    assert response.status_code == 200
    assert response.context["form"].errors["code"]
    assert (
        Domain.objects.count(),
        User.objects.count(),
        DomainRole.objects.count(),
        AuditEvent.objects.count(),
    ) == counts
    assert not User.objects.filter(username="east-admin").exists()


def test_create_domain_with_weak_password_shows_password_error(staff_client, world):
    response = staff_client.post(reverse(ADD_WITH_ADMIN), _domain_form(admin_password="123"))
    assert response.status_code == 200
    assert response.context["form"].errors["admin_password"]
    assert not Domain.objects.filter(code="east").exists()


def _user_form(user, **overrides):
    """The change form as a browser posts it (an unticked checkbox is simply absent)."""
    data = {
        "real_name": user.real_name,
        "id_number": user.id_number,
        "email": user.email,
        "phone": user.phone,
        "platform_role": user.platform_role,
    } | overrides
    if user.is_active:
        data["is_active"] = "on"
    return data


def test_editing_real_name_in_admin_is_audited_with_before_and_after(staff_client, world):
    member = world.member
    old_name = member.real_name
    url = reverse("admin:accounts_user_change", args=[member.pk])
    response = staff_client.post(url, _user_form(member, real_name="张三丰"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert member.real_name == "张三丰"
    event = AuditEvent.objects.get(action="user.real_name_change", target_id=str(member.pk))
    assert event.actor == world.platform
    assert event.before["real_name"] == old_name
    assert event.after["real_name"] == "张三丰"
    assert event.domain == world.domain


def test_editing_user_with_taken_number_shows_error(staff_client, world):
    url = reverse("admin:accounts_user_change", args=[world.member.pk])
    response = staff_client.post(url, _user_form(world.member, id_number=world.outsider.id_number))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    world.member.refresh_from_db()
    assert world.member.id_number != world.outsider.id_number


def test_granting_platform_role_in_admin_is_audited(staff_client, world):
    url = reverse("admin:accounts_user_change", args=[world.outsider.pk])
    response = staff_client.post(url, _user_form(world.outsider, platform_role="finance"))
    assert response.status_code == 302
    world.outsider.refresh_from_db()
    assert world.outsider.platform_role == "finance"
    event = AuditEvent.objects.get(action="user.platform_access_change")
    assert (event.before["platform_role"], event.after["platform_role"]) == ("", "finance")


def test_adding_a_user_and_a_platform_account(staff_client, world):
    url = reverse("admin:accounts_user_add")
    response = staff_client.post(
        url,
        {
            "username": "newbie",
            "real_name": "新同学",
            "id_number": "20260001",
            "email": "newbie@example.edu",
            "phone": "",
            "home_domain": world.domain.pk,
            "password1": "Another-Horse-42",
            "password2": "Another-Horse-42",
        },
    )
    assert response.status_code == 302
    newbie = User.objects.get(username="newbie")
    assert newbie.home_domain == world.domain
    assert AuditEvent.objects.filter(action="user.create", target_id=str(newbie.pk)).exists()

    response = staff_client.post(
        url,
        {
            "username": "cashier",
            "real_name": "财务",
            "id_number": "",
            "email": "cashier@teachcloud.example",
            "phone": "",
            "platform_role": "finance",
        },
    )
    assert response.status_code == 302
    cashier = User.objects.get(username="cashier")
    assert (cashier.home_domain, cashier.platform_role, cashier.is_staff) == (None, "finance", True)


def test_domain_and_membership_writes_go_through_services(staff_client, world):
    response = staff_client.post(
        reverse("admin:tenancy_domain_add"), {"name": "西部学院", "code": "west"}
    )
    assert response.status_code == 302
    west = Domain.objects.get(code="west")
    assert AuditEvent.objects.filter(action="domain.create", target_id=str(west.pk)).exists()

    response = staff_client.post(
        reverse("admin:tenancy_domain_change", args=[west.pk]), {"name": "西部理工学院"}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="domain.update", target_id=str(west.pk))
    assert (event.before["name"], event.after["name"]) == ("西部学院", "西部理工学院")

    response = staff_client.post(
        reverse("admin:tenancy_membership_add"),
        {
            "project": world.project.pk,
            "user": world.outsider.pk,
            "role": "member",
        },
    )
    assert response.status_code == 302
    membership = Membership.objects.get(project=world.project, user=world.outsider)
    assert AuditEvent.objects.filter(action="membership.add", target_id=str(membership.pk)).exists()

    response = staff_client.post(
        reverse("admin:tenancy_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(
        action="membership.remove", target_id=str(membership.pk)
    ).exists()


def test_adding_a_foreign_member_shows_the_service_error(staff_client, world):
    response = staff_client.post(
        reverse("admin:tenancy_membership_add"),
        {
            "project": world.project.pk,
            "user": world.other_admin.pk,
            "role": "member",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert not Membership.objects.filter(user=world.other_admin).exists()


def test_removing_the_last_domain_admin_is_refused_with_a_message(staff_client, world):
    grant = DomainRole.objects.get(user=world.domain_admin)
    url = reverse("admin:tenancy_domainrole_delete", args=[grant.pk])
    response = staff_client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert DomainRole.objects.filter(pk=grant.pk).exists()
    assert [m.level for m in response.context["messages"]] == [messages.ERROR]
    # No bulk delete where the service has rules (the last admin stays).
    changelist = staff_client.get(reverse("admin:tenancy_domainrole_changelist"))
    assert changelist.context["action_form"] is None


def test_project_admin_changes_via_service(staff_client, world):
    url = reverse("admin:tenancy_project_change", args=[world.project.pk])
    response = staff_client.post(
        url, {"name": "Networks 102", "code": "net102", "description": "Spring"}
    )
    assert response.status_code == 302
    project = Project.objects.get(pk=world.project.pk)
    assert (project.name, project.code) == ("Networks 102", "net102")
    assert AuditEvent.objects.filter(action="project.update", target_id=str(project.pk)).exists()


def test_audit_events_cannot_be_added_changed_or_deleted(staff_client, world):
    event = AuditEvent.objects.first()
    change = reverse("admin:tenancy_auditevent_change", args=[event.pk])
    page = staff_client.get(change)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert staff_client.post(change, {"action": "forged"}).status_code == 403
    delete = reverse("admin:tenancy_auditevent_delete", args=[event.pk])
    assert staff_client.get(delete).status_code == 403
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert staff_client.get(reverse("admin:tenancy_auditevent_add")).status_code == 403
    changelist = staff_client.post(
        reverse("admin:tenancy_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert changelist.status_code in (200, 302)
    event.refresh_from_db()
    assert event.action != "forged"
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_superuser_sees_audit_event_with_before_after_table(client, world):
    superuser = platform_staff(username="root", is_superuser=True)
    client.force_login(superuser)
    services.domain_update(actor=superuser, domain=world.domain, name="North University")
    event = AuditEvent.objects.get(action="domain.update")
    page = client.get(reverse("admin:tenancy_auditevent_change", args=[event.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "North School" in body and "North University" in body


def test_enrollment_requests_are_decided_by_action(staff_client, world, objects):
    enrollment = objects["enrollmentrequest"]
    response = staff_client.post(
        reverse("admin:accounts_enrollmentrequest_changelist"),
        {"action": "approve", "_selected_action": [enrollment.pk]},
    )
    assert response.status_code == 302
    enrollment = EnrollmentRequest.objects.get(pk=enrollment.pk)
    assert enrollment.status == "approved"
    assert Membership.objects.filter(project=world.project, user=enrollment.user).exists()


def test_roster_import_is_view_only(staff_client, objects):
    roster = objects["rosterimport"]
    url = reverse("admin:accounts_rosterimport_change", args=[roster.pk])
    page = staff_client.get(url)
    assert page.status_code == 200
    assert "20268888" in page.content.decode()
    assert staff_client.post(url, {"filename": "x"}).status_code == 403
    assert RosterImport.objects.get(pk=roster.pk).filename == "class.csv"


@pytest.mark.django_db(transaction=True)
def test_admin_writes_run_durable_services_outside_any_outer_transaction(client):
    """In production no test transaction wraps the request: the admin must not open one either,
    since every service is a durable transaction of its own."""
    staff = platform_staff(username="ops")
    client.force_login(staff)
    response = client.post(reverse(ADD_WITH_ADMIN), _domain_form(admin_password=PASSWORD))
    assert response.status_code == 302
    admin = User.objects.get(username="east-admin")
    response = client.post(
        reverse("admin:accounts_user_change", args=[admin.pk]),
        _user_form(admin, real_name="钱学武"),
    )
    assert response.status_code == 302
    grant = DomainRole.objects.get(user=admin)
    response = client.post(
        reverse("admin:tenancy_domainrole_delete", args=[grant.pk]), {"post": "yes"}
    )
    assert response.status_code == 302  # refused (last admin), shown as a message
    assert DomainRole.objects.filter(pk=grant.pk).exists()
    assert AuditEvent.objects.filter(action="user.real_name_change").count() == 1


def test_user_autocomplete_for_membership_form(staff_client, world):
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "tenancy",
            "model_name": "membership",
            "field_name": "user",
            "term": "outsider",
        },
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(world.outsider.pk)]
