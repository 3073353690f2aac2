"""The client's address, trusting X-Forwarded-For only as far as the configured proxies.

Behind N reverse proxies that each append the address they received from (nginx:
`proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`), the client is the N-th address
from the right of X-Forwarded-For; anything further left was written by the client and is not
believed. With no proxy (N = 0, the default) the address is REMOTE_ADDR. Set N with
TEACHCLOUD_TRUSTED_PROXIES; DRF's throttles use the same number (NUM_PROXIES).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    meta = request.META
    proxies = settings.TEACHCLOUD_TRUSTED_PROXIES
    if proxies > 0:
        forwarded = [
            a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(meta.get("REMOTE_ADDR", ""))
