"""Webhooks in their receiver's format (SPEC Notifications: "e.g. Feishu/DingTalk/Slack"): the
JSON each one wants, an error in the body of a 200 answer recorded as a failure, and the tenant's
notification settings on its billing page (webhook, test message, low-balance alert level).

A real HTTP server on 127.0.0.1 plays Feishu, DingTalk, Slack or a generic receiver."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from billing import services
from billing.models import Notification, Wallet, Webhook
from billing.notify import notify, webhook_format
from teachcloud.testing.webhook import webhook_server
from tenancy.models import AuditEvent

pytestmark = pytest.mark.django_db

FEISHU_OK = {"code": 0, "msg": "success", "data": {}}
FEISHU_BAD = {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
DINGTALK_OK = {"errcode": 0, "errmsg": "ok"}
DINGTALK_BAD = {"errcode": 310000, "errmsg": "keywords not in content"}


def receiver(answer: Any = None, status: int = 200) -> Any:
    """A local receiver answering like Feishu, DingTalk, Slack or anything (teachcloud.testing)."""
    return webhook_server(status=status, answer=answer)


def _event(capture, world, **kwargs):
    with capture(execute=True):
        notify(
            event="tenant_locked",
            users=[],
            subject="Networks 101 has been locked",
            body="Available ¥-1.0000",
            project=world.project,
            **kwargs,
        )
    return Notification.objects.filter(channel="webhook").order_by("id").last()


# -- Formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("https://open.feishu.cn/open-apis/bot/v2/hook/abc", "feishu"),
        ("https://open.larksuite.com/open-apis/bot/v2/hook/abc", "feishu"),
        ("https://oapi.dingtalk.com/robot/send?access_token=abc", "dingtalk"),
        ("https://hooks.slack.com/services/T0/B0/abc", "slack"),
        ("https://OPEN.FEISHU.CN./open-apis/bot/v2/hook/abc", "feishu"),
        ("https://open.feishu.cn.example.org/hook", "generic"),
        ("https://chat.example.edu/hooks/teachcloud", "generic"),
    ],
)
def test_format_is_recognised_from_the_host(url, fmt):
    assert webhook_format(url) == fmt
    assert webhook_format(url, "generic") == "generic"  # a stored choice wins


@pytest.mark.parametrize(
    ("fmt", "answer", "expected"),
    [
        ("feishu", FEISHU_OK, {"msg_type": "text", "content": {"text": "TEXT"}}),
        ("dingtalk", DINGTALK_OK, {"msgtype": "text", "text": {"content": "TEXT"}}),
        ("slack", "ok", {"text": "TEXT"}),
    ],
)
def test_each_format_gets_its_own_json(
    world, django_capture_on_commit_callbacks, fmt, answer, expected
):
    with receiver(answer) as hook:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url=hook.url, format=fmt
        )
        row = _event(django_capture_on_commit_callbacks, world)
    text = "Networks 101 has been locked\n\nAvailable ¥-1.0000"
    expected = json.loads(json.dumps(expected).replace("TEXT", text.replace("\n", "\\n")))
    assert hook.payloads == [expected]
    assert hook.requests[0]["content_type"].startswith("application/json")
    assert (row.status, row.error) == ("sent", "")


def test_generic_receivers_keep_the_generic_fields(world, django_capture_on_commit_callbacks):
    with receiver() as hook:
        services.webhook_set(actor=world.project_admin, project=world.project, url=hook.url)
        assert Webhook.objects.get(project=world.project).format == "auto"  # 127.0.0.1: generic
        row = _event(django_capture_on_commit_callbacks, world)
    (payload,) = hook.payloads
    assert payload["event"] == "tenant_locked"
    assert payload["subject"] == "Networks 101 has been locked"
    assert payload["project"] == "net101" and payload["domain"] == "north"
    assert "Available ¥-1.0000" in payload["text"] and payload["created_at"]
    assert "msg_type" not in payload and "msgtype" not in payload
    assert row.status == "sent"


def test_project_and_domain_hooks_each_get_their_own_format(
    world, django_capture_on_commit_callbacks
):
    with receiver(FEISHU_OK) as feishu, receiver(DINGTALK_OK) as dingtalk:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url=feishu.url, format="feishu"
        )
        services.webhook_set(
            actor=world.domain_admin, domain=world.domain, url=dingtalk.url, format="dingtalk"
        )
        _event(django_capture_on_commit_callbacks, world)
    assert feishu.payloads[0]["msg_type"] == "text"
    assert dingtalk.payloads[0]["msgtype"] == "text"
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


# -- Errors in the answer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "answer", "words"),
    [
        ("feishu", FEISHU_BAD, ["Feishu", "19001", "incoming webhook access token invalid"]),
        ("feishu", {"StatusCode": 9499, "StatusMessage": "Bad Request"}, ["9499", "Bad Request"]),
        ("dingtalk", DINGTALK_BAD, ["DingTalk", "310000", "keywords not in content"]),
        ("dingtalk", "<html>gateway</html>", ["DingTalk", "other than JSON"]),
    ],
)
def test_an_error_in_a_200_answer_marks_the_delivery_failed(
    world, django_capture_on_commit_callbacks, fmt, answer, words
):
    with receiver(answer) as hook:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url=hook.url, format=fmt
        )
        row = _event(django_capture_on_commit_callbacks, world)
        assert len(hook.requests) == 1
    assert row.status == "failed"
    for word in words:
        assert word in row.error


def test_an_http_error_records_what_the_receiver_said(world, django_capture_on_commit_callbacks):
    with receiver("no_service", status=404) as hook:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url=hook.url, format="slack"
        )
        row = _event(django_capture_on_commit_callbacks, world)
    assert row.status == "failed"
    assert "HTTP 404" in row.error and "no_service" in row.error


def test_an_error_answer_is_not_echoed_into_the_record(world, django_capture_on_commit_callbacks):
    """The address is the tenant's choice: what some other server answers is not shown back."""
    secret = "<html>internal admin page, token=s3cr3t</html>"
    with receiver(secret, status=405) as hook:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url=hook.url, format="slack"
        )
        row = _event(django_capture_on_commit_callbacks, world)
    assert row.status == "failed" and "HTTP 405" in row.error
    assert "s3cr3t" not in row.error


