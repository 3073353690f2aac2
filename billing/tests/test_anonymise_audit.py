"""SPEC Locking 5: a user purged after 18 months has their personal data anonymised — in the
audit log too, whose events are kept (only the personal values are replaced)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import (
    enrollment_code_create,
    enrollment_decide,
    enrollment_redeem_as_user,
    user_create,
    user_update,
)
from billing.enforcement import add_months, enforce
from tenancy.models import AuditEvent, Membership
from tenancy.services import membership_remove

pytestmark = pytest.mark.django_db

OLD = {
    "username": "mingyue",
    "real_name": "欧阳明月",
    "id_number": "S2023-0042",
    "email": "mingyue@example.edu",
    "phone": "13912345678",
}


def everything(event: AuditEvent) -> str:
    """All the text an audit row holds."""
    return "\n".join(
        [
            json.dumps(event.before, ensure_ascii=False),
            json.dumps(event.after, ensure_ascii=False),
            event.target_repr,
            event.actor_repr,
            str(event),
        ]
    )


def test_anonymising_a_user_scrubs_their_personal_data_from_the_audit_log(
    world, django_capture_on_commit_callbacks
):
    user = user_create(actor=world.domain_admin, domain=world.domain, **OLD)
    code = enrollment_code_create(actor=world.project_admin, project=world.project)
    request = enrollment_redeem_as_user(code=code.code, user=user)  # the user is the actor
    enrollment_decide(actor=world.project_admin, request=request, approve=True)
    user_update(actor=world.domain_admin, user=user, email="moon@example.edu", phone="13900000000")
    user_update(actor=world.domain_admin, user=user, real_name="欧阳明日")
    membership_remove(actor=world.project_admin, membership=Membership.objects.get(user=user))
    old_values = [*OLD.values(), "moon@example.edu", "13900000000", "欧阳明日"]

    mine = AuditEvent.objects.filter(target_type="accounts.user", target_id=str(user.pk))
    assert {e.action for e in mine} == {"user.create", "user.real_name_change"}
    assert AuditEvent.objects.filter(action="membership.add", after__user="mingyue").exists()
    assert any("mingyue@example.edu" in everything(e) for e in mine)
    others = {
        e.pk: everything(e) for e in AuditEvent.objects.all() if "mingyue" not in everything(e)
    }
    kept = set(AuditEvent.objects.values_list("pk", flat=True))

    later = add_months(timezone.now(), 18) + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        result = enforce(now=later)
    user.refresh_from_db()
    assert user.purged_at == later and user.real_name == "已清除用户"

    # No row was deleted; only the `user.purge` events were added.
    rows = AuditEvent.objects.all()
    assert kept <= set(rows.values_list("pk", flat=True))
    purges = rows.filter(action="user.purge").count()
    assert purges == result["users_anonymised"] >= 1
    assert rows.count() == len(kept) + purges
    # None of their personal values is left, in snapshots, labels or actors.
    for event in rows:
        text = everything(event)
        assert not [value for value in old_values if value in text], (event.action, text)
    # Their snapshots carry the values their row now has.
    create = AuditEvent.objects.get(action="user.create", target_id=str(user.pk))
    assert create.after == {
        "username": f"purged-{user.pk}",
        "real_name": "已清除用户",
        "id_number": "",
        "email": "",
        "phone": "",
    }
    label = f"已清除用户 (purged-{user.pk})"
    assert create.target_repr == label
    change = AuditEvent.objects.filter(action="user.real_name_change").order_by("pk")
    assert [(e.before["email"], e.after["email"]) for e in change] == [("", "")] * 2
    assert all(e.after["is_active"] is True for e in change)  # not personal data: kept
    redeem = AuditEvent.objects.get(action="enrollment.redeem")
    assert redeem.actor_id == user.pk and redeem.actor_repr == label
    assert redeem.after == {"user": f"purged-{user.pk}", "code": code.code}
    added = AuditEvent.objects.get(action="membership.add", after__user=f"purged-{user.pk}")
    assert added.target_repr.startswith(label + " @ ")
    # Everyone else's events are untouched.
    for pk, text in others.items():
        assert everything(AuditEvent.objects.get(pk=pk)) == text


def test_anonymising_a_user_scrubs_them_from_the_recorded_notifications(
    world, django_capture_on_commit_callbacks
):
    from billing.models import Notification
    from billing.notify import notify
    from tenancy.services import membership_add

    user = user_create(actor=world.domain_admin, domain=world.domain, **OLD)
    membership_add(actor=world.project_admin, project=world.project, user=user, role="member")
    with django_capture_on_commit_callbacks(execute=True):
        notify(
            event="budget_alert",
            users=[user],
            subject="欧阳明月: 90 % of your budget",
            body="Dear 欧阳明月 (S2023-0042), write to mingyue@example.edu if this is wrong.",
            project=world.project,
        )
        notify(
            event="budget_alert",
            users=[world.project_admin],
            subject="A member used 90 % of their budget",
            body="欧阳明月 has used 90 % of their budget in Networks 101.",
            project=world.project,
        )
    membership_remove(actor=world.project_admin, membership=Membership.objects.get(user=user))
    later = add_months(timezone.now(), 18) + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        enforce(now=later)
    user.refresh_from_db()
    assert user.purged_at == later
    theirs = Notification.objects.filter(recipient=user)
    assert theirs.exists() and set(theirs.values_list("address", flat=True)) == {""}
    for row in Notification.objects.all():
        text = f"{row.address}\n{row.subject}\n{row.body}"
        assert not [value for value in OLD.values() if value in text], text
    teacher = Notification.objects.get(recipient=world.project_admin, event="budget_alert")
    assert teacher.body == f"{user} has used 90 % of their budget in Networks 101."


def test_other_peoples_notifications_keep_their_text(world, django_capture_on_commit_callbacks):
    """Only whole mentions of the purged user, in their own notifications and those of their
    projects: 王伟 is not the start of 王伟东, 100 is not ¥100.0000, and another domain's rows are
    never touched."""
    from billing.models import Notification
    from billing.notify import notify
    from tenancy.services import membership_add

    user = user_create(
        actor=world.domain_admin,
        domain=world.domain,
        username="wangwei",
        real_name="王伟",
        id_number="100",
        email="li@example.edu",
        phone="13800000000",
    )
    membership_add(actor=world.project_admin, project=world.project, user=user, role="member")
    with django_capture_on_commit_callbacks(execute=True):
        notify(
            event="budget_alert",
            users=[world.project_admin],
            subject="Budget",
            body="王伟 has used 90 %. 王伟东 has used 10 %; ¥100.0000 left; zhangli@example.edu.",
            project=world.project,
        )
        notify(
            event="tenant_locked",
            users=[world.other_admin],
            subject="王伟 (south)",
            body="王伟 of the other school; li@example.edu",
            project=world.other_project,
        )
    membership_remove(actor=world.project_admin, membership=Membership.objects.get(user=user))
    later = add_months(timezone.now(), 18) + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        enforce(now=later)
    user.refresh_from_db()
    assert user.purged_at == later
    ours = Notification.objects.get(recipient=world.project_admin, event="budget_alert")
    assert ours.body == (
        f"{user} has used 90 %. 王伟东 has used 10 %; ¥100.0000 left; zhangli@example.edu."
    )
    theirs = Notification.objects.get(recipient=world.other_admin, event="tenant_locked")
    assert (theirs.subject, theirs.body) == (
        "王伟 (south)",
        "王伟 of the other school; li@example.edu",
    )


def test_every_address_they_had_and_the_digests_that_repeat_them_are_scrubbed(
    world, django_capture_on_commit_callbacks
):
    from billing.models import Notification
    from billing.notify import notify
    from tenancy.services import membership_add

    user = user_create(actor=world.domain_admin, domain=world.domain, **OLD)
    membership_add(actor=world.project_admin, project=world.project, user=user, role="member")
    with django_capture_on_commit_callbacks(execute=True):
        # the notice to the replaced address names both addresses and ends with a full stop
        user_update(actor=world.domain_admin, user=user, email="moon@example.edu")
        [alert] = notify(
            event="budget_alert",
            users=[world.project_admin],
            subject="Budget",
            body="欧阳明月 has used 90 %.",
            project=world.project,
        )
    digest = Notification.objects.create(
        event="digest",
        channel="email",
        recipient=world.project_admin,
        address=world.project_admin.email,
        subject="2 notifications",
        body="Budget\n欧阳明月 has used 90 %.",
        status="sent",
    )
    Notification.objects.filter(pk=alert.pk).update(digest=digest, status="digested")
    notice = Notification.objects.get(event="email_changed")
    assert "mingyue@example.edu" in notice.body and "moon@example.edu." in notice.body
    membership_remove(actor=world.project_admin, membership=Membership.objects.get(user=user))
    with django_capture_on_commit_callbacks(execute=True):
        enforce(now=add_months(timezone.now(), 18) + timedelta(days=2))
    user.refresh_from_db()
    assert user.purged_at is not None
    for row in Notification.objects.all():
        text = f"{row.address}\n{row.subject}\n{row.body}"
        for value in ("mingyue@example.edu", "moon@example.edu", "欧阳明月", "account mingyue"):
            assert value not in text, (row.event, text)
    digest.refresh_from_db()
    assert digest.body == f"Budget\n{user} has used 90 %."
