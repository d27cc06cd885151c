"""Check a problem answer against the schema the OpenAPI document publishes for that route and status.

The schema is taken from the API's own ``/api/v1/openapi.json`` (``paths[route][method].responses[status]``,
``application/problem+json``) and its ``$ref``s are resolved inside that document, so what is checked is
exactly what an integrator generating a client from the document would rely on.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

PROBLEM_JSON = "application/problem+json"


def published_schema(openapi: dict[str, Any], route: str | None, method: str, status: int) -> dict[str, Any]:
    """The schema of ``status`` answers of ``method route`` (``route`` as in the document, ``/api/v1/orders/
    {ref}``); ``route=None`` (no route matched, e.g. an unknown path) means the generic ``Problem``."""
    if route is None:
        return {"$ref": "#/components/schemas/Problem"}
    operation = openapi["paths"][route][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {route} answers {status}, which its OpenAPI entry does not list"
    content = responses[str(status)].get("content", {})
    assert PROBLEM_JSON in content, f"{method} {route} {status} is not published as {PROBLEM_JSON}: {content}"
    schema: dict[str, Any] = content[PROBLEM_JSON]["schema"]
    return schema


def assert_published(openapi: dict[str, Any], response: Any, route: str | None, method: str) -> dict[str, Any]:
    """The problem body of ``response`` (an httpx or TestClient response), checked against its published schema."""
    assert response.headers["content-type"].startswith(PROBLEM_JSON), (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code, body
    schema = published_schema(openapi, route, method, response.status_code)
    validator = Draft202012Validator({**schema, "components": openapi["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method} {route} {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors
    ) + f"\n{body}"
    return body
