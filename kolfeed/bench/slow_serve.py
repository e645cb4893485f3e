"""The feed service with a ranker that takes a fixed extra time: a known capacity for overload runs.

Why: "3x the sustainable rate" needs a sustainable rate that does not depend on how busy the shared
machine is. With ``max_inflight`` slots and a ranker that sleeps ``--rank-delay`` seconds (in its
worker thread, like real CPU work would occupy it), capacity is about ``max_inflight / delay``.
Test/benchmark use only: ``python -m kolfeed.bench.slow_serve --rank-delay 0.02 --run DIR ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any


class SlowRanker:
    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def rank(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay_s)
        return self.inner.rank(*args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from pydantic import SecretStr

    from serving.app import create_app
    from serving.settings import Settings
    from serving.state import load_model

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rank-delay", type=float, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--store", default="memory://")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ranking-dir", type=Path, default=None)
    a = p.parse_args(argv)
    extra: dict[str, Any] = {} if a.ranking_dir is None else {"ranking_dir": a.ranking_dir}
    settings = Settings(run_dir=a.run, runs_root=a.runs, store_url=SecretStr(a.store), **extra)
    loaded = load_model(a.run)
    loaded = dataclasses.replace(loaded, ranker=SlowRanker(loaded.ranker, a.rank_delay))  # type: ignore[arg-type]
    uvicorn.run(create_app(settings, preloaded=loaded), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