def test_a_generic_receiver_is_judged_by_its_status_only(world, django_capture_on_commit_callbacks):
    with receiver({"code": 1, "errcode": 1}) as hook:
        services.webhook_set(actor=world.project_admin, project=world.project, url=hook.url)
        row = _event(django_capture_on_commit_callbacks, world)
    assert row.status == "sent"


# -- The tenant's settings on its billing page ------------------------------------------------


@pytest.fixture
def w(world):
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    return world


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


def _wallet(*, project=None, domain=None) -> Wallet:
    return Wallet.objects.get(**({"project": project} if project else {"domain": domain}))


def _alerts_url(wallet: Wallet) -> str:
    return reverse("portal:billing_wallet_alerts", args=[wallet.pk])


def _settings(url="", fmt="auto", active=True, threshold=""):
    data = {"alerts-url": url, "alerts-format": fmt, "alerts-alert_threshold": threshold}
    if active:
        data["alerts-active"] = "on"
    return data


def _state(project) -> tuple[Any, Any, int]:
    hook = Webhook.objects.filter(project=project).values_list("url", "format", "active").first()
    return hook, _wallet(project=project).alert_threshold, AuditEvent.objects.count()


def test_the_billing_page_shows_the_settings_to_the_admin(w, login):
    html = login(w.project_admin).get(reverse("portal:project_billing", args=[w.project.pk]))
    assert html.status_code == 200
    content = html.content.decode()
    assert _alerts_url(_wallet(project=w.project)) in content
    assert 'name="alerts-url"' in content and 'name="alerts-alert_threshold"' in content
    assert 'name="test"' not in content  # nothing saved to test yet


def test_admin_saves_webhook_and_alert_level_audited(w, login):
    wallet = _wallet(project=w.project)
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/abc"
    response = login(w.project_admin).post(
        _alerts_url(wallet), _settings(url, "auto", threshold="150"), follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("portal:project_billing", args=[w.project.pk])
    assert "The notification settings are saved." in response.content.decode()
    hook = Webhook.objects.get(project=w.project)
    assert (hook.url, hook.format, hook.active) == (url, "auto", True)
    wallet.refresh_from_db()
    assert wallet.alert_threshold == Decimal("150")
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"webhook.set", "wallet.update"} <= actions
    # The page now offers the saved values and a test button.
    content = response.content.decode()
    assert url in content and 'name="test"' in content

    # An empty URL and threshold remove the webhook and return to the default alert level.
    login(w.project_admin).post(_alerts_url(wallet), _settings(""))
    assert not Webhook.objects.filter(project=w.project).exists()
    wallet.refresh_from_db()
    assert wallet.alert_threshold is None
    assert AuditEvent.objects.filter(action="webhook.delete").count() == 1


