"""Input fields shared by the API's serializers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

# Instants and dates the API accepts: wide enough for any real period, narrow enough that every
# conversion (time zones, the database's timestamptz) stays inside the calendar.
FIRST_YEAR, LAST_YEAR = 1900, 9998


class InstantField(serializers.DateTimeField):
    """An ISO-8601 instant between the years 1900 and 9998 (else 400, never an overflow)."""

    default_error_messages = {
        "out_of_range": _("Give an instant between the years {first} and {last}."),
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        # Before the time zone is applied: 0001-01-01 in Asia/Shanghai overflows in UTC.
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            self.fail("out_of_range", first=FIRST_YEAR, last=LAST_YEAR)
        return super().enforce_timezone(value)


class LocalDateField(serializers.DateField):
    """A date (YYYY-MM-DD) between the years 1900 and 9998."""

    default_error_messages = {
        "out_of_range": _("Give a date between the years {first} and {last}."),
    }

    def to_internal_value(self, value: Any) -> date:
        parsed = super().to_internal_value(value)
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            self.fail("out_of_range", first=FIRST_YEAR, last=LAST_YEAR)
        return parsed
