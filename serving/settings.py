"""Service configuration from ``KOLFEED_*`` environment variables (pydantic-settings).

Why one typed object: every knob an operator can turn is listed here with its default, a typo'd
keyword fails loudly, and tests build a ``Settings(...)`` directly instead of patching the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.ranking.variants import DEFAULT_VARIANT_NAME, DEFAULT_VARIANTS_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOLFEED_", extra="forbid")

    run_dir: Path | None = Field(default=None, description="run to serve; default: newest under runs_root")
    runs_root: Path = Field(default=Path("runs"), description="admin reload only accepts runs inside it")
    store_url: SecretStr = Field(
        default=SecretStr("memory://"), description="memory:// or redis://...; may hold a password"
    )
    admin_token: SecretStr | None = Field(default=None, description="bearer token for /v1/admin/*")
    ranking_dir: Path = Field(default=Path(DEFAULT_VARIANTS_DIR), description="ranking-variant YAMLs")
    default_variant: str = Field(default=DEFAULT_VARIANT_NAME, min_length=1, description="arm by default")
    log_format: Literal["json", "console"] | None = Field(
        default=None,
        description="json or console lines (serving/logs.py); None: leave logging as the host process set it",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="level of the service's log lines (with log_format)"
    )
    dev_mode: bool = Field(default=False, description="admin endpoints open when no token is configured")
    max_body_bytes: int = Field(default=2_000_000, ge=1_024, description="larger request bodies get 413")
    request_deadline_s: float = Field(
        default=0.25, gt=0, le=30, description="budget for feature-store reads; past it the feed degrades"
    )
    trending_k: int = Field(default=50, ge=0, le=1_000, description="trending items read per request")
    trending_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=3_600,
        description="trending is read from the store at most this often per process and shared by all "
        "requests (serving/trending_cache.py); 0: every request reads it",
    )
    trending_stale_s: float = Field(
        default=60.0,
        ge=0,
        le=3_600,
        description="when a trending refresh fails, a cached list younger than this is still used "
        "(the page is flagged degraded all the same); 0: never",
    )
    friends_limit: int = Field(default=50, ge=0, le=1_000, description="friends counted for social proof")
    feed_fast_path: bool = Field(
        default=True,
        description="serve well-formed GET /v1/feed requests without FastAPI's routing and dependency "
        "machinery (serving/feed_fast_path.py; the same page and headers); false: always the route",
    )
    rank_in_thread: bool = Field(
        default=False,
        description="rank each page in a worker thread instead of on the event loop. The thread hop costs "
        "~0.1-0.3 ms of CPU per request plus GIL hand-offs, more than the time a ~1 ms ranker blocks the "
        "loop, so inline is cheaper and faster at high request rates; turn it on for heavy variants "
        "(ranking many ms), so the loop keeps reading sockets, admitting and shedding meanwhile",
    )
    # --- several worker processes (kolfeed serve --workers N sets these) ---
    served_run_file: Path | None = Field(
        default=None,
        description="shared pointer to the served run (serving/run_pointer.py): a reload in one worker "
        "process is followed by the others, and a restarted worker serves it; None: one process",
    )
    follow_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often a process checks the served-run announcements (store and pointer file)",
    )
    announce_run: bool = Field(
        default=True,
        description="announce the served run through the store after an admin reload, and follow the "
        "store's announcement (serving/run_pointer.py): replicas on several machines sharing the store "
        "and the runs directory serve the same run; a replica started later serves the announced one",
    )
    event_log_per_worker: bool = Field(
        default=False,
        description="each worker process writes its own log <event_log_dir>/worker-<i> (the first free "
        "slot); training, reports and `kolfeed store rebuild` read the parent directory",
    )
    # --- reliability: durable event log, replay into the store, load shedding (serving/limits.py) ---
    event_log_dir: Path | None = Field(
        default=Path("var/eventlog"), description="append-only event log (source of truth); None: off"
    )
    replica: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="this replica's id (one per host), recorded in a new event log and checked against "
        "the one recorded in an existing log; `kolfeed events export` keys events by (replica, worker, "
        "seq); None: the id recorded in the log, else the hostname",
    )
    replay_interval_s: float = Field(
        default=0.5, gt=0, le=60, description="how often events not yet in the store are re-applied"
    )
    max_inflight: int = Field(default=64, ge=1, le=10_000, description="requests handled at once")
    max_waiting: int = Field(default=256, ge=0, le=100_000, description="requests allowed to wait for a slot")
    max_queue_wait_s: float = Field(
        default=0.05, ge=0, le=10, description="longest wait for a slot; then 503 + Retry-After"
    )
    request_timeout_s: float = Field(
        default=2.0, gt=0, le=120, description="whole-request deadline (not admin); past it 503"
    )
    # --- end reliability ---

    # --- experiments, reports and dashboard (serving/experiments.py, serving/event_source.py) ---
    experiments_dir: Path | None = Field(
        default=Path("configs/experiments"), description="A/B experiment YAMLs; None = no experiments"
    )
    events_path: Path | None = Field(
        default=None,
        description="events for reports: a .parquet/.csv file, a world dir, or the service's event-log dir",
    )
    report_cache_s: float = Field(default=30.0, ge=0, le=3_600, description="reports are reused this long")
    kol_costs_path: Path | None = Field(
        default=None, description="CSV kol_id,cost: what each creator cost, for ROI in the KOL reports"
    )
