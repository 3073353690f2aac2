"""pytest plugin of the shifted-clock CI stage (.ci/timeshift_stage.sh), loaded there with
`-p teachcloud.testing.timeshift`; the normal suite never loads it.

The stage runs the date-sensitive tests with the clock of the whole process tree moved ahead by
libfaketime. Before the first test this plugin checks that the move reached both clocks the
tests read: Python's, and that of the PostgreSQL server the suite started (through runuser, as
the `postgres` user) — a server left on the real clock would make every date the database
stamps (now() in the charging statements, the statements' cut-off) disagree with Python's.
After the last test it checks that the run crossed the instant it was started to cross (an
Asia/Shanghai month or year end), so a run that got faster cannot pass without testing it.

Environment (set by the stage): TEACHCLOUD_TIMESHIFT_START, the epoch the fake clock started
at; TEACHCLOUD_TIMESHIFT_CROSS (optional), an epoch the run must outlast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

START = "TEACHCLOUD_TIMESHIFT_START"
CROSS = "TEACHCLOUD_TIMESHIFT_CROSS"
AGREE_SECONDS = 30  # how far the two clocks may differ (they tick apart only by the query)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _say(config: pytest.Config, line: str) -> None:
    """A line in the run's output (also from inside a fixture, where output is captured)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write("\n")  # after the progress dots
        reporter.write_line(f"[timeshift] {line}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write("\n")
        reporter.write_line(f"[timeshift] {line}")


@pytest.fixture(scope="session", autouse=True)
def _both_clocks_moved(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: object
) -> Iterator[None]:
    from django.db import connection

    start = float(os.environ[START])
    with django_db_blocker.unblock(), connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        database = float(cursor.fetchone()[0])
    python = time.time()
    _say(
        request.config,
        f"fake clock started at {_local(start)} (Asia/Shanghai); now Python {_local(python)}, "
        f"PostgreSQL {_local(database)}",
    )
    problems = []
    if not start - AGREE_SECONDS <= python <= start + 3600:
        problems.append(f"Python's clock reads {_local(python)}, not the fake {_local(start)}")
    if abs(database - python) > AGREE_SECONDS:
        problems.append(
            f"PostgreSQL's clock reads {_local(database)}, Python's {_local(python)}: "
            "libfaketime did not reach the server"
        )
    if problems:
        pytest.exit("shifted clock not in place: " + "; ".join(problems), returncode=1)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cross = os.environ.get(CROSS)
    if not cross or START not in os.environ:
        return
    now = time.time()
    if now < float(cross):
        _say(
            session.config,
            f"FAILED: the run ended at {_local(now)}, before {_local(float(cross))} "
            "(start it closer to that instant: a smaller TIMESHIFT_LEAD_SECONDS)",
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        _say(session.config, f"the run crossed {_local(float(cross))} (ended {_local(now)})")
