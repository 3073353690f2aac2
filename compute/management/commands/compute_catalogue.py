"""`python manage.py compute_catalogue`: mirror the cloud's flavors and images
(compute.sync.catalogue_sync): new ones are offered, changed ones updated, gone ones marked
removed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compute.backends.base import BackendError
from compute.sync import catalogue_sync


class Command(BaseCommand):
    help = "Mirror the cloud's flavors and images into the catalogue."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = catalogue_sync()
        except BackendError as exc:
            raise CommandError(str(exc)) from exc
        for kind, result in report.items():
            for change, names in result.items():
                if names:
                    self.stdout.write(f"{kind} {change}: {', '.join(names)}")
        total = sum(len(names) for result in report.values() for names in result.values())
        if not total:
            self.stdout.write("catalogue in step")
