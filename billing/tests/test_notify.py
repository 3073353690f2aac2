"""Notifications: every one recorded; at most 5 emails per address per 10 minutes, the rest in one
digest; webhooks posted as JSON, failures recorded (SPEC Notifications)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from billing.models import Notification
from billing.notify import flush_digests, notify
from billing.services import webhook_set
from teachcloud.testing.factories import UserFactory
from teachcloud.testing.webhook import webhook_server

pytestmark = pytest.mark.django_db


def _notify_many(capture, user, count, start=1, **kwargs):
    for i in range(start, start + count):
        with capture(execute=True):
            notify(
                event="test",
                users=[user],
                subject=f"Event {i}",
                body=f"Body of event {i}",
                **kwargs,
            )


def test_seven_events_give_five_emails_then_one_digest_of_two(
    django_capture_on_commit_callbacks,
):
    user = UserFactory(email="ada@example.edu")
    _notify_many(django_capture_on_commit_callbacks, user, 7)

    assert [m.subject for m in mail.outbox] == [f"[TeachCloud] Event {i}" for i in range(1, 6)]
    rows = Notification.objects.filter(event="test").order_by("id")
    assert [r.status for r in rows] == ["sent"] * 5 + ["pending"] * 2

    # Inside the window nothing more goes out.
    assert flush_digests(now=timezone.now() + timedelta(seconds=300)) == 0
    assert len(mail.outbox) == 5

    # After the window: one digest with the other two, nothing dropped.
    assert flush_digests(now=timezone.now() + timedelta(seconds=601)) == 1
    assert len(mail.outbox) == 6
    digest_mail = mail.outbox[-1]
    assert digest_mail.to == ["ada@example.edu"]
    assert "2 notifications" in digest_mail.subject
    assert "Event 6" in digest_mail.body and "Body of event 7" in digest_mail.body
    assert "Event 5" not in digest_mail.body
    digest = Notification.objects.get(event="digest")
    assert digest.status == "sent" and digest.address == "ada@example.edu"
    held = Notification.objects.filter(event="test", status="digested")
    assert sorted(r.subject for r in held) == ["Event 6", "Event 7"]
    assert {r.digest_id for r in held} == {digest.pk}
    # Every notification ended sent or digested.
    assert not Notification.objects.filter(status__in=["pending", "failed"]).exists()
    assert flush_digests(now=timezone.now() + timedelta(seconds=1200)) == 0


def test_limit_is_per_address(django_capture_on_commit_callbacks):
    ada, bob = UserFactory(email="ada@example.edu"), UserFactory(email="bob@example.edu")
    _notify_many(django_capture_on_commit_callbacks, ada, 6)
    _notify_many(django_capture_on_commit_callbacks, bob, 2)
    assert sum(1 for m in mail.outbox if m.to == ["ada@example.edu"]) == 5
    assert sum(1 for m in mail.outbox if m.to == ["bob@example.edu"]) == 2


def test_new_event_after_window_carries_the_held_ones(django_capture_on_commit_callbacks, settings):
    """When room appears, the next event goes out as a digest together with those held back."""
    settings.TEACHCLOUD_MAIL_RATE = (2, 600)
    user = UserFactory(email="ada@example.edu")
    _notify_many(django_capture_on_commit_callbacks, user, 3)
    assert len(mail.outbox) == 2
    Notification.objects.filter(status="sent").update(sent_at=timezone.now() - timedelta(hours=1))
    _notify_many(django_capture_on_commit_callbacks, user, 1, start=4)
    assert len(mail.outbox) == 3
    assert "Event 3" in mail.outbox[-1].body and "Event 4" in mail.outbox[-1].body
    assert Notification.objects.filter(status="digested").count() == 2


def test_nothing_is_sent_when_the_change_rolls_back(django_capture_on_commit_callbacks):
    user = UserFactory(email="ada@example.edu")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        notify(event="test", users=[user], subject="Lost", body="Never")
        raise RuntimeError
    assert mail.outbox == []
    assert not Notification.objects.exists()


def test_user_without_email_is_recorded_as_failed(django_capture_on_commit_callbacks):
    user = UserFactory(email="")
    with django_capture_on_commit_callbacks(execute=True):
        (row,) = notify(event="test", users=[user, user], subject="Hi", body="Body")
    row.refresh_from_db()
    assert row.status == "failed" and row.error
    assert mail.outbox == []


def test_webhook_gets_json_for_project_and_domain(world, django_capture_on_commit_callbacks):
    with webhook_server() as project_hook, webhook_server() as domain_hook:
        webhook_set(actor=world.project_admin, project=world.project, url=project_hook.url)
        webhook_set(actor=world.domain_admin, domain=world.domain, url=domain_hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            rows = notify(
                event="tenant_locked",
                users=[world.project_admin],
                subject="Networks 101 has been locked",
                body="Available ¥-1.0000",
                project=world.project,
            )
        assert len(rows) == 3  # one email, two webhooks
        for hook in (project_hook, domain_hook):
            (payload,) = hook.payloads
            assert payload["event"] == "tenant_locked"
            assert payload["project"] == "net101" and payload["domain"] == "north"
            assert payload["subject"] == "Networks 101 has been locked"
            assert "Available ¥-1.0000" in payload["text"]
            assert hook.requests[0]["content_type"].startswith("application/json")
    hooks = Notification.objects.filter(channel="webhook")
    assert sorted(h.address for h in hooks) == sorted([project_hook.url, domain_hook.url])
    assert {h.status for h in hooks} == {"sent"}


def test_webhook_of_another_tenant_hears_nothing(world, django_capture_on_commit_callbacks):
    with webhook_server() as hook:
        webhook_set(actor=world.other_admin, domain=world.other_domain, url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            notify(event="x", users=[], subject="s", body="b", project=world.project)
        assert hook.requests == []


def test_webhook_error_answer_is_recorded_not_raised(world, django_capture_on_commit_callbacks):
    with webhook_server(status=500) as hook:
        webhook_set(actor=world.project_admin, project=world.project, url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            notify(event="x", users=[], subject="s", body="b", project=world.project)
        assert len(hook.requests) == 1
    row = Notification.objects.get(channel="webhook")
    assert row.status == "failed"
    assert "HTTP 500" in row.error


def test_unreachable_webhook_is_recorded_as_failed(world, django_capture_on_commit_callbacks):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    webhook_set(actor=world.project_admin, project=world.project, url=f"http://127.0.0.1:{port}/")
    with django_capture_on_commit_callbacks(execute=True):
        notify(event="x", users=[world.member], subject="s", body="b", project=world.project)
    row = Notification.objects.get(channel="webhook")
    assert row.status == "failed"
    assert "refused" in row.error.lower() or "URLError" in row.error
    # The email of the same event was still sent.
    assert Notification.objects.get(channel="email").status == "sent"
    assert len(mail.outbox) == 1
