"""Prometheus metrics of one app instance, on its own registry.

Why a registry per app: tests build many apps in one process, and the global default registry
would refuse the second registration. Labels are low-cardinality (route templates, not raw paths;
store *scheme*, never the URL, so a password can never leak into /metrics).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from serving.logs import REQUEST_ID_HEADER, log_access, start_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

M = TypeVar("M", bound=MetricWrapperBase)


class LabelCache(Generic[M]):
    """``metric.labels(*values)`` remembered per label values (positional, in ``labelnames`` order).

    Why: ``labels()`` validates the values and takes a lock on every call, several times the cost of
    the ``inc()`` itself, and the request path calls it several times per request. The label sets are
    few and bounded (routes, arms, sources, reasons), and a child once created lives in its metric
    for good anyway, so remembering it costs nothing more.
    """

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kolfeed_http_requests", "HTTP requests by route", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "kolfeed_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feed_responses = Counter("kolfeed_feed_responses", "feed pages served", ["arm"], registry=r)
        self.feed_items = Counter("kolfeed_feed_items_served", "feed entries served", ["source"], registry=r)
        self.degraded = Counter(
            "kolfeed_feed_degraded", "feed pages answered without the feature store", ["reason"], registry=r
        )
        self.events = Counter("kolfeed_events_accepted", "events accepted", ["action"], registry=r)
        self.reloads = Counter("kolfeed_model_reloads", "admin model reloads", ["outcome"], registry=r)
        self.model_version = Gauge("kolfeed_model_version", "version of the run being served", registry=r)
        self.store_backend = Gauge("kolfeed_store_backend", "store in use", ["scheme"], registry=r)
        # children of the per-request metrics, by label values
        self.requests_for = LabelCache(self.requests)
        self.latency_for = LabelCache(self.latency)
        self.feed_responses_for = LabelCache(self.feed_responses)
        self.feed_items_for = LabelCache(self.feed_items)
        self.degraded_for = LabelCache(self.degraded)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/feed``), or ``unmatched`` so 404 scans cannot blow up labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if "endpoint" in scope:  # a plain Starlette route (/docs, /openapi.json): static paths, bounded
        return str(scope.get("path", "unmatched"))
    return "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template and status, gives
    it a request id (the caller's ``x-request-id`` or a fresh one, echoed in the response header)
    and writes its access log line (serving/logs.py)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        incoming = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming = value
                break
        rid = start_request(incoming).encode("latin-1")

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_label(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests_for(route, method, str(status)).inc()
            elapsed = time.perf_counter() - start
            self.metrics.latency_for(route, method).observe(elapsed)
            log_access(method, str(scope.get("path", "")), status, elapsed)
