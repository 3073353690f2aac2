"""Review fixes: approving an enrollment never revives an account an admin switched off, and
concurrent creates of the same tenant code or appointment answer 409 instead of a 500."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from accounts.models import EnrollmentRequest, EnrollmentStatus, User
from accounts.services import (
    enrollment_code_create,
    enrollment_decide,
    enrollment_redeem,
    enrollment_redeem_as_user,
    user_update,
)
from teachcloud.errors import Conflict
from teachcloud.testing.factories import UserFactory, make_world
from tenancy.models import Domain, DomainRole, Membership, Project
from tenancy.services import domain_create, domain_role_set, project_create, project_update

# -- Enrollment approval and deactivated accounts ---------------------------------------------


@pytest.mark.django_db
def test_approval_does_not_reactivate_an_account_an_admin_deactivated(world):
    student = UserFactory(home_domain=world.domain, username="stu", id_number="20268001")
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    request = enrollment_redeem_as_user(code=code.code, user=student)
    user_update(actor=world.domain_admin, user=student, is_active=False)

    with pytest.raises(Conflict) as exc:
        enrollment_decide(actor=world.project_assistant, request=request, approve=True)
    assert exc.value.code == "user_inactive" and exc.value.status == 409
    assert "deactivated" in exc.value.detail
    assert not User.objects.get(pk=student.pk).is_active
    assert not Membership.objects.filter(user=student).exists()
    assert EnrollmentRequest.objects.get(pk=request.pk).status == EnrollmentStatus.PENDING

    # Once an admin reactivates the account, the same request can be approved.
    user_update(actor=world.domain_admin, user=student, is_active=True)
    enrollment_decide(actor=world.project_assistant, request=request, approve=True)
    assert Membership.objects.filter(project=world.project, user=student).exists()


@pytest.mark.django_db
def test_a_redeemed_account_deactivated_after_approval_stays_off(world):
    """A redeemed account, approved in one project then deactivated by an admin, is not
    reactivated by an older request in another project; rejecting that request still works."""
    first = enrollment_code_create(actor=world.project_admin, project=world.project)
    request = enrollment_redeem(
        code=first.code,
        real_name="韩梅梅",
        id_number="20267001",
        email="han@example.edu",
        password="Blue-Kettle-Orbit-77",
    )
    student = request.user
    enrollment_decide(actor=world.project_assistant, request=request, approve=True)
    assert User.objects.get(pk=student.pk).is_active  # the pending account was activated
    other = project_create(actor=world.domain_admin, domain=world.domain, name="OS", code="os1")
    second = enrollment_code_create(actor=world.domain_admin, project=other)
    later = enrollment_redeem_as_user(code=second.code, user=User.objects.get(pk=student.pk))
    user_update(actor=world.domain_admin, user=student, is_active=False)

    with pytest.raises(Conflict) as exc:
        enrollment_decide(actor=world.domain_admin, request=later, approve=True)
    assert exc.value.code == "user_inactive"
    assert not User.objects.get(pk=student.pk).is_active
    enrollment_decide(actor=world.domain_admin, request=later, approve=False)
    assert EnrollmentRequest.objects.get(pk=later.pk).status == EnrollmentStatus.REJECTED
    assert not User.objects.get(pk=student.pk).is_active


# -- Concurrent creates -----------------------------------------------------------------------


def race(hold_row, call) -> dict[str, Any]:
    """Interleave two requests for real: this connection writes `hold_row()` and keeps it
    uncommitted while `call()` runs on a second connection. The call's exists-check cannot see
    the row, its INSERT/UPDATE then waits on the unique index; once this side commits, the
    call meets the unique constraint. Returns {"error": …} or {"result": …}."""
    outcome: dict[str, Any] = {}
    started = threading.Event()

    def work() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["pid"] = cursor.fetchone()[0]
            started.set()
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            started.set()
            connection.close()

    with transaction.atomic():
        hold_row()
        thread = threading.Thread(target=work)
        thread.start()
        assert started.wait(10)
        deadline = time.monotonic() + 20
        with connection.cursor() as cursor:
            while thread.is_alive() and time.monotonic() < deadline:
                cursor.execute(
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [outcome["pid"]]
                )
                if cursor.fetchone():
                    outcome["waited"] = True
                    break
                time.sleep(0.01)
    thread.join(30)
    assert outcome.get("waited"), f"the second request never waited on the row: {outcome}"
    return outcome


@pytest.mark.django_db(transaction=True)
def test_concurrent_domain_create_with_one_code_is_a_conflict():
    world = make_world()
    outcome = race(
        lambda: Domain.objects.create(name="East", code="east"),
        lambda: domain_create(actor=world.platform, name="East too", code="east"),
    )
    assert isinstance(outcome.get("error"), Conflict), outcome
    assert outcome["error"].code == "code_taken" and outcome["error"].fields["code"]
    assert list(Domain.objects.filter(code="east").values_list("name", flat=True)) == ["East"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_project_create_with_one_code_is_a_conflict():
    world = make_world()
    outcome = race(
        lambda: Project.objects.create(domain=world.domain, name="OS", code="os1"),
        lambda: project_create(
            actor=world.domain_admin, domain=world.domain, name="OS", code="os1"
        ),
    )
    assert isinstance(outcome.get("error"), Conflict), outcome
    assert outcome["error"].code == "code_taken"
    assert Project.objects.filter(domain=world.domain, code="os1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_project_rename_to_a_new_code_is_a_conflict():
    world = make_world()
    outcome = race(
        lambda: Project.objects.create(domain=world.domain, name="OS", code="os1"),
        lambda: project_update(actor=world.domain_admin, project=world.project, code="os1"),
    )
    assert isinstance(outcome.get("error"), Conflict), outcome
    assert outcome["error"].code == "code_taken"
    assert Project.objects.get(pk=world.project.pk).code == "net101"


@pytest.mark.django_db(transaction=True)
def test_concurrent_appointment_of_one_user_is_a_conflict():
    world = make_world()
    outcome = race(
        lambda: DomainRole.objects.create(domain=world.domain, user=world.outsider, role="admin"),
        lambda: domain_role_set(
            actor=world.platform, domain=world.domain, user=world.outsider, role="assistant"
        ),
    )
    assert isinstance(outcome.get("error"), Conflict), outcome
    assert outcome["error"].code == "already_appointed"
    assert DomainRole.objects.get(domain=world.domain, user=world.outsider).role == "admin"
