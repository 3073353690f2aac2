"""The portal's notification pages (SPEC Notifications: every notification is recorded and
listed in the portal): each user's own notifications, and every notification of a domain or
project for whoever may see the tenant's billing page — webhook failures with their error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing import services
from billing.models import Notification
from billing.notify import flush_digests, notify
from teachcloud.testing.webhook import webhook_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(world):
    """The world with open wallets (the tenant pages are guarded like the billing pages)."""
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def delivered(django_capture_on_commit_callbacks):
    """Record notifications and deliver them (mail to the test outbox, webhooks over HTTP)."""

    def _notify(**kwargs):
        kwargs.setdefault("body", "Body")
        with django_capture_on_commit_callbacks(execute=True):
            return notify(**kwargs)

    return _notify


def mine():
    return reverse("portal:my_notifications")


def tenant_url(name, tenant, *args):
    return reverse(f"portal:{name}", args=[tenant.pk, *args])


# -- My notifications -------------------------------------------------------------------------


def test_my_notifications_are_my_own_newest_first_in_local_time(w, login, delivered):
    at = datetime(2024, 3, 1, 16, 30, tzinfo=UTC)  # 2024-03-02 00:30 in Asia/Shanghai
    delivered(
        event="budget_alert",
        users=[w.member],
        subject="Older: 80 % of your budget",
        project=w.project,
        now=at,
    )
    delivered(event="statement_ready", users=[w.member], subject="Newer: statement", now=at)
    delivered(event="low_balance", users=[w.project_admin], subject="Not for the member")

    response = login(w.member).get(mine())

    assert response.status_code == 200
    page = response.context["page"]
    assert [n.subject for n in page] == ["Newer: statement", "Older: 80 % of your budget"]
    html = response.content.decode()
    assert "Not for the member" not in html
    assert "2024-03-02 00:30" in html
    assert "Budget threshold" in html and "Monthly statement ready" in html  # labels, not codes
    assert "budget_alert" not in html
    assert "Networks 101" in html  # the tenant column
    assert 'data-status="sent"' in html
    assert reverse("portal:my_notification", args=[page[0].pk]) in html


def test_my_notifications_paginate(w, login):
    for i in range(30):
        notify(event="low_balance", users=[w.member], subject=f"n{i}", body="b")
    client = login(w.member)
    first = client.get(mine())
    second = client.get(mine(), {"page": 2})
    assert len(first.context["page"]) == 25
    assert len(second.context["page"]) == 5
    assert "30 entries" in first.content.decode()


def test_my_notifications_empty_state_says_what_will_appear(w, login):
    response = login(w.member).get(mine())
    assert response.status_code == 200
    html = response.content.decode()
    assert "notifications-empty" in html
    assert "No notifications yet." in html
    assert "monthly statements will be listed here" in html


def test_my_notification_detail_shows_the_body_escaped_with_line_breaks(w, login, delivered):
    (row,) = delivered(
        event="member_locked",
        users=[w.member],
        subject="You are locked",
        body="First line\n<script>alert(1)</script>\nLast line",
        project=w.project,
    )
    response = login(w.member).get(reverse("portal:my_notification", args=[row.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "First line<br>&lt;script&gt;alert(1)&lt;/script&gt;<br>Last line" in html
    assert "<script>alert(1)</script>" not in html
    assert "Member locked" in html
    assert w.member.email in html


def test_someone_elses_notification_is_not_found(w, login, delivered):
    (row,) = delivered(event="low_balance", users=[w.project_admin], subject="Admin only")
    response = login(w.member).get(reverse("portal:my_notification", args=[row.pk]))
    assert response.status_code == 404


def test_my_notifications_show_what_was_folded_into_a_digest(w, login, settings, delivered):
    settings.TEACHCLOUD_MAIL_RATE = (1, 600)
    delivered(event="low_balance", users=[w.member], subject="First goes out")
    delivered(event="budget_alert", users=[w.member], subject="Held one", project=w.project)
    delivered(event="budget_alert", users=[w.member], subject="Held two", project=w.project)
    assert flush_digests(now=timezone.now() + timedelta(seconds=601)) == 1
    digest = Notification.objects.get(event="digest")
    held = Notification.objects.get(subject="Held one")
    assert held.status == "digested" and held.digest_id == digest.pk

    client = login(w.member)
    html = client.get(mine()).content.decode()
    assert html.count('data-status="digested"') == 2
    assert "Folded into a digest" in html
    assert "Digest" in html and digest.subject in html

    held_page = client.get(reverse("portal:my_notification", args=[held.pk])).content.decode()
    assert reverse("portal:my_notification", args=[digest.pk]) in held_page
    digest_page = client.get(reverse("portal:my_notification", args=[digest.pk]))
    assert [n.subject for n in digest_page.context["folded"]] == ["Held one", "Held two"]


def test_the_user_menu_links_to_my_notifications(w, login):
    html = login(w.member).get(reverse("portal:dashboard")).content.decode()
    assert f'href="{mine()}"' in html
    assert "My notifications" in html


# -- A tenant's notifications -----------------------------------------------------------------


@pytest.fixture
def failing_hook(w, delivered):
    """The project's webhook answers 500; one budget alert to two people and the webhook."""
    with webhook_server(status=500) as hook:
        services.webhook_set(actor=w.project_admin, project=w.project, url=hook.url)
        delivered(
            event="budget_alert",
            users=[w.member, w.project_admin],
            subject="Budget at 90 %",
            body="Consumed ¥90 of ¥100",
            project=w.project,
        )
    return hook


