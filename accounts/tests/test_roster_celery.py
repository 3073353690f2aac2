"""A large roster import really goes through Celery: Redis broker, a worker, PostgreSQL.

roster_import_create commits the import and its on_commit hook enqueues
accounts.tasks.run_roster_import on a real redis-server; an in-thread worker runs it while the
test watches the RosterImport row from the outside, as the portal's progress bar does.
"""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connections

from accounts.models import ImportStatus, RosterImport, User
from accounts.services import roster_import_create
from teachcloud.celery import app as celery_app
from teachcloud.testing import redis as redis_helper
from teachcloud.testing.factories import make_world
from teachcloud.testing.redis import redis_server
from tenancy.models import AuditEvent, Membership

ROWS = 500
TIMEOUT = 120.0
CONFIG_KEYS = (
    "broker_url",
    "task_always_eager",
    "task_eager_propagates",
    "result_backend",
    "broker_transport_options",
)


def _drop_broker_connections(app) -> None:
    """Forget pooled connections to the previous broker (app.close() would also unregister
    the app, so that shared tasks imported later would never reach it). The app's pool is also
    registered in kombu's global pools, whose producer pool would otherwise outlive it closed
    ("Acquire on closed pool" in every later eager `.delay()`): reset them too."""
    from kombu import pools

    pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def celery_on_redis():
    """The project's Celery app pointed at a private Redis, tasks really sent; restored after."""
    with redis_server() as url:
        saved = {key: celery_app.conf.get(key) for key in CONFIG_KEYS}
        _drop_broker_connections(celery_app)
        celery_app.conf.update(
            broker_url=url,
            task_always_eager=False,
            task_eager_propagates=False,
            result_backend=None,
            broker_transport_options={},
        )
        try:
            yield celery_app
        finally:
            _drop_broker_connections(celery_app)
            celery_app.conf.update(saved)


def _close_worker_db_connections(**kwargs):
    # The worker thread has its own database connections: close them after each task so that
    # nothing holds the test database open when the test ends.
    connections.close_all()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_large_roster_import_runs_in_a_celery_worker(celery_on_redis):
    world = make_world()
    assert settings.TEACHCLOUD_ROSTER_INLINE_ROWS < ROWS
    rows = [
        {"real_name": f"学生{i}", "id_number": f"2027{i:05d}", "email": f"s{i}@example.edu"}
        for i in range(ROWS - 3)
    ]
    rows += [
        {
            "real_name": "Member",
            "id_number": world.member.id_number,
            "email": world.member.email,
        },  # already a member
        {
            "real_name": "Outsider",
            "id_number": world.outsider.id_number,
            "email": world.outsider.email,
        },  # a user of the domain, added
        {"real_name": "Bad", "id_number": "20279999", "email": "not-an-email"},  # error
    ]
    users_before = User.objects.count()

    task_postrun.connect(
        _close_worker_db_connections, weak=False, dispatch_uid="test-roster-celery-close-db"
    )
    try:
        with start_worker(
            celery_on_redis,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            shutdown_timeout=30,
        ):
            roster = roster_import_create(
                actor=world.project_admin,
                rows=rows,
                filename="big-class.xlsx",
                domain=world.domain,
                project=world.project,
            )
            seen_status: set[str] = set()
            seen_progress: list[int] = []
            deadline = time.monotonic() + TIMEOUT
            while True:
                current = RosterImport.objects.get(pk=roster.pk)
                seen_status.add(current.status)
                if current.status in (ImportStatus.DONE, ImportStatus.FAILED):
                    break
                if current.status == ImportStatus.RUNNING:
                    seen_progress.append(current.processed)
                assert time.monotonic() < deadline, (
                    f"import still {current.status} after {TIMEOUT:.0f} s "
                    f"({current.processed}/{current.total})"
                )
                time.sleep(0.05)
    finally:
        task_postrun.disconnect(dispatch_uid="test-roster-celery-close-db")

    roster = RosterImport.objects.get(pk=roster.pk)
    assert roster.status == ImportStatus.DONE, roster.error
    assert (roster.total, roster.processed) == (ROWS, ROWS)
    assert (roster.created, roster.added, roster.existing, roster.errors) == (ROWS - 3, 1, 1, 1)
    assert roster.percent == 100 and roster.finished_at is not None
    assert len(roster.results) == ROWS
    assert roster.results[-1]["result"] == "error" and "email" in roster.results[-1]["detail"]

    assert User.objects.count() == users_before + ROWS - 3
    assert Membership.objects.filter(project=world.project, role="member").count() == ROWS - 1
    assert AuditEvent.objects.filter(action="roster.import", project=world.project).count() == 1

    # The row was watched from outside while the worker ran: progress was visible before the end
    # (the worker writes `processed` every 50 rows).
    assert ImportStatus.RUNNING in seen_status
    assert any(0 < value < ROWS for value in seen_progress), seen_progress
    assert seen_progress == sorted(seen_progress)


@pytest.mark.integration
def test_redis_helper_starts_a_private_server_and_stops_it():
    import redis

    with redis_server(db=3) as url:
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/3")
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.connection_pool.connection_kwargs["db"] == 3
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_missing_redis_skips_locally_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(redis_helper, "redis_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        redis_helper.require_redis_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        redis_helper.require_redis_binary()
