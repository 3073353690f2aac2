"""Calendar arithmetic for tests, in Asia/Shanghai, written here and not borrowed from the code
under test (billing.charging, reports.statements), so a test checks that code instead of
repeating it.

The rule for tests (README "Tests"): a test that depends on the date controls it. Either its
dates are derived from the real "now" (`month_start_after(timezone.now())`: the first month
start after now, never a fixed date that now can overtake), or Python's clock is pinned with
time-machine around fixed dates. time-machine moves Python's clock only; PostgreSQL's now()
(the `created_at` of the charging statements, the xact_start the statements' cut-off looks at)
stays real, so where the code under test mixes the two, dates are derived from the real now.
`pinned()` stops Python's clock at the real now, so that several rows built one after another
cannot land on both sides of a Shanghai midnight or month end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from zoneinfo import ZoneInfo

import time_machine
from django.utils import timezone

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_today() -> date:
    """Today's Asia/Shanghai date (what the product calls a day), never the host's date."""
    return timezone.now().astimezone(SHANGHAI).date()


def month_of(instant: datetime) -> date:
    """The 1st of the Asia/Shanghai month `instant` falls in."""
    local = instant.astimezone(SHANGHAI)
    return date(local.year, local.month, 1)


def month_start(day: date) -> datetime:
    """00:00 Asia/Shanghai on the 1st of `day`'s month."""
    return datetime(day.year, day.month, 1, tzinfo=SHANGHAI)


def next_month(day: date) -> date:
    """The 1st of the month after `day`'s month."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def previous_month(day: date) -> date:
    """The 1st of the month before `day`'s month."""
    return date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


def month_start_after(instant: datetime) -> datetime:
    """The first 00:00 on a 1st (Asia/Shanghai) strictly after `instant`."""
    return month_start(next_month(month_of(instant)))


def months_after(instant: datetime, count: int) -> list[datetime]:
    """The `count` month starts (00:00 on the 1st, Asia/Shanghai) following `instant`."""
    starts = [month_start_after(instant)]
    while len(starts) < count:
        starts.append(month_start_after(starts[-1]))
    return starts


@contextmanager
def pinned(instant: datetime | None = None) -> Iterator[datetime]:
    """Python's clock stopped at `instant` (default: the real now) inside the block."""
    instant = instant or timezone.now()
    with time_machine.travel(instant, tick=False):
        yield instant
