"""`python manage.py billing_run [--until ISO-8601]`: run everything due up to that instant.

Charges every complete hour not yet charged, rates members, posts the management fees due and
runs enforcement (billing.charging.billing_run). Safe to run twice or concurrently.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.charging import SHANGHAI, billing_run


def parse_instant(value: str) -> datetime:
    """An ISO-8601 instant; without an offset it is Asia/Shanghai time."""
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise CommandError(
            _("“%(v)s” is not an ISO-8601 instant, e.g. 2026-12-01T00:30+08:00.") % {"v": value}
        ) from exc
    if timezone.is_naive(instant):
        instant = instant.replace(tzinfo=SHANGHAI)
    return instant


class Command(BaseCommand):
    help = "Run resource charges, member rating, management fees and enforcement due up to --until."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--until",
            help="ISO-8601 instant (default: now); Asia/Shanghai when it has no offset.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        until = parse_instant(options["until"]) if options.get("until") else now
        if until > now:
            raise CommandError(
                _("%(until)s is in the future: nothing can be charged before it has happened.")
                % {"until": until.isoformat()}
            )
        summary = billing_run(until=until)
        self.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
