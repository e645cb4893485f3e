"""The OpenAPI document as a contract, and the docs page that renders it without internet access.

Why post-process FastAPI's document: frontends generate clients from it, so it must describe every
response the service really sends. FastAPI documents its own validation-error body (``detail`` as a
list) on every operation with parameters, while this service answers 422 with one readable line
plus a compact list (serving/errors.py): the 422s are re-pointed at that body here. The ranking
variants are known only once the lifespan has loaded them, so the ``variant`` parameter's enum is
filled in then. The Swagger UI assets ship with the ``swagger-ui-bundle-v2`` package and are served
from this process, so ``/docs`` works on an air-gapped host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from serving.schemas import ErrorResponse, ValidationErrorResponse
from serving.service_state import service_state

DOCS_ASSETS = "/docs-assets"
_VALIDATION_REF = "#/components/schemas/ValidationErrorResponse"


def swagger_assets_dir() -> Path | None:
    """The packaged Swagger UI directory (swagger-ui-bundle.js, swagger-ui.css), if installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def contract_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the service's real 422 body and the loaded variants as an enum."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
    components["ValidationErrorResponse"] = ValidationErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for defs_name, defs in components["ValidationErrorResponse"].pop("$defs", {}).items():
        components.setdefault(defs_name, defs)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = {
                    "description": "The body is not valid JSON",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                    },
                }
            response = responses.get("422")
            if response is not None:
                response["description"] = "Invalid request: `detail` names each bad field"
                response["content"] = {"application/json": {"schema": {"$ref": _VALIDATION_REF}}}
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, f"#/components/schemas/{unused}"):
            components.pop(unused, None)
    variants = service_state(app).variants
    if variants:
        _set_variant_enum(schema, sorted(variants))
    return schema


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False


def _set_variant_enum(schema: dict[str, Any], names: list[str]) -> None:
    operation = schema.get("paths", {}).get("/v1/feed", {}).get("get", {})
    for param in operation.get("parameters", []):
        if param.get("name") == "variant":
            inner = param.get("schema", {})
            for option in inner.get("anyOf", [inner]):
                if option.get("type") == "string":
                    option["enum"] = names


def install_openapi(app: FastAPI) -> None:
    """Serve the contract document and an offline ``/docs`` page (FastAPI's own docs routes off)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = contract_schema(app)
            if service_state(app).variants:  # complete: cache it
                app.openapi_schema = document
            return document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    assets = swagger_assets_dir()
    if assets is not None:
        app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                "<p>The Swagger UI assets are not installed (pip install swagger-ui-bundle-v2); "
                "the contract is at <a href='/openapi.json'>/openapi.json</a>.</p>"
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