@pytest.mark.parametrize(
    ("viewer", "name", "tenant"),
    [
        ("domain_admin", "domain_notifications", "domain"),
        ("domain_assistant", "domain_notifications", "domain"),
        ("project_admin", "project_notifications", "project"),
        ("project_assistant", "project_notifications", "project"),
        ("domain_admin", "project_notifications", "project"),
        ("finance", "domain_notifications", "domain"),
    ],
)
def test_tenant_staff_see_every_recipient_and_the_failed_webhook(
    w, login, failing_hook, viewer, name, tenant
):
    response = login(getattr(w, viewer)).get(tenant_url(name, getattr(w, tenant)))
    assert response.status_code == 200
    rows = list(response.context["page"])
    assert len(rows) == 3
    assert {(n.channel, n.recipient_id) for n in rows} == {
        ("email", w.member.pk),
        ("email", w.project_admin.pk),
        ("webhook", None),
    }
    html = response.content.decode()
    assert "member" in html and "project_admin" in html
    assert 'data-status="failed"' in html
    assert "HTTP 500" in html  # the admin sees why the webhook failed
    host = failing_hook.url.rsplit("/", 1)[0]
    assert host in html and failing_hook.url not in html  # the path (often a token) is hidden
    assert "Budget threshold" in html


def test_tenant_list_filters_by_status_event_and_channel(w, login, failing_hook, delivered):
    delivered(event="low_balance", users=[w.domain_admin], subject="Low", domain=w.domain)
    client = login(w.domain_admin)
    url = tenant_url("domain_notifications", w.domain)

    failed = client.get(url, {"status": "failed"}).context["page"]
    assert [(n.channel, n.status) for n in failed] == [("webhook", "failed")]
    low = client.get(url, {"event": "low_balance"}).context["page"]
    assert [n.subject for n in low] == ["Low"]
    hooks = client.get(url, {"channel": "webhook"}).context["page"]
    assert [n.channel for n in hooks] == ["webhook"]
    everything = client.get(url, {"status": "nonsense"}).context["page"]
    assert len(everything) == 4  # an unknown value filters nothing
    # The domain's own notification is not on the project's page.
    project_rows = client.get(tenant_url("project_notifications", w.project)).context["page"]
    assert "Low" not in [n.subject for n in project_rows]

    none = client.get(url, {"event": "purge_reminder"})
    assert "No notifications match these filters." in none.content.decode()


