"""Schemathesis against the service's own OpenAPI schema, in-process (ASGI): for every operation,
generated valid and invalid requests never get a 5xx, and admin operations never succeed without
the bearer token. Bounded: a few dozen examples per operation, no shrinking of passing runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from serving.app import create_app
from serving.settings import Settings
from tests.ranking_fixtures import make_tiny_run

RANKING = Path(__file__).resolve().parents[1] / "configs" / "ranking"
TOKEN = "schemathesis-admin-token"
EXAMPLES = 30


def make_app(root: Path, **changes: Any) -> FastAPI:
    runs = root / "runs"
    if not (runs / "run1").exists():
        make_tiny_run(runs / "run1")
    data: dict[str, Any] = {
        "runs_root": runs,
        "ranking_dir": RANKING,
        "event_log_dir": root / "eventlog",
        "admin_token": TOKEN,
        "request_deadline_s": 2.0,
        "request_timeout_s": 30.0,
        "max_body_bytes": 100_000,
    }
    data.update(changes)
    return create_app(Settings(**data))


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    app = make_app(tmp_path_factory.mktemp("schemathesis"))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)


def check_case(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    )
    if case.path.startswith("/v1/admin"):
        assert response.status_code >= 400, f"admin {case.method} {case.path} succeeded without the token"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema: Any, mode: GenerationMode) -> None:
    """Every operation of the schema, valid (positive) and schema-violating (negative) requests."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/feed", "/v1/events", "/v1/admin/reload", "/readyz"} <= paths
    fuzzed = set()
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            check_case(case)

        try:
            run()
        except Unsatisfiable:
            # an operation without parameters or body has no schema-violating request to make
            assert mode is GenerationMode.NEGATIVE, op.path
            continue
        fuzzed.add(op.path)
    assert {"/v1/feed", "/v1/events", "/v1/admin/reload"} <= fuzzed


# ------------------------------------------------------------------ admin routes without a token
def admin_operations(app: FastAPI) -> list[tuple[str, str]]:
    spec = app.openapi()
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/admin")
        for method in item
        if method.lower() in ("get", "post", "put", "patch", "delete")
    ]


@pytest.mark.parametrize("configured, expected", [(True, 401), (False, 403)])
async def test_admin_routes_need_the_token(tmp_path: Path, configured: bool, expected: int) -> None:
    app = make_app(tmp_path, admin_token=TOKEN if configured else None, dev_mode=False)
    ops = admin_operations(app)
    assert ("POST", "/v1/admin/reload") in ops
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kolfeed.test") as client:
            for method, path in ops:
                if "{" in path:
                    continue
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                    r = await client.request(method, path, json={"run_dir": "run1"}, headers=headers)
                    assert r.status_code == expected, (method, path, headers, r.status_code, r.text)
                if configured:
                    ok = await client.request(
                        method, path, json={"run_dir": "run1"}, headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                    assert ok.status_code not in (401, 403), (method, path)
