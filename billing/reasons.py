"""Why a tenant was locked, or what compute was asked to do, in the reader's language.

Lock reasons (`Wallet.lock_reason`, `LockPeriod.reason`) and compute requests' reasons
(`ComputeRequest.reason`) used to be written with gettext at write time, so a lock the hourly
beat made read "可用金额 ¥0.0000 已归零" forever, also for an English-speaking teacher. Like the
transaction memos (`billing.memos`), what the system generates is now stored language-neutral:

- a generated reason is a code and its arguments (`*_code`, `*_args`: plain strings, e.g. the
  amount at the moment of the lock) and an empty text; it is rendered with gettext when read;
- a reason a person typed (a manual lock) is stored as text, code empty, and shown as typed;
- a row written before the codes existed keeps its text and keeps showing it.

`reason_text` is the one renderer (portal, API, admin, compute's audit records call it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

REASONS: dict[str, Promise] = {
    "available_exhausted": gettext_lazy("Available amount ¥%(available)s reached zero"),
    "budget_used_up": gettext_lazy("Budget used up: ¥%(consumption)s of ¥%(budget)s"),
    "unlocked_by": gettext_lazy("Unlocked by %(who)s"),
    "purged_unpaid": gettext_lazy("Purged: fees unpaid since %(since)s"),
    "purged": gettext_lazy("Purged"),
}


@dataclass(frozen=True)
class Reason:
    """A generated reason: `code` (a key of REASONS) and its arguments."""

    code: str
    args: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in REASONS:
            raise ValueError(f"unknown reason code {self.code!r}")

    def __str__(self) -> str:
        return reason_text(code=self.code, args=self.args)


def because(code: str, **args: Any) -> Reason:
    """A generated reason; the arguments are kept as the strings they print as."""
    return Reason(code, {name: str(value) for name, value in args.items()})


def reason_text(*, code: str = "", args: dict[str, Any] | None = None, text: str = "") -> str:
    """The reason in the active language: a known code rendered with its arguments, else the
    stored text (typed by a person, or written before the codes existed)."""
    template = REASONS.get(code)
    if template is None:
        return text
    try:
        return str(template) % (args or {})
    except (KeyError, TypeError, ValueError):  # arguments of an older form of the message
        return text or str(code)


def reason_fields(value: str | Reason, prefix: str = "reason") -> dict[str, Any]:
    """The model fields that store `value`: `<prefix>`, `<prefix>_code`, `<prefix>_args`."""
    if isinstance(value, Reason):
        return {prefix: "", f"{prefix}_code": value.code, f"{prefix}_args": dict(value.args)}
    return {prefix: value[:200], f"{prefix}_code": "", f"{prefix}_args": {}}
