"""Notifications: email (rate-limited, with digests) and per-tenant webhooks (SPEC Notifications).

Every notification is a `Notification` row, one per recipient and one per tenant webhook,
written in the caller's transaction; delivery happens after commit (`transaction.on_commit`), so
a rolled-back change notifies nobody and no network call runs inside a transaction.

Email rate limit: at most N emails (individual or digest) per recipient address per window
(settings.TEACHCLOUD_MAIL_RATE = (5, 600)). A notification that finds no room stays `pending`;
the next delivery to that address that finds room — a new notification or `flush_digests`, run by
`billing.enforcement.enforce` and by Celery beat every 5 minutes — folds every pending one into
one digest email. Nothing is dropped: each email notification ends `sent`, `digested` (pointing
at its digest, itself a sent notification) or `failed` with the error.

Per-address work is serialised by a PostgreSQL advisory lock, so two workers never both use the
last free slot. Rows are claimed (marked sent) in a short transaction, then sent after it.

Webhooks are posted in their receiver's format (`Webhook.format`; `auto` recognises Feishu/Lark,
DingTalk and Slack by host, anything else gets the generic JSON). Feishu and DingTalk answer
HTTP 200 with an error code in the body; such an answer marks the notification `failed` with
their message, like an HTTP error or no answer.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Notification, Webhook
from teachcloud.locks import text_key, xact_lock

log = logging.getLogger(__name__)

EMAIL = Notification.Channel.EMAIL
WEBHOOK = Notification.Channel.WEBHOOK
PENDING = Notification.Status.PENDING
SENT = Notification.Status.SENT
DIGESTED = Notification.Status.DIGESTED
FAILED = Notification.Status.FAILED
DIGEST_EVENT = "digest"
# A webhook still pending this long after it was recorded lost its after-commit delivery (a
# crashed process): flush_digests posts it.
ORPHAN_AGE = timedelta(minutes=1)


def render(template: str, context: dict[str, Any]) -> str:
    """An email body from templates/billing/email/<template>.txt (translatable)."""
    base = settings.TEACHCLOUD_BASE_URL.rstrip("/")
    return render_to_string(f"billing/email/{template}.txt", {"portal_url": base, **context})


def notify(
    *,
    event: str,
    users: Iterable[Any],
    subject: str,
    body: str,
    domain: Any = None,
    project: Any = None,
    now: datetime | None = None,
    to: str | None = None,
) -> list[Notification]:
    """Record one notification per recipient and per webhook of the tenant; deliver after commit.

    A project event also goes to its domain's webhook (the school hears about its courses).
    `to`: send to this address instead of the users' own (a notice to the address an email
    change replaced)."""
    now = now or timezone.now()
    if project is not None and domain is None:
        domain = project.domain
    common = {
        "event": event,
        "domain": domain,
        "project": project,
        "subject": subject[:300],
        "body": body,
        "created_at": now,
    }
    rows: list[Notification] = []
    seen: set[int] = set()
    for user in users:
        if user is None or user.pk in seen or getattr(user, "purged_at", None) is not None:
            continue
        seen.add(user.pk)
        address = to if to is not None else user.email or ""
        row = Notification(channel=EMAIL, recipient=user, address=address, **common)
        if not address or not user.is_active:
            row.status, row.error = FAILED, _("The user has no active email address.")
        rows.append(row)
    scope = Q(pk__in=[])
    if domain is not None:
        scope |= Q(domain=domain)
    if project is not None:
        scope |= Q(project=project)
    for hook in Webhook.objects.filter(scope, active=True).order_by("id"):
        rows.append(Notification(channel=WEBHOOK, address=hook.url, **common))
    created = Notification.objects.bulk_create(rows)
    ids = [row.pk for row in created if row.status == PENDING]
    if ids:
        transaction.on_commit(partial(deliver, ids))
    return created


def deliver(ids: list[int]) -> None:
    """Send the given pending notifications now (called after commit). Never raises."""
    rows = list(Notification.objects.filter(pk__in=ids, status=PENDING).order_by("id"))
    batches: dict[str, list[int]] = {}
    for row in rows:
        if row.channel == EMAIL:
            batches.setdefault(row.address, []).append(row.pk)
    mail = _Mailer()
    for address, batch in batches.items():
        try:
            mail.send_all(_claim_emails(address=address, batch=set(batch), now=timezone.now()))
        except Exception:  # one address must not stop the others
            log.exception("notification delivery to %s failed", address)
    mail.close()
    for row in rows:
        if row.channel == WEBHOOK:
            _post_webhook(row.pk)


def flush_digests(*, now: datetime | None = None) -> int:
    """Send what waits for room: one digest per address whose window allows an email again.

    Returns the number of emails sent (digests and lone held notifications)."""
    now = now or timezone.now()
    addresses = (
        Notification.objects.filter(channel=EMAIL, status=PENDING)
        .values_list("address", flat=True)
        .distinct()
    )
    mail = _Mailer()
    count = 0
    for address in list(addresses):
        try:
            count += mail.send_all(_claim_emails(address=address, batch=set(), now=now))
        except Exception:
            log.exception("digest to %s failed", address)
    mail.close()
    orphans = Notification.objects.filter(
        channel=WEBHOOK, status=PENDING, created_at__lte=now - ORPHAN_AGE
    ).values_list("pk", flat=True)
    for pk in list(orphans):
        _post_webhook(pk)
    return count


# -- Email ------------------------------------------------------------------------------------

MAIL_LOCK = 0x7EAC  # advisory lock namespace: one mail address's rate limit


def _claim_emails(*, address: str, batch: set[int], now: datetime) -> list[Notification]:
    """Decide, under the address's lock, which emails go out now; mark them sent (or fold them
    into a new digest). Returns the notifications to send. `batch`: the ids just recorded —
    every other pending row of the address was held back by the limit earlier."""
    limit, window = settings.TEACHCLOUD_MAIL_RATE
    with transaction.atomic():
        xact_lock(MAIL_LOCK, text_key(f"mail:{address.lower()}"))
        used = Notification.objects.filter(
            channel=EMAIL,
            address=address,
            status__in=[SENT, FAILED],
            sent_at__gt=now - timedelta(seconds=window),
        ).count()
        room = limit - used
        if room <= 0:
            return []
        pending = list(
            Notification.objects.select_for_update(of=("self",))
            .filter(channel=EMAIL, address=address, status=PENDING)
            .select_related("recipient")
            .order_by("id")
        )
        held = [row for row in pending if row.pk not in batch]
        if not pending:
            return []
        if not held or len(pending) == 1:
            chosen = pending[:room]
            Notification.objects.filter(pk__in=[row.pk for row in chosen]).update(
                status=SENT, sent_at=now
            )
            return chosen
        digest = Notification.objects.create(
            event=DIGEST_EVENT,
            channel=EMAIL,
            recipient=pending[-1].recipient,
            address=address,
            subject=_("%(count)d notifications from TeachCloud") % {"count": len(pending)},
            body=render("digest", {"items": pending}),
            status=SENT,
            created_at=now,
            sent_at=now,
        )
        Notification.objects.filter(pk__in=[row.pk for row in pending]).update(
            status=DIGESTED, digest=digest, sent_at=now
        )
        return [digest]


class _Mailer:
    """One SMTP connection per delivery round, opened on first use."""

    def __init__(self) -> None:
        self.connection: Any = None

    def send_all(self, rows: list[Notification]) -> int:
        sent = 0
        for row in rows:
            try:
                if self.connection is None:
                    self.connection = get_connection()
                EmailMessage(
                    subject=settings.EMAIL_SUBJECT_PREFIX + row.subject,
                    body=row.body,
                    to=[row.address],
                    connection=self.connection,
                ).send()
                sent += 1
            except Exception as exc:  # SMTP refused, connection lost, …: record it
                log.warning("email %s to %s failed: %s", row.pk, row.address, exc)
                Notification.objects.filter(pk=row.pk).update(
                    status=FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
                )
                self.close()
        return sent

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # closing a broken connection
                log.debug("closing the mail connection failed", exc_info=True)
            self.connection = None


# -- Webhooks ---------------------------------------------------------------------------------

FORMAT = Webhook.Format
TEST_EVENT = "webhook_test"
# Hosts whose webhooks want their own JSON (Webhook.Format.AUTO recognises them).
FORMAT_HOSTS = {
    "open.feishu.cn": FORMAT.FEISHU,
    "open.larksuite.com": FORMAT.FEISHU,
    "oapi.dingtalk.com": FORMAT.DINGTALK,
    "hooks.slack.com": FORMAT.SLACK,
}
ANSWER_LIMIT = 64 * 1024  # bytes of an answer read (Feishu/DingTalk answer a short JSON)
SLACK_ERROR = re.compile(r"[a-z_]{1,60}")


def webhook_format(url: str, chosen: str = FORMAT.AUTO) -> str:
    """The format posted to `url`: the chosen one, or recognised from the host (else generic)."""
    if chosen and chosen != FORMAT.AUTO:
        return chosen
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return FORMAT_HOSTS.get(host, FORMAT.GENERIC)


def webhook_payload(row: Notification, fmt: str) -> dict[str, Any]:
    """The JSON body for one notification in the receiver's format."""
    text = f"{row.subject}\n\n{row.body}"
    # The text carries names people chose themselves: it must not become markup that mentions
    # the whole group (Feishu `<at user_id="all">`, Slack `<!channel>`). DingTalk mentions only
    # through the payload's `at` field, which is never set.
    if fmt == FORMAT.FEISHU:  # Feishu/Lark custom bot
        return {"msg_type": "text", "content": {"text": text.replace("<", "\uff1c")}}
    if fmt == FORMAT.DINGTALK:  # DingTalk custom robot
        return {"msgtype": "text", "text": {"content": text}}
    if fmt == FORMAT.SLACK:  # Slack incoming webhook: &, < and > are escaped (Slack's rule)
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return {"text": escaped}
    return {
        "event": row.event,
        "subject": row.subject,
        "text": text,
        "domain": row.domain.code if row.domain else None,
        "project": row.project.code if row.project else None,
        "created_at": row.created_at.isoformat(),
    }


