"""Forms of billing (portal and admin). They validate the shape of input only: amounts stay
strings so that `billing.money.parse_amount` (inside the services) decides and explains what is
wrong with them; every rule lives in `billing.services` and `billing.enforcement`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from billing.models import Webhook
from billing.services import MAX_QUANTITY


class AmountField(forms.CharField):
    """A money amount, as typed (e.g. "120.50"); the service parses and refuses it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("Amount (CNY)"))
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})
        )
        super().__init__(**kwargs)


class QuantityField(forms.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_QUANTITY)
        super().__init__(**kwargs)


PAYMENT_METHODS = [
    ("bank_transfer", _("Bank transfer")),
    ("cash", _("Cash")),
    ("alipay", _("Alipay")),
    ("wechat_pay", _("WeChat Pay")),
    ("invoice", _("Invoice / purchase order")),
    ("other", _("Other")),
]


class RechargeForm(forms.Form):
    """The receiving side records money it received (SPEC Money 5)."""

    amount = AmountField()
    method = forms.ChoiceField(label=_("Paid by (method)"), choices=PAYMENT_METHODS)
    reference = forms.CharField(
        label=_("Payment reference"),
        max_length=200,
        required=False,
        help_text=_("Bank slip number, receipt number, …"),
    )
    payer = forms.CharField(label=_("Payer"), max_length=200, required=False)


class RechargeRequestForm(forms.Form):
    """A tenant declares a payment; the receiving side confirms it."""

    amount = AmountField()
    method = forms.ChoiceField(label=_("Paid by (method)"), choices=PAYMENT_METHODS)
    reference = forms.CharField(
        label=_("Payment reference"),
        max_length=200,
        required=False,
        help_text=_("Bank slip number, receipt number, …"),
    )


class AdjustForm(forms.Form):
    amount = AmountField(
        label=_("Amount (CNY, + or −)"),
        help_text=_("Positive credits the wallet, negative debits it."),
    )
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200)


class UnlockForm(forms.Form):
    restart_servers = forms.BooleanField(
        label=_("Restart the VMs that were running when it was locked"), required=False
    )


class CreditForm(forms.Form):
    """Credit limit (tenant admin, ≤ ceiling) and ceiling (the superior); each field only for
    whoever may set it."""

    credit_limit = AmountField(label=_("Credit limit (CNY)"), required=False)
    credit_ceiling = AmountField(label=_("Credit ceiling (CNY)"), required=False)

    def __init__(self, *args: Any, may_limit: bool, may_ceiling: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_limit:
            del self.fields["credit_limit"]
        if not may_ceiling:
            del self.fields["credit_ceiling"]

    def changes(self) -> dict[str, str]:
        return {k: v.strip() for k, v in self.cleaned_data.items() if v and v.strip()}


class BillingAdminForm(forms.Form):
    billing_admin = forms.ModelChoiceField(label=_("Billing admin"), queryset=None)

    def __init__(self, *args: Any, admins: QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["billing_admin"].queryset = admins


class AllocationForm(forms.Form):
    """An allocation change (also used for the dry-run quote)."""

    vcpus = QuantityField(label=_("vCPUs"))
    ram_gib = QuantityField(label=_("RAM (GiB)"))
    disk_gib = QuantityField(label=_("Disk (GiB)"))

    def __init__(self, *args: Any, projects: QuerySet | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if projects is not None:
            # On a domain's page: to which project (empty: the domain's own allocation).
            self.fields["project"] = forms.ModelChoiceField(
                label=_("Project"), queryset=projects, required=False
            )
            self.order_fields(["project", "vcpus", "ram_gib", "disk_gib"])

    def quantities(self) -> dict[str, int]:
        return {k: self.cleaned_data[k] for k in ("vcpus", "ram_gib", "disk_gib")}


class MemberLimitForm(AllocationForm):
    """A member's limit and optional budget (empty: no budget)."""

    budget = AmountField(label=_("Budget (CNY, optional)"), required=False)

    def budget_value(self) -> str | None:
        value = (self.cleaned_data.get("budget") or "").strip()
        return value or None


class AllocationAdminForm(forms.Form):
    """Platform staff set a domain's (or a project's) allocation from the admin."""

    domain = forms.ModelChoiceField(label=_("Domain"), queryset=None, required=False)
    project = forms.ModelChoiceField(label=_("Project"), queryset=None, required=False)
    vcpus = QuantityField(label=_("vCPUs"))
    ram_gib = QuantityField(label=_("RAM (GiB)"))
    disk_gib = QuantityField(label=_("Disk (GiB)"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from tenancy.models import Domain, Project

        super().__init__(*args, **kwargs)
        self.fields["domain"].queryset = Domain.objects.order_by("code")
        self.fields["project"].queryset = Project.objects.select_related("domain").order_by(
            "domain__code", "code"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("domain")) == bool(data.get("project")):
            raise forms.ValidationError(_("Choose either a domain or a project."))
        return data

    def quantities(self) -> dict[str, int]:
        return {k: self.cleaned_data[k] for k in ("vcpus", "ram_gib", "disk_gib")}


class AllocationRequestForm(AllocationForm):
    """Ask for a larger allocation (project) or limit (member: optionally a budget too)."""

    justification = forms.CharField(
        label=_("Justification"), max_length=5000, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, memberships: QuerySet | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if memberships is not None:
            self.fields["membership"] = forms.ModelChoiceField(
                label=_("Project"), queryset=memberships, empty_label=None
            )
            self.fields["budget"] = AmountField(label=_("Budget (CNY, optional)"), required=False)
            self.order_fields(["membership", "vcpus", "ram_gib", "disk_gib", "budget"])

    def budget_value(self) -> str | None:
        value = (self.cleaned_data.get("budget") or "").strip()
        return value or None


class AlertSettingsForm(forms.Form):
    """A tenant's notification settings on its billing page: the webhook (its admins) and the
    low-balance alert level (admins and assistants); each field only for whoever may set it.
    Addresses and amounts are checked by the services (webhook_url, wallet_update)."""

    url = forms.CharField(
        label=_("Webhook URL"),
        max_length=500,
        required=False,
        help_text=_(
            "Notifications are also posted here, e.g. to a Feishu, DingTalk or Slack group bot. "
            "Leave empty for no webhook."
        ),
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    format = forms.ChoiceField(label=_("Message format"), choices=Webhook.Format.choices)
    active = forms.BooleanField(label=_("Post notifications to the webhook"), required=False)
    alert_threshold = AmountField(
        label=_("Low-balance alert below (CNY)"),
        required=False,
        help_text=_("Leave empty for the default: 7 days of the current hourly charges."),
    )

    def __init__(self, *args: Any, may_webhook: bool, may_alert: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_webhook:
            for name in ("url", "format", "active"):
                del self.fields[name]
        if not may_alert:
            del self.fields["alert_threshold"]
