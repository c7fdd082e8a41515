"""crm-api's OpenAPI document is complete: every operation is described, every JSON request body and
2xx JSON response schema carries examples, every example is valid for its model, errors are problem+json.

The routes are found by walking the app, not by name, so a new endpoint without examples fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.problems import PROBLEM_JSON
from leadflow_crm_api.settings import CrmApiSettings

pytestmark = pytest.mark.unit

JSON = "application/json"
ERROR_STATUSES = ("401", "403", "404", "422")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(CrmApiSettings())


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _ours(path: str) -> bool:
    return not path.startswith("/health")  # the shared health endpoints are not crm-api's


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref: str = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        if _ours(path):
            for method, operation in item.items():
                yield path, method, operation


def _request_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    return _resolve(spec, content[JSON]["schema"]) if JSON in content else None


def _success_schemas(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        code: _resolve(spec, response["content"][JSON]["schema"])
        for code, response in operation["responses"].items()
        if code.startswith("2") and JSON in response.get("content", {})
    }


def missing_examples(spec: dict[str, Any]) -> list[str]:
    """Every JSON request body and 2xx JSON response schema without examples, as "METHOD path part"."""
    missing = []
    for path, method, operation in _operations(spec):
        where = f"{method.upper()} {path}"
        request = _request_schema(spec, operation)
        if request is not None and not request.get("examples"):
            missing.append(f"{where} request body")
        missing += [
            f"{where} {code} response" for code, s in _success_schemas(spec, operation).items() if not s.get("examples")
        ]
    return missing


def _routes(app: FastAPI) -> list[tuple[str, set[str], APIRoute]]:
    """(path, methods, route) of every documented operation, through included routers as the spec walks them."""
    found = []
    for context in iter_route_contexts(app.routes):
        route, path, methods = context.original_route, context.path, context.methods
        if isinstance(route, APIRoute) and context.include_in_schema and path is not None and _ours(path):
            found.append((path, methods or set(), route))
    return found


def _model_examples(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        examples: list[Any] = annotation.model_json_schema().get("examples", [])
    else:
        examples = TypeAdapter(annotation).json_schema().get("examples", [])
    return examples


def _validate(annotation: Any, example: Any) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        annotation.model_validate(example)
    else:
        TypeAdapter(annotation).validate_python(example)


def _without_nulls(value: Any) -> Any:
    """What FastAPI's get_openapi (jsonable_encoder(exclude_none=True)) makes of an example: fastapi#5559."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_the_app_has_operations_to_check(app: FastAPI, spec: dict[str, Any]) -> None:
    operations = list(_operations(spec))
    assert len(operations) >= 20
    assert sorted((p, m.lower()) for p, methods, _ in _routes(app) for m in methods) == sorted(
        (p, m) for p, m, _ in operations
    )


def test_every_operation_is_described(spec: dict[str, Any]) -> None:
    undescribed = [f"{m.upper()} {p}" for p, m, op in _operations(spec) if not (op.get("description") or "").strip()]
    assert undescribed == []


def test_every_json_body_and_success_response_has_examples(spec: dict[str, Any]) -> None:
    assert missing_examples(spec) == []


class Bare(BaseModel):
    note: str


def test_an_endpoint_without_examples_is_reported() -> None:
    bare = FastAPI()

    @bare.post("/v1/bare")
    async def post_bare(body: Bare) -> Bare:
        """Echo."""
        return body

    assert missing_examples(bare.openapi()) == ["POST /v1/bare request body", "POST /v1/bare 200 response"]


def test_every_example_is_valid_for_its_model(app: FastAPI, spec: dict[str, Any]) -> None:
    """Each model's examples validate, and they are the ones the spec publishes.

    The spec drops null values from examples (fastapi#5559), so the examples are validated in their
    model's own form and compared with the published ones modulo nulls.
    """
    checked = 0
    for path, methods, route in _routes(app):
        for method in methods:
            operation = spec["paths"][path][method.lower()]
            used: list[tuple[str, Any, dict[str, Any]]] = []
            request = _request_schema(spec, operation)
            if request is not None:
                assert route.body_field is not None, path
                used.append(("request body", route.body_field.field_info.annotation, request))
            for code, schema in _success_schemas(spec, operation).items():
                assert route.response_model is not None, f"{method} {path} {code}"
                used.append((f"{code} response", route.response_model, schema))
            for part, annotation, published in used:
                where = f"{method} {path} {part}"
                examples = _model_examples(annotation)
                assert examples, where
                assert published["examples"] == [_without_nulls(e) for e in examples], where
                for example in examples:
                    _validate(annotation, example)
                    checked += 1
    assert checked >= 30


def test_request_bodies_still_refuse_unknown_fields(app: FastAPI) -> None:
    for _, _, route in _routes(app):
        if route.body_field is not None:
            model = route.body_field.field_info.annotation
            assert isinstance(model, type)
            assert issubclass(model, BaseModel)
            assert model.model_config.get("extra") == "forbid", model.__name__


def test_error_responses_stay_problem_details(spec: dict[str, Any]) -> None:
    """Errors are served as application/problem+json (problems.py); their documented model is Problem."""
    problem = spec["components"]["schemas"]["Problem"]
    for path, method, operation in _operations(spec):
        for code in ERROR_STATUSES:
            content = operation["responses"][code]["content"]
            assert PROBLEM_JSON in content, f"{method.upper()} {path} {code}"
            schemas = [_resolve(spec, media["schema"]) for media in content.values() if "schema" in media]
            assert schemas, f"{method.upper()} {path} {code}"
            assert all(s is problem for s in schemas), f"{method.upper()} {path} {code}"
