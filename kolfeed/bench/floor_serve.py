"""The feed service with ranking replaced by a fixed page: what a feed costs besides ranking.

Why: a target for server CPU per feed has a floor that no ranking work can go below. Everything a
request does except ``FeedRanker.rank`` still runs here, the same way: HTTP, the middlewares, the
query check, the arm, the user's store read with the friends' purchases, trending, the metrics and
the JSON page. The page itself is the first one the real ranker made for that variant and page size,
served again to every later request. ``kolfeed bench serve --floor`` offers it the same load as the
real service in the same run.

Benchmark use only (it answers everyone with the same items):
``python -m kolfeed.bench.floor_serve --run DIR --runs DIR --store redis://... [--workers N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

FACTORY = "kolfeed.bench.floor_serve:create_floor_app"


class FixedPageRanker:
    """Ranks for real once per (variant, page size), then hands out copies of that page."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._pages: dict[tuple[str, int], list[Any]] = {}

    def rank(self, ctx: Any, variant: Any, limit: int, *args: Any, **kwargs: Any) -> list[Any]:
        key = (variant.name, limit)
        page = self._pages.get(key)
        if page is None:
            page = self._pages[key] = self.inner.rank(ctx, variant, limit, *args, **kwargs)
        return list(page)


def floor_model(run_dir: Path) -> Any:
    """The run loaded as ``kolfeed serve`` loads it, with the fixed-page ranker in place."""
    from serving.state import load_model

    loaded = load_model(run_dir)
    return dataclasses.replace(loaded, ranker=FixedPageRanker(loaded.ranker))  # type: ignore[arg-type]


def create_floor_app() -> Any:
    """Each worker's app (``--workers`` > 1): settings from the environment, as ``kolfeed serve``'s."""
    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings()
    if settings.run_dir is None:
        raise SystemExit("floor_serve: KOLFEED_RUN_DIR is not set")
    return create_app(settings, preloaded=floor_model(settings.run_dir))


def main(argv: list[str] | None = None) -> None:
    from pydantic import SecretStr

    from serving.app import create_app
    from serving.logs import configure_logging
    from serving.runner import run, set_worker_environment, worker_environment
    from serving.settings import Settings

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--store", default="memory://")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ranking-dir", type=Path, default=None)
    p.add_argument("--log-level", default="warning")
    a = p.parse_args(argv)
    configure_logging("console", a.log_level)
    extra: dict[str, Any] = {} if a.ranking_dir is None else {"ranking_dir": a.ranking_dir}
    settings = Settings(run_dir=a.run, runs_root=a.runs, store_url=SecretStr(a.store), **extra)
    if a.workers > 1:
        set_worker_environment(worker_environment(settings, "console", a.log_level))
        run(None, a.host, a.port, a.log_level, workers=a.workers, factory=FACTORY)
    else:
        run(create_app(settings, preloaded=floor_model(a.run)), a.host, a.port, a.log_level)


if __name__ == "__main__":
    main()
