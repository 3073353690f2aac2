"""PostgreSQL advisory locks, the one place that takes them.

Two kinds, both keyed by (namespace, key) — two 32-bit integers:

- `xact_lock` waits and holds until the surrounding transaction ends (commit or rollback):
  it serialises writers of one thing (an hour of charges, one mail address's rate limit).
- `session_lock` tries without waiting and holds until the block exits, across transactions
  and network calls: a second worker doing the same job (a VM build, the cloud sync) sees
  `False` and leaves.

The namespaces in use (each constant lives beside its caller):
billing.charging 73_001–73_003, compute.enforcement 74_001–74_002, compute.services 0x7C0B,
billing.notify 0x7EAC.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def text_key(text: str) -> int:
    """A stable 32-bit signed key for a text (e.g. a mail address)."""
    return zlib.crc32(text.encode()) - 2**31


def xact_lock(namespace: int, key: int) -> None:
    """Wait for the lock on (namespace, key); it is released when the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, key])


@contextmanager
def session_lock(namespace: int, key: int = 0) -> Iterator[bool]:
    """Try the session lock on (namespace, key) without waiting; yield whether it was taken and
    release it on exit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
        taken = bool(cursor.fetchone()[0])
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
