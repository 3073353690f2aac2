"""Every API error is {"code": "<snake_case>", "detail": "<human text>"[, "fields": {...}]}.

Also for what DRF never sees: Django's 400/403/404/500 handlers (teachcloud/urls.py) answer the
same JSON on /api/ paths — a body over the size limit, a CSRF failure, an error in a middleware —
and the portal's pages elsewhere. An unexpected exception in an API view is logged with its
traceback and answered 500 `server_error` without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from teachcloud.errors import ServiceError

log = logging.getLogger("teachcloud.api")

CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _flatten(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten(v) for v in value]
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"code": exc.code, "detail": exc.detail}
        if exc.fields:
            body["fields"] = _flatten(exc.fields)
        return Response(body, status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        detail = _("The request body is larger than the server accepts.")
        return Response({"code": "request_too_large", "detail": detail}, status=400)
    if isinstance(exc, SuspiciousOperation):  # Django's "this request is malformed"
        detail = _("The request could not be read (too large or malformed).")
        return Response({"code": "bad_request", "detail": detail}, status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        # Not an API error: a bug or a failing dependency. Logged like Django logs a 500 (and
        # seen by error alerting), answered without internals, and the transaction rolled back.
        request = context.get("request")
        log.error(
            "Internal Server Error: %s",
            getattr(request, "path", "?"),
            exc_info=exc,
            extra={"status_code": 500, "request": getattr(request, "_request", None)},
        )
        set_rollback()
        response = Response(
            {"code": "server_error", "detail": _("Something went wrong on our side; try again.")},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
        response._has_been_logged = True  # logged above, with the traceback (django.request)
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(
            exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        )
        first = next(iter(fields.values()), [""])
        message = first[0] if isinstance(first, list) and first else str(first)
        response.data = {
            "code": "invalid",
            "detail": _("Invalid input: %(m)s") % {"m": message},
            "fields": fields,
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), None)
    if code is None:
        code = getattr(exc, "default_code", "error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    response.data = {"code": code, "detail": str(detail)}
    return response


# -- Django's error handlers: JSON on /api/ paths ---------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _json(code: str, detail: str, status_code: int) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status_code)


def bad_request(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if _is_api(request):
        detail = _("The request could not be read (too large or malformed).")
        return _json("bad_request", detail, 400)
    return defaults.bad_request(request, exception, **kwargs)


def permission_denied(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if _is_api(request):
        return _json("permission_denied", _("You do not have permission to do this."), 403)
    return defaults.permission_denied(request, exception, **kwargs)


def page_not_found(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if _is_api(request):
        return _json("not_found", _("Not found."), 404)
    return defaults.page_not_found(request, exception, **kwargs)


def server_error(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    if _is_api(request):
        return _json("server_error", _("Something went wrong on our side; try again."), 500)
    return defaults.server_error(request, **kwargs)
