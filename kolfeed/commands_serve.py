"""`kolfeed serve`: run the feed service (FastAPI under uvicorn) on one run directory.

Why the checks before uvicorn starts: a missing/corrupt run, a bad store URL or a broken ranking
variant should end with one line saying what is wrong, not a traceback from inside the lifespan.
"""

from __future__ import annotations

from pathlib import Path

import typer


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
        try:
            loaded = load_model(run_dir)
        except ArtifactError as exc:
            _fail(f"cannot serve {run_dir}: {exc}")
            return
        typer.echo(f"kolfeed: serving run {loaded.run_id} (version {loaded.version}) from {loaded.run_dir}")
        typer.echo(f"kolfeed: store {redact_url(store)}; variants: {', '.join(sorted(variants))}")
        typer.echo(f"kolfeed: listening on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
        uvicorn.run(create_app(settings, preloaded=loaded), host=host, port=port, log_level=log_level)
