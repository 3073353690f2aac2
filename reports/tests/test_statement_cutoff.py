"""A statement's cut-off stays before any transaction still open on the database, so rows that
transaction writes (visible only after it commits) land on the next statement, never on none."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from billing.services import wallet_open
from reports.statements import OPEN_TRANSACTION_MARGIN, previous_month, statement_issue
from teachcloud.testing.factories import make_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_session():
    """A second database session (like a billing run in another worker)."""
    params = connection.get_connection_params()
    session = psycopg2.connect(**params)
    yield session
    session.rollback()
    session.close()


def test_cutoff_is_the_issue_time_when_nothing_else_is_open(other_session):
    world = make_world()
    now = timezone.now()
    statement = statement_issue(
        wallet=wallet_open(domain=world.domain), month=previous_month(now), now=now, force=True
    )
    assert statement.cutoff == now


def test_cutoff_stays_before_a_transaction_still_open(other_session):
    world = make_world()
    with other_session.cursor() as cursor:  # opens a transaction (psycopg2 is not autocommit)
        cursor.execute("SELECT now()")
        started = cursor.fetchone()[0]
    now = timezone.now() + timedelta(seconds=30)
    statement = statement_issue(
        wallet=wallet_open(domain=world.domain), month=previous_month(now), now=now, force=True
    )
    assert statement.cutoff == started - OPEN_TRANSACTION_MARGIN
    assert statement.issued_at == now


def test_a_long_open_transaction_is_logged_with_its_session(other_session, caplog):
    world = make_world()
    with other_session.cursor() as cursor:
        cursor.execute("SELECT now(), pg_backend_pid()")
        started, pid = cursor.fetchone()
    now = started + timedelta(minutes=3)
    with caplog.at_level("INFO", logger="reports.statements"):
        statement = statement_issue(
            wallet=wallet_open(domain=world.domain), month=previous_month(now), now=now, force=True
        )
    assert statement.cutoff == started - OPEN_TRANSACTION_MARGIN
    [record] = [r for r in caplog.records if "held back" in r.getMessage()]
    assert record.levelname == "WARNING" and f"session {pid} " in record.getMessage()
