"""Class rosters: parsing CSV/XLSX files and importing their rows."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.test import override_settings
from openpyxl import Workbook

from accounts.models import ImportStatus, RosterImport, User
from accounts.roster import parse_roster
from accounts.services import roster_import_create, roster_import_run
from teachcloud.errors import Conflict, ServiceError
from tenancy.models import AuditEvent, Membership

ROWS_CSV = (
    "real_name,id_number,email\n李雷,20260001,li@example.edu\n韩梅梅,20260002,han@example.edu\n"
)


def parse(data: bytes, filename: str = "roster.csv") -> list[dict[str, str]]:
    return parse_roster(io.BytesIO(data), filename)


def xlsx(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# -- Parsing ----------------------------------------------------------------------------------

EXPECTED = [
    {"real_name": "李雷", "id_number": "20260001", "email": "li@example.edu"},
    {"real_name": "韩梅梅", "id_number": "20260002", "email": "han@example.edu"},
]


def test_csv_utf8():
    assert parse(ROWS_CSV.encode()) == EXPECTED


def test_csv_utf8_with_bom_and_chinese_headers():
    text = "姓名,学号,邮箱\r\n李雷,20260001,li@example.edu\r\n韩梅梅,20260002,han@example.edu\r\n"
    assert parse(b"\xef\xbb\xbf" + text.encode()) == EXPECTED


def test_csv_gb18030_as_excel_in_china_writes_it():
    text = "姓名,学号,邮箱\r\n李雷,20260001,li@example.edu\r\n韩梅梅,20260002,han@example.edu\r\n"
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really not UTF-8
    assert parse(data) == EXPECTED


def test_csv_header_aliases_order_blank_lines_and_extra_columns():
    text = (
        " Email , Class, Real Name ,Student Number,Username\n"
        "li@example.edu,1A,  李雷 ,20260001,lilei\n"
        ",,,,\n"
        "\n"
        "han@example.edu,1A,韩梅梅,20260002\n"
    )
    assert parse(text.encode(), "ROSTER.CSV") == [
        {
            "email": "li@example.edu",
            "real_name": "李雷",
            "id_number": "20260001",
            "username": "lilei",
        },
        {
            "email": "han@example.edu",
            "real_name": "韩梅梅",
            "id_number": "20260002",
            "username": "",
        },
    ]


def test_xlsx():
    data = xlsx(
        [
            ["姓名", "学号", "邮箱"],
            ["李雷", 20260001, "li@example.edu"],
            [None, None, None],
            ["韩梅梅", "20260002", "han@example.edu"],
        ]
    )
    assert parse(data, "class.xlsx") == EXPECTED


def test_broken_xlsx():
    with pytest.raises(ServiceError) as exc:
        parse(b"PK\x03\x04 not really a workbook", "class.xlsx")
    assert exc.value.code == "roster_format"


def test_missing_columns_are_named():
    with pytest.raises(ServiceError) as exc:
        parse("姓名,email\n李雷,li@example.edu\n".encode())
    assert exc.value.code == "roster_columns_missing"
    assert "id_number" in exc.value.detail
    assert "real_name" not in exc.value.detail
    with pytest.raises(ServiceError) as exc:
        parse(xlsx([["a", "b"], ["1", "2"]]), "x.xlsx")
    assert exc.value.code == "roster_columns_missing"


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.csv"),
        (b"real_name,id_number,email\n", "header.csv"),
        (b"real_name,id_number,email\n,,\n\n", "blank.csv"),
    ],
)
def test_empty_file(data, filename):
    with pytest.raises(ServiceError) as exc:
        parse(data, filename)
    assert exc.value.code == "empty_roster"


def test_empty_xlsx():
    with pytest.raises(ServiceError) as exc:
        parse(xlsx([]), "empty.xlsx")
    assert exc.value.code == "empty_roster"


@override_settings(TEACHCLOUD_ROSTER_MAX_ROWS=3)
def test_too_many_rows():
    rows = "".join(f"S{i},{i},s{i}@example.edu\n" for i in range(3))
    assert len(parse(("real_name,id_number,email\n" + rows).encode())) == 3
    rows += "S3,3,s3@example.edu\n"
    with pytest.raises(ServiceError) as exc:
        parse(("real_name,id_number,email\n" + rows).encode())
    assert exc.value.code == "roster_too_large"
    assert "3" in exc.value.detail


@override_settings(TEACHCLOUD_ROSTER_MAX_BYTES=1024 * 1024)
def test_too_many_bytes():
    data = ROWS_CSV.encode() + b"x" * (1024 * 1024)
    with pytest.raises(ServiceError) as exc:
        parse(data)
    assert exc.value.code == "roster_too_large"
    assert "1 MB" in exc.value.detail


@pytest.mark.parametrize("filename", ["roster.xls", "roster.pdf", "roster", "roster.csv.exe"])
def test_wrong_extension(filename):
    with pytest.raises(ServiceError) as exc:
        parse(ROWS_CSV.encode(), filename)
    assert exc.value.code == "roster_format"


# -- Importing --------------------------------------------------------------------------------


def run(world, rows, *, actor=None, project="default") -> RosterImport:
    roster = roster_import_create(
        actor=actor or world.project_admin,
        rows=rows,
        filename="class.csv",
        domain=world.domain,
        project=world.project if project == "default" else project,
    )
    return roster_import_run(roster_import_id=roster.pk)


@pytest.fixture
def rows(world):
    return [
        {"real_name": "李雷", "id_number": "20260001", "email": "li@example.edu"},  # created
        {
            "real_name": "Outsider",
            "id_number": world.outsider.id_number,
            "email": world.outsider.email,
        },  # existing user of the domain: added
        {
            "real_name": "Member",
            "id_number": world.member.id_number,
            "email": world.member.email,
        },  # already a member: existing
        {"real_name": "坏邮箱", "id_number": "20260003", "email": "not-an-email"},  # error
        {
            "real_name": "重复",
            "id_number": "20260004",
            "email": world.project_admin.email.upper(),
        },  # email of another account: error
        {"real_name": " ", "id_number": "20260005", "email": "noname@example.edu"},  # error
        {
            "real_name": "韩梅梅",
            "id_number": "20260002",
            "email": "han@example.edu",
            "username": "meimei",
        },  # created, with a chosen username
    ]


def test_import_reports_every_row(world, rows, django_capture_on_commit_callbacks):
    users_before = User.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        roster = run(world, rows)
    assert roster.status == ImportStatus.DONE and roster.finished_at is not None
    assert (roster.total, roster.processed) == (7, 7)
    assert (roster.created, roster.added, roster.existing, roster.errors) == (2, 1, 1, 3)
    assert roster.percent == 100
    outcome = {r["row"]: (r["result"], r["detail"]) for r in roster.results}
    assert [outcome[i][0] for i in range(1, 8)] == [
        "created",
        "added",
        "existing",
        "error",
        "error",
        "error",
        "created",
    ]
    assert "email" in outcome[4][1]
    assert "email" in outcome[5][1]
    assert "real_name" in outcome[6][1]
    assert outcome[2][1] and outcome[3][1]  # reasons for the non-created rows too
    assert roster.results[0] == {
        "row": 1,
        "id_number": "20260001",
        "real_name": "李雷",
        "result": "created",
        "detail": "",
    }

    assert User.objects.count() == users_before + 2
    li = User.objects.get(id_number="20260001", home_domain=world.domain)
    assert (li.username, li.email, li.real_name) == ("north-20260001", "li@example.edu", "李雷")
    assert User.objects.get(id_number="20260002").username == "meimei"
    for user in (li, world.outsider):
        assert Membership.objects.get(project=world.project, user=user).role == "member"
    # Bad rows leave nothing behind.
    assert not User.objects.filter(id_number__in=["20260003", "20260004", "20260005"]).exists()
    assert not User.objects.filter(email__in=["not-an-email", "noname@example.edu"]).exists()
    # The two new users are invited to choose a password; nobody else is mailed.
    assert sorted(m.to[0] for m in mail.outbox) == ["han@example.edu", "li@example.edu"]

    [event] = AuditEvent.objects.filter(action="roster.import")
    assert event.actor == world.project_admin and event.project == world.project
    assert event.after == {
        "file": "class.csv",
        "rows": 7,
        "created": 2,
        "added": 1,
        "existing": 1,
        "error": 3,
    }


def test_importing_again_creates_nothing_new(world, rows):
    run(world, rows)
    users, members = User.objects.count(), Membership.objects.count()
    again = run(world, rows)
    assert (again.created, again.added, again.existing, again.errors) == (0, 0, 4, 3)
    assert [r["result"] for r in again.results] == [
        "existing",
        "existing",
        "existing",
        "error",
        "error",
        "error",
        "existing",
    ]
    assert (User.objects.count(), Membership.objects.count()) == (users, members)
    assert AuditEvent.objects.filter(action="roster.import").count() == 2


def test_a_row_never_half_imports(world):
    """The user of a row whose membership fails is not left behind."""
    from tenancy import services as tenancy_services

    real_add = tenancy_services._membership_add

    def flaky_add(**kwargs):
        if kwargs["user"].id_number == "20260002":
            raise Conflict("simulated clash", code="already_member")
        return real_add(**kwargs)

    rows = [
        {"real_name": "A", "id_number": "20260001", "email": "a@example.edu"},
        {"real_name": "B", "id_number": "20260002", "email": "b@example.edu"},
    ]
    with mock.patch.object(tenancy_services, "_membership_add", side_effect=flaky_add):
        roster = run(world, rows)
    assert [r["result"] for r in roster.results] == ["created", "error"]
    assert roster.results[1]["detail"] == "simulated clash"
    assert User.objects.filter(id_number="20260001").exists()
    assert not User.objects.filter(id_number="20260002").exists()
    assert not User.objects.filter(email="b@example.edu").exists()


def test_duplicate_rows_inside_one_file(world):
    row = {"real_name": "A", "id_number": "20260001", "email": "a@example.edu"}
    roster = run(world, [row, dict(row), {**row, "id_number": "20260009"}])
    assert [r["result"] for r in roster.results] == ["created", "existing", "error"]
    assert User.objects.filter(email="a@example.edu").count() == 1


def test_domain_level_import_creates_users_only(world, rows):
    members_before = Membership.objects.count()
    roster = roster_import_create(
        actor=world.domain_assistant, rows=rows, filename="all.xlsx", domain=world.domain
    )
    assert roster.project is None
    roster = roster_import_run(roster_import_id=roster.pk)
    assert (roster.created, roster.added, roster.existing, roster.errors) == (2, 0, 2, 3)
    assert Membership.objects.count() == members_before
    assert User.objects.filter(home_domain=world.domain, id_number="20260001").exists()
    [event] = AuditEvent.objects.filter(action="roster.import")
    assert event.project is None and event.domain == world.domain


def test_project_import_belongs_to_the_projects_domain(world, rows):
    # Whatever domain the caller names, the project's own domain is used.
    roster = roster_import_create(
        actor=world.project_admin,
        rows=rows,
        filename="c.csv",
        domain=world.other_domain,
        project=world.project,
    )
    assert roster.domain == world.domain


def test_running_twice_does_nothing_the_second_time(world, rows):
    roster = roster_import_create(
        actor=world.project_admin,
        rows=rows,
        filename="c.csv",
        domain=world.domain,
        project=world.project,
    )
    first = roster_import_run(roster_import_id=roster.pk)
    second = roster_import_run(roster_import_id=roster.pk)
    assert (second.created, second.added, second.existing, second.errors) == (2, 1, 1, 3)
    assert first.results == second.results
    assert AuditEvent.objects.filter(action="roster.import").count() == 1


def test_a_crash_marks_the_import_failed(world, rows):
    roster = roster_import_create(
        actor=world.project_admin,
        rows=rows,
        filename="c.csv",
        domain=world.domain,
        project=world.project,
    )
    with (
        mock.patch("accounts.services._user_create", side_effect=RuntimeError("db gone")),
        pytest.raises(RuntimeError),
    ):
        roster_import_run(roster_import_id=roster.pk)
    roster.refresh_from_db()
    assert roster.status == ImportStatus.FAILED
    assert "db gone" in roster.error and roster.finished_at is not None
    assert not AuditEvent.objects.filter(action="roster.import").exists()
    # Once the fault is gone, running it again finishes the job.
    roster = roster_import_run(roster_import_id=roster.pk)
    assert roster.status == ImportStatus.DONE and roster.error == ""
    assert (roster.created, roster.added, roster.existing, roster.errors) == (2, 1, 1, 3)


def test_a_second_worker_leaves_a_running_import_alone(world, rows):
    import accounts.services as account_services

    roster = roster_import_create(
        actor=world.project_admin,
        rows=rows,
        filename="c.csv",
        domain=world.domain,
        project=world.project,
    )
    real_row = account_services._roster_row
    raced: list[RosterImport] = []

    def row_while_another_worker_starts(roster_import, row):
        if not raced:  # a redelivered task starts while the first one is working
            raced.append(roster_import_run(roster_import_id=roster.pk))
        return real_row(roster_import, row)

    with mock.patch.object(
        account_services, "_roster_row", side_effect=row_while_another_worker_starts
    ):
        done = roster_import_run(roster_import_id=roster.pk)
    assert raced[0].status == ImportStatus.RUNNING and raced[0].created == 0
    assert (done.created, done.added, done.existing, done.errors) == (2, 1, 1, 3)
    assert AuditEvent.objects.filter(action="roster.import").count() == 1


def test_permissions(world, rows):
    for who in (world.member, world.outsider, world.other_admin):
        with pytest.raises(PermissionDenied):
            roster_import_create(
                actor=who, rows=rows, filename="c.csv", domain=world.domain, project=world.project
            )
    # A project admin imports into their project, not into the whole domain.
    with pytest.raises(PermissionDenied):
        roster_import_create(
            actor=world.project_admin, rows=rows, filename="c.csv", domain=world.domain
        )
    assert not RosterImport.objects.exists()
    roster = run(world, rows, actor=world.project_assistant)
    assert roster.created == 2


def test_an_empty_import_is_refused(world):
    with pytest.raises(ServiceError) as exc:
        roster_import_create(
            actor=world.project_admin,
            rows=[],
            filename="c.csv",
            domain=world.domain,
            project=world.project,
        )
    assert exc.value.code == "empty_roster"


@override_settings(TEACHCLOUD_ROSTER_INLINE_ROWS=2)
def test_large_import_is_queued_after_commit(world, rows, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        roster = roster_import_create(
            actor=world.project_admin,
            rows=rows,
            filename="c.csv",
            domain=world.domain,
            project=world.project,
        )
    assert RosterImport.objects.get(pk=roster.pk).status == ImportStatus.PENDING
    assert len(callbacks) == 1
    callbacks[0]()  # the test settings run Celery tasks eagerly
    roster.refresh_from_db()
    assert roster.status == ImportStatus.DONE and roster.created == 2


@override_settings(TEACHCLOUD_ROSTER_INLINE_ROWS=200)
def test_small_import_is_not_queued(world, rows, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        roster = roster_import_create(
            actor=world.project_admin,
            rows=rows,
            filename="c.csv",
            domain=world.domain,
            project=world.project,
        )
    assert callbacks == []
    assert RosterImport.objects.get(pk=roster.pk).status == ImportStatus.PENDING
