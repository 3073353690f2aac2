"""A locked school or project is read-only beyond compute (SPEC "Locking, credit, purge" 1): no
project, member, user, enrollment code, approval or roster import can be added or a project
changed until the tenant is unlocked; recharge, credit and unlock keep working (Locking 2)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import EnrollmentCode, EnrollmentRequest, EnrollmentStatus, RosterImport, User
from accounts.services import (
    enrollment_code_create,
    enrollment_code_deactivate,
    enrollment_decide,
    enrollment_redeem_as_user,
    roster_import_create,
    user_create,
    user_create_in_project,
)
from billing.enforcement import tenant_lock, tenant_unlock
from billing.services import wallet_open, wallet_recharge
from teachcloud.errors import Conflict
from teachcloud.testing.factories import UserFactory
from tenancy.models import AuditEvent, Membership, Project
from tenancy.services import membership_add, membership_remove, project_create, project_update
from tenancy.tests.test_api import API, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(world):
    """An enrollment request made before the lock, waiting for approval."""
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    return enrollment_redeem_as_user(code=code.code, user=world.outsider)


ROW = {"id_number": "20269001", "real_name": "王五", "email": "wang.wu@example.edu"}

# Each service that adds to a project (or changes it), called as its usual actor.
PROJECT_WRITES = {
    "project_update": lambda w, req: project_update(
        actor=w.domain_admin, project=w.project, name="Renamed", code="renamed"
    ),
    "membership_add": lambda w, req: membership_add(
        actor=w.project_admin, project=w.project, user=w.outsider
    ),
    "user_create_in_project": lambda w, req: user_create_in_project(
        actor=w.domain_admin,
        project=w.project,
        username="",
        real_name="王五",
        id_number="20269001",
        email="wang.wu@example.edu",
    ),
    "enrollment_code_create": lambda w, req: enrollment_code_create(
        actor=w.project_admin, project=w.project, label="week 2"
    ),
    "enrollment_decide": lambda w, req: enrollment_decide(
        actor=w.project_assistant, request=req, approve=True
    ),
    "roster_import_create": lambda w, req: roster_import_create(
        actor=w.project_admin, rows=[ROW], filename="class.csv", domain=w.domain, project=w.project
    ),
}
# Each service that adds to a domain itself.
DOMAIN_WRITES = {
    "project_create": lambda w, req: project_create(
        actor=w.domain_admin, domain=w.domain, name="Compilers", code="cc401"
    ),
    "user_create": lambda w, req: user_create(
        actor=w.domain_admin,
        domain=w.domain,
        username="wang.wu",
        real_name="王五",
        id_number="20269001",
        email="wang.wu@example.edu",
    ),
    "roster_import_create_domain": lambda w, req: roster_import_create(
        actor=w.domain_admin, rows=[ROW], filename="staff.csv", domain=w.domain
    ),
}
ALL_WRITES = PROJECT_WRITES | DOMAIN_WRITES


def state(world) -> tuple:
    """Everything the guarded services could have written."""
    project = Project.objects.get(pk=world.project.pk)
    return (
        Project.objects.count(),
        (project.name, project.code),
        Membership.objects.count(),
        User.objects.count(),
        EnrollmentCode.objects.count(),
        sorted(EnrollmentRequest.objects.values_list("pk", "status")),
        RosterImport.objects.count(),
        AuditEvent.objects.count(),
    )


def lock_project(world) -> None:
    tenant_lock(actor=world.domain_admin, project=world.project, reason="unpaid fees")


def lock_domain(world) -> None:
    tenant_lock(actor=world.platform, domain=world.domain, reason="unpaid fees")


def unlock_project(world) -> None:
    wallet = wallet_open(project=world.project)
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="50", method="bank")
    tenant_unlock(actor=world.domain_admin, project=world.project)


def unlock_domain(world) -> None:
    wallet = wallet_open(domain=world.domain)
    wallet_recharge(actor=world.platform, wallet=wallet, amount="50", method="bank")
    tenant_unlock(actor=world.platform, domain=world.domain)


@pytest.mark.parametrize("write", PROJECT_WRITES.values(), ids=PROJECT_WRITES.keys())
def test_a_locked_project_refuses_and_changes_nothing(world, pending, write):
    lock_project(world)
    before = state(world)
    with pytest.raises(Conflict) as exc:
        write(world, pending)
    assert exc.value.code == "tenant_locked" and exc.value.status == 409
    assert exc.value.detail == (
        "The project Networks 101 is locked: nothing can be created or changed there until its "
        "admin unlocks it."
    )
    assert state(world) == before
    assert not User.objects.get(pk=world.outsider.pk).memberships.exists()


@pytest.mark.parametrize("write", ALL_WRITES.values(), ids=ALL_WRITES.keys())
def test_a_locked_domain_refuses_for_itself_and_its_projects(world, pending, write):
    lock_domain(world)
    assert Project.objects.get(pk=world.project.pk).status == "active"  # only the domain
    before = state(world)
    with pytest.raises(Conflict) as exc:
        write(world, pending)
    assert exc.value.code == "tenant_locked"
    assert "The school North School is locked" in exc.value.detail
    assert state(world) == before


@pytest.mark.parametrize("write", ALL_WRITES.values(), ids=ALL_WRITES.keys())
def test_after_unlock_the_domain_works_again(world, pending, write):
    lock_domain(world)
    unlock_domain(world)
    before = state(world)
    write(world, pending)
    assert state(world) != before


@pytest.mark.parametrize("write", PROJECT_WRITES.values(), ids=PROJECT_WRITES.keys())
def test_after_unlock_the_project_works_again(world, pending, write):
    lock_project(world)
    unlock_project(world)
    before = state(world)
    write(world, pending)
    assert state(world) != before


def test_a_locked_project_does_not_stop_the_rest_of_its_domain(world, pending):
    lock_project(world)
    other = project_create(actor=world.domain_admin, domain=world.domain, name="OS", code="os1")
    membership_add(actor=world.domain_admin, project=other, user=world.outsider)
    assert Membership.objects.filter(project=other, user=world.outsider).exists()


def test_what_only_lowers_the_bill_stays_allowed(world, pending):
    """Removing a member, deactivating a code and rejecting a request add nothing to pay."""
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    lock_project(world)
    membership = Membership.objects.get(project=world.project, user=world.member)
    membership_remove(actor=world.project_admin, membership=membership)
    enrollment_code_deactivate(actor=world.project_admin, code=code)
    enrollment_decide(actor=world.project_assistant, request=pending, approve=False)
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert not EnrollmentCode.objects.get(pk=code.pk).active
    assert EnrollmentRequest.objects.get(pk=pending.pk).status == EnrollmentStatus.REJECTED


def test_a_purged_tenant_is_refused_as_closed(world, pending):
    Project.objects.filter(pk=world.project.pk).update(status="purged")
    with pytest.raises(Conflict) as exc:
        membership_add(actor=world.platform, project=world.project, user=world.outsider)
    assert exc.value.code == "tenant_purged"
    assert exc.value.detail == "The project Networks 101 has been closed."
    with pytest.raises(Conflict) as exc:  # not even an admin: a purged project is closed
        membership_add(
            actor=world.platform, project=world.project, user=world.outsider, role="admin"
        )
    assert exc.value.code == "tenant_purged"


def test_roster_rows_queued_before_the_lock_add_no_member(world):
    """An import accepted before the lock but run after it reports its rows as refused."""
    from accounts.services import roster_import_run

    student = UserFactory(home_domain=world.domain, username="queued", id_number="20269002")
    roster = roster_import_create(
        actor=world.project_admin,
        rows=[{**ROW, "id_number": "20269002"}],
        filename="class.csv",
        domain=world.domain,
        project=world.project,
    )
    lock_project(world)
    roster = roster_import_run(roster_import_id=roster.pk)
    assert roster.errors == 1 and "is locked" in roster.results[0]["detail"]
    assert not Membership.objects.filter(user=student).exists()


def test_the_api_answers_409_with_code_and_detail(world):
    lock_project(world)
    response = client_for(world.project_admin).post(
        f"{API}/memberships/",
        {"project": world.project.pk, "user": world.outsider.pk, "role": "member"},
        format="json",
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "tenant_locked"
    assert body["detail"].startswith("The project Networks 101 is locked")
    assert not Membership.objects.filter(user=world.outsider).exists()


def test_the_portal_shows_the_message(world, client):
    lock_domain(world)
    client.force_login(world.domain_admin)
    response = client.post(
        reverse("portal:project_create", args=[world.domain.pk]),
        {"name": "Compilers", "code": "cc401", "description": ""},
    )
    assert response.status_code == 200
    assert "The school North School is locked" in response.content.decode()
    assert not Project.objects.filter(code="cc401").exists()


def test_a_locked_project_can_still_get_an_admin_who_unlocks_it(world):
    """Appointing an admin stays open (the tenant's admins may have left); a member does not."""
    lock_project(world)
    newcomer = UserFactory(home_domain=world.domain)
    membership_add(actor=world.domain_admin, project=world.project, user=newcomer, role="admin")
    assert Membership.objects.get(project=world.project, user=newcomer).role == "admin"
    with pytest.raises(Conflict) as refused:
        membership_add(
            actor=world.domain_admin,
            project=world.project,
            user=UserFactory(home_domain=world.domain),
            role="member",
        )
    assert refused.value.code == "tenant_locked"
