"""`python manage.py statements_issue [--month YYYY-MM]`: issue the monthly statements now.

The same code as the monthly beat task (reports.tasks.issue_statements); idempotent.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reports.statements import parse_month, statements_issue
from teachcloud.errors import ServiceError


class Command(BaseCommand):
    help = "Issue the monthly statements of every wallet (default: last month, Asia/Shanghai)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--month", help="YYYY-MM (default: the previous month)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = parse_month(options["month"]) if options["month"] else None
            issued = statements_issue(month=month)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"statements issued: {issued}")
