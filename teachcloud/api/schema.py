"""OpenAPI post-processing: document the {code, detail} error body on every operation."""

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": True},
    },
    "required": ["code", "detail"],
}
DESCRIPTIONS = {
    "400": "Invalid input",
    "401": "Not authenticated",
    "403": "Forbidden",
    "404": "Not found",
    "405": "Method not allowed",
    "406": "Not acceptable",
    "409": "Conflict",
    "415": "Unsupported media type",
    "429": "Too many requests",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in DESCRIPTIONS.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
            for status, response in responses.items():
                # An error a view declares with only a description (e.g. a 503) has the same body.
                if str(status)[0] in "45" and not response.get("content"):
                    response["content"] = {"application/json": {"schema": ref}}
    return result
