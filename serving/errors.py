"""Exception handlers and the body-size guard: bad input is always a 4xx with a readable message.

Why rewrite validation errors: FastAPI's default 422 body echoes the input and nests contexts that
are hard to read; clients get ``detail`` (one line naming each bad field/parameter) plus a compact
``errors`` list. Unexpected errors are logged with their traceback and answered as a bare JSON 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.metrics import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


def _loc(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "body", "path", "header"):
        where, rest = parts[0], parts[1:]
        return f"{where} {'.'.join(rest)}".strip() if rest else where
    return ".".join(parts)


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    compact: list[dict[str, str]] = []
    for err in errors:
        loc = _loc(err.get("loc", ()))
        kind = str(err.get("type", "invalid"))
        if kind == "extra_forbidden":
            msg = "unknown parameter" if loc.startswith("query") else "unknown field"
        elif kind == "missing":
            msg = "required"
        else:
            msg = str(err.get("msg", "invalid value"))
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
        compact.append({"loc": loc, "msg": msg, "type": kind})
    detail = "; ".join(f"{c['loc']}: {c['msg']}" for c in compact) or "invalid request"
    return detail, compact


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail, compact = describe_validation_errors(exc.errors())
    return JSONResponse({"detail": detail, "errors": compact}, status_code=422)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(Exception, _unexpected_handler)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._too_large())
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading; Starlette turns it into a 413.
                    raise HTTPException(status_code=413, detail=self._too_large())
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> str:
        return f"request body too large (limit {self.max_bytes} bytes)"


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
