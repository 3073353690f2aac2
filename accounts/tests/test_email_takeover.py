"""Who may change a user's email address (issue 12.6): the address is the key to the account
(a password reset goes there), so only the home domain's admins change it — and a project admin
only for an account nobody has used yet that is exclusively theirs (a typo in a roster)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.services import user_update
from teachcloud.testing.factories import ProjectFactory, UserFactory
from tenancy.services import membership_add

pytestmark = pytest.mark.django_db


def test_a_teacher_cannot_take_over_a_student_of_the_school_by_adding_them(world):
    # A student of the school who has signed in (an account in use), in no project of the teacher.
    student = UserFactory(home_domain=world.domain, last_login=timezone.now())
    membership_add(actor=world.project_admin, project=world.project, user=student)
    with pytest.raises(PermissionDenied):
        user_update(actor=world.project_admin, user=student, email="teacher-owned@example.org")
    student.refresh_from_db()
    assert student.email != "teacher-owned@example.org"


def test_a_teacher_cannot_change_the_address_of_a_student_also_in_another_course(world):
    student = UserFactory(home_domain=world.domain)  # never signed in
    membership_add(actor=world.project_admin, project=world.project, user=student)
    other_course = ProjectFactory(domain=world.domain)
    membership_add(actor=world.platform, project=other_course, user=student)
    with pytest.raises(PermissionDenied):
        user_update(actor=world.project_admin, user=student, email="x@example.org")


def test_a_teacher_fixes_a_typo_of_their_own_new_student(world):
    student = UserFactory(home_domain=world.domain)  # created for the course, never signed in
    membership_add(actor=world.project_admin, project=world.project, user=student)
    user_update(actor=world.project_admin, user=student, email="fixed@example.edu")
    student.refresh_from_db()
    assert student.email == "fixed@example.edu"
    # The other real-name fields stay the teacher's to correct, address or not.
    user_update(actor=world.project_admin, user=student, real_name="改正的名字")


def test_the_home_domains_admins_change_any_students_address(world):
    student = UserFactory(home_domain=world.domain, last_login=timezone.now())
    membership_add(actor=world.project_admin, project=world.project, user=student)
    user_update(actor=world.domain_admin, user=student, email="school-fixed@example.edu")
    student.refresh_from_db()
    assert student.email == "school-fixed@example.edu"
