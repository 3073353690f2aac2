"""The portal pages of accounts: users, enrollment, roster imports, the public join page."""

import io
from datetime import datetime, time, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from openpyxl import Workbook

from accounts.models import (
    EnrollmentCode,
    EnrollmentRequest,
    EnrollmentStatus,
    ImportStatus,
    RosterImport,
    User,
)
from accounts.services import enrollment_code_create, roster_import_run
from teachcloud.testing.clock import local_today
from teachcloud.testing.factories import UserFactory
from tenancy.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


def csv_file(text: str, name: str = "roster.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")


# -- Users of a domain ------------------------------------------------------------------------


def test_domain_users_search_and_pagination(world, login):
    for n in range(30):
        UserFactory(home_domain=world.domain, username=f"pupil{n:02d}", real_name=f"学生{n:02d}")
    client = login(world.domain_assistant)
    url = reverse("portal:domain_users", args=[world.domain.pk])
    first = client.get(url)
    assert first.context["page"].paginator.count == 36
    assert len(first.context["page"]) == 25
    searched = client.get(url, {"q": "pupil1"})
    assert [u.username for u in searched.context["page"]] == [f"pupil{n}" for n in range(10, 20)]
    assert "other_admin" not in first.content.decode()
    page2 = client.get(url, {"q": "pupil", "page": 2})
    assert len(page2.context["page"]) == 5
    assert "q=pupil&amp;page=1" in page2.content.decode()


def test_create_user_in_domain(world, login):
    response = login(world.domain_admin).post(
        reverse("portal:domain_users", args=[world.domain.pk]),
        {
            "real_name": "李雷",
            "id_number": "T100",
            "email": "lilei@example.edu",
            "username": "lilei",
            "phone": "",
            "password": "Quite-Long-Secret-9",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="lilei")
    assert (user.home_domain, user.real_name, user.is_active) == (world.domain, "李雷", True)
    assert user.check_password("Quite-Long-Secret-9")


def test_create_user_errors_change_nothing(world, login):
    before = User.objects.count()
    response = login(world.domain_admin).post(
        reverse("portal:domain_users", args=[world.domain.pk]),
        {
            "real_name": "X",
            "id_number": "T1",
            "email": world.member.email,
            "username": "a b",
            "password": "123",
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"email", "username", "password"}
    assert User.objects.count() == before


def test_project_admin_may_not_create_domain_users_there(world, login):
    response = login(world.project_admin).post(
        reverse("portal:domain_users", args=[world.domain.pk]),
        {"real_name": "X", "id_number": "T1", "email": "x@example.edu"},
    )
    assert response.status_code == 403


# -- User detail ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("domain_admin", 200),
        ("project_assistant", 200),
        ("member", 200),
        ("platform", 200),
        ("other_admin", 404),
        ("outsider", 404),
    ],
)
def test_user_detail_visibility(world, login, who, status):
    response = login(getattr(world, who)).get(reverse("portal:user_detail", args=[world.member.pk]))
    assert response.status_code == status


def test_member_sees_own_page_read_only(world, login):
    response = login(world.member).get(reverse("portal:user_detail", args=[world.member.pk]))
    assert response.context["may_edit"] is False
    assert "<form" not in response.content.decode().split("<main", 1)[1]
    response = login(world.member).post(
        reverse("portal:user_detail", args=[world.member.pk]),
        {"real_name": "Me", "email": world.member.email},
    )
    assert response.status_code == 403


def test_edit_real_name_is_audited(world, login):
    response = login(world.project_admin).post(
        reverse("portal:user_detail", args=[world.member.pk]),
        {
            "real_name": "张三",
            "id_number": world.member.id_number,
            "email": world.member.email,
            "phone": "13800000000",
        },
    )
    assert response.status_code == 302
    world.member.refresh_from_db()
    assert (world.member.real_name, world.member.phone) == ("张三", "13800000000")
    event = AuditEvent.objects.get(action="user.real_name_change", target_id=str(world.member.pk))
    assert event.after["real_name"] == "张三"
    assert event.actor == world.project_admin
    page = login(world.domain_admin).get(reverse("portal:user_detail", args=[world.member.pk]))
    assert "user.real_name_change" in page.content.decode()