def answer_error(fmt: str, raw: bytes) -> str | None:
    """The error a receiver reported in its answer's body, or None when it took the message.

    Feishu and DingTalk answer HTTP 200 with the outcome in the JSON: Feishu `code` (older bots:
    `StatusCode`) and DingTalk `errcode`, 0 when accepted. Other receivers: the status decides."""
    if fmt not in (FORMAT.FEISHU, FORMAT.DINGTALK):
        return None
    name = "Feishu" if fmt == FORMAT.FEISHU else "DingTalk"
    try:
        body = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"{name} answered with something other than JSON"
    if fmt == FORMAT.FEISHU:
        code = body.get("code", body.get("StatusCode"))
        message = body.get("msg", body.get("StatusMessage"))
    else:
        code, message = body.get("errcode"), body.get("errmsg")
    if code is None:
        return f"{name} answered without a result code"
    if code != 0:
        return f"{name} refused the message (code {code}): {str(message or '')[:300]}".rstrip(": ")
    return None


def _error_word(raw: bytes) -> str | None:
    """Slack's error answers are one word (`no_service`, `invalid_token`). Only such a word is
    kept: the address is the tenant's choice, so an answer's text is not echoed back."""
    text = raw[:64].decode("ascii", "replace").strip()
    return text if SLACK_ERROR.fullmatch(text) else None


