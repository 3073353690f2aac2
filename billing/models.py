"""Allocations, prices, wallets and the double-entry ledger (SPEC Allocations, Prices, Money).

Money is Decimal with 4 decimal places everywhere (MONEY). Ledger rows (Transaction, Entry,
ChargeLine) are append-only: a correction is a new reversing transaction. Allocations are
interval records: a change ends the open record and opens a new one.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.reasons import reason_text

MONEY = {"max_digits": 18, "decimal_places": 4}
RATE = {"max_digits": 14, "decimal_places": 4}
ZERO = Decimal("0.0000")


class PlatformCapacity(models.Model):
    """What the platform can sell, per resource, times an overcommit ratio (one row, pk=1)."""

    vcpus = models.PositiveIntegerField(_("vCPUs"), default=0)
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"), default=0)
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"), default=0)
    overcommit = models.DecimalField(
        _("overcommit ratio"), max_digits=6, decimal_places=2, default=Decimal("1.00")
    )
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("platform capacity")
        verbose_name_plural = _("platform capacity")

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU / {self.ram_gib} GiB / {self.disk_gib} GiB x {self.overcommit}"


class Level(models.TextChoices):
    DOMAIN = "domain", _("Platform → domain")
    PROJECT = "project", _("Domain → project")
    MEMBER = "member", _("Project → member")


class Allocation(models.Model):
    """Resources granted from a parent to a child for [start, end). `end` is null while current.

    Every level carries its domain (and member/project levels their project) so scoped queries
    are one filter. A member allocation is that member's limit, with an optional budget.
    """

    level = models.CharField(_("level"), max_length=8, choices=Level.choices)
    domain = models.ForeignKey(
        "tenancy.Domain",
        on_delete=models.PROTECT,
        related_name="allocations",
        verbose_name=_("domain"),
    )
    project = models.ForeignKey(
        "tenancy.Project",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="allocations",
        verbose_name=_("project"),
    )
    membership = models.ForeignKey(
        "tenancy.Membership",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="allocations",
        verbose_name=_("membership"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="allocations",
        verbose_name=_("member"),
    )
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))
    budget = models.DecimalField(_("budget"), null=True, blank=True, **MONEY)
    start = models.DateTimeField(_("start"), db_index=True)
    end = models.DateTimeField(_("end"), null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-start", "-id"]
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")
        constraints = [
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gt=models.F("start")),
                name="allocation_end_after_start",
            ),
            models.CheckConstraint(
                condition=(
                    Q(level="domain", project__isnull=True, user__isnull=True)
                    | Q(level="project", project__isnull=False, user__isnull=True)
                    | Q(level="member", project__isnull=False, user__isnull=False)
                ),
                name="allocation_level_targets",
            ),
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(level="member", budget__gte=0),
                name="allocation_budget_members_only",
            ),
            models.UniqueConstraint(
                fields=["domain"],
                condition=Q(level="domain", end__isnull=True),
                name="allocation_one_open_per_domain",
            ),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(level="project", end__isnull=True),
                name="allocation_one_open_per_project",
            ),
            models.UniqueConstraint(
                fields=["project", "user"],
                condition=Q(level="member", end__isnull=True),
                name="allocation_one_open_per_member",
            ),
        ]
        indexes = [models.Index(fields=["level", "end", "start"], name="allocation_level_time")]

    def __str__(self) -> str:
        quantities = f"{self.vcpus}/{self.ram_gib}/{self.disk_gib}"
        return f"{self.level} {quantities} from {self.start:%Y-%m-%d %H:%M}"


class ProjectDefaults(models.Model):
    """The limit and budget each new member of a project gets (changeable per member)."""

    project = models.OneToOneField(
        "tenancy.Project",
        on_delete=models.CASCADE,
        related_name="member_defaults",
        verbose_name=_("project"),
    )
    vcpus = models.PositiveIntegerField(_("vCPUs"), default=2)
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"), default=4)
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"), default=40)
    budget = models.DecimalField(_("budget"), null=True, blank=True, **MONEY)

    class Meta:
        verbose_name = _("default member limit")
        verbose_name_plural = _("default member limits")

    def __str__(self) -> str:
        return f"{self.project}: {self.vcpus}/{self.ram_gib}/{self.disk_gib}"


class RequestStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    APPROVED = "approved", _("Approved")
    DENIED = "denied", _("Denied")


class AllocationRequest(models.Model):
    """A project admin asks the domain for more, or a member asks the project (Allocations 6)."""

    level = models.CharField(_("level"), max_length=8, choices=Level.choices)
    domain = models.ForeignKey("tenancy.Domain", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("tenancy.Project", on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(
        "tenancy.Membership", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))
    budget = models.DecimalField(_("budget"), null=True, blank=True, **MONEY)
    justification = models.TextField(_("justification"))
    status = models.CharField(
        _("status"), max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("allocation request")
        verbose_name_plural = _("allocation requests")

    def __str__(self) -> str:
        return f"{self.level} request {self.vcpus}/{self.ram_gib}/{self.disk_gib} ({self.status})"


class PriceVersion(models.Model):
    """One version of the unified price plan, in force from `effective_from` to the next one."""

    effective_from = models.DateTimeField(_("effective from"), unique=True)
    vcpu_hour = models.DecimalField(_("per vCPU-hour"), **RATE)
    ram_gib_hour = models.DecimalField(_("per GiB-RAM-hour"), **RATE)
    disk_gib_hour = models.DecimalField(_("per GiB-disk-hour"), **RATE)
    domain_fee = models.DecimalField(_("domain fee per month"), **MONEY)
    project_fee = models.DecimalField(_("project fee per month"), **MONEY)
    user_fee = models.DecimalField(_("user fee per month"), **MONEY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-effective_from"]
        verbose_name = _("price plan version")
        verbose_name_plural = _("price plan versions")
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    vcpu_hour__gte=0,
                    ram_gib_hour__gte=0,
                    disk_gib_hour__gte=0,
                    domain_fee__gte=0,
                    project_fee__gte=0,
                    user_fee__gte=0,
                ),
                name="price_non_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{_('Price plan')} {self.effective_from:%Y-%m-%d %H:%M}"


class WalletKind(models.TextChoices):
    PLATFORM = "platform", _("Platform")
    DOMAIN = "domain", _("Domain")
    PROJECT = "project", _("Project")


class Wallet(models.Model):
    """Prepaid balance of the platform, a domain or a project. `balance` caches the sum of the
    wallet's entries (proved by `billing_check`)."""

    kind = models.CharField(_("kind"), max_length=8, choices=WalletKind.choices)
    domain = models.OneToOneField(
        "tenancy.Domain",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="wallet",
        verbose_name=_("domain"),
    )
    project = models.OneToOneField(
        "tenancy.Project",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="wallet",
        verbose_name=_("project"),
    )
    balance = models.DecimalField(_("balance"), default=ZERO, **MONEY)
    credit_limit = models.DecimalField(_("credit limit"), default=ZERO, **MONEY)
    credit_ceiling = models.DecimalField(_("credit ceiling"), default=ZERO, **MONEY)
    # Low-balance alert below this `available`; null: 7 days of the current hourly charges.
    alert_threshold = models.DecimalField(_("alert threshold"), null=True, blank=True, **MONEY)
    low_balance_alerted = models.BooleanField(_("low-balance alert sent"), default=False)
    billing_admin = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="billed_wallets",
        verbose_name=_("billing admin"),
    )
    locked_at = models.DateTimeField(_("locked at"), null=True, blank=True)
    lock_reason = models.CharField(_("lock reason"), max_length=200, blank=True)
    lock_reason_code = models.CharField(_("lock reason code"), max_length=32, blank=True)
    lock_reason_args = models.JSONField(_("lock reason arguments"), default=dict, blank=True)
    # Start of the unbroken run of unpaid management fees (SPEC purge after 18 months).
    unpaid_since = models.DateTimeField(_("unpaid since"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["kind", "id"]
        verbose_name = _("wallet")
        verbose_name_plural = _("wallets")
        constraints = [
            models.UniqueConstraint(
                fields=["kind"], condition=Q(kind="platform"), name="wallet_one_platform"
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="platform", domain__isnull=True, project__isnull=True)
                    | Q(kind="domain", domain__isnull=False, project__isnull=True)
                    | Q(kind="project", domain__isnull=True, project__isnull=False)
                ),
                name="wallet_kind_owner",
            ),
            models.CheckConstraint(
                condition=Q(credit_limit__gte=0, credit_ceiling__gte=0),
                name="wallet_credit_positive",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == WalletKind.PLATFORM:
            return str(_("Platform wallet"))
        owner = self.domain if self.kind == WalletKind.DOMAIN else self.project
        return f"{_('Wallet')} {owner}"

    @property
    def available(self) -> Decimal:
        return self.balance + self.credit_limit

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    @property
    def lock_reason_text(self) -> str:
        """Why the tenant is locked, in the active language (billing.reasons)."""
        return reason_text(
            code=self.lock_reason_code, args=self.lock_reason_args, text=self.lock_reason
        )


class TransactionKind(models.TextChoices):
    RECHARGE = "recharge", _("Recharge")
    RESOURCE_CHARGE = "resource_charge", _("Resource charge")
    MANAGEMENT_FEE = "management_fee", _("Management fee")
    ADJUSTMENT = "adjustment", _("Adjustment")


class Transaction(models.Model):
    """One money movement; its entries sum to zero. Never changed or deleted.

    `wallet` is the wallet the movement is about (the payer of a charge or fee, the receiver of
    a recharge). (wallet, kind, period_start) is unique for charges and fees: each hour and
    each month is charged exactly once, whatever runs twice.
    """

    kind = models.CharField(_("kind"), max_length=16, choices=TransactionKind.choices)
    # Indexed by tx_wallet_kind_time (wallet first); no separate FK index on the hot path.
    wallet = models.ForeignKey(
        Wallet,
        on_delete=models.PROTECT,
        related_name="transactions",
        verbose_name=_("wallet"),
        db_index=False,
    )
    period_start = models.DateTimeField(_("period start"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    memo = models.CharField(_("memo"), max_length=300, blank=True)
    # Recharges: who paid, how, and the payment reference.
    payer = models.CharField(_("paid by"), max_length=200, blank=True)
    method = models.CharField(_("method"), max_length=32, blank=True)
    reference = models.CharField(_("reference"), max_length=200, blank=True)
    # Adjustments and reversals: why and by whom.
    reason = models.TextField(_("reason"), blank=True)
    reverses = models.ForeignKey(
        "self",
        db_index=False,  # partial index tx_reverses below: almost every row is null
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversals",
        verbose_name=_("reverses"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        db_index=False,  # charges and fees have no author; nobody searches by it
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("transaction")
        verbose_name_plural = _("transactions")
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "kind", "period_start"],
                condition=Q(kind__in=["resource_charge", "management_fee"]),
                name="transaction_once_per_period",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["resource_charge", "management_fee"])
                | Q(period_start__isnull=False),
                name="transaction_charge_has_period",
            ),
            # A payment reference, when given, is recorded once per wallet (a retried or
            # doubled recharge is refused, never posted twice).
            models.UniqueConstraint(
                fields=["wallet", "reference"],
                condition=Q(kind="recharge") & ~Q(reference=""),
                name="recharge_reference_once_per_wallet",
            ),
        ]
        indexes = [
            models.Index(fields=["wallet", "kind", "-created_at"], name="tx_wallet_kind_time"),
            models.Index(fields=["kind", "period_start"], name="tx_kind_period"),
            models.Index(
                fields=["reverses"], name="tx_reverses", condition=Q(reverses__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class Entry(models.Model):
    """One leg of a transaction. `wallet` null is the outside world (money paid in)."""

    transaction = models.ForeignKey(
        Transaction,
        on_delete=models.PROTECT,
        related_name="entries",
        verbose_name=_("transaction"),
    )
    wallet = models.ForeignKey(
        Wallet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        verbose_name=_("wallet"),
        db_index=False,  # entry_wallet_tx (wallet, transaction) serves every wallet lookup
    )
    amount = models.DecimalField(_("amount"), **MONEY)

    class Meta:
        ordering = ["id"]
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        indexes = [models.Index(fields=["wallet", "transaction"], name="entry_wallet_tx")]

    def __str__(self) -> str:
        return f"{self.wallet or 'external'} {self.amount}"


class ChargeLine(models.Model):
    """What a resource charge was computed from: one allocation interval at one price."""

    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="lines", verbose_name=_("transaction")
    )
    allocation = models.ForeignKey(
        Allocation, on_delete=models.PROTECT, related_name="+", verbose_name=_("allocation")
    )
    price = models.ForeignKey(
        PriceVersion,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("price"),
        db_index=False,  # a handful of versions; reports join from the charge side
    )
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("to"))
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))
    amount = models.DecimalField(_("amount"), **MONEY)

    class Meta:
        ordering = ["start", "id"]
        verbose_name = _("charge line")
        verbose_name_plural = _("charge lines")

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.amount}"


