"""`kolfeed serve`: run the feed service (FastAPI under uvicorn) on one run directory.

Why the checks before uvicorn starts: a missing/corrupt run, a bad store URL or a broken ranking
variant should end with one line saying what is wrong, not a traceback from inside the lifespan.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from serving.settings import Settings


def _fail(message: str) -> None:
    typer.echo(f"kolfeed serve: {message}", err=True)
    raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        run: Path | None = typer.Option(
            None, "--run", help="run directory to serve (default: newest under --runs)"
        ),
        runs: Path = typer.Option(
            Path("runs"), "--runs", help="runs root; admin reload only accepts runs in it"
        ),
        store: str = typer.Option(
            "memory://", "--store", help="feature store URL: memory:// or redis://host:port/db"
        ),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        ranking_dir: Path = typer.Option(
            Path("configs/ranking"), "--ranking-dir", help="ranking-variant YAMLs"
        ),
        dev: bool = typer.Option(
            False, "--dev", help="dev mode: admin API open when KOLFEED_ADMIN_TOKEN is unset"
        ),
        log_level: str = typer.Option("info", "--log-level"),
        workers: int = typer.Option(
            1,
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="worker processes sharing the port (one Python process uses one core); > 1 needs a "
            "shared store (redis://); each worker writes its own event log <log dir>/worker-<i>",
        ),
    ) -> None:
        """Serve personalised feeds over HTTP (GET /v1/feed, POST /v1/events, /docs, /metrics)."""
        import asyncio

        import uvicorn
        from pydantic import SecretStr, ValidationError

        from features.errors import StoreAuthError, StoreConfigError, StoreUnavailable
        from features.factory import open_store, redact_url
        from recsys.artifacts import ArtifactError, newest_run
        from recsys.ranking.variants import VariantError, load_variants
        from serving.app import create_app
        from serving.settings import Settings
        from serving.state import load_model

        try:
            run_dir = run if run is not None else newest_run(runs)
        except ArtifactError as exc:
            _fail(f"{exc}; train one with `kolfeed train CONFIG --out {runs}` or pass --run DIR")
            return
        try:
            settings = Settings(
                run_dir=run_dir,
                runs_root=runs,
                store_url=SecretStr(store),
                ranking_dir=ranking_dir,
                dev_mode=dev,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            _fail(f"bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
            return
        try:
            variants = load_variants(settings.ranking_dir)
        except VariantError as exc:
            _fail(str(exc))
            return
        if settings.default_variant not in variants:
            _fail(f"default variant {settings.default_variant!r} not in {settings.ranking_dir}")

        async def check_store() -> bool:
            st = open_store(store)
            try:
                if await st.ping():
                    return True
                await st.trending(1)  # ping never raises; a read tells a wrong password from an outage
                return False
            except StoreAuthError:
                raise
            except StoreUnavailable:
                return False
            finally:
                await st.close()

        try:
            store_ok = asyncio.run(check_store())
        except StoreAuthError as exc:
            _fail(f"store {redact_url(store)} refused our credentials: {exc}")
            return
        except StoreConfigError as exc:
            _fail(f"bad --store URL: {exc}")
            return
        if not store_ok:
            typer.echo(
                f"kolfeed serve: warning: store {redact_url(store)} is not answering; feeds will be degraded "
                "and /readyz returns 503 until it does",
                err=True,
            )
        if workers > 1:
            serve_workers(settings, workers, host, port, log_level)
            return
        try:
            loaded = load_model(run_dir)
        except ArtifactError as exc:
            _fail(f"cannot serve {run_dir}: {exc}")
            return
        typer.echo(f"kolfeed: serving run {loaded.run_id} (version {loaded.version}) from {loaded.run_dir}")
        typer.echo(f"kolfeed: store {redact_url(store)}; variants: {', '.join(sorted(variants))}")
        typer.echo(f"kolfeed: listening on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
        uvicorn.run(create_app(settings, preloaded=loaded), host=host, port=port, log_level=log_level)


MAX_WORKERS = 64


def serve_workers(settings: Settings, workers: int, host: str, port: int, log_level: str) -> None:
    """``workers`` uvicorn processes on one socket, each building the app from ``KOLFEED_*`` settings.

    Why processes: the feed is CPU-bound Python, and one process runs one core. The workers share
    nothing in memory, so the store must be shared (Redis); a reload received by one worker is
    followed by the others through a served-run pointer file (serving/run_pointer.py); each writes
    its own event log under the configured directory. The parent only verifies the run (checksums)
    and supervises: uvicorn restarts a worker that dies."""
    import tempfile
    from urllib.parse import urlsplit

    import uvicorn

    from features.factory import redact_url
    from recsys.artifacts import ArtifactError, read_manifest, verify_run_dir

    url = settings.store_url.get_secret_value()
    if urlsplit(url).scheme not in ("redis", "rediss"):
        _fail(
            f"--workers {workers} needs a store the workers share (redis://...); {redact_url(url)} lives "
            "inside one process"
        )
    assert settings.run_dir is not None
    try:
        verify_run_dir(settings.run_dir)
        manifest = read_manifest(settings.run_dir)
    except ArtifactError as exc:
        _fail(f"cannot serve {settings.run_dir}: {exc}")
        return
    pointer = Path(tempfile.mkdtemp(prefix="kolfeed-serve-")) / "served-run.json"
    env = {
        "KOLFEED_RUN_DIR": str(settings.run_dir.resolve()),
        "KOLFEED_RUNS_ROOT": str(settings.runs_root.resolve()),
        "KOLFEED_STORE_URL": url,
        "KOLFEED_RANKING_DIR": str(settings.ranking_dir.resolve()),
        "KOLFEED_DEV_MODE": "true" if settings.dev_mode else "false",
        "KOLFEED_SERVED_RUN_FILE": str(pointer),
        "KOLFEED_EVENT_LOG_PER_WORKER": "true",
    }
    os.environ.update(env)  # the workers read their Settings from the environment
    typer.echo(f"kolfeed: serving run {manifest.run_id} (version {manifest.version}) from {settings.run_dir}")
    typer.echo(f"kolfeed: {workers} worker processes; store {redact_url(url)}; served-run pointer {pointer}")
    typer.echo(f"kolfeed: listening on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "serving.app:create_app", factory=True, workers=workers, host=host, port=port, log_level=log_level
    )
