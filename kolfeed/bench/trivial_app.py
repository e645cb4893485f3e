"""The reference point of ``kolfeed bench saturation``: a trivial FastAPI app serving 20 fixed items.

Why: feeds/s alone says little across machines; as a share of what the same server stack (uvicorn,
httptools, uvloop, FastAPI, the same worker count) answers for an endpoint doing no work, it says how
much the feed's own work costs. The page has the shape of a feed page (20 entries with ids, a score,
reasons, a source), built once; the endpoint takes the same query string and ignores it.

Run as ``python -m kolfeed.bench.trivial_app --port P --workers N`` (what the benchmark does).
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI

ITEMS = 20


def page() -> dict[str, Any]:
    """A fixed page of ``ITEMS`` entries shaped like the feed's."""
    return {
        "request_id": "0" * 32,
        "user_id": "0",
        "arm": "default",
        "degraded": False,
        "model_version": 1,
        "items": [
            {
                "item_id": str(1000 + i),
                "post_id": str(5000 + i),
                "kol_id": str(100 + i),
                "score": 1.0 - i / 100,
                "reasons": ["trending now"],
                "source": "ann",
            }
            for i in range(ITEMS)
        ],
    }


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    body = page()

    @app.get("/v1/feed")
    async def feed(user_id: str = "", limit: int = ITEMS) -> dict[str, Any]:
        return body

    return app


def main(argv: list[str] | None = None) -> None:
    from serving.runner import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    run(
        create_app() if args.workers == 1 else None,
        args.host,
        args.port,
        "warning",
        workers=args.workers,
        factory="kolfeed.bench.trivial_app:create_app",
    )


if __name__ == "__main__":
    main()
