"""Locks, unlocks, budget locks, alerts and purges (SPEC "Locking, credit, purge").

Interface agreed between billing's engineers (bodies follow in this module):
- enforce(*, now) -> dict: everything due at `now` after charges were posted: lock wallets
  whose available ≤ 0, budget thresholds and locks of members, low-balance alerts, purge
  reminders and purges. Called by billing.charging.billing_run.
- tenant_lock(*, actor, domain=None, project=None, reason) -> Wallet
- tenant_unlock(*, actor, domain=None, project=None, restart_servers=False) -> Wallet
- member_unlock(*, actor, membership, budget=None) -> Membership
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def enforce(*, now: datetime) -> dict[str, Any]:
    """Nothing is enforced yet: locking, alerts and purges are being built in this module."""
    return {}
