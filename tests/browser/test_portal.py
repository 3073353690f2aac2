"""The portal in a real browser: headless Chromium against a live server on PostgreSQL.
A failing test leaves a full-page screenshot in test-artifacts/."""

import pytest
from django.urls import reverse

from accounts.models import EnrollmentCode, EnrollmentRequest
from teachcloud.testing.factories import PASSWORD, make_world
from tenancy.models import Membership

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def sign_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(base + reverse("account_login"))
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state("networkidle")


def test_teacher_adds_a_member_and_opens_an_enrollment_link(page, live_server):
    world = make_world()
    sign_in(page, live_server.url, "project_admin")
    assert "/accounts/login/" not in page.url
    page.goto(live_server.url + reverse("portal:project_detail", args=[world.project.pk]))
    assert world.project.name in page.content()

    # Add a user of the domain by username; htmx updates the members table in place.
    page.fill("form[action$='/members/add/'] input[name=user]", "outsider")
    page.locator("form[action$='/members/add/'] button[type=submit]").click()
    page.wait_for_function("() => document.body.innerText.includes('outsider')")
    assert Membership.objects.filter(project=world.project, user=world.outsider).exists()

    # Create an enrollment code and read the join link off the page.
    page.goto(live_server.url + reverse("portal:project_enrollment", args=[world.project.pk]))
    page.get_by_role("button", name="Create code").click()
    page.wait_for_load_state("networkidle")
    code = EnrollmentCode.objects.get(project=world.project)
    assert code.code in page.content()


def test_student_redeems_a_link_and_signs_in_after_approval(page, live_server, new_context):
    world = make_world()
    code = EnrollmentCode.objects.create(project=world.project, created_by=world.project_admin)
    page.goto(live_server.url + reverse("portal:join", args=[code.code]))
    page.fill("input[name=real_name]", "李小龙")
    page.fill("input[name=id_number]", "2026123")
    page.fill("input[name=email]", "xiaolong@example.edu")
    page.fill("input[name=password1]", "Dragon-Pass-88")
    page.fill("input[name=password2]", "Dragon-Pass-88")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state("networkidle")
    request = EnrollmentRequest.objects.get(project=world.project)
    assert request.status == "pending"
    assert "/waiting/" in page.url

    teacher = new_context().new_page()
    sign_in(teacher, live_server.url, "project_admin")
    teacher.goto(live_server.url + reverse("portal:project_enrollment", args=[world.project.pk]))
    teacher.once("dialog", lambda dialog: dialog.accept())
    teacher.locator(
        f"form[action*='/enrollment-requests/{request.pk}/'] button[value=approve]"
    ).click()
    teacher.wait_for_load_state("networkidle")
    request.refresh_from_db()
    assert request.status == "approved"
    assert Membership.objects.filter(project=world.project, user=request.user).exists()
