"""A lock or an unlock asks a worker to act on the servers at once (after commit), instead of
waiting for the next `compute-requests` beat tick; several requests in one transaction ask once."""

from __future__ import annotations

import pytest
from django.db import transaction

from billing.enforcement import _compute_request, tenant_lock, tenant_unlock
from billing.models import ComputeRequest
from billing.services import wallet_open, wallet_recharge
from teachcloud.celery import app as celery_app

TASK = "compute.tasks_jobs.compute_requests_process"
# Real commits: on_commit hooks run when the service's transaction commits, as in production.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The test settings run tasks eagerly; send_task (what the kick uses) always goes to the
    # broker, which is what these tests read.
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


def _queued_tasks() -> list[str]:
    """Drain the (in-memory) broker's default queue: the names of the tasks sent to it."""
    names = []
    with celery_app.connection_for_read() as connection:
        queue = connection.SimpleQueue(celery_app.conf.task_default_queue)
        try:
            while True:
                try:
                    message = queue.get(timeout=0.2)
                except queue.Empty:
                    break
                names.append(message.headers["task"])
                message.ack()
        finally:
            queue.close()
    return names


@pytest.fixture
def now_mode(settings):
    settings.TEACHCLOUD_COMPUTE_REQUESTS_NOW = True
    _queued_tasks()


def test_a_lock_and_an_unlock_each_queue_the_compute_task_after_commit(world, now_mode):
    wallet = wallet_open(project=world.project)
    wallet_open(domain=world.domain)
    wallet_recharge(actor=world.domain_admin, wallet=wallet, amount="100", method="bank")
    tenant_lock(actor=world.domain_admin, project=world.project, reason="abuse")
    assert _queued_tasks() == [TASK]

    tenant_unlock(actor=world.domain_admin, project=world.project, restart_servers=True)
    assert _queued_tasks() == [TASK]
    assert ComputeRequest.objects.filter(project=world.project).count() == 2


def test_many_requests_in_one_transaction_ask_once(world, now_mode):
    with transaction.atomic():
        _compute_request(action="stop", domain=world.domain, project=world.project, reason="1")
        _compute_request(action="stop", domain=world.domain, project=world.project, reason="2")
        assert _queued_tasks() == []  # nothing before the commit
    assert ComputeRequest.objects.count() == 2
    assert _queued_tasks() == [TASK]


def test_nothing_is_queued_when_switched_off(world, settings):
    settings.TEACHCLOUD_COMPUTE_REQUESTS_NOW = False
    _queued_tasks()
    wallet_open(domain=world.domain)
    wallet_open(project=world.project)
    tenant_lock(actor=world.domain_admin, project=world.project, reason="abuse")
    assert ComputeRequest.objects.count() == 1
    assert _queued_tasks() == []
