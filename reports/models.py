"""Monthly statements of wallets (SPEC Reports, Money 1): issued once, never changed.

A statement is a snapshot of the ledger for one wallet and one Asia/Shanghai calendar month. Its
lines keep their own copy of names and unit prices and say which ledger rows they sum
(`transaction_ids`), so every figure can be traced back. See reports/statements.py for the rules.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.models import MONEY, RATE

QUANTITY = {"max_digits": 20, "decimal_places": 4}


class Statement(models.Model):
    """One wallet's statement for one month (`month` = the 1st of the month, Asia/Shanghai)."""

    wallet = models.ForeignKey(
        "billing.Wallet",
        on_delete=models.PROTECT,
        related_name="statements",
        verbose_name=_("wallet"),
    )
    month = models.DateField(_("month"))
    # The Asia/Shanghai month as instants: [period_start, period_end).
    period_start = models.DateTimeField(_("period start"))
    period_end = models.DateTimeField(_("period end"))
    # Ledger rows posted after this instant belong to a later statement.
    cutoff = models.DateTimeField(_("ledger cut-off"))
    wallet_name = models.CharField(_("wallet"), max_length=300)
    tenant_name = models.CharField(_("tenant"), max_length=200, blank=True)
    # Exact (4 places) figures; the statement shows them rounded to cents (q2) next to the sum.
    opening_balance = models.DecimalField(_("opening balance"), **MONEY)
    closing_balance = models.DecimalField(_("closing balance"), **MONEY)
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)

    class Meta:
        ordering = ["-month", "wallet_id"]
        verbose_name = _("statement")
        verbose_name_plural = _("statements")
        constraints = [
            models.UniqueConstraint(fields=["wallet", "month"], name="statement_once_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.wallet_name} {self.month:%Y-%m}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("An issued statement is never changed.")
        super().save(*args, **kwargs)


class LineKind(models.TextChoices):
    VCPU = "vcpu", _("vCPU")
    RAM = "ram", _("RAM")
    DISK = "disk", _("Disk")
    CHARGE_ROUNDING = "charge_rounding", _("Rounding of hourly charges")
    CHARGES_RECEIVED = "charges_received", _("Resource charges received")
    FEE = "fee", _("Management fees")
    FEES_RECEIVED = "fees_received", _("Management fees received")
    RECHARGE = "recharge", _("Recharges")
    ADJUSTMENT = "adjustment", _("Adjustments")


class StatementLine(models.Model):
    """One figure of a statement: a resource kind at one unit price, or a sum of one kind of
    ledger movement. `amount` is exact (4 places), signed as it moved the wallet."""

    statement = models.ForeignKey(
        Statement, on_delete=models.CASCADE, related_name="lines", verbose_name=_("statement")
    )
    position = models.PositiveIntegerField(_("position"))
    kind = models.CharField(_("kind"), max_length=20, choices=LineKind.choices)
    name = models.CharField(_("name"), max_length=200)
    quantity = models.DecimalField(_("quantity"), null=True, blank=True, **QUANTITY)
    unit = models.CharField(_("unit"), max_length=40, blank=True)
    unit_price = models.DecimalField(_("unit price"), null=True, blank=True, **RATE)
    amount = models.DecimalField(_("amount"), **MONEY)
    # The ledger rows this line sums (billing Transaction ids) and, for resources, the price
    # version the unit price was copied from.
    transaction_ids = models.JSONField(_("transactions"), default=list)
    price_version_id = models.BigIntegerField(_("price version"), null=True, blank=True)

    class Meta:
        ordering = ["statement", "position"]
        verbose_name = _("statement line")
        verbose_name_plural = _("statement lines")
        constraints = [
            models.UniqueConstraint(fields=["statement", "position"], name="statement_line_pos")
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.amount}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("An issued statement is never changed.")
        super().save(*args, **kwargs)
