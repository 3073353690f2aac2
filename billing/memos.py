"""What a ledger transaction is about, in the reader's language.

`Transaction.memo` used to be written with gettext at write time, so a recharge posted during a
Chinese request read "充值" forever, for every reader. Now the stored memo is language-neutral:

- A memo the system generates (recharge, adjustment, reversal, hourly resource charge, monthly
  management fee) is stored **empty**. Everything it would say is already in the row: `kind`,
  `period_start` and `reverses_id`. Empty (rather than a token such as ``"recharge"``) needs no
  vocabulary to keep in sync, keeps the hourly charge SQL a constant ``''`` parameter, and an old
  row that still holds text simply keeps showing it.
- A non-empty memo is text a person typed (or an old form the data migration
  ``billing.0006_neutral_memos`` did not recognise); it is shown as stored, untranslated.

`transaction_memo` renders the description with gettext at display time (the API, the portal,
the exports and the admin all call it), from plain values so an export can render from the columns
it already selected, without loading model instances.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.utils.translation import gettext

SHANGHAI = ZoneInfo("Asia/Shanghai")


def memo_renderer() -> Callable[..., str]:
    """A `transaction_memo` bound to the language active now: the strings are translated once,
    so a streamed export renders thousands of rows cheaply and in the language of the request
    even when the rows are produced after the view returned."""
    texts = {
        "reversal": gettext("Reversal of #%(id)d"),
        "recharge": gettext("Recharge"),
        "adjustment": gettext("Adjustment"),
        "resource_charge": gettext("Resource charge"),
        "resource_charge_at": gettext("Resource charge %(hour)s"),
        "management_fee": gettext("Management fee"),
        "management_fee_at": gettext("Management fee %(month)s"),
    }

    def render(
        *,
        kind: str,
        period_start: datetime | None = None,
        reverses_id: int | None = None,
        memo: str = "",
    ) -> str:
        if memo:
            return memo
        if reverses_id is not None:
            return texts["reversal"] % {"id": reverses_id}
        if kind in ("recharge", "adjustment"):
            return texts[kind]
        if kind not in ("resource_charge", "management_fee"):
            return ""
        if period_start is None:
            return texts[kind]
        local = period_start.astimezone(SHANGHAI)
        if kind == "resource_charge":
            return texts["resource_charge_at"] % {"hour": local.strftime("%Y-%m-%d %H:00")}
        return texts["management_fee_at"] % {"month": local.strftime("%Y-%m")}

    return render


def transaction_memo(
    *,
    kind: str,
    period_start: datetime | None = None,
    reverses_id: int | None = None,
    memo: str = "",
) -> str:
    """The description of a transaction in the active language (see the module docstring)."""
    return memo_renderer()(kind=kind, period_start=period_start, reverses_id=reverses_id, memo=memo)


def describe(tx: Any) -> str:
    """`transaction_memo` of a Transaction instance (or anything with the same attributes)."""
    return transaction_memo(
        kind=tx.kind,
        period_start=tx.period_start,
        reverses_id=tx.reverses_id,
        memo=tx.memo,
    )
