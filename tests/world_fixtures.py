"""Generated worlds for tests: the tiny scale (seconds to build) at the seed a test module pins."""

from __future__ import annotations

from pathlib import Path


def make_tiny_world(out: Path, seed: int) -> Path:
    """Generate the tiny-scale world of ``seed`` into ``out``; returns ``out``."""
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world

    generate_world(scale_config("tiny"), seed, out, scale="tiny", progress=False)
    return out
