"""The OpenAPI schema documents the {code, detail} error body on every error response."""

import pytest
import yaml
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    response = client.get(reverse("api-schema"))
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_every_error_response_has_the_error_body(schema):
    error = {"$ref": "#/components/schemas/Error"}
    checked = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if str(status)[0] in "45":
                    content = response.get("content", {})
                    assert content.get("application/json", {}).get("schema") == error, (
                        method,
                        path,
                        status,
                    )
                    checked += 1
    assert checked > 100


def test_the_statement_pdf_documents_a_missing_font(schema):
    operation = schema["paths"]["/api/v1/statements/{id}/pdf/"]["get"]
    assert "pdf_font_missing" in operation["responses"]["503"]["description"]
