"""``GET /v1/feed`` without FastAPI's per-request machinery, for well-formed requests.

Why: for a feed, FastAPI's routing, dependency resolution, Request/Response objects and its
exception and exit-stack middlewares cost about a sixth of the server's CPU (py-spy on the
``kolfeed bench serve`` world), and a well-formed feed request needs none of it. This middleware sits
innermost of the app's own, so metrics, request ids, access lines, load shedding and the body limit
apply as before. It parses the query string, validates it with the same :class:`FeedQuery`, calls
the same :func:`get_feed` and sends the same status, headers and bytes as the route.

Anything else goes to the FastAPI route untouched, which answers exactly as it always did: another
path or method, a query string the fast path does not take as is (unknown or repeated parameters,
an empty value, anything :class:`FeedQuery` rejects), a :class:`FeedError` (raised before the page
has any side effect, so the route simply raises it again), no store yet, or dependency overrides
(tests swapping the store). The route stays registered, so the OpenAPI schema is unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from serving.feed_service import FeedError, get_feed
from serving.routers.feed import router as feed_router
from serving.schemas import FeedQuery
from serving.service_state import service_state

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FEED_PATH = "/v1/feed"
_FIELDS = frozenset(FeedQuery.model_fields)


def fast_query(raw: bytes) -> dict[str, str] | None:
    """The feed query's parameters as the route would read them, or None when the fast path should
    leave the request to the route (an unknown, repeated or empty parameter)."""
    out: dict[str, str] = {}
    # as Starlette reads a query string: latin-1, blank values kept
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key in out or key not in _FIELDS or not value:
            return None
        out[key] = value
    return out


class FeedFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    def _feed_route(self) -> Any:
        """The route object FastAPI puts in the scope for this path (the metrics label by its path)."""
        if self._route is None:
            for route in feed_router.routes:
                if getattr(route, "path", None) == FEED_PATH and "GET" in getattr(route, "methods", ()):
                    self._route = route
                    break
        return self._route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != FEED_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        params = fast_query(scope.get("query_string", b""))
        if app is None or app.dependency_overrides or params is None:
            await self.app(scope, receive, send)
            return
        st = service_state(app)
        route = self._feed_route()
        if st.store is None or route is None:
            await self.app(scope, receive, send)
            return
        try:
            query = FeedQuery.model_validate(params)
        except ValidationError:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        try:
            page = await get_feed(
                query,
                st.settings,
                st.holder,
                st.store,
                st.variants,
                st.metrics,
                st.trending_cache,
                st.experiments,
            )
        except FeedError:
            await self.app(scope, receive, send)
            return
        body = page.json_bytes()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
