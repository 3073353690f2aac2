"""Writes of the tenancy app: domains, projects, appointments, memberships, expiry of grants."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.models import User
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.factories import UserFactory
from tenancy import audit
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project
from tenancy.permissions import Action, can
from tenancy.services import (
    domain_create,
    domain_role_remove,
    domain_role_set,
    domain_update,
    grants_expire,
    membership_add,
    membership_remove,
    membership_update,
    project_create,
    project_update,
)

IP = "203.0.113.7"


@pytest.fixture
def client_ip():
    token = audit.current_ip.set(IP)
    yield IP
    audit.current_ip.reset(token)


def fresh(user: User) -> User:
    """A new instance: roles are cached per instance, as they are per request."""
    return User.objects.get(pk=user.pk)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def grant(project: Project, user: User) -> Membership:
    return Membership.objects.get(project=project, user=user)


# -- Domains ----------------------------------------------------------------------------------


def test_domain_create_is_audited_with_ip(world, client_ip):
    domain = domain_create(actor=world.platform, name="  East School ", code="East")
    assert (domain.name, domain.code, domain.status) == ("East School", "east", "active")
    assert domain.created_by == world.platform
    [event] = events("domain.create")
    assert event.actor == world.platform
    assert event.domain == domain
    assert event.ip == IP
    assert event.before is None
    assert event.after == {"name": "East School", "code": "east", "status": "active"}


def test_domain_create_with_admin_appoints_them(world):
    admin = UserFactory(home_domain=world.domain)
    domain = domain_create(actor=world.platform, name="East", code="east", admin=admin)
    assert DomainRole.objects.get(domain=domain, user=admin).role == "admin"
    [event] = AuditEvent.objects.filter(action="domain_role.appoint", domain=domain)
    assert event.after == {"role": "admin", "expires_at": None, "user": admin.username}
    assert can(fresh(admin), Action.DOMAIN_APPOINT, domain)


def test_domain_codes_are_unique_case_insensitively(world):
    before = AuditEvent.objects.count()
    with pytest.raises(Conflict) as exc:
        domain_create(actor=world.platform, name="Another North", code="NORTH")
    assert exc.value.code == "code_taken"
    assert "code" in exc.value.fields
    assert Domain.objects.count() == 2
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("code", ["", "  ", "no spaces", "bad/slash", "点"])
def test_domain_code_must_be_a_slug(world, code):
    with pytest.raises(ServiceError) as exc:
        domain_create(actor=world.platform, name="East", code=code)
    assert exc.value.code == "invalid_code"
    assert Domain.objects.count() == 2


def test_domain_create_needs_a_name_and_platform_staff(world):
    with pytest.raises(ServiceError) as exc:
        domain_create(actor=world.platform, name="  ", code="east")
    assert exc.value.code == "name_required"
    with pytest.raises(PermissionDenied):
        domain_create(actor=world.domain_admin, name="East", code="east")
    assert Domain.objects.count() == 2


def test_domain_update_audits_before_and_after(world, client_ip):
    domain = domain_update(actor=world.domain_admin, domain=world.domain, name="North High")
    assert Domain.objects.get(pk=domain.pk).name == "North High"
    [event] = events("domain.update")
    assert event.actor == world.domain_admin
    assert event.ip == IP
    assert event.before["name"] == "North School"
    assert event.after["name"] == "North High"
    assert event.after["code"] == "north"


def test_domain_update_is_for_domain_admins_only(world):
    for who in (world.domain_assistant, world.project_admin, world.other_admin):
        with pytest.raises(PermissionDenied):
            domain_update(actor=who, domain=world.domain, name="Hacked")
    assert Domain.objects.get(pk=world.domain.pk).name == "North School"
    assert events("domain.update") == []


# -- Projects ---------------------------------------------------------------------------------


def test_project_create_and_codes_unique_inside_the_domain(world, client_ip):
    project = project_create(actor=world.domain_admin, domain=world.domain, name="OS", code="OS1")
    assert (project.code, project.domain, project.created_by) == (
        "os1",
        world.domain,
        world.domain_admin,
    )
    [event] = events("project.create")
    assert event.project == project and event.domain == world.domain and event.ip == IP
    assert event.after == {"name": "OS", "code": "os1", "description": "", "status": "active"}

    with pytest.raises(Conflict) as exc:
        project_create(actor=world.domain_admin, domain=world.domain, name="X", code="Net101")
    assert exc.value.code == "code_taken"
    # The same code in another domain is fine.
    other = project_create(
        actor=world.other_admin, domain=world.other_domain, name="Net", code="net101"
    )
    assert other.domain == world.other_domain
    assert Project.objects.filter(code="net101").count() == 2


def test_project_create_permissions(world):
    # A domain assistant does the daily work, including creating projects.
    project_create(actor=world.domain_assistant, domain=world.domain, name="A", code="a")
    for who in (world.project_admin, world.member, world.other_admin):
        with pytest.raises(PermissionDenied):
            project_create(actor=who, domain=world.domain, name="B", code="b")
    # Appointing an admin at creation is an appointment: not for assistants.
    with pytest.raises(PermissionDenied):
        project_create(
            actor=world.domain_assistant,
            domain=world.domain,
            name="C",
            code="c",
            admin=world.outsider,
        )
    assert not Project.objects.filter(code__in=["b", "c"]).exists()


def test_project_update_audits_and_keeps_codes_unique(world, client_ip):
    project_create(actor=world.domain_admin, domain=world.domain, name="OS", code="os")
    with pytest.raises(Conflict):
        project_update(actor=world.project_admin, project=world.project, code="OS")
    assert Project.objects.get(pk=world.project.pk).code == "net101"
    assert events("project.update") == []

    project = project_update(
        actor=world.project_assistant,
        project=world.project,
        name="Networks 102",
        code="net102",
        description="Spring",
    )
    assert (project.name, project.code, project.description) == ("Networks 102", "net102", "Spring")
    [event] = events("project.update")
    assert event.ip == IP and event.actor == world.project_assistant
    assert event.before == {
        "name": "Networks 101",
        "code": "net101",
        "description": "",
        "status": "active",
    }
    assert event.after == {
        "name": "Networks 102",
        "code": "net102",
        "description": "Spring",
        "status": "active",
    }
    with pytest.raises(PermissionDenied):
        project_update(actor=world.member, project=world.project, name="Mine")


def test_project_update_refuses_a_bad_code(world):
    with pytest.raises(ServiceError) as exc:
        project_update(actor=world.project_admin, project=world.project, code="not a slug")
    assert exc.value.code == "invalid_code"
    assert Project.objects.get(pk=world.project.pk).code == "net101"


# -- Appointments -----------------------------------------------------------------------------


def test_domain_admin_appoints_project_admin_from_the_domain(world, client_ip):
    teacher = UserFactory(home_domain=world.domain)
    project = project_create(
        actor=world.domain_admin, domain=world.domain, name="OS", code="os", admin=teacher
    )
    assert grant(project, teacher).role == "admin"
    [event] = events("membership.appoint")[-1:]
    assert event.after["user"] == teacher.username and event.after["role"] == "admin"
    assert event.ip == IP
    assert can(fresh(teacher), Action.PROJECT_APPOINT, project)

    foreigner = UserFactory(home_domain=world.other_domain)
    with pytest.raises(ServiceError) as exc:
        membership_add(actor=world.domain_admin, project=project, user=foreigner, role="admin")
    assert exc.value.code == "user_not_in_domain"
    assert not Membership.objects.filter(user=foreigner).exists()


def test_admin_may_appoint_a_user_of_their_home_domain_elsewhere(world):
    # Platform staff make the North admin an admin of South as well.
    domain_role_set(
        actor=world.platform, domain=world.other_domain, user=world.domain_admin, role="admin"
    )
    actor = fresh(world.domain_admin)
    colleague = UserFactory(home_domain=world.domain)  # a North user

    domain_role_set(actor=actor, domain=world.other_domain, user=colleague, role="admin")
    membership_add(actor=actor, project=world.other_project, user=world.outsider, role="admin")
    assert DomainRole.objects.get(domain=world.other_domain, user=colleague).role == "admin"
    assert grant(world.other_project, world.outsider).role == "admin"

    # But only as admin: assistants and members come from the tenant's own domain.
    third = UserFactory(home_domain=world.domain)
    with pytest.raises(ServiceError) as exc:
        domain_role_set(actor=actor, domain=world.other_domain, user=third, role="assistant")
    assert exc.value.code == "user_not_in_domain"
    for role in ("assistant", "member"):
        with pytest.raises(ServiceError):
            membership_add(actor=actor, project=world.other_project, user=third, role=role)
    assert not DomainRole.objects.filter(user=third).exists()
    assert not Membership.objects.filter(user=third).exists()


def test_admin_cannot_appoint_a_foreign_user_as_admin(world):
    # The South admin administers only South: a North user cannot come in through them.
    with pytest.raises(ServiceError) as exc:
        membership_add(
            actor=world.other_admin, project=world.other_project, user=world.outsider, role="admin"
        )
    assert exc.value.code == "user_not_in_domain"
    # And nobody appoints in a tenant they do not administer.
    with pytest.raises(PermissionDenied):
        membership_add(
            actor=world.domain_admin, project=world.other_project, user=world.outsider, role="admin"
        )


@pytest.mark.parametrize("role", ["member", "assistant"])
def test_members_and_assistants_must_be_of_the_projects_domain(world, role):
    foreigner = UserFactory(home_domain=world.other_domain)
    with pytest.raises(ServiceError) as exc:
        membership_add(actor=world.platform, project=world.project, user=foreigner, role=role)
    assert exc.value.code == "user_not_in_domain"
    assert not Membership.objects.filter(user=foreigner).exists()


def test_member_cannot_be_changed_into_a_foreign_role(world):
    # A foreign admin (appointed by platform staff) cannot be demoted to member or assistant.
    foreigner = UserFactory(home_domain=world.other_domain)
    membership = membership_add(
        actor=world.platform, project=world.project, user=foreigner, role="admin"
    )
    with pytest.raises(ServiceError) as exc:
        membership_update(actor=world.platform, membership=membership, role="member")
    assert exc.value.code == "user_not_in_domain"
    assert grant(world.project, foreigner).role == "admin"


def test_inactive_user_cannot_be_appointed(world):
    sleeper = UserFactory(home_domain=world.domain, is_active=False)
    with pytest.raises(ServiceError) as exc:
        membership_add(actor=world.project_admin, project=world.project, user=sleeper)
    assert exc.value.code == "user_inactive"


def test_assistants_cannot_appoint_or_remove_admins_or_assistants(world):
    assistant = world.project_assistant
    for role in ("admin", "assistant"):
        with pytest.raises(PermissionDenied):
            membership_add(actor=assistant, project=world.project, user=world.outsider, role=role)
    with pytest.raises(PermissionDenied):
        membership_remove(actor=assistant, membership=grant(world.project, world.project_admin))
    with pytest.raises(PermissionDenied):
        membership_update(
            actor=assistant, membership=grant(world.project, world.member), role="assistant"
        )
    with pytest.raises(PermissionDenied):
        membership_update(
            actor=assistant, membership=grant(world.project, world.project_admin), role="member"
        )
    # Domain assistants neither.
    with pytest.raises(PermissionDenied):
        domain_role_set(
            actor=world.domain_assistant, domain=world.domain, user=world.outsider, role="assistant"
        )
    with pytest.raises(PermissionDenied):
        domain_role_remove(
            actor=world.domain_assistant, grant=DomainRole.objects.get(user=world.domain_admin)
        )
    with pytest.raises(PermissionDenied):
        membership_add(
            actor=world.domain_assistant, project=world.project, user=world.outsider, role="admin"
        )
    assert Membership.objects.filter(project=world.project).count() == 3
    assert DomainRole.objects.filter(domain=world.domain).count() == 2
    assert grant(world.project, world.member).role == "member"


def test_assistants_add_and_remove_members(world, client_ip):
    membership = membership_add(
        actor=world.project_assistant, project=world.project, user=world.outsider
    )
    assert membership.role == "member"
    [event] = events("membership.add")[-1:]
    assert event.actor == world.project_assistant and event.ip == IP
    membership_remove(actor=world.project_assistant, membership=membership)
    assert not Membership.objects.filter(user=world.outsider).exists()
    [event] = events("membership.remove")
    assert event.before["user"] == world.outsider.username
    assert event.before["role"] == "member"
    # A domain assistant may do the same daily work in every project of the domain.
    membership_add(actor=world.domain_assistant, project=world.project, user=world.outsider)
    assert grant(world.project, world.outsider).role == "member"


def test_members_cannot_manage_members(world):
    with pytest.raises(PermissionDenied):
        membership_add(actor=world.member, project=world.project, user=world.outsider)
    with pytest.raises(PermissionDenied):
        membership_add(actor=world.other_admin, project=world.project, user=world.outsider)


def test_duplicate_membership_is_a_conflict(world):
    before = AuditEvent.objects.count()
    with pytest.raises(Conflict) as exc:
        membership_add(actor=world.project_admin, project=world.project, user=world.member)
    assert exc.value.code == "already_member"
    assert Membership.objects.filter(user=world.member).count() == 1
    assert AuditEvent.objects.count() == before


def test_unknown_role_is_refused(world):
    with pytest.raises(ServiceError) as exc:
        membership_add(
            actor=world.project_admin, project=world.project, user=world.outsider, role="owner"
        )
    assert exc.value.code == "invalid_role"
    with pytest.raises(ServiceError):
        domain_role_set(
            actor=world.domain_admin, domain=world.domain, user=world.outsider, role="member"
        )


def test_appointment_role_change_is_audited(world, client_ip):
    membership = membership_update(
        actor=world.project_admin, membership=grant(world.project, world.member), role="assistant"
    )
    assert membership.role == "assistant"
    [event] = events("membership.change")
    assert event.before == {"role": "member", "expires_at": None}
    assert event.after["role"] == "assistant" and event.ip == IP


# -- Expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "member"])
def test_only_assistants_may_expire(world, role):
    later = timezone.now() + timedelta(days=7)
    with pytest.raises(ServiceError) as exc:
        membership_add(
            actor=world.project_admin,
            project=world.project,
            user=world.outsider,
            role=role,
            expires_at=later,
        )
    assert exc.value.code == "expiry_not_allowed"
    assert "expires_at" in exc.value.fields
    assert not Membership.objects.filter(user=world.outsider).exists()


def test_domain_admin_grant_cannot_expire(world):
    with pytest.raises(ServiceError) as exc:
        domain_role_set(
            actor=world.domain_admin,
            domain=world.domain,
            user=world.outsider,
            role="admin",
            expires_at=timezone.now() + timedelta(days=1),
        )
    assert exc.value.code == "expiry_not_allowed"


def test_expiry_must_be_in_the_future(world):
    past = timezone.now() - timedelta(minutes=1)
    with pytest.raises(ServiceError) as exc:
        membership_add(
            actor=world.project_admin,
            project=world.project,
            user=world.outsider,
            role="assistant",
            expires_at=past,
        )
    assert exc.value.code == "expiry_in_past"
    with pytest.raises(ServiceError) as exc:
        domain_role_set(
            actor=world.domain_admin,
            domain=world.domain,
            user=world.outsider,
            role="assistant",
            expires_at=past,
        )
    assert exc.value.code == "expiry_in_past"
    assert not Membership.objects.filter(user=world.outsider).exists()
    assert not DomainRole.objects.filter(user=world.outsider).exists()


def test_expired_grants_give_no_rights_and_are_ended(world, client_ip):
    now = timezone.now()
    until = now + timedelta(hours=1)
    helper = UserFactory(home_domain=world.domain)
    domain_helper = UserFactory(home_domain=world.domain)
    membership_add(
        actor=world.project_admin,
        project=world.project,
        user=helper,
        role="assistant",
        expires_at=until,
    )
    domain_role_set(
        actor=world.domain_admin,
        domain=world.domain,
        user=domain_helper,
        role="assistant",
        expires_at=until,
    )
    assert can(fresh(helper), Action.PROJECT_MANAGE, world.project)
    assert can(fresh(domain_helper), Action.DOMAIN_MANAGE, world.domain)
    assert grants_expire(now=now) == 0

    later = until + timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        # Past the date, before the housekeeping run: no rights already.
        assert not can(fresh(helper), Action.PROJECT_MANAGE, world.project)
        assert not can(fresh(domain_helper), Action.DOMAIN_MANAGE, world.domain)
        assert can(fresh(world.project_assistant), Action.PROJECT_MANAGE, world.project)

    assert grants_expire(now=later) == 2
    # The project assistant stays in the project as a plain member; the domain grant ends.
    membership = grant(world.project, helper)
    assert (membership.role, membership.expires_at) == ("member", None)
    assert not DomainRole.objects.filter(user=domain_helper).exists()
    [m_event] = events("membership.expire")
    assert m_event.actor is None and m_event.actor_repr == "system"
    assert m_event.before["role"] == "assistant" and m_event.before["user"] == helper.username
    assert m_event.after == {"role": "member", "expires_at": None, "user": helper.username}
    assert m_event.project == world.project
    [d_event] = events("domain_role.expire")
    assert d_event.before["role"] == "assistant" and d_event.domain == world.domain
    assert d_event.before["user"] == domain_helper.username
    # Nothing left to do the second time.
    assert grants_expire(now=later) == 0
    assert len(events("membership.expire")) == 1


# -- The last admin ---------------------------------------------------------------------------


def test_last_project_admin_cannot_be_removed_or_demoted(world):
    admin = grant(world.project, world.project_admin)
    before = AuditEvent.objects.count()
    with pytest.raises(Conflict) as exc:
        membership_remove(actor=world.domain_admin, membership=admin)
    assert exc.value.code == "last_admin"
    for role in ("assistant", "member"):
        with pytest.raises(Conflict):
            membership_update(actor=world.domain_admin, membership=admin, role=role)
    assert grant(world.project, world.project_admin).role == "admin"
    assert AuditEvent.objects.count() == before

    # With a second admin, the first may go.
    membership_update(
        actor=world.domain_admin, membership=grant(world.project, world.member), role="admin"
    )
    membership_remove(actor=world.domain_admin, membership=admin)
    assert not Membership.objects.filter(user=world.project_admin).exists()


def test_last_domain_admin_cannot_be_removed_or_demoted(world):
    admin = DomainRole.objects.get(domain=world.domain, user=world.domain_admin)
    before = AuditEvent.objects.count()
    with pytest.raises(Conflict) as exc:
        domain_role_remove(actor=world.platform, grant=admin)
    assert exc.value.code == "last_admin"
    with pytest.raises(Conflict):
        domain_role_set(
            actor=world.platform, domain=world.domain, user=world.domain_admin, role="assistant"
        )
    assert DomainRole.objects.get(pk=admin.pk).role == "admin"
    assert AuditEvent.objects.count() == before

    domain_role_set(
        actor=world.domain_admin, domain=world.domain, user=world.outsider, role="admin"
    )
    domain_role_remove(actor=world.domain_admin, grant=admin)
    assert not DomainRole.objects.filter(pk=admin.pk).exists()
    [event] = events("domain_role.remove")
    assert event.before["user"] == "domain_admin"


def test_domain_role_change_is_audited(world, client_ip):
    role = domain_role_set(
        actor=world.domain_admin, domain=world.domain, user=world.domain_assistant, role="admin"
    )
    assert role.role == "admin"
    [event] = events("domain_role.change")
    assert event.before == {"role": "assistant", "expires_at": None}
    assert event.after == {"role": "admin", "expires_at": None, "user": "domain_assistant"}
    assert event.ip == IP
