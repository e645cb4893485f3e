"""Open-loop HTTP load for ``GET /v1/feed``, run as its own process: ``python -m kolfeed.bench.loadgen``.

Why open loop, timed from the schedule: a closed-loop client (wrk, a fixed pool of workers) stops
sending while the server is slow, so a stall hides itself ("coordinated omission"). Here request
``i`` is due at ``t0 + i / rate`` whatever happened before, and its latency is measured from that
due time, so queueing inside the client, the kernel or the server all count. Debian has no wrk2,
hence this small generator on the keep-alive asyncio client of :mod:`kolfeed.bench.harness`.

Prints one JSON object (percentiles, errors, achieved rate, client CPU) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kolfeed.bench.harness import RawClient

UNKNOWN_USER_BASE = 900_000_000
"""Ids from here on are not in any synthetic catalog: cold-start users."""


@dataclass(frozen=True)
class LoadSpec:
    port: int
    rate: float
    duration_s: float
    users: int
    unknown_frac: float = 0.05
    limit: int = 20
    max_connections: int = 256
    timeout_s: float = 5.0
    seed: int = 0


def user_ids(spec: LoadSpec, n: int) -> np.ndarray:
    """``n`` random user ids: known ones uniform over ``[0, users)``, a fraction never seen before."""
    rng = np.random.default_rng(spec.seed)
    ids = rng.integers(0, max(spec.users, 1), n)
    unknown = rng.random(n) < spec.unknown_frac
    ids[unknown] = UNKNOWN_USER_BASE + rng.integers(0, 10**8, int(unknown.sum()))
    return ids


def summarize(latency_s: np.ndarray, statuses: np.ndarray, degraded: int, elapsed_s: float) -> dict[str, Any]:
    ms = latency_s * 1000.0
    ok = statuses == 200
    out: dict[str, Any] = {
        "requests": len(ms),
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "error_statuses": {str(int(s)): int((statuses == s).sum()) for s in np.unique(statuses[~ok])},
        "degraded": int(degraded),
        "elapsed_s": round(elapsed_s, 3),
        "achieved_rps": round(len(ms) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }
    if len(ms):
        for q in (50, 90, 99, 99.9):
            out[f"p{q:g}_ms"] = round(float(np.percentile(ms, q)), 3)
        out["max_ms"] = round(float(ms.max()), 3)
        out["mean_ms"] = round(float(ms.mean()), 3)
    return out


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    n = max(1, round(spec.rate * spec.duration_s))
    paths = [f"/v1/feed?user_id={int(u)}&limit={spec.limit}" for u in user_ids(spec, n)]
    latency = np.zeros(n)
    status = np.zeros(n, dtype=np.int64)
    degraded = 0
    client = RawClient(spec.port, timeout_s=spec.timeout_s, max_connections=spec.max_connections)
    interval = 1.0 / spec.rate
    cpu0 = time.process_time()

    async def one(i: int, due: float) -> None:
        nonlocal degraded
        reply = await client.request("GET", paths[i])
        latency[i] = time.perf_counter() - due  # from the scheduled send time, not the actual one
        status[i] = reply.status
        if reply.status == 200 and b'"degraded":true' in reply.body:
            degraded += 1

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.01
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and t0 + i * interval <= now:  # catch up: every due request goes out now
            tasks.append(asyncio.create_task(one(i, t0 + i * interval)))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    await client.close()
    out = summarize(latency, status, degraded, elapsed)
    out["offered_rps"] = spec.rate
    out["duration_s"] = spec.duration_s
    out["client_cpu_s"] = round(time.process_time() - cpu0, 3)
    return out


def _event_loop_name() -> str:
    try:
        import uvloop

        uvloop.install()
        return "uvloop"
    except ImportError:
        return "asyncio"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, required=True, help="seconds of load")
    p.add_argument("--users", type=int, required=True, help="known user ids are 0..USERS-1")
    p.add_argument("--unknown-frac", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.rate <= 0 or a.duration <= 0:
        p.error("--rate and --duration must be positive")
    spec = LoadSpec(
        a.port, a.rate, a.duration, a.users, a.unknown_frac, a.limit, a.max_connections, a.timeout, a.seed
    )
    loop_name = _event_loop_name()
    out = asyncio.run(run_load(spec))
    out["client_loop"] = loop_name
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
