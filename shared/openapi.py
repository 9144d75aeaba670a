"""The OpenAPI document of a Pantau HTTP API, for the ingest gateway and the notify API alike.

Their routes read raw requests (for speed, size caps and problem answers of their own), so
FastAPI never sees the body models: a route names its body with `json_body(Model)` in its
`openapi_extra`, and `install` adds those models and the bearer schemes to FastAPI's document.
Every rule the document states (patterns, formats, bounds) is written on the model or the
route declaration; nothing here edits the document after FastAPI has made it.
"""

from __future__ import annotations

from typing import Any, Iterable

from fastapi import FastAPI
from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The `requestBody` of a route that reads `model` as JSON itself."""
    return {"required": required, "content": {"application/json": {
        "schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}}}


def bearer(scheme: str) -> list[dict[str, list[str]]]:
    """The `security` of a route that wants the bearer token named `scheme` (see `install`)."""
    return [{scheme: []}]


def install(app: FastAPI, description: str, models: Iterable[type[BaseModel]], schemes: dict[str, str]) -> None:
    """Serve FastAPI's document of `app` with `models` among its schemas and `schemes` (name:
    description) as its HTTP bearer security schemes; made once, on first request."""
    models = tuple(models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=description)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in models:
            js = model.model_json_schema(ref_template=REF_TEMPLATE)
            schemas.update(js.pop("$defs", {}))
            schemas[model.__name__] = js
        components["securitySchemes"] = {
            name: {"type": "http", "scheme": "bearer", "description": why} for name, why in schemes.items()}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["bearer", "install", "json_body"]
