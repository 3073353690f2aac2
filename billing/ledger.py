"""Posting to the double-entry ledger. Every money movement of TeachCloud goes through `post`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from billing.models import Entry, Transaction, Wallet, WalletKind
from teachcloud.errors import ServiceError


def platform_wallet() -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(kind=WalletKind.PLATFORM)
    return wallet


def post(
    *,
    kind: str,
    wallet: Wallet,
    legs: list[tuple[Wallet | None, Decimal]],
    period_start: datetime | None = None,
    memo: str = "",
    created_by: Any = None,
    **fields: Any,
) -> Transaction:
    """Write one transaction with its entries and move the cached balances, atomically.

    `legs` are (wallet or None for the outside world, amount); they must sum to zero.
    """
    if sum((amount for _, amount in legs), Decimal(0)) != 0:
        raise ServiceError("A transaction's entries must sum to zero.", code="unbalanced")
    with transaction.atomic():
        tx = Transaction.objects.create(
            kind=kind,
            wallet=wallet,
            period_start=period_start,
            memo=memo[:300],
            created_by=created_by if getattr(created_by, "pk", None) else None,
            **fields,
        )
        Entry.objects.bulk_create(
            [Entry(transaction=tx, wallet=leg_wallet, amount=amount) for leg_wallet, amount in legs]
        )
        deltas: dict[int, Decimal] = defaultdict(Decimal)
        for leg_wallet, amount in legs:
            if leg_wallet is not None:
                deltas[leg_wallet.pk] += amount
        for wallet_id, delta in sorted(deltas.items()):  # one lock order: by wallet id
            Wallet.objects.filter(pk=wallet_id).update(balance=F("balance") + delta)
    return tx
