import logging

from celery import shared_task

from tenancy.services import grants_expire

logger = logging.getLogger(__name__)


@shared_task(name="tenancy.tasks.expire_grants")
def expire_grants() -> int:
    count = grants_expire()
    if count:
        logger.info("ended %d expired assistant appointments", count)
    return count
