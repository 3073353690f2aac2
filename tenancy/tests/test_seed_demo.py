"""`manage.py seed_demo`: a demo world built through the services, idempotent, with working
logins."""

from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from accounts.models import EnrollmentCode, User
from billing.models import Notification
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project
from tenancy.permissions import roles_of

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    return {
        "domains": Domain.objects.count(),
        "projects": Project.objects.count(),
        "users": User.objects.count(),
        "memberships": Membership.objects.count(),
        "domain_roles": DomainRole.objects.count(),
        "codes": EnrollmentCode.objects.count(),
        "emails": EmailAddress.objects.count(),
        "verified": EmailAddress.objects.filter(verified=True, primary=True).count(),
        "audit": AuditEvent.objects.count(),
        "notifications": Notification.objects.count(),
    }


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _logins(output: str, password: str) -> list[tuple[str, str]]:
    """(role, username) of every table row printed with the password."""
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if line.startswith("| ") and len(cells) >= 4 and cells[3] == password:
            rows.append((cells[1], cells[2]))
    return rows


def test_seed_demo_twice_changes_nothing_and_logins_work():
    first = _seed()
    counts = _counts()
    assert counts | {"audit": 0} == {
        "domains": 2,
        "projects": 4,
        "users": 38,
        "memberships": 32,
        "domain_roles": 4,
        "codes": 4,
        "emails": 38,
        "verified": 38,
        "audit": 0,
        "notifications": counts["notifications"],
    }
    # One course's alert level is above its balance: the real low-balance email went out
    # (recorded, for the Notifications pages), once.
    assert Notification.objects.filter(event="low_balance", channel="email").count() >= 1
    second = _seed()
    assert _counts() == counts

    logins = _logins(second, "teachcloud-demo")
    assert logins == _logins(first, "teachcloud-demo")
    assert len(logins) == 38
    for _role, username in logins:
        assert authenticate(username=username, password="teachcloud-demo") is not None, username


def test_seed_demo_builds_the_roles_it_prints():
    _seed()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.platform_role == "operator"
    finance = User.objects.get(username="finance")
    assert finance.is_staff and not finance.is_superuser and finance.platform_role == "finance"
    assert roles_of(finance).finance
    north = Domain.objects.get(code="north")
    assert north.name == "北方大学"
    assert Domain.objects.get(code="south").name == "南方学院"
    assert roles_of(User.objects.get(username="north-admin")).domains == {north.pk: "admin"}
    assert roles_of(User.objects.get(username="north-assistant")).domains == {north.pk: "assistant"}
    for project in Project.objects.all():
        roles = dict(
            Membership.objects.filter(project=project).values_list("user__username", "role")
        )
        assert sorted(roles.values()).count("member") == 6
        assert list(roles.values()).count("admin") == 1
        assert list(roles.values()).count("assistant") == 1
        students = User.objects.filter(memberships__project=project, memberships__role="member")
        assert all(s.home_domain_id == project.domain_id and s.id_number for s in students)
    # Built through the services: the audit log tells the story.
    assert AuditEvent.objects.filter(action="domain.create").count() == 2
    assert AuditEvent.objects.filter(action="user.create").count() == 37
    assert AuditEvent.objects.filter(action="membership.add").count() == 24


def test_seed_demo_password_option():
    output = _seed("--password", "Another-Demo-2026")
    assert "Another-Demo-2026" in output
    assert authenticate(username="south-teacher1", password="Another-Demo-2026") is not None
    # Running again with the default password switches every demo account to it.
    _seed()
    assert authenticate(username="south-teacher1", password="teachcloud-demo") is not None
    assert authenticate(username="admin", password="teachcloud-demo") is not None


def test_seed_demo_refuses_a_weak_password():
    with pytest.raises(CommandError):
        _seed("--password", "123")
    assert User.objects.count() == 0
