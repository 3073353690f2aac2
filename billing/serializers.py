"""API serializers of billing: explicit input (request) and output (response) shapes.

Input serializers only check JSON types and sizes; every rule (bounds, who may, credit ≤
ceiling, amounts) lives in billing.services. Money is a decimal *string* in and out
("12.3400"): a JSON number is refused, so floats never enter. The string itself is parsed by
billing.money.parse_amount inside the service, which names the problem (NaN, too precise, …).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import User
from billing.memos import describe
from billing.models import (
    MONEY,
    RATE,
    Allocation,
    AllocationRequest,
    Entry,
    Notification,
    PriceVersion,
    RechargeRequest,
    Transaction,
    TransactionKind,
    Wallet,
)
from billing.services import MAX_QUANTITY
from teachcloud.api.fields import InstantField
from tenancy import selectors as tenancy_selectors
from tenancy.models import Domain, Membership, Project
from tenancy.serializers import (
    StrictBooleanField,
    StrictCharField,
    VisiblePrimaryKeyRelatedField,
    id_field,
)

# -- Fields -----------------------------------------------------------------------------------


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "example": "12.3400",
    }
)
class MoneyInputField(StrictCharField):
    """A money amount as a decimal string ("12.34"). Checked in depth by the service."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("help_text", _('A decimal string with at most 4 places, e.g. "12.34".'))
        super().__init__(**kwargs)


