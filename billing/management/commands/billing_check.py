"""`python manage.py billing_check`: prove the ledger (SPEC Money 2, Charging 2).

Every transaction's entries sum to zero, every cached balance equals its entries, no (wallet,
kind, period) is charged twice, every resource charge equals the sum of its lines. Exits 1 with
a report of every difference found.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from billing.charging import ledger_check


class Command(BaseCommand):
    help = "Check the ledger's invariants; exit non-zero with a report of every problem."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = ledger_check()
        if problems:
            self.stderr.write(_("The ledger check found problems:"))
            for problem in problems:
                self.stderr.write(f"  - {problem}")
            raise CommandError(
                _("%(n)d problem(s) in the ledger.") % {"n": len(problems)}, returncode=1
            )
        self.stdout.write(_("Ledger OK: every transaction balances, every balance matches."))
