"""`python manage.py compute_sync [--apply] [--orphans report|adopt|delete]`.

Reconciles the portal's servers with the cloud (compute.sync.sync_run). Without --apply it is a
dry run: it prints what would change and writes nothing. Safe while beat's sync runs: the second
of two syncs at once says so and does nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compute.sync import ORPHAN_POLICIES, sync_run


class Command(BaseCommand):
    help = "Reconcile servers with the cloud (dry run unless --apply)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--apply", action="store_true", help="Write the changes (default: only print them)."
        )
        parser.add_argument(
            "--orphans",
            choices=ORPHAN_POLICIES,
            help="What to do with servers in our cloud projects the portal does not know "
            "(default: settings.TEACHCLOUD_COMPUTE_ORPHANS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_run(apply=options["apply"], orphans=options.get("orphans"))
        for line in report.lines():
            self.stdout.write(line)
        if report.busy:
            raise CommandError("busy")
        if report.error:
            raise CommandError(report.error)
