"""Celery tasks of billing: thin wrappers around billing.charging.billing_run.

Beat (teachcloud/celery.py) calls the same task hourly at minute 5, at 00:05 on the 1st of each
month (management fees) and daily at 03:00 (alerts, purges); every call runs whatever is due.
"""

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from billing.charging import billing_run

logger = logging.getLogger(__name__)


@shared_task(name="billing.tasks.run_billing")
def run_billing() -> dict[str, Any]:
    summary = billing_run(until=timezone.now())
    logger.info("billing run done: %s", summary)
    return summary
