"""Every answer under /api/ is {code, detail} JSON — bad input is a 400, never a 500 or an HTML
page, whatever breaks (issue 12.9)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from teachcloud.testing.factories import api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(world):
    client = Client(raise_request_exception=False)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(world.platform)}"
    return client


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) >= {"code", "detail"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.mark.parametrize("value", ["0001-01-01", "0001-01-01T00:00:00", "9999-12-31T23:59:59"])
def test_an_instant_out_of_range_is_a_400(api, value):
    assert_error(api.get("/api/v1/transactions/", {"start": value}), 400)
    assert_error(api.get("/api/v1/transactions/", {"end": value}), 400)


def test_a_report_asked_in_the_browsable_format_is_json(api):
    response = api.get("/api/v1/reports/charges/", {"format": "api"})
    assert response.status_code in (200, 404), response.content[:300]
    assert response["Content-Type"].startswith("application/json")


def test_json_nested_beyond_reason_is_a_400(api):
    body = "[" * 100_000 + "]" * 100_000
    response = api.post("/api/v1/domains/", body, content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_a_body_over_the_size_limit_is_a_json_400(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"name": "x" * 4096, "code": "big"})
    response = api.post("/api/v1/domains/", body, content_type="application/json")
    assert_error(response, 400)


def test_an_unexpected_error_on_an_api_path_is_a_json_500(api, monkeypatch):
    from tenancy import api as tenancy_api

    def boom(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(tenancy_api.DomainViewSet, "list", boom)
    body = assert_error(api.get("/api/v1/domains/"), 500, "server_error")
    assert "nobody expected" not in body["detail"]  # no internals in the answer


def test_djangos_error_pages_are_json_on_api_paths_and_html_elsewhere(rf):
    from django.core.exceptions import SuspiciousOperation

    from teachcloud.api import errors

    for handler, args, status in [
        (errors.bad_request, (SuspiciousOperation("x"),), 400),
        (errors.permission_denied, (Exception("x"),), 403),
        (errors.page_not_found, (Exception("x"),), 404),
        (errors.server_error, (), 500),
    ]:
        api_answer = handler(rf.get("/api/v1/domains/"), *args)
        assert api_answer.status_code == status
        assert api_answer["Content-Type"] == "application/json"
        assert set(json.loads(api_answer.content)) == {"code", "detail"}
        page = handler(rf.get("/domains/1/"), *args)
        assert page.status_code == status and page["Content-Type"].startswith("text/html")