def test_tenant_detail_shows_the_webhook_error_and_body(w, login, failing_hook):
    hook_row = Notification.objects.get(channel="webhook")
    response = login(w.project_admin).get(
        tenant_url("project_notification", w.project, hook_row.pk)
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "HTTP 500" in html
    assert "Consumed ¥90 of ¥100" in html
    assert failing_hook.url not in html


def test_tenant_empty_state_says_what_will_appear(w, login):
    response = login(w.domain_admin).get(tenant_url("domain_notifications", w.domain))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No notifications recorded yet." in html
    assert "will be listed here" in html


# -- Tenant isolation -------------------------------------------------------------------------


def test_another_tenants_notifications_are_not_found(w, login, failing_hook, delivered):
    (foreign,) = delivered(
        event="low_balance", users=[w.other_admin], subject="South only", domain=w.other_domain
    )
    ours = Notification.objects.filter(project=w.project).first()
    other = login(w.other_admin)
    assert other.get(tenant_url("domain_notifications", w.domain)).status_code == 404
    assert other.get(tenant_url("project_notifications", w.project)).status_code == 404
    assert other.get(tenant_url("domain_notification", w.domain, ours.pk)).status_code == 404
    # Through their own tenant's URL a foreign notification is not found either.
    assert other.get(tenant_url("domain_notification", w.other_domain, ours.pk)).status_code == 404
    own = other.get(tenant_url("domain_notifications", w.other_domain))
    assert [n.subject for n in own.context["page"]] == ["South only"]

    admin = login(w.domain_admin)
    assert admin.get(tenant_url("domain_notification", w.domain, foreign.pk)).status_code == 404
    assert admin.get(tenant_url("domain_notifications", w.other_domain)).status_code == 404
    assert (
        "South only" not in admin.get(tenant_url("domain_notifications", w.domain)).content.decode()
    )


def test_a_project_admin_does_not_see_other_projects_of_the_domain(w, login, delivered):
    from teachcloud.testing.factories import ProjectFactory

    sibling = ProjectFactory(domain=w.domain, name="Sibling", code="sib")
    services.wallet_open(project=sibling)
    (row,) = delivered(
        event="low_balance", users=[w.domain_admin], subject="Sibling low", project=sibling
    )
    client = login(w.project_admin)
    assert client.get(tenant_url("project_notifications", sibling)).status_code == 404
    assert client.get(tenant_url("project_notification", w.project, row.pk)).status_code == 404


@pytest.mark.parametrize(
    ("viewer", "name", "tenant", "status"),
    [
        ("member", "project_notifications", "project", 403),  # sees the project, not its billing
        ("member", "domain_notifications", "domain", 403),
        ("project_admin", "domain_notifications", "domain", 403),
        ("outsider", "project_notifications", "project", 404),
    ],
)
def test_who_may_not_see_a_tenants_notifications(w, login, viewer, name, tenant, status):
    response = login(getattr(w, viewer)).get(tenant_url(name, getattr(w, tenant)))
    assert response.status_code == status


def test_pages_need_sign_in(w, client):
    response = client.get(mine())
    assert response.status_code == 302 and "login" in response["Location"]


# -- Query count ------------------------------------------------------------------------------


def _add_rows(w, count):
    for i in range(count):
        notify(
            event="budget_alert",
            users=[w.member, w.project_admin],
            subject=f"Alert {i}",
            body="b",
            project=w.project,
        )


@pytest.mark.parametrize(
    ("viewer", "url"),
    [
        ("member", lambda w: reverse("portal:my_notifications")),
        ("domain_admin", lambda w: tenant_url("domain_notifications", w.domain)),
        ("project_admin", lambda w: tenant_url("project_notifications", w.project)),
        (
            "project_assistant",
            lambda w: tenant_url("project_notifications", w.project) + "?status=pending",
        ),
    ],
)
def test_list_query_count_does_not_grow_with_rows(
    w, login, django_assert_max_num_queries, viewer, url
):
    services.webhook_set(actor=w.project_admin, project=w.project, url="http://127.0.0.1:9/h")
    client = login(getattr(w, viewer))
    _add_rows(w, 2)
    with CaptureQueriesContext(connection) as small:
        first = client.get(url(w))
    assert first.status_code == 200
    assert len(first.context["page"]) >= 2
    _add_rows(w, 40)
    with django_assert_max_num_queries(len(small.captured_queries)):
        second = client.get(url(w))
    assert second.status_code == 200
    assert len(second.context["page"]) == 25
