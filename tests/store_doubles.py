"""Test doubles that are real stores: a MemoryStore subclass whose trending reads can be counted,
failed, hung or held (no mocks of the store protocol)."""

from __future__ import annotations

import asyncio

from features.errors import StoreUnavailable
from features.memory import MemoryStore


class TrendingStore(MemoryStore):
    """A real memory store counting trending reads, which can fail them, hang them, or hold them
    until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.down = False
        self.hang = False
        self.gate: asyncio.Event | None = None

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        self.reads += 1
        if self.down:
            raise StoreUnavailable("connection refused")
        if self.hang:
            await asyncio.sleep(3600)
        if self.gate is not None:
            await self.gate.wait()
        return await super().trending(k, category, now)
