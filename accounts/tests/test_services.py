"""Writes of the accounts app: real-name users, invitations, enrollment codes and requests."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.models import EnrollmentCode, EnrollmentRequest, EnrollmentStatus, User
from accounts.services import (
    default_username,
    enrollment_code_create,
    enrollment_code_deactivate,
    enrollment_decide,
    enrollment_redeem,
    enrollment_redeem_as_user,
    user_create,
    user_update,
)
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.factories import UserFactory
from tenancy.models import AuditEvent, Membership

NEW_PASSWORD = "Blue-Kettle-Orbit-77"


def new_user(world, **overrides):
    fields = {
        "actor": world.domain_admin,
        "domain": world.domain,
        "username": "li.lei",
        "real_name": "李雷",
        "id_number": "20260101",
        "email": "li.lei@example.edu",
    }
    fields.update(overrides)
    return user_create(**fields)


def counts() -> tuple[int, int, int]:
    return User.objects.count(), EmailAddress.objects.count(), AuditEvent.objects.count()


# -- Creating users ---------------------------------------------------------------------------


def test_user_create_with_password(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        user = new_user(world, password=NEW_PASSWORD, email="  Li.Lei@Example.EDU ")
    user.refresh_from_db()
    assert (user.username, user.real_name, user.id_number) == ("li.lei", "李雷", "20260101")
    assert user.email == "li.lei@example.edu"
    assert user.home_domain == world.domain and user.is_active
    assert user.check_password(NEW_PASSWORD)
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.primary, address.verified) == (user.email, True, False)
    event = AuditEvent.objects.get(action="user.create", target_id=str(user.pk))
    assert event.actor == world.domain_admin and event.domain == world.domain
    assert event.after == {
        "username": "li.lei",
        "real_name": "李雷",
        "id_number": "20260101",
        "email": "li.lei@example.edu",
        "phone": "",
    }
    assert mail.outbox == []  # they know their password: no invitation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"username": "li lei!"}, "username"),
        ({"username": ""}, "username"),
        ({"username": "MEMBER"}, "username"),  # taken, case-insensitively
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"email": "Member@Example.EDU"}, "email"),  # taken, case-insensitively
        ({"real_name": "   "}, "real_name"),
        ({"id_number": ""}, "id_number"),
        ({"id_number": "20260999"}, "id_number"),  # taken inside the domain (see below)
        ({"password": "123"}, "password"),
        ({"password": "password"}, "password"),
        ({"password": "li.lei.example"}, "password"),  # too like the username / email
    ],
)
def test_user_create_validation_writes_nothing(world, overrides, field):
    UserFactory(home_domain=world.domain, id_number="20260999")
    before = counts()
    with pytest.raises(ServiceError) as exc:
        new_user(world, **overrides)
    assert exc.value.code == "invalid_user"
    assert exc.value.status == 400
    assert field in exc.value.fields
    assert exc.value.fields[field]  # a message for the field
    assert counts() == before


def test_user_create_reports_every_bad_field_at_once(world):
    with pytest.raises(ServiceError) as exc:
        new_user(world, username="bad name", email="nope", id_number="", password="1")
    assert set(exc.value.fields) == {"username", "email", "id_number", "password"}


def test_id_number_is_unique_per_domain_only(world):
    new_user(world)
    # The same number belongs to someone else in another school.
    other = user_create(
        actor=world.other_admin,
        domain=world.other_domain,
        username="li2",
        real_name="李雷",
        id_number="20260101",
        email="li2@example.edu",
    )
    assert other.home_domain == world.other_domain
    assert User.objects.filter(id_number="20260101").count() == 2


def test_user_create_permissions(world):
    # A project admin may create users of the domain of their project.
    new_user(world, actor=world.project_admin)
    for who in (world.member, world.outsider, world.other_admin):
        with pytest.raises(PermissionDenied):
            new_user(world, actor=who, username="x1", id_number="1", email="x1@example.edu")
    assert not User.objects.filter(username="x1").exists()


def test_invitation_is_sent_on_commit_and_lets_the_user_set_a_password(
    world, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        user = new_user(world)
    assert mail.outbox == []  # nothing leaves before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    assert not user.has_usable_password()
    [message] = mail.outbox
    assert message.to == ["li.lei@example.edu"]
    assert "li.lei" in message.body and "李雷" in message.body
    url = re.search(r"https?://\S+", message.body).group(0)
    path = url.split("://", 1)[1].split("/", 1)[1]
    response = client.get("/" + path, follow=True)
    assert response.status_code == 200
    set_password_path = response.redirect_chain[-1][0]
    assert "set-password" in set_password_path
    response = client.post(
        set_password_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # The link is used up: it shows the "bad token" page instead of the form.
    client.logout()
    response = client.get("/" + path)
    assert response.status_code == 200
    assert response.context["token_fail"]


def test_no_invitation_when_the_transaction_fails(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ServiceError):
        new_user(world, email="bad")
    assert mail.outbox == []


# -- Changing users ---------------------------------------------------------------------------


def test_user_update_audits_real_name_changes(world):
    user = new_user(world, password=NEW_PASSWORD)
    user_update(actor=world.domain_admin, user=user, real_name=" 李 蕾 ", phone="13800000000")
    user.refresh_from_db()
    assert (user.real_name, user.phone) == ("李 蕾", "13800000000")
    event = AuditEvent.objects.get(action="user.real_name_change")
    assert event.actor == world.domain_admin and event.domain == world.domain
    assert event.before["real_name"] == "李雷" and event.after["real_name"] == "李 蕾"
    assert event.before["phone"] == "" and event.after["phone"] == "13800000000"
    # No change, no event.
    user_update(actor=world.domain_admin, user=user, real_name="李 蕾")
    assert AuditEvent.objects.filter(action="user.real_name_change").count() == 1


def test_user_update_email_resets_verification(world):
    user = new_user(world, password=NEW_PASSWORD)
    EmailAddress.objects.filter(user=user).update(verified=True)
    user_update(actor=world.project_admin, user=world.member, email="NEW@example.edu")
    address = EmailAddress.objects.get(user=world.member)
    assert (address.email, address.verified) == ("new@example.edu", False)
    with pytest.raises(ServiceError) as exc:
        user_update(actor=world.domain_admin, user=user, email="new@EXAMPLE.edu")
    assert "email" in exc.value.fields
    with pytest.raises(ServiceError) as exc:
        user_update(actor=world.domain_admin, user=user, id_number=world.member.id_number)
    assert "id_number" in exc.value.fields


def test_student_cannot_change_real_names(world):
    before = AuditEvent.objects.count()
    for target in (world.member, world.outsider):
        with pytest.raises(PermissionDenied):
            user_update(actor=world.member, user=target, real_name="Someone else")
    with pytest.raises(PermissionDenied):
        user_update(actor=world.other_admin, user=world.member, real_name="Foreign")
    assert User.objects.get(pk=world.member.pk).real_name == world.member.real_name
    assert AuditEvent.objects.count() == before


def test_user_update_refuses_other_fields(world):
    with pytest.raises(ServiceError) as exc:
        user_update(actor=world.domain_admin, user=world.member, username="root")
    assert exc.value.code == "invalid_fields"


def test_deactivation_is_for_domain_admins(world):
    with pytest.raises(PermissionDenied):
        user_update(actor=world.project_admin, user=world.member, is_active=False)
    user_update(actor=world.domain_admin, user=world.member, is_active=False)
    assert not User.objects.get(pk=world.member.pk).is_active
    with pytest.raises(ServiceError) as exc:
        user_update(actor=world.domain_admin, user=world.domain_admin, is_active=False)
    assert exc.value.code == "self_deactivate"


# -- Enrollment codes -------------------------------------------------------------------------


def make_code(world, **kwargs) -> EnrollmentCode:
    return enrollment_code_create(actor=world.project_admin, project=world.project, **kwargs)


def redeem(code: EnrollmentCode, **overrides) -> EnrollmentRequest:
    fields = {
        "code": code.code,
        "real_name": "韩梅梅",
        "id_number": "20267001",
        "email": "han@example.edu",
        "password": NEW_PASSWORD,
    }
    fields.update(overrides)
    return enrollment_redeem(**fields)


def test_enrollment_code_create_validates(world):
    code = make_code(
        world, label=" Week 1 ", max_uses=30, expires_at=timezone.now() + timedelta(days=7)
    )
    assert (code.label, code.max_uses, code.uses, code.active) == ("Week 1", 30, 0, True)
    assert code.created_by == world.project_admin and len(code.code) >= 12
    event = AuditEvent.objects.get(action="enrollment_code.create")
    assert event.project == world.project and event.after["max_uses"] == 30
    with pytest.raises(ServiceError) as exc:
        make_code(world, expires_at=timezone.now() - timedelta(seconds=1))
    assert exc.value.code == "expiry_in_past" and "expires_at" in exc.value.fields
    with pytest.raises(ServiceError) as exc:
        make_code(world, max_uses=0)
    assert exc.value.code == "invalid_max_uses" and "max_uses" in exc.value.fields
    for who in (world.member, world.other_admin):
        with pytest.raises(PermissionDenied):
            enrollment_code_create(actor=who, project=world.project)
    assert EnrollmentCode.objects.count() == 1


def test_anonymous_redeem_creates_an_inactive_user_waiting_for_approval(
    world, django_capture_on_commit_callbacks
):
    code = make_code(world)
    with django_capture_on_commit_callbacks(execute=True):
        request = redeem(code, id_number=" 20267001 ", email="Han@Example.edu")
    user = request.user
    assert request.status == EnrollmentStatus.PENDING and request.project == world.project
    assert (user.username, user.real_name, user.id_number) == (
        "north-20267001",
        "韩梅梅",
        "20267001",
    )
    assert user.email == "han@example.edu" and user.home_domain == world.domain
    assert not user.is_active and user.check_password(NEW_PASSWORD)
    assert not Membership.objects.filter(user=user).exists()
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 1
    assert AuditEvent.objects.filter(action="enrollment.redeem", project=world.project).count() == 1
    assert mail.outbox == []  # no invitation: the student chose a password


def test_redeem_needs_a_password(world):
    code = make_code(world)
    with pytest.raises(ServiceError) as exc:
        redeem(code, password="")
    assert "password" in exc.value.fields
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 0
    assert not User.objects.filter(id_number="20267001").exists()


def test_bad_redeem_writes_nothing_and_counts_no_use(world):
    code = make_code(world)
    before = counts()
    assert redeem(code, email=world.member.email.upper()) is None  # taken: answered alike
    with pytest.raises(ServiceError) as exc:
        redeem(code, password="12345")
    assert "password" in exc.value.fields
    assert counts() == before
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 0
    assert EnrollmentRequest.objects.count() == 0


def test_expired_code_is_refused(world):
    code = make_code(world, expires_at=timezone.now() + timedelta(hours=1))
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        with pytest.raises(ServiceError) as exc:
            redeem(code)
        assert exc.value.code == "code_invalid" and exc.value.status == 404
        with pytest.raises(ServiceError):
            enrollment_redeem_as_user(code=code.code, user=world.outsider)
    assert EnrollmentRequest.objects.count() == 0


def test_deactivated_code_is_refused(world):
    code = make_code(world)
    enrollment_code_deactivate(actor=world.project_assistant, code=code)
    assert AuditEvent.objects.filter(action="enrollment_code.deactivate").count() == 1
    with pytest.raises(ServiceError) as exc:
        redeem(code)
    assert exc.value.code == "code_invalid"
    with pytest.raises(ServiceError):
        redeem(code.__class__(code="no-such-code"))
    with pytest.raises(PermissionDenied):
        enrollment_code_deactivate(actor=world.member, code=make_code(world))


def test_used_up_code_is_refused(world):
    code = make_code(world, max_uses=1)
    redeem(code)
    with pytest.raises(ServiceError) as exc:
        redeem(code, id_number="20267002", email="other@example.edu")
    assert exc.value.code == "code_invalid"
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 1
    assert not User.objects.filter(id_number="20267002").exists()


def test_redeem_never_tells_whether_a_number_address_or_username_is_taken(world):
    code = make_code(world)
    before = User.objects.count()
    # A number or an address that already has an account: nothing is created, no error says so.
    assert redeem(code, id_number=world.outsider.id_number, email="new@example.edu") is None
    assert redeem(code, id_number="20269001", email=world.outsider.email.upper()) is None
    assert User.objects.count() == before
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 0
    # A chosen username that is taken is replaced by the default one, silently.
    request = redeem(code, id_number="20269002", email="fresh@example.edu", username="outsider")
    assert request.user.username == default_username(world.domain, "20269002")


def test_redeem_as_signed_in_user(world):
    code = make_code(world)
    request = enrollment_redeem_as_user(code=code.code, user=world.outsider)
    assert (request.user, request.status) == (world.outsider, EnrollmentStatus.PENDING)
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 1
    with pytest.raises(Conflict) as exc:
        enrollment_redeem_as_user(code=code.code, user=world.outsider)
    assert exc.value.code == "already_pending"
    with pytest.raises(Conflict) as exc:
        enrollment_redeem_as_user(code=code.code, user=world.member)
    assert exc.value.code == "already_member"
    with pytest.raises(ServiceError) as exc:
        enrollment_redeem_as_user(code=code.code, user=world.other_admin)
    assert exc.value.code == "user_not_in_domain"
    assert EnrollmentCode.objects.get(pk=code.pk).uses == 1


def test_approve_activates_and_adds_the_member(world):
    request = redeem(make_code(world))
    decided = enrollment_decide(actor=world.project_assistant, request=request, approve=True)
    assert decided.status == EnrollmentStatus.APPROVED
    assert decided.decided_by == world.project_assistant and decided.decided_at is not None
    user = User.objects.get(pk=request.user_id)
    assert user.is_active
    membership = Membership.objects.get(project=world.project, user=user)
    assert membership.role == "member"
    event = AuditEvent.objects.get(action="enrollment.approved")
    assert event.actor == world.project_assistant and event.project == world.project
    assert event.after == {"user": "north-20267001", "status": "approved"}
    assert AuditEvent.objects.filter(action="membership.add", target_id=str(membership.pk)).exists()
    with pytest.raises(Conflict) as exc:
        enrollment_decide(actor=world.project_admin, request=request, approve=False)
    assert exc.value.code == "already_decided"
    assert EnrollmentRequest.objects.get(pk=request.pk).status == EnrollmentStatus.APPROVED


def test_reject_leaves_the_user_out(world):
    request = redeem(make_code(world))
    enrollment_decide(actor=world.project_admin, request=request, approve=False)
    request.refresh_from_db()
    assert request.status == EnrollmentStatus.REJECTED
    assert not User.objects.get(pk=request.user_id).is_active
    assert not Membership.objects.filter(user_id=request.user_id).exists()
    assert AuditEvent.objects.filter(action="enrollment.rejected").count() == 1
    with pytest.raises(Conflict):
        enrollment_decide(actor=world.project_admin, request=request, approve=True)
    assert not Membership.objects.filter(user_id=request.user_id).exists()


def test_only_project_managers_and_superiors_decide(world):
    code = make_code(world)
    requests = [redeem(code, id_number=f"2026800{i}", email=f"s{i}@example.edu") for i in range(3)]
    for who in (world.member, world.outsider, world.other_admin):
        with pytest.raises(PermissionDenied):
            enrollment_decide(actor=who, request=requests[0], approve=True)
    assert EnrollmentRequest.objects.get(pk=requests[0].pk).status == EnrollmentStatus.PENDING
    # Superiors: the domain admin, a domain assistant and platform staff.
    for who, request in zip(
        (world.domain_admin, world.domain_assistant, world.platform), requests, strict=True
    ):
        enrollment_decide(actor=who, request=request, approve=True)
    assert Membership.objects.filter(project=world.project, role="member").count() == 4
