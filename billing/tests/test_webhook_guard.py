"""Webhooks go to public internet addresses only (TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE off, as in
production): a tenant admin's URL must not make the server probe its own network — refused when
saved, refused again when posted (DNS may change in between), and redirects are not followed."""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from billing import services
from billing.models import Webhook
from billing.notify import address_problem, is_public
from billing.tests.test_webhooks import _event, receiver
from teachcloud.errors import ServiceError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        # IPv6 forms that embed an internal IPv4 address a translator or tunnel would reach:
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 prefix
        "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[::a9fe:a9fe]/hook",  # IPv4-compatible 169.254.169.254
        "http://[::ffff:10.1.2.3]/hook",  # IPv4-mapped
    ],
)
def test_non_public_addresses_are_named(settings, url):
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
    assert "non-public" in address_problem(url)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_and_their_translated_forms_pass(address):
    assert is_public(ipaddress.ip_address(address))


def test_a_public_address_passes_and_the_switch_allows_private_ones(settings):
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
    assert address_problem("https://93.184.216.34/hook") is None  # a literal: no DNS needed
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = True
    assert address_problem("http://127.0.0.1/hook") is None


def test_saving_a_private_address_is_refused_and_changes_nothing(settings, world):
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ServiceError) as refused:
        services.webhook_set(
            actor=world.project_admin, project=world.project, url="http://10.0.0.5/hook"
        )
    assert refused.value.code == "webhook_address"
    assert not Webhook.objects.filter(project=world.project).exists()


def test_posting_re_checks_the_address(settings, world, django_capture_on_commit_callbacks):
    with receiver() as hook:
        services.webhook_set(actor=world.project_admin, project=world.project, url=hook.url)
        settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False  # e.g. the name now resolves inside
        row = _event(django_capture_on_commit_callbacks, world)
    assert row.status == "failed" and "non-public" in row.error
    assert hook.requests == []


@contextmanager
def redirecting() -> Any:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(302)  # urllib would follow it as a GET
            self.send_header("Location", "/inside")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_redirect_is_not_followed(world, django_capture_on_commit_callbacks):
    with redirecting() as (url, hits):
        services.webhook_set(actor=world.project_admin, project=world.project, url=url)
        row = _event(django_capture_on_commit_callbacks, world)
    assert hits == ["/hook"]
    assert row.status == "failed" and row.error.startswith("HTTP 302")


def test_changing_only_the_alert_level_does_not_recheck_the_stored_webhook(settings, world, client):
    """A webhook saved before the guard (or whose name does not resolve right now) must not
    block the alert level from being changed on the same form."""
    from decimal import Decimal

    from django.urls import reverse

    from billing.models import Wallet

    services.webhook_set(actor=world.project_admin, project=world.project, url="http://10.0.0.9/")
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
    wallet = services.wallet_open(project=world.project)
    client.force_login(world.project_admin)
    response = client.post(
        reverse("portal:billing_wallet_alerts", args=[wallet.pk]),
        {
            "alerts-url": "http://10.0.0.9/",
            "alerts-format": "auto",
            "alerts-active": "on",
            "alerts-alert_threshold": "120",
        },
    )
    assert response.status_code == 302
    assert Wallet.objects.get(pk=wallet.pk).alert_threshold == Decimal("120")
    # a new private address is still refused
    response = client.post(
        reverse("portal:billing_wallet_alerts", args=[wallet.pk]),
        {"alerts-url": "http://10.0.0.10/", "alerts-format": "auto", "alerts-active": "on"},
    )
    assert response.status_code == 200
    assert Webhook.objects.get(project=world.project).url == "http://10.0.0.9/"


def test_the_pinned_opener_connects_to_a_checked_address_with_the_hosts_name():
    """The first address refuses (nothing listens on 127.0.0.2): the next one is tried."""
    from billing.notify import pinned_opener

    with receiver() as hook:
        port = hook.port
        request = urllib.request.Request(
            f"http://hooks.invalid:{port}/hook",  # .invalid never resolves
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pinned_opener(["127.0.0.2", "127.0.0.1"]).open(request, timeout=5) as response:
            assert response.status == 200
    assert hook.payloads == [{}]


def test_a_name_that_rebinds_to_an_internal_address_gets_nowhere(
    settings, world, monkeypatch, django_capture_on_commit_callbacks
):
    """DNS rebinding: the name answers a public address to the check and 127.0.0.1 next; the
    post goes to the checked address (unreachable here), never to the receiver inside."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            address = next(answers, "127.0.0.1")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    with receiver() as hook:
        Webhook.objects.create(project=world.project, url=f"http://rebind.test:{hook.port}/hook")
        settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
        settings.TEACHCLOUD_WEBHOOK_TIMEOUT = 1
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        row = _event(django_capture_on_commit_callbacks, world)
    assert hook.requests == []
    assert row.status == "failed"


def test_names_people_chose_cannot_mention_the_whole_group():
    from billing.models import Notification
    from billing.notify import webhook_payload

    row = Notification(
        event="budget_alert",
        subject='<at user_id="all"></at> <!channel> used 90 %',
        body="A & B",
    )
    feishu = webhook_payload(row, "feishu")["content"]["text"]
    assert "<" not in feishu and "\uff1cat" in feishu
    slack = webhook_payload(row, "slack")["text"]
    assert "<" not in slack and "&lt;!channel&gt;" in slack and "A &amp; B" in slack


def test_a_refused_webhook_change_saves_no_alert_level_either(settings, world, client):
    from django.urls import reverse

    from billing.models import Wallet

    services.webhook_set(actor=world.project_admin, project=world.project, url="http://10.0.0.9/")
    settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = False
    wallet = services.wallet_open(project=world.project)
    client.force_login(world.project_admin)
    response = client.post(  # same URL, switched off, and a new level: the URL is re-checked
        reverse("portal:billing_wallet_alerts", args=[wallet.pk]),
        {"alerts-url": "http://10.0.0.9/", "alerts-format": "auto", "alerts-alert_threshold": "99"},
    )
    assert response.status_code == 200
    assert Wallet.objects.get(pk=wallet.pk).alert_threshold is None
    assert Webhook.objects.get(project=world.project).active
