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
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Notification, Webhook

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
) -> list[Notification]:
    """Record one notification per recipient and per webhook of the tenant; deliver after commit.

    A project event also goes to its domain's webhook (the school hears about its courses)."""
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
        row = Notification(channel=EMAIL, recipient=user, address=user.email or "", **common)
        if not user.email or not user.is_active:
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


def _advisory_lock(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [0x7EAC, zlib.crc32(key.encode()) - 2**31]
        )


def _claim_emails(*, address: str, batch: set[int], now: datetime) -> list[Notification]:
    """Decide, under the address's lock, which emails go out now; mark them sent (or fold them
    into a new digest). Returns the notifications to send. `batch`: the ids just recorded —
    every other pending row of the address was held back by the limit earlier."""
    limit, window = settings.TEACHCLOUD_MAIL_RATE
    with transaction.atomic():
        _advisory_lock(f"mail:{address.lower()}")
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


def _post_webhook(pk: int) -> None:
    """POST one webhook notification as JSON; record the outcome, never raise."""
    now = timezone.now()
    claimed = Notification.objects.filter(pk=pk, channel=WEBHOOK, status=PENDING).update(
        status=SENT, sent_at=now
    )
    if not claimed:  # another worker has it
        return
    row = Notification.objects.select_related("domain", "project").get(pk=pk)
    payload = {
        "event": row.event,
        "subject": row.subject,
        "text": f"{row.subject}\n\n{row.body}",
        "domain": row.domain.code if row.domain else None,
        "project": row.project.code if row.project else None,
        "created_at": row.created_at.isoformat(),
    }
    if not row.address.lower().startswith(("http://", "https://")):
        _fail(pk, "not an http(s) URL")
        return
    request = urllib.request.Request(  # noqa: S310 (http/https only, checked above)
        row.address,
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 (http/https only, checked above)
            request, timeout=settings.TEACHCLOUD_WEBHOOK_TIMEOUT
        ) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        _fail(pk, f"HTTP {exc.code} {exc.reason}")
    except Exception as exc:  # timeouts, refused connections, bad URLs
        _fail(pk, f"{type(exc).__name__}: {exc}")


def _fail(pk: int, error: str) -> None:
    log.warning("webhook notification %s failed: %s", pk, error)
    Notification.objects.filter(pk=pk).update(status=FAILED, error=error[:2000])