def test_edit_with_taken_email_shows_error(world, login):
    old = world.member.email
    response = login(world.domain_admin).post(
        reverse("portal:user_detail", args=[world.member.pk]),
        {"real_name": "X", "id_number": world.member.id_number, "email": world.outsider.email},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["email"]
    world.member.refresh_from_db()
    assert (world.member.email, world.member.real_name) == (old, world.member.real_name)


def test_domain_admin_deactivates_and_activates(world, login):
    client = login(world.domain_admin)
    url = reverse("portal:user_detail", args=[world.member.pk])
    client.post(url, {"active": "0"})
    world.member.refresh_from_db()
    assert world.member.is_active is False
    client.post(url, {"active": "1"})
    world.member.refresh_from_db()
    assert world.member.is_active is True
    assert login(world.project_admin).post(url, {"active": "0"}).status_code == 403


# -- Enrollment codes and requests ------------------------------------------------------------


def test_create_enrollment_code_with_expiry_and_max_uses(world, login):
    until = local_today() + timedelta(days=7)
    client = login(world.project_assistant)
    url = reverse("portal:project_enrollment", args=[world.project.pk])
    response = client.post(
        url, {"label": "Class A", "expires_at": until.isoformat(), "max_uses": "40"}
    )
    assert response.status_code == 302
    code = EnrollmentCode.objects.get(project=world.project)
    assert (code.label, code.max_uses) == ("Class A", 40)
    # Valid through the whole of that day, Asia/Shanghai.
    assert timezone.localtime(code.expires_at) == timezone.make_aware(
        datetime.combine(until, time(23, 59, 59))
    )
    body = client.get(url).content.decode()
    assert f"http://testserver/join/{code.code}/" in body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_uses": "0"}, "max_uses"),
        ({"expires_at": "2001-01-01"}, "expires_at"),
        ({"expires_at": "not-a-date"}, "expires_at"),
    ],
)
def test_enrollment_code_errors_change_nothing(world, login, data, field):
    response = login(world.project_admin).post(
        reverse("portal:project_enrollment", args=[world.project.pk]), data
    )
    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert not EnrollmentCode.objects.exists()


def test_deactivate_enrollment_code(world, login):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    assert (
        login(world.other_admin)
        .post(reverse("portal:enrollment_code_deactivate", args=[code.pk]))
        .status_code
        == 404
    )
    assert (
        login(world.member)
        .post(reverse("portal:enrollment_code_deactivate", args=[code.pk]))
        .status_code
        == 403
    )
    response = login(world.project_admin).post(
        reverse("portal:enrollment_code_deactivate", args=[code.pk])
    )
    assert response.status_code == 302
    code.refresh_from_db()
    assert code.active is False
    join = login(world.outsider).get(reverse("portal:join", args=[code.code]))
    assert join.status_code == 404


