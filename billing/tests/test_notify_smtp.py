"""Notifications over a real SMTP server (aiosmtpd on loopback): rate limit, digest, a lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.enforcement import enforce
from billing.models import Notification
from billing.notify import flush_digests, notify
from billing.services import wallet_adjust, wallet_open
from teachcloud.testing.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_rate_limit_and_digest_over_smtp(smtp, django_capture_on_commit_callbacks):
    user = UserFactory(email="grace@example.edu")
    for i in range(1, 8):
        with django_capture_on_commit_callbacks(execute=True):
            notify(event="test", users=[user], subject=f"Event {i}", body=f"Body {i}")

    received = smtp.to("grace@example.edu")
    assert len(received) == 5
    assert [m["Subject"] for m in received] == [f"[TeachCloud] Event {i}" for i in range(1, 6)]
    assert flush_digests(now=timezone.now() + timedelta(seconds=60)) == 0
    assert len(smtp.to("grace@example.edu")) == 5

    assert flush_digests(now=timezone.now() + timedelta(seconds=601)) == 1
    received = smtp.to("grace@example.edu")
    assert len(received) == 6
    digest = smtp.body(received[-1])
    assert "Event 6" in digest and "Body 7" in digest and "Event 5" not in digest
    statuses = sorted(Notification.objects.values_list("status", flat=True))
    assert statuses == ["digested"] * 2 + ["sent"] * 6  # 5 emails + the digest


def test_lock_email_reaches_the_admin_over_smtp(world, smtp, django_capture_on_commit_callbacks):
    wallet = wallet_open(project=world.project)
    wallet_adjust(actor=world.platform, wallet=wallet, amount="-12.5", reason="arrears")
    with django_capture_on_commit_callbacks(execute=True):
        result = enforce(now=timezone.now())
    assert result["locked"] == 1
    (message,) = smtp.to(world.project_admin.email)
    assert "Networks 101 has been locked" in message["Subject"]
    body = smtp.body(message)
    assert "-12.5000" in body and "Available" in body


def test_smtp_failure_is_recorded(settings, django_capture_on_commit_callbacks):
    """A server that refuses connections: the notification is failed with the error, not lost
    silently and not raised into the caller."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    user = UserFactory(email="lin@example.edu")
    with django_capture_on_commit_callbacks(execute=True):
        (row,) = notify(event="test", users=[user], subject="s", body="b")
    row.refresh_from_db()
    assert row.status == "failed" and "refused" in row.error.lower()