def money_output(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(read_only=True, **MONEY, **kwargs)


class StrictIntegerField(serializers.IntegerField):
    """Only JSON integers: DRF would otherwise take "4", 4.0 and true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def quantity_field(label: str) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=MAX_QUANTITY, help_text=label)


# -- Allocations ------------------------------------------------------------------------------


class AllocationSerializer(serializers.ModelSerializer):
    budget = money_output(allow_null=True, help_text=_("Member limits only: the budget (CNY)."))
    end = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text=_("Null while the allocation is current.")
    )

    class Meta:
        model = Allocation
        fields = [
            "id",
            "level",
            "domain",
            "project",
            "membership",
            "user",
            "vcpus",
            "ram_gib",
            "disk_gib",
            "budget",
            "start",
            "end",
        ]
        read_only_fields = fields


class AllocationFilterSerializer(serializers.Serializer):
    domain = id_field(help_text=_("Only allocations inside this domain (every level)."))
    project = id_field(help_text=_("Only allocations of this project and its members."))
    membership = id_field(help_text=_("Only the limits of this membership."))


class AllocationQuerySerializer(serializers.Serializer):
    # Exactly one way to ask for a quote: `?dry_run=1` (anything else is a 400, never a write).
    dry_run = serializers.ChoiceField(
        choices=["1"],
        required=False,
        help_text=_("`1`: quote the change (costs and new totals) and write nothing."),
    )


class AllocationSetSerializer(serializers.Serializer):
    domain = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.domains_visible_to,
        queryset=Domain.objects.none(),
        required=False,
        allow_null=True,
        help_text=_("Allocate to this domain (platform staff)."),
    )
    project = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.projects_visible_to,
        queryset=Project.objects.none(),
        required=False,
        allow_null=True,
        help_text=_("Allocate to this project (its domain's admins)."),
    )
    membership = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.memberships_visible_to,
        queryset=Membership.objects.none(),
        required=False,
        allow_null=True,
        help_text=_("Set this member's limit (the project's admins and assistants)."),
    )
    vcpus = quantity_field(_("vCPUs"))
    ram_gib = quantity_field(_("RAM (GiB)"))
    disk_gib = quantity_field(_("Disk (GiB)"))
    budget = MoneyInputField(
        required=False,
        allow_null=True,
        help_text=_(
            "Member limits only: the budget (CNY, decimal string). Left out: the current "
            "budget is kept; null: no budget."
        ),
    )


class TotalsField(serializers.DictField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=serializers.DictField(child=serializers.IntegerField()),
            read_only=True,
            **kwargs,
        )


class AllocationQuoteSerializer(serializers.Serializer):
    hourly_cost = money_output(help_text=_("Hourly cost of the new allocation at today's prices."))
    monthly_cost = money_output(help_text=_("30-day cost of the new allocation."))
    hourly_change = money_output(help_text=_("Hourly cost minus the current allocation's."))
    charged = serializers.BooleanField(
        read_only=True, help_text=_("False for member limits: members are rated, not charged.")
    )
    price_version = serializers.IntegerField(read_only=True)
    vcpus = serializers.IntegerField(read_only=True)
    ram_gib = serializers.IntegerField(read_only=True)
    disk_gib = serializers.IntegerField(read_only=True)
    totals = TotalsField(
        help_text=_(
            "New totals per resource: what the parent would have allocated against its bound "
            "(e.g. domain_allocated vs domain_allocation), or what the member's VMs hold."
        )
    )


# -- Wallets ----------------------------------------------------------------------------------


class WalletSerializer(serializers.ModelSerializer):
    domain = serializers.SerializerMethodField(
        help_text=_("The domain of the wallet (for a project wallet: the project's domain).")
    )
    balance = money_output()
    credit_limit = money_output()
    credit_ceiling = money_output()
    available = money_output(help_text=_("balance + credit_limit"))
    alert_threshold = money_output(
        allow_null=True,
        help_text=_("Low-balance alert level; null: 7 days of the current hourly charges."),
    )
    locked = serializers.BooleanField(read_only=True)
    lock_reason = serializers.CharField(
        source="lock_reason_text",
        read_only=True,
        help_text=_("Why the tenant is locked, in the language of the request; empty if not."),
    )

    class Meta:
        model = Wallet
        fields = [
            "id",
            "kind",
            "domain",
            "project",
            "balance",
            "credit_limit",
            "credit_ceiling",
            "available",
            "locked",
            "locked_at",
            "lock_reason",
            "billing_admin",
            "alert_threshold",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_domain(self, wallet: Wallet) -> int | None:
        if wallet.project_id is not None:
            return wallet.project.domain_id
        return wallet.domain_id


class WalletFilterSerializer(serializers.Serializer):
    domain = id_field(help_text=_("Only the wallets of this domain and of its projects."))
    project = id_field(help_text=_("Only the wallet of this project."))


class WalletUpdateSerializer(serializers.Serializer):
    credit_limit = MoneyInputField(
        required=False, help_text=_("Set by the tenant's admin, at most the ceiling.")
    )
    credit_ceiling = MoneyInputField(required=False, help_text=_("Set by the superior."))
    billing_admin = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.users_visible_to,
        queryset=User.objects.none(),
        required=False,
        help_text=_("One of the tenant's admins."),
    )
    alert_threshold = MoneyInputField(
        required=False,
        allow_null=True,
        help_text=_("Low-balance alert level; null: 7 days of the current hourly charges."),
    )


class RechargeRequestCreateSerializer(serializers.Serializer):
    amount = MoneyInputField(help_text=_("Amount received (CNY, decimal string, > 0)."))
    method = StrictCharField(max_length=32, help_text=_("How it was paid (bank transfer, …)."))
    reference = StrictCharField(
        max_length=200, required=False, allow_blank=True, default="", help_text=_("Reference.")
    )


class RechargeCreateSerializer(RechargeRequestCreateSerializer):
    payer = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("Who paid (default: you)."),
    )


class RechargeRequestSerializer(serializers.ModelSerializer):
    amount = money_output()

    class Meta:
        model = RechargeRequest
        fields = [
            "id",
            "wallet",
            "amount",
            "method",
            "reference",
            "status",
            "requested_by",
            "created_at",
            "decided_by",
            "decided_at",
            "transaction",
        ]
        read_only_fields = fields


class RechargeRequestFilterSerializer(serializers.Serializer):
    wallet = id_field(help_text=_("Only requests for this wallet."))
    status = serializers.ChoiceField(
        choices=RechargeRequest._meta.get_field("status").choices,
        required=False,
        help_text=_("Only requests in this state."),
    )


# -- Transactions -----------------------------------------------------------------------------


class EntrySerializer(serializers.ModelSerializer):
    wallet = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text=_("Null: the outside world (money paid in).")
    )
    amount = money_output()

    class Meta:
        model = Entry
        fields = ["wallet", "amount"]
        read_only_fields = fields


class TransactionSerializer(serializers.ModelSerializer):
    entries = EntrySerializer(many=True, read_only=True)
    memo = serializers.SerializerMethodField(
        help_text=_("What the transaction is about, in the reader's language.")
    )

    class Meta:
        model = Transaction
        fields = [
            "id",
            "kind",
            "wallet",
            "created_at",
            "period_start",
            "entries",
            "memo",
            "payer",
            "method",
            "reference",
            "reason",
            "reverses",
        ]
        read_only_fields = fields

    def get_memo(self, obj: Transaction) -> str:
        return describe(obj)


class TransactionFilterSerializer(serializers.Serializer):
    wallet = id_field(help_text=_("Only transactions with an entry on this wallet."))
    kind = serializers.ChoiceField(choices=TransactionKind.choices, required=False)
    start = InstantField(required=False, help_text=_("Created at or after this instant."))
    end = InstantField(required=False, help_text=_("Created before this instant."))


# -- Prices -----------------------------------------------------------------------------------


def rate_output() -> serializers.DecimalField:
    return serializers.DecimalField(read_only=True, **RATE)


class PriceVersionSerializer(serializers.ModelSerializer):
    vcpu_hour = rate_output()
    ram_gib_hour = rate_output()
    disk_gib_hour = rate_output()
    domain_fee = money_output()
    project_fee = money_output()
    user_fee = money_output()

    class Meta:
        model = PriceVersion
        fields = [
            "id",
            "effective_from",
            "vcpu_hour",
            "ram_gib_hour",
            "disk_gib_hour",
            "domain_fee",
            "project_fee",
            "user_fee",
            "created_at",
        ]
        read_only_fields = fields


class PriceVersionCreateSerializer(serializers.Serializer):
    effective_from = InstantField(help_text=_("Must be in the future."))
    vcpu_hour = MoneyInputField(help_text=_("Per vCPU-hour (CNY)."))
    ram_gib_hour = MoneyInputField(help_text=_("Per GiB-RAM-hour (CNY)."))
    disk_gib_hour = MoneyInputField(help_text=_("Per GiB-disk-hour (CNY)."))
    domain_fee = MoneyInputField(help_text=_("Monthly management fee of a domain (CNY)."))
    project_fee = MoneyInputField(help_text=_("Monthly management fee of a project (CNY)."))
    user_fee = MoneyInputField(help_text=_("Monthly management fee per membership (CNY)."))


# -- Notifications ----------------------------------------------------------------------------


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = [
            "id",
            "event",
            "channel",
            "subject",
            "body",
            "status",
            "domain",
            "project",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


# -- Lock and unlock --------------------------------------------------------------------------


class TenantLockSerializer(serializers.Serializer):
    reason = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("Why the tenant is locked."),
    )


class TenantUnlockSerializer(serializers.Serializer):
    restart_servers = StrictBooleanField(
        required=False,
        default=False,
        help_text=_("Restart the VMs that were running when the tenant was locked."),
    )


class MemberUnlockSerializer(serializers.Serializer):
    budget = MoneyInputField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("A new budget for the member (raising it re-arms the alerts)."),
    )


# -- Allocation requests (SPEC Allocations 6) -------------------------------------------------


class AllocationRequestSerializer(serializers.ModelSerializer):
    budget = money_output(allow_null=True, help_text=_("Member requests only: the budget (CNY)."))
    membership = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    decided_by = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    decided_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = AllocationRequest
        fields = [
            "id",
            "level",
            "domain",
            "project",
            "membership",
            "vcpus",
            "ram_gib",
            "disk_gib",
            "budget",
            "justification",
            "status",
            "requested_by",
            "created_at",
            "decided_by",
            "decided_at",
            "decision_note",
        ]
        read_only_fields = fields


class AllocationRequestCreateSerializer(serializers.Serializer):
    project = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.projects_visible_to,
        queryset=Project.objects.none(),
        required=False,
        allow_null=True,
        help_text=_("Ask the domain's admins for a larger allocation of this project."),
    )
    membership = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.memberships_visible_to,
        queryset=Membership.objects.none(),
        required=False,
        allow_null=True,
        help_text=_("Ask the project's staff for a larger limit of this (your own) membership."),
    )
    vcpus = quantity_field(_("vCPUs"))
    ram_gib = quantity_field(_("RAM (GiB)"))
    disk_gib = quantity_field(_("Disk (GiB)"))
    budget = MoneyInputField(
        required=False,
        allow_null=True,
        help_text=_("Member requests only: the budget asked for (CNY, decimal string)."),
    )
    justification = StrictCharField(max_length=5000, help_text=_("Why more is needed."))


class AllocationRequestDecideSerializer(serializers.Serializer):
    note = StrictCharField(
        max_length=5000,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("A note for the requester."),
    )


class AllocationRequestFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=RechargeRequest._meta.get_field("status").choices,
        required=False,
        help_text=_("Only requests in this state."),
    )
    level = serializers.ChoiceField(
        choices=[("project", "project"), ("member", "member")],
        required=False,
        help_text=_("Only project or only member requests."),
    )
    project = id_field(help_text=_("Only requests about this project."))
