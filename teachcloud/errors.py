"""The one error type services raise. The API answers it as {code, detail[, fields]}; the portal
shows `detail` as a message. Nothing is written when it is raised (services are atomic)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    default_code = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = str(detail)
        self.code = code or self.default_code
        self.fields = fields
        if status is not None:
            self.status = status


class Conflict(ServiceError):
    """The request is valid but clashes with what exists (duplicate, last admin, …)."""

    status = 409
    default_code = "conflict"
