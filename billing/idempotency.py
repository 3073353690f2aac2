"""`Idempotency-Key` on money-moving API requests (SPEC API contract): the same key with the same
body answers the first answer again; the same key with another body is 409.

The key is claimed in its own short transaction before the service runs (the services are
durable transactions of their own), and the answer stored after it succeeded. So a retry while
the first request still runs — or after it died between the two — is 409
`idempotency_in_progress`, never a second posting; a request that failed (4xx) releases the key,
since it changed nothing. Keys are per user.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import IdempotencyKey
from teachcloud.errors import Conflict, ServiceError

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces

PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "A key of your choosing (e.g. a UUID): sending the same request again with the same key "
        "answers the first answer again and moves no money twice; the same key with another "
        "body is 409."
    ),
)


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str, ensure_ascii=False)
    text = f"{request.method} {request.path}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def _claim(*, user: Any, key: str, fingerprint: str) -> IdempotencyKey | None:
    """None when this request claimed the key; else the row of the earlier request."""
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint)
        return None
    except IntegrityError:  # claimed before (a concurrent claim waits for the first to commit)
        return IdempotencyKey.objects.get(user=user, key=key)


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a DRF view method that moves money."""

    @wraps(view)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view(self, request, *args, **kwargs)
        if not KEY_RE.fullmatch(key):
            raise ServiceError(
                _("The Idempotency-Key must be 1 to 255 printable ASCII characters."),
                code="invalid_idempotency_key",
            )
        fingerprint = _fingerprint(request)
        earlier = _claim(user=request.user, key=key, fingerprint=fingerprint)
        if earlier is not None:
            if earlier.fingerprint != fingerprint:
                raise Conflict(
                    _("This Idempotency-Key was used for another request."),
                    code="idempotency_key_reused",
                )
            if earlier.status is None:
                raise Conflict(
                    _(
                        "A request with this Idempotency-Key is still running or did not "
                        "finish; check the wallet before trying again with a new key."
                    ),
                    code="idempotency_in_progress",
                )
            answer = Response(earlier.response, status=earlier.status)
            answer["Idempotent-Replayed"] = "true"
            return answer
        try:
            response = view(self, request, *args, **kwargs)
        except Exception:
            # Nothing was written (the service rolled back): the key is free for a retry.
            IdempotencyKey.objects.filter(user=request.user, key=key, status=None).delete()
            raise
        if 200 <= response.status_code < 300:
            IdempotencyKey.objects.filter(user=request.user, key=key).update(
                status=response.status_code, response=response.data
            )
        else:
            IdempotencyKey.objects.filter(user=request.user, key=key, status=None).delete()
        return response

    return wrapper