def _format_of(row: Notification) -> str:
    """The format of the webhook the row was recorded for (matched by tenant and URL)."""
    scope = Q(pk__in=[])
    if row.project_id is not None:
        scope |= Q(project_id=row.project_id)
    if row.domain_id is not None:
        scope |= Q(domain_id=row.domain_id)
    chosen = (
        Webhook.objects.filter(scope, url=row.address)
        .order_by("project_id", "id")  # a project's own hook first (NULLS LAST)
        .values_list("format", flat=True)
        .first()
    )
    return webhook_format(row.address, chosen or FORMAT.AUTO)


def send_test(webhook: Webhook) -> Notification:
    """Record a test notification for `webhook` and post it now, through the same path as every
    webhook notification; returns the row with its outcome (`sent` or `failed` with the error).

    Call it outside a transaction: it waits for the receiver (at most the webhook timeout)."""
    tenant = webhook.project if webhook.project_id else webhook.domain
    row = Notification.objects.create(
        event=TEST_EVENT,
        channel=WEBHOOK,
        address=webhook.url,
        domain=webhook.domain if webhook.domain_id else webhook.project.domain,
        project=webhook.project,
        subject=_("TeachCloud test message"),
        body=_(
            "This is a test message from TeachCloud for %(tenant)s. If you can read it, "
            "the webhook works."
        )
        % {"tenant": tenant},
    )
    _post_webhook(row.pk)
    row.refresh_from_db()
    return row


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is its tail
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use, never public
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (RFC 4291 2.5.5.1)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and a translator or tunnel would reach:
    IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d),
    6to4 (2002:aabb:ccdd::), Teredo (the client's address)."""
    tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN or address in IPV4_COMPATIBLE:
        return tail
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A public unicast internet address; for an IPv6 address that embeds an IPv4 one, the
    IPv4 address must be public too (NAT64, 6to4 or IPv4-compatible forms of 127.0.0.1 or
    169.254.169.254 reach exactly those)."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return True


def public_address(url: str) -> tuple[list[str], str | None]:
    """(the addresses to connect to, None), or ([], why not): the URL's host must resolve only
    to public addresses (not loopback, private, link-local, multicast, reserved, unspecified) —
    tenant admins type these URLs, and the server must not become their probe into its own
    network. The post then connects to the address checked here, not to a second lookup (a
    name that answers a public address first and an internal one next gets nowhere)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return [], "no host"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:
        return [], f"cannot resolve {host}: {exc}"
    addresses = [info[4][0].split("%", 1)[0] for info in infos]
    for text in addresses:
        address = ipaddress.ip_address(text)
        if not is_public(address):
            return [], f"{host} resolves to a non-public address ({address})"
    if not addresses:
        return [], f"cannot resolve {host}"
    return list(dict.fromkeys(addresses)), None


def address_problem(url: str) -> str | None:
    """Why a webhook URL may not be posted to, or None (always None with
    TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE, for the demo and the tests)."""
    if settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE:
        return None
    return public_address(url)[1]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTP error it is: following it could lead anywhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _connect_pinned(addresses: list[str], port: int, timeout: Any, source: Any) -> socket.socket:
    """A connection to the first of the checked addresses that answers (as urllib tries every
    address a name resolves to)."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, source)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to fixed addresses (the ones checked), whatever the name resolves to
    now; the Host header still names the host."""

    def __init__(self, *args: Any, addresses: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = addresses

    def connect(self) -> None:
        self.sock = _connect_pinned(self.pinned, self.port, self.timeout, self.source_address)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """The same for HTTPS: TLS to the fixed address, certificate checked against the host."""

    def __init__(self, *args: Any, addresses: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = addresses

    def connect(self) -> None:
        sock = _connect_pinned(self.pinned, self.port, self.timeout, self.source_address)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def pinned_opener(addresses: list[str]) -> urllib.request.OpenerDirector:
    """An opener whose every connection goes to one of `addresses`, without proxies or
    redirects."""

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(partial(_PinnedHTTP, addresses=addresses), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(
                partial(_PinnedHTTPS, addresses=addresses), req, context=self._context
            )

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects, HTTP, HTTPS)


_opener = urllib.request.build_opener(_NoRedirects)


def _post_webhook(pk: int) -> None:
    """POST one webhook notification as JSON; record the outcome, never raise.

    A failure — no answer, an HTTP error, or an error in the body of Feishu's or DingTalk's
    HTTP 200 answer — marks the row `failed` with the reason."""
    now = timezone.now()
    claimed = Notification.objects.filter(pk=pk, channel=WEBHOOK, status=PENDING).update(
        status=SENT, sent_at=now
    )
    if not claimed:  # another worker has it
        return
    row = Notification.objects.select_related("domain", "project").get(pk=pk)
    if not row.address.lower().startswith(("http://", "https://")):
        _fail(pk, "not an http(s) URL")
        return
    opener = _opener
    if not settings.TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE:
        addresses, problem = public_address(row.address)
        if problem:
            _fail(pk, problem)
            return
        opener = pinned_opener(addresses)
    fmt = _format_of(row)
    request = urllib.request.Request(  # noqa: S310 (http/https only, checked above)
        row.address,
        data=json.dumps(webhook_payload(row, fmt), ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    try:
        with opener.open(request, timeout=settings.TEACHCLOUD_WEBHOOK_TIMEOUT) as response:
            raw = response.read(ANSWER_LIMIT)
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read(ANSWER_LIMIT)
        except Exception:  # the error answer's body is a courtesy
            raw = b""
        detail = answer_error(fmt, raw) if raw else None
        if fmt == FORMAT.SLACK:
            detail = _error_word(raw)
        error = f"HTTP {exc.code} {exc.reason}"
        _fail(pk, f"{error}: {detail}" if detail else error)
        return
    except Exception as exc:  # timeouts, refused connections, bad URLs
        _fail(pk, f"{type(exc).__name__}: {exc}")
        return
    error = answer_error(fmt, raw)
    if error:
        _fail(pk, error)


def _fail(pk: int, error: str) -> None:
    log.warning("webhook notification %s failed: %s", pk, error)
    Notification.objects.filter(pk=pk).update(status=FAILED, error=error[:2000])