def test_domain_admin_sets_the_domain_webhook(w, login):
    wallet = _wallet(domain=w.domain)
    url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    response = login(w.domain_admin).post(_alerts_url(wallet), _settings(url, "dingtalk"))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:domain_billing", args=[w.domain.pk])
    assert Webhook.objects.get(domain=w.domain).format == "dingtalk"


@pytest.mark.parametrize("bad", ["ftp://example.org/hook", "not a url", "https://" + "a" * 600])
def test_a_bad_url_is_refused_with_a_message_and_changes_nothing(w, login, bad):
    services.webhook_set(
        actor=w.project_admin, project=w.project, url="https://example.org/old", format="slack"
    )
    before = _state(w.project)
    response = login(w.project_admin).post(
        _alerts_url(_wallet(project=w.project)), _settings(bad, "generic", threshold="99")
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "Enter a valid http(s) URL." in content or "at most 500" in content
    assert _state(w.project) == before  # neither the webhook nor the alert level changed


def test_a_bad_threshold_changes_nothing(w, login):
    before = _state(w.project)
    response = login(w.project_admin).post(
        _alerts_url(_wallet(project=w.project)),
        _settings("https://example.org/hook", threshold="-5"),
    )
    assert response.status_code == 200
    assert response.context["alerts_form"].errors
    assert _state(w.project) == before


@pytest.mark.parametrize("who", ["member", "other_admin", "outsider", "finance"])
def test_others_are_refused_and_nothing_changes(w, login, who):
    services.webhook_set(actor=w.project_admin, project=w.project, url="https://example.org/a")
    before = _state(w.project)
    client = login(getattr(w, who))
    url = _alerts_url(_wallet(project=w.project))
    assert client.post(url, _settings("https://evil.example/", threshold="1")).status_code in (
        403,
        404,
    )
    assert client.post(url, {"test": "1"}).status_code in (403, 404)
    assert _state(w.project) == before
    assert not Notification.objects.exists()


def test_domain_assistant_sets_the_alert_level_but_not_the_webhook(w, login):
    wallet = _wallet(domain=w.domain)
    client = login(w.domain_assistant)
    response = client.post(_alerts_url(wallet), _settings("https://evil.example/", threshold="80"))
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.alert_threshold == Decimal("80")
    assert not Webhook.objects.filter(domain=w.domain).exists()
    assert client.post(_alerts_url(wallet), {"test": "1"}).status_code == 403


def test_the_form_needs_the_csrf_token(w):
    client = Client(enforce_csrf_checks=True)
    client.force_login(w.project_admin)
    response = client.post(
        _alerts_url(_wallet(project=w.project)), _settings("https://example.org/hook")
    )
    assert response.status_code == 403
    assert not Webhook.objects.exists()
    assert client.get(_alerts_url(_wallet(project=w.project))).status_code == 405


def test_the_test_message_goes_through_the_webhook_path_and_shows_the_result(w, login):
    wallet = _wallet(project=w.project)
    client = login(w.project_admin)
    with receiver(FEISHU_OK) as hook:
        client.post(_alerts_url(wallet), _settings(hook.url, "feishu"))
        response = client.post(_alerts_url(wallet), {"test": "1"}, follow=True)
        assert "The test message was delivered to the webhook." in response.content.decode()
        (payload,) = hook.payloads
        assert payload["msg_type"] == "text" and "TeachCloud" in payload["content"]["text"]
        row = Notification.objects.get(event="webhook_test")
        assert (row.status, row.address, row.project_id) == ("sent", hook.url, w.project.pk)

        hook.answer = FEISHU_BAD
        response = client.post(_alerts_url(wallet), {"test": "1"}, follow=True)
    content = response.content.decode()
    assert "The test message could not be delivered" in content
    assert "incoming webhook access token invalid" in content
    failed = Notification.objects.filter(event="webhook_test").order_by("id").last()
    assert failed.status == "failed" and "19001" in failed.error


def test_testing_without_a_saved_webhook_says_so(w, login):
    response = login(w.project_admin).post(
        _alerts_url(_wallet(project=w.project)), {"test": "1"}, follow=True
    )
    assert "Save a webhook URL first" in response.content.decode()
    assert not Notification.objects.exists()
