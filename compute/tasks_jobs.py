"""Periodic compute jobs (beat schedules in teachcloud/celery.py), thin wrappers around the
services: carry out billing's ComputeRequests (every minute, and on commit of each billing run),
reconcile with the cloud (every 5 minutes), mirror the catalogue (hourly), course end (run by
billing_run; the task is for an operator who wants it alone)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from compute.backends.base import BackendError

logger = logging.getLogger(__name__)


@shared_task(name="compute.tasks_jobs.compute_requests_process")
def compute_requests_process() -> dict[str, int]:
    from compute.enforcement import compute_requests_process as process

    return process()


@shared_task(name="compute.tasks_jobs.compute_sync")
def compute_sync() -> dict[str, Any]:
    from compute.sync import sync_run

    return sync_run(apply=True).as_dict()


@shared_task(name="compute.tasks_jobs.catalogue_sync")
def catalogue_sync() -> dict[str, Any]:
    from compute.sync import catalogue_sync as mirror

    try:
        return mirror()
    except BackendError as exc:
        logger.warning("catalogue sync: the cloud failed: %s %s", exc, exc.detail)
        return {"error": str(exc)}


@shared_task(name="compute.tasks_jobs.course_end")
def course_end() -> dict[str, int]:
    from compute.course import course_end_run

    return course_end_run(now=timezone.now())
