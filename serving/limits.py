"""Load shedding: bounded concurrency, a short admission wait, and a per-request deadline.

Why in front of everything: without a bound, a burst queues inside the event loop and every request
gets slow until clients time out. Here at most ``max_inflight`` requests run at once; a request that
cannot get a slot within ``max_queue_wait_s`` (or finds ``max_waiting`` others already waiting) is
answered ``503`` with ``Retry-After`` at once, and a request that runs past ``request_timeout_s`` is
cut off with a ``503`` instead of hanging. Probes (``/livez``, ``/readyz``, ``/metrics``) bypass the
limiter so an orchestrator can still see an overloaded replica; admin calls bypass the deadline
(a reload legitimately takes seconds) but not the limiter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from serving.metrics import ASGIApp, Message, Receive, Scope, Send, ServiceMetrics
from serving.service_state import service_state

log = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
NO_DEADLINE_PREFIXES = ("/v1/admin",)


@dataclass(frozen=True)
class LimitConfig:
    max_inflight: int
    max_waiting: int
    max_queue_wait_s: float
    request_timeout_s: float
    retry_after_s: int = 1


class Overloaded(Exception):
    """No slot became free in time (or the wait queue is full)."""


class ConcurrencyLimiter:
    """An asyncio semaphore with a bounded, time-limited wait and counters for /metrics and tests."""

    def __init__(self, config: LimitConfig) -> None:
        self.config = config
        self._slots = asyncio.Semaphore(config.max_inflight)
        self.inflight = 0
        self.waiting = 0
        self.shed = 0
        self.timed_out = 0

    async def acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken at once, without suspending
            self.inflight += 1
            return
        if self.waiting >= self.config.max_waiting:
            self.shed += 1
            raise Overloaded("wait queue full")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.config.max_queue_wait_s)
        except TimeoutError:
            self.shed += 1
            raise Overloaded("no slot within the admission wait") from None
        finally:
            self.waiting -= 1
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1
        self._slots.release()


class LimitMiddleware:
    """Pure ASGI middleware applying a :class:`ConcurrencyLimiter` and the per-request deadline."""

    def __init__(self, app: ASGIApp, limiter: ConcurrencyLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        cfg = self.limiter.config
        try:
            await self.limiter.acquire()
        except Overloaded as exc:
            await send_503(send, f"overloaded ({exc}); retry later", cfg.retry_after_s)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            path = str(scope.get("path", ""))
            if path.startswith(NO_DEADLINE_PREFIXES):
                await self.app(scope, receive, tracking_send)
                return
            try:
                async with asyncio.timeout(cfg.request_timeout_s):
                    await self.app(scope, receive, tracking_send)
            except TimeoutError:
                self.limiter.timed_out += 1
                log.warning(
                    "request %s %s cut off at its %.2fs deadline",
                    scope.get("method"),
                    path,
                    cfg.request_timeout_s,
                )
                if not started:
                    await send_503(send, "request deadline exceeded; retry later", cfg.retry_after_s)
        finally:
            self.limiter.release()


async def send_503(send: Send, detail: str, retry_after_s: int) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _ReliabilityCollector:
    """Reads the limiter and the outbox at scrape time (no bookkeeping on the request path)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = service_state(self.app)
        limiter: ConcurrencyLimiter | None = getattr(state, "limiter", None)
        if limiter is not None:
            yield GaugeMetricFamily(
                "kolfeed_inflight_requests", "requests being handled", value=limiter.inflight
            )
            yield GaugeMetricFamily(
                "kolfeed_waiting_requests", "requests waiting for a slot", value=limiter.waiting
            )
            yield CounterMetricFamily(
                "kolfeed_shed_requests", "requests answered 503 by the limiter", value=limiter.shed
            )
            yield CounterMetricFamily(
                "kolfeed_deadline_exceeded", "requests cut off at their deadline", value=limiter.timed_out
            )
        event_log = getattr(state, "event_log", None)
        replayer = getattr(state, "replayer", None)
        outbox = getattr(state, "outbox", None)
        if event_log is not None and replayer is not None and outbox is not None:
            yield GaugeMetricFamily(
                "kolfeed_event_log_last_seq",
                "last acknowledged event sequence number",
                value=event_log.last_seq,
            )
            yield GaugeMetricFamily(
                "kolfeed_event_log_pending", "logged events not yet in the store", value=replayer.pending
            )
            yield CounterMetricFamily(
                "kolfeed_store_rebuilds",
                "store rebuilds from the log (store lost data)",
                value=outbox.status.rebuilds,
            )
            yield CounterMetricFamily(
                "kolfeed_events_replayed",
                "logged events applied by the replayer",
                value=outbox.status.replayed,
            )
        committer = getattr(state, "committer", None)
        if committer is not None:
            yield CounterMetricFamily(
                "kolfeed_event_log_group_commits",
                "appends to the event log, each one write + one fsync (requests / this = mean group size)",
                value=committer.stats.groups,
            )
            yield CounterMetricFamily(
                "kolfeed_event_log_group_commit_requests",
                "event batches (requests) acknowledged through group commits",
                value=committer.stats.requests,
            )


def register_reliability_metrics(metrics: ServiceMetrics, app: Any) -> None:
    metrics.registry.register(_ReliabilityCollector(app))
