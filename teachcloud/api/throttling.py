"""Throttles of the API, switched on and off as a whole by TEACHCLOUD_THROTTLE_ENABLED."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle


class SwitchableScopedRateThrottle(ScopedRateThrottle):
    """A ScopedRateThrottle (rate from DEFAULT_THROTTLE_RATES[view.throttle_scope]) that lets
    every request through while settings.TEACHCLOUD_THROTTLE_ENABLED is false (tests)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        if not settings.TEACHCLOUD_THROTTLE_ENABLED:
            return True
        return super().allow_request(request, view)
