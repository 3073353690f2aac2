"""Celery task of notifications: send the digests whose window allows (beat: every 5 minutes)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="billing.tasks_notify.flush_digests")
def flush_digests() -> int:
    from billing.notify import flush_digests as flush

    return flush()
