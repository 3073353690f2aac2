"""Parsing and arithmetic of money: Decimal only, 4 places, explicit rounding where it happens."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

from teachcloud.errors import ServiceError

FOUR = Decimal("0.0001")
TWO = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000")  # ¥1e9: no single movement is larger
# An optional minus, ASCII digits, one optional point (the checks below then say "too large" or
# "too precise" where that is the problem).
AMOUNT_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


def q4(value: Decimal) -> Decimal:
    """Round to the ledger's 4 places (half up): the one rounding of a computed charge."""
    return value.quantize(FOUR, rounding=ROUND_HALF_UP)


def q2(value: Decimal) -> Decimal:
    """Round to cents (half up): statements only."""
    return value.quantize(TWO, rounding=ROUND_HALF_UP)


def parse_amount(
    value: Any, *, field: str = "amount", positive: bool = True, allow_zero: bool = False
) -> Decimal:
    """A money amount from user input, or a ServiceError that names the problem.

    Refuses floats' cousins: NaN, Infinity, more than 4 decimal places, absurd sizes, and
    (unless allowed) zero and negative amounts. Accepts str, int and Decimal; never float.
    """

    def bad(message: str, code: str) -> ServiceError:
        return ServiceError(message, code=code, fields={field: [message]})

    if isinstance(value, (float, bool)) or value is None:
        raise bad(_('Give the amount as a decimal string, e.g. "12.50".'), "invalid_amount")
    if isinstance(value, str):
        # Strictly what a person writes: ASCII digits, one optional point, an optional minus —
        # no exponent, underscore, plus sign, full-width or other scripts' digits.
        text = value.strip()
        if not AMOUNT_TEXT.fullmatch(text):
            raise bad(_("“%(v)s” is not a number.") % {"v": value[:40]}, "invalid_amount")
        value = text
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise bad(_("“%(v)s” is not a number.") % {"v": str(value)[:40]}, "invalid_amount") from exc
    if not amount.is_finite():
        raise bad(_("The amount must be a finite number."), "invalid_amount")
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise bad(_("At most 4 decimal places."), "amount_too_precise")
    if abs(amount) > MAX_AMOUNT:
        raise bad(_("The amount is too large (at most 1,000,000,000)."), "amount_too_large")
    if positive and amount < 0:
        raise bad(_("The amount must be positive."), "amount_not_positive")
    if not allow_zero and amount == 0:
        raise bad(_("The amount must not be zero."), "amount_zero")
    return amount.quantize(FOUR)