def test_redeem_anonymously_approve_then_log_in(world, client, login):
    code = enrollment_code_create(actor=world.project_admin, project=world.project, max_uses=5)
    url = reverse("portal:join", args=[code.code])
    page = client.get(url)
    assert page.status_code == 200
    assert "Networks 101" in page.content.decode()
    response = client.post(
        url,
        {
            "real_name": "韩梅梅",
            "id_number": "S2026",
            "email": "hmm@example.edu",
            "username": "",
            "password1": "Pretty-Good-Pass-7",
            "password2": "Pretty-Good-Pass-7",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:join_waiting", args=[code.code])
    student = User.objects.get(id_number="S2026")
    assert (student.username, student.is_active) == ("north-s2026", False)
    assert not client.login(username="north-s2026", password="Pretty-Good-Pass-7")

    admin = login(world.project_admin)
    listing = admin.get(reverse("portal:project_enrollment", args=[world.project.pk]))
    [pending] = listing.context["pending"]
    assert pending.user == student
    admin.post(reverse("portal:enrollment_decide", args=[pending.pk]), {"decision": "approve"})
    pending.refresh_from_db()
    assert pending.status == EnrollmentStatus.APPROVED
    assert Membership.objects.get(project=world.project, user=student).role == "member"
    admin.logout()
    assert client.login(username="north-s2026", password="Pretty-Good-Pass-7")


def test_redeem_form_errors_change_nothing(world, client):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    before = User.objects.count()
    response = client.post(
        reverse("portal:join", args=[code.code]),
        {
            "real_name": "X",
            "id_number": "S1",
            "email": "bad",
            "password1": "abcdefgh1!",
            "password2": "different",
        },
    )
    assert response.status_code == 200
    assert set(response.context["form"].errors) >= {"email", "password2"}
    response = client.post(
        reverse("portal:join", args=[code.code]),
        {
            "real_name": "X",
            "id_number": "S1",
            "email": "s1@example.edu",
            "password1": "123",
            "password2": "123",
        },
    )
    assert response.context["form"].errors["password1"]  # the service's password rules
    assert User.objects.count() == before
    assert not EnrollmentRequest.objects.exists()


def test_reject_enrollment(world, client, login):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    client.post(
        reverse("portal:join", args=[code.code]),
        {
            "real_name": "X",
            "id_number": "S9",
            "email": "s9@example.edu",
            "password1": "Pretty-Good-Pass-7",
            "password2": "Pretty-Good-Pass-7",
        },
    )
    request = EnrollmentRequest.objects.get()
    login(world.project_assistant).post(
        reverse("portal:enrollment_decide", args=[request.pk]), {"decision": "reject"}
    )
    request.refresh_from_db()
    assert request.status == EnrollmentStatus.REJECTED
    assert not Membership.objects.filter(user=request.user).exists()


def test_signed_in_user_asks_to_join(world, login):
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    client = login(world.outsider)
    page = client.get(reverse("portal:join", args=[code.code]))
    assert "<input" not in page.content.decode().split("<main", 1)[1].split("csrfmiddleware")[1]
    response = client.post(reverse("portal:join", args=[code.code]))
    assert response["Location"] == reverse("portal:join_waiting", args=[code.code])
    assert EnrollmentRequest.objects.get().user == world.outsider
    again = client.post(reverse("portal:join", args=[code.code]), follow=True)
    assert "already waiting" in again.content.decode()
    assert EnrollmentRequest.objects.count() == 1


def test_unknown_code_is_404(client):
    response = client.get(reverse("portal:join", args=["nope"]))
    assert response.status_code == 404


# -- Roster imports ---------------------------------------------------------------------------


def test_project_roster_import_csv_with_per_row_results(world, login):
    text = (
        "姓名,学号,邮箱\n"
        "赵一,R001,r001@example.edu\n"
        f"{world.outsider.real_name},{world.outsider.id_number},{world.outsider.email}\n"
        f"{world.member.real_name},{world.member.id_number},{world.member.email}\n"
        "钱二,R002,not-an-email\n"
    )
    client = login(world.project_admin)
    response = client.post(
        reverse("portal:project_import", args=[world.project.pk]), {"file": csv_file(text)}
    )
    roster = RosterImport.objects.get()
    assert response["Location"] == reverse("portal:roster_import", args=[roster.pk])
    assert (roster.status, roster.created, roster.added, roster.existing, roster.errors) == (
        ImportStatus.DONE,
        1,
        1,
        1,
        1,
    )
    page = client.get(response["Location"])
    body = page.content.decode()
    assert page.context["running"] is False
    assert 'hx-trigger="every 1s"' not in body
    assert [r["result"] for r in roster.results] == ["created", "added", "existing", "error"]
    assert body.count('data-result="error"') == 1
    assert "not-an-email" not in body or "email" in roster.results[3]["detail"]
    assert roster.results[3]["detail"].startswith("email")
    assert Membership.objects.filter(project=world.project, user__id_number="R001").exists()
    assert Membership.objects.filter(project=world.project, user=world.outsider).exists()


def test_domain_roster_import_xlsx(world, login):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["real_name", "id_number", "email", "username"])
    sheet.append(["孙三", "X001", "x001@example.edu", "sun3"])
    sheet.append(["李四", "X002", "x002@example.edu", None])
    sheet.append([world.member.real_name, world.member.id_number, world.member.email, None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    upload = SimpleUploadedFile(
        "class.xlsx",
        buffer.getvalue(),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    client = login(world.domain_assistant)
    response = client.post(
        reverse("portal:domain_import", args=[world.domain.pk]), {"file": upload}
    )
    roster = RosterImport.objects.get()
    assert response.status_code == 302
    assert roster.project is None
    assert [r["result"] for r in roster.results] == ["created", "created", "existing"]
    assert User.objects.get(username="sun3").home_domain == world.domain
    assert User.objects.get(id_number="X002").username == "north-x002"
    listing = client.get(reverse("portal:domain_import", args=[world.domain.pk]))
    assert "class.xlsx" in listing.content.decode()


def test_bad_roster_file_shows_error(world, login):
    client = login(world.project_admin)
    url = reverse("portal:project_import", args=[world.project.pk])
    response = client.post(url, {"file": csv_file("name,foo\nA,B\n")})
    assert response.status_code == 200
    assert "id_number" in response.context["form"].non_field_errors()[0]
    response = client.post(url, {"file": csv_file("x", name="roster.pdf")})
    assert response.context["form"].errors["file"]
    assert not RosterImport.objects.exists()


@override_settings(TEACHCLOUD_ROSTER_INLINE_ROWS=2)
def test_large_import_polls_progress_until_done(world, login, django_capture_on_commit_callbacks):
    text = "real_name,id_number,email\n" + "".join(
        f"学生{n},L{n:03d},l{n:03d}@example.edu\n" for n in range(5)
    )
    client = login(world.project_admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("portal:project_import", args=[world.project.pk]), {"file": csv_file(text)}
        )
    assert len(callbacks) == 1  # the Celery task, sent once the upload is committed
    roster = RosterImport.objects.get()
    assert roster.status == ImportStatus.PENDING
    page = client.get(response["Location"])
    body = page.content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert 'class="progress' in body
    partial = client.get(reverse("portal:roster_import_progress", args=[roster.pk]), **HTMX)
    assert 'hx-trigger="every 1s"' in partial.content.decode()
    assert "<html" not in partial.content.decode()

    callbacks[0]()  # the worker runs the import (CELERY_TASK_ALWAYS_EAGER in tests)
    partial = client.get(reverse("portal:roster_import_progress", args=[roster.pk]), **HTMX)
    body = partial.content.decode()
    assert 'hx-trigger="every 1s"' not in body
    assert body.count('data-result="created"') == 5
    roster.refresh_from_db()
    assert (roster.status, roster.created, roster.processed) == (ImportStatus.DONE, 5, 5)


def test_import_pages_are_scoped(world, login):
    rows = [{"real_name": "A", "id_number": "Q1", "email": "q1@example.edu"}]
    from accounts.services import roster_import_create

    roster = roster_import_create(
        actor=world.project_admin,
        rows=rows,
        filename="a.csv",
        domain=world.domain,
        project=world.project,
    )
    roster_import_run(roster_import_id=roster.pk)
    url = reverse("portal:roster_import", args=[roster.pk])
    assert login(world.other_admin).get(url).status_code == 404
    assert login(world.member).get(url).status_code == 403
    assert login(world.project_assistant).get(url).status_code == 200
