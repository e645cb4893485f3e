"""`kolfeed serve`: run the feed service (FastAPI under uvicorn) on one run directory.

Why the checks before uvicorn starts: a missing/corrupt run, a bad store URL or a broken ranking
variant should end with one line saying what is wrong, not a traceback from inside the lifespan.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from kolfeed.failure import fail
from serving.runner import MAX_WORKERS


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


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
        log_level: LogLevel = typer.Option(
            LogLevel.info, "--log-level", help="log lines at this level and up"
        ),
        log_format: LogFormat | None = typer.Option(
            None,
            "--log-format",
            help="json (one object per line) or console; default: console on a terminal, json otherwise",
        ),
        event_log_dir: Path | None = typer.Option(
            None,
            "--event-log-dir",
            help="event log, one server per directory (default: $KOLFEED_EVENT_LOG_DIR, var/eventlog)",
        ),
        workers: int = typer.Option(
            1,
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="worker processes sharing the port (one Python process uses one core); > 1 needs a "
            "shared store (redis://); each worker writes its own event log <log dir>/worker-<i>",
        ),
        replica: str | None = typer.Option(
            None,
            "--replica",
            envvar="KOLFEED_REPLICA",
            help="this host's replica id, recorded in its event log (default: the id recorded there, "
            "else the hostname); replicas on several hosts export their logs together by it",
        ),
    ) -> None:
        """Serve personalised feeds over HTTP (GET /v1/feed, POST /v1/events, /docs, /metrics)."""
        import asyncio

        from pydantic import SecretStr, ValidationError

        from features.errors import StoreAuthError, StoreConfigError, StoreUnavailable
        from features.factory import open_store, redact_url
        from recsys.artifacts import ArtifactError, newest_run, read_manifest, verify_run_dir
        from recsys.ranking.variants import VariantError, load_variants
        from serving.app import create_app
        from serving.logs import configure_logging, default_format
        from serving.runner import (
            ServeError,
            check_event_log_free,
            set_worker_environment,
            worker_environment,
        )
        from serving.runner import run as run_service
        from serving.settings import Settings
        from serving.state import load_model

        fmt = log_format.value if log_format is not None else default_format()
        level = log_level.value
        configure_logging(fmt, level)

        try:
            run_dir = run if run is not None else newest_run(runs)
        except ArtifactError as exc:
            fail(f"{exc}; train one with `kolfeed train CONFIG --out {runs}` or pass --run DIR")
            return
        try:
            settings = Settings(
                run_dir=run_dir,
                runs_root=runs,
                store_url=SecretStr(store),
                ranking_dir=ranking_dir,
                dev_mode=dev,
                replica=replica,
            )
            if event_log_dir is not None:
                settings = settings.model_copy(update={"event_log_dir": event_log_dir})
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
            return
        try:
            variants = load_variants(settings.ranking_dir)
        except VariantError as exc:
            fail(str(exc))
            return
        if settings.default_variant not in variants:
            fail(f"default variant {settings.default_variant!r} not in {settings.ranking_dir}")

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
            fail(f"store {redact_url(store)} refused our credentials: {exc}")
            return
        except StoreConfigError as exc:
            fail(f"bad --store URL: {exc}")
            return
        if not store_ok:
            typer.echo(
                f"kolfeed serve: warning: store {redact_url(store)} is not answering; feeds will be degraded "
                "and /readyz returns 503 until it does",
                err=True,
            )
        try:
            check_event_log_free(settings)
            if workers > 1:
                env = worker_environment(settings, fmt, level)
                verify_run_dir(run_dir)
                manifest = read_manifest(run_dir)
                typer.echo(
                    f"kolfeed: serving run {manifest.run_id} (version {manifest.version}) from {run_dir}"
                )
                typer.echo(f"kolfeed: {workers} worker processes; store {redact_url(store)}")
                set_worker_environment(env)
                app_or_none = None
            else:
                loaded = load_model(run_dir)
                typer.echo(
                    f"kolfeed: serving run {loaded.run_id} (version {loaded.version}) from {loaded.run_dir}"
                )
                typer.echo(f"kolfeed: store {redact_url(store)}; variants: {', '.join(sorted(variants))}")
                app_or_none = create_app(settings, preloaded=loaded)
            run_service(
                app_or_none,
                host,
                port,
                level,
                workers=workers,
                on_listening=lambda url: typer.echo(f"kolfeed: listening on {url}  (docs: {url}/docs)"),
            )
        except ArtifactError as exc:
            fail(f"cannot serve {run_dir}: {exc}")
        except ServeError as exc:
            fail(str(exc))
