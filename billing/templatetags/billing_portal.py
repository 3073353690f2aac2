"""Template helpers of billing's portal pages: the signed-in member's own usage."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def my_usage_rows(context: template.Context, project: Any = None) -> list[dict[str, Any]]:
    """`{% my_usage_rows [project] as rows %}`: limit, budget and consumption of the signed-in
    user in each of their projects (or in one)."""
    from billing.views import member_usage

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return member_usage(user, projects=[project] if project is not None else None)


@register.filter
def payment_method(value: str) -> str:
    """The label of a payment method code (bank_transfer → "Bank transfer")."""
    from billing.forms import PAYMENT_METHODS

    return str(dict(PAYMENT_METHODS).get(value, value))


@register.filter
def tx_memo(tx: Any) -> str:
    """What a transaction is about, in the reader's language (`billing.memos`)."""
    from billing.memos import describe

    return describe(tx)
