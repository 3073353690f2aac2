"""Monthly statements of wallets (SPEC Reports, Money 1): issued once, never changed.

A statement is a snapshot of the ledger for one wallet and one Asia/Shanghai calendar month. Its
lines keep their own copy of names and unit prices and say which ledger rows they sum
(`transaction_ids`), so every figure can be traced back. See reports/statements.py for the rules.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
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


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ExportJob(models.Model):
    """A report exported in the background (too many rows to stream at once): the file is
    written under MEDIA_ROOT/exports/ and kept for a week (reports.jobs)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="export_jobs",
        verbose_name=_("owner"),
    )
    report = models.CharField(_("report"), max_length=60)
    filters = models.JSONField(_("filters"), default=dict, blank=True)  # Filters.as_query()
    format = models.CharField(_("format"), max_length=4)
    language = models.CharField(_("language"), max_length=10, blank=True)
    status = models.CharField(
        _("status"), max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    rows_total = models.PositiveBigIntegerField(_("rows"), default=0)
    rows_done = models.PositiveBigIntegerField(_("rows written"), default=0)
    file = models.CharField(_("file"), max_length=300, blank=True)  # relative to MEDIA_ROOT
    filename = models.CharField(_("download name"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    last_seen_at = models.DateTimeField(_("owner last watched at"), null=True, blank=True)
    emailed_at = models.DateTimeField(_("emailed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("export job")
        verbose_name_plural = _("export jobs")
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="exportjob_owner_recent"),
            models.Index(fields=["created_at"], name="exportjob_created"),
        ]

    def __str__(self) -> str:
        return f"{self.report}.{self.format} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (ExportStatus.DONE, ExportStatus.FAILED)

    @property
    def percent(self) -> int:
        if self.status == ExportStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(99, self.rows_done * 100 // self.rows_total)