class Holding(models.Model):
    """Resources a member's VM holds over [start, end) — written by compute, rated by billing."""

    membership = models.ForeignKey(
        "tenancy.Membership", null=True, on_delete=models.SET_NULL, related_name="holdings"
    )
    project = models.ForeignKey("tenancy.Project", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    server_ref = models.CharField(_("server"), max_length=64)
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"), null=True, blank=True)

    class Meta:
        ordering = ["-start"]
        verbose_name = _("VM holding")
        verbose_name_plural = _("VM holdings")
        indexes = [models.Index(fields=["project", "user", "end"], name="holding_member_open")]

    def __str__(self) -> str:
        return f"{self.server_ref} {self.vcpus}/{self.ram_gib}/{self.disk_gib}"


class MemberConsumption(models.Model):
    """A member's rated (not charged) consumption in a project for one hour (Charging 3)."""

    project = models.ForeignKey("tenancy.Project", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField(_("hour"))
    amount = models.DecimalField(_("amount"), **MONEY)

    class Meta:
        ordering = ["-hour"]
        verbose_name = _("member consumption")
        verbose_name_plural = _("member consumption")
        constraints = [
            models.UniqueConstraint(fields=["project", "user", "hour"], name="consumption_once")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id} {self.hour:%Y-%m-%d %H:00} {self.amount}"


class RechargeRequest(models.Model):
    """A tenant admin's declaration of a payment, confirmed or rejected by the receiving side."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="recharge_requests")
    amount = models.DecimalField(_("amount"), **MONEY)
    method = models.CharField(_("method"), max_length=32)
    reference = models.CharField(_("reference"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    transaction = models.OneToOneField(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("recharge request")
        verbose_name_plural = _("recharge requests")

    def __str__(self) -> str:
        return f"{self.wallet} {self.amount} ({self.status})"


class LockPeriod(models.Model):
    """A wallet's tenant was locked over [start, end): resource charges stop meanwhile."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="lock_periods")
    start = models.DateTimeField(_("locked at"))
    end = models.DateTimeField(_("unlocked at"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reason_code = models.CharField(_("reason code"), max_length=32, blank=True)
    reason_args = models.JSONField(_("reason arguments"), default=dict, blank=True)
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    unlocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-start"]
        verbose_name = _("lock period")
        verbose_name_plural = _("lock periods")
        constraints = [
            models.UniqueConstraint(
                fields=["wallet"], condition=Q(end__isnull=True), name="lock_one_open_per_wallet"
            )
        ]

    def __str__(self) -> str:
        return f"{self.wallet} locked {self.start:%Y-%m-%d %H:%M}"

    @property
    def reason_text(self) -> str:
        """The reason in the active language (billing.reasons)."""
        return reason_text(code=self.reason_code, args=self.reason_args, text=self.reason)


class ComputeAction(models.TextChoices):
    STOP = "stop", _("Stop VMs")
    RESTART = "restart", _("Restart VMs")
    DELETE = "delete", _("Delete VMs and project")


class ComputeRequest(models.Model):
    """What billing asked compute to do (lock → stop, unlock → restart, purge → delete).

    Recorded in the transaction of the decision; the compute app carries them out."""

    action = models.CharField(_("action"), max_length=8, choices=ComputeAction.choices)
    domain = models.ForeignKey(
        "tenancy.Domain", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    project = models.ForeignKey(
        "tenancy.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    membership = models.ForeignKey(
        "tenancy.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reason_code = models.CharField(_("reason code"), max_length=32, blank=True)
    reason_args = models.JSONField(_("reason arguments"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("compute request")
        verbose_name_plural = _("compute requests")

    def __str__(self) -> str:
        return f"{self.action} ({self.reason_text})"

    @property
    def reason_text(self) -> str:
        """The reason in the active language (billing.reasons)."""
        return reason_text(code=self.reason_code, args=self.reason_args, text=self.reason)


class Notification(models.Model):
    """Every notification is recorded (SPEC Notifications), sent or folded into a digest."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        WEBHOOK = "webhook", _("Webhook")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        DIGESTED = "digested", _("Folded into a digest")
        FAILED = "failed", _("Failed")

    event = models.CharField(_("event"), max_length=40, db_index=True)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
    )
    address = models.CharField(_("address"), max_length=500)
    domain = models.ForeignKey(
        "tenancy.Domain", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    project = models.ForeignKey(
        "tenancy.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    subject = models.CharField(_("subject"), max_length=300)
    body = models.TextField(_("body"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    digest = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="folded"
    )
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [models.Index(fields=["address", "sent_at"], name="notification_rate")]

    def __str__(self) -> str:
        return f"{self.event} → {self.address} ({self.status})"


class Webhook(models.Model):
    """A tenant's optional webhook (JSON POST, e.g. Feishu/DingTalk/Slack).

    The format decides the JSON sent (billing.notify): `auto` recognises Feishu/Lark, DingTalk and
    Slack by the URL's host and posts the generic JSON to any other address."""

    class Format(models.TextChoices):
        AUTO = "auto", _("Recognise from the address")
        GENERIC = "generic", _("Generic JSON")
        FEISHU = "feishu", _("Feishu / Lark bot")
        DINGTALK = "dingtalk", _("DingTalk robot")
        SLACK = "slack", _("Slack incoming webhook")

    domain = models.OneToOneField(
        "tenancy.Domain", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook"
    )
    project = models.OneToOneField(
        "tenancy.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook"
    )
    url = models.URLField(_("URL"), max_length=500)
    format = models.CharField(
        _("format"), max_length=10, choices=Format.choices, default=Format.AUTO
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")

    def __str__(self) -> str:
        return self.url


class BudgetAlert(models.Model):
    """A member's budget threshold (percent) already alerted, at the budget it was alerted for.

    A row whose `budget` differs from the member's current budget is stale: enforcement drops it,
    so a changed (e.g. raised) budget re-arms every threshold (SPEC Locking 3)."""

    project = models.ForeignKey("tenancy.Project", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    threshold = models.PositiveSmallIntegerField(_("threshold (%)"))
    budget = models.DecimalField(_("budget"), **MONEY)
    alerted_at = models.DateTimeField(_("alerted at"), default=timezone.now)

    class Meta:
        verbose_name = _("budget alert")
        verbose_name_plural = _("budget alerts")
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user", "threshold"], name="budget_alert_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id} {self.threshold}% of {self.budget}"


class PurgeReminder(models.Model):
    """A purge reminder sent `days` before the purge of a wallet's tenant (SPEC Locking 5), for
    one unbroken unpaid run (`unpaid_since`): a new run re-arms the reminders."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="purge_reminders")
    unpaid_since = models.DateTimeField(_("unpaid since"))
    days = models.PositiveSmallIntegerField(_("days before purge"))
    sent_at = models.DateTimeField(_("sent at"), default=timezone.now)

    class Meta:
        verbose_name = _("purge reminder")
        verbose_name_plural = _("purge reminders")
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "unpaid_since", "days"], name="purge_reminder_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.wallet} −{self.days}d"


class IdempotencyKey(models.Model):
    """A money-moving API request made with an `Idempotency-Key` header (billing.idempotency):
    the first request claims the key, its successful answer is kept and given again to a retry
    with the same body; another body with the same key is refused."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    status = models.PositiveSmallIntegerField(null=True, blank=True)  # null: still running
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
