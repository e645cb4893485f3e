"""`kolfeed bench ...`: benchmarks, one explicit sub-command per area (modules in kolfeed.bench)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

bench_app = typer.Typer(
    help="Benchmarks: speed, memory and quality, written as JSON + plot to bench/results/."
)


@bench_app.command("world")
def bench_world(
    scale: list[str] = typer.Option(["tiny", "small"], help="scales to time, side by side (repeatable)"),
    seed: int = typer.Option(7),
    results: str = typer.Option("bench/results", help="directory for world.json and world.png"),
) -> None:
    """Time the world generator (events/s, peak RSS); `small` must finish under 60 s."""
    from kolfeed.bench.world import run
    from recsys.world.config import WorldError

    try:
        out = run(scale, seed, Path(results))
    except (WorldError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from None
    for r in out["rows"]:
        typer.echo(
            f"{r['scale']}: {r['events']:,} events in {r['wall_s']:.2f} s "
            f"({r['events_per_s']:,.0f} events/s), peak RSS {r['peak_rss_mb']:.0f} MB"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("models")
def models_command(
    data: str = typer.Option("", help="LightGCN-format directory with train.txt/test.txt"),
    out: str = typer.Option("bench/results", help="where to write models_<name>.json/.png"),
    models: str = typer.Option("popularity,als,graphfilter", help="comma-separated registry names"),
    set_: list[str] = typer.Option([], "--set", help="override a param: model.key=value (repeatable)"),
    tag: str = typer.Option("", help="result file suffix (default: the data directory's name)"),
    synthetic: str = typer.Option(
        "", help="instead of --data: time the graph filter on a synthetic USERSxITEMSxNNZ matrix"
    ),
) -> None:
    """Compare models side by side: Recall/NDCG@20, fit/eval time, peak RSS."""
    from kolfeed.bench.models import BenchDataError, bench_models, bench_synthetic, parse_overrides
    from recsys.models.registry import ModelConfigError

    try:
        overrides = parse_overrides(set_)
        if synthetic:
            parts = synthetic.lower().split("x")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                raise BenchDataError(
                    f"--synthetic {synthetic!r}: expected USERSxITEMSxNNZ, e.g. 100000x100000x3000000"
                )
            u, i, n = (int(p) for p in parts)
            report = bench_synthetic((u, i, n), Path(out), overrides.get("graphfilter", {}))
            typer.echo(json.dumps(report, indent=2))
            return
        if not data:
            raise BenchDataError("give --data DIR (LightGCN format) or --synthetic USERSxITEMSxNNZ")
        names = [m.strip() for m in models.split(",") if m.strip()]
        result = bench_models(Path(data), Path(out), names, overrides, tag or None)
    except (BenchDataError, ModelConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for r in result["results"]:
        m = r["metrics"]
        line = (
            f"{r['model']:<12} recall@20={m['recall@20']:.4f} ndcg@20={m['ndcg@20']:.4f} "
            f"fit={r['fit_seconds']:.1f}s eval={r['eval_seconds']:.1f}s peak_rss={r['peak_rss_mb']:.0f}MB"
        )
        if "embedding_only" in r["extra"]:
            e = r["extra"]["embedding_only"]
            line += f" | embeddings: recall@20={e['recall@20']:.4f} ndcg@20={e['ndcg@20']:.4f}"
        typer.echo(line)


@bench_app.command("train")
def train_command(
    gowalla_config: str = typer.Option("configs/train/gowalla.yaml", help="config of the Gowalla run"),
    gowalla_data: str = typer.Option("../shared/data/gowalla", help="LightGCN-format Gowalla split"),
    world_config: list[str] = typer.Option(
        ["configs/train/world_graphfilter.yaml", "configs/train/world_als.yaml"],
        help="world configs compared with all behaviours vs clicks only (repeatable)",
    ),
    scale: str = typer.Option("small", help="scale of the generated world"),
    seed: int = typer.Option(1),
    results: str = typer.Option("bench/results", help="directory for train.json and train.png"),
    skip_gowalla: bool = typer.Option(False, help="only the world comparison"),
) -> None:
    """Whole training runs on Gowalla (time, peak RSS, vs popularity/ALS) and graph variants on a world."""
    from kolfeed.bench.train import BenchError, run
    from training.config import ConfigError

    try:
        out = run(
            Path(gowalla_config),
            Path(gowalla_data),
            [Path(c) for c in world_config],
            scale,
            seed,
            Path(results),
            skip_gowalla,
        )
    except (BenchError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for r in out.get("gowalla", {}).get("rows", []):
        typer.echo(
            f"gowalla {r['model']:<28} recall@20={r['recall@20']:.4f} ndcg@20={r['ndcg@20']:.4f} "
            f"fit={r['fit_seconds']:.1f}s run={r['run_wall_seconds']:.1f}s peak_rss={r['peak_rss_mb']:.0f}MB"
        )
    for r in out["world"]["rows"]:
        typer.echo(
            f"world/{out['world']['scale']} {r['model']:<12} {r['graph']:<16} "
            f"buy_recall@20={r['buy_recall@20']:.4f} recall@20={r['recall@20']:.4f}"
        )


@bench_app.command("serve")
def serve_command(
    items: int = typer.Option(1_000_000, help="synthetic catalog size"),
    users: int = typer.Option(100_000, help="synthetic users (all with recent activity in Redis)"),
    kols: int = typer.Option(20_000, help="synthetic creators"),
    dim: int = typer.Option(64, help="embedding width"),
    factory: str = typer.Option(
        "MIPS,IVF4096,SQfp16",
        help="FAISS factory string of the served index (MIPS, = via L2, see recsys.index)",
    ),
    spectrum_decay: float = typer.Option(
        1.0, help="embedding spectrum j**-a (1: like trained embeddings; 0: isotropic, ANN worst case)"
    ),
    rate: float = typer.Option(500.0, help="open-loop request rate of the main run (req/s)"),
    duration: float = typer.Option(60.0, help="seconds of the main run"),
    step_rates: str = typer.Option(
        "50,100,200,300,400,500,750,1000,1500,2000", help="rates stepped up to find the max sustainable one"
    ),
    step_duration: float = typer.Option(15.0, help="seconds per step"),
    redis: str = typer.Option(
        "redis://127.0.0.1:6379/12", help="Redis db for the benchmark (own key prefix)"
    ),
    events_per_user: int = typer.Option(16, help="recent events written to Redis per user"),
    calls: int = typer.Option(1000, help="in-process calls timed (rank, handler, ASGI)"),
    results: str = typer.Option("bench/results", help="directory for serve.json and serve.png"),
    workdir: str = typer.Option("", help="keep the run directory here (default: a temp dir, removed)"),
    workers: int = typer.Option(
        2, min=1, max=64, help="kolfeed serve --workers: server processes (2: one per core of this machine)"
    ),
    floor: bool = typer.Option(
        False,
        "--floor",
        help="also offer the same load to the service with ranking replaced by a fixed page: "
        "the CPU a feed costs besides ranking",
    ),
    user_neighbours: int = typer.Option(
        512,
        "--user-neighbours",
        min=0,
        help="each user's first K neighbours kept in the served run, as `kolfeed index build` keeps "
        "them (0: the ranker searches on every feed)",
    ),
) -> None:
    """Feed-service speed: in-process vs HTTP latency, max throughput, recall@100, server memory."""
    import sys

    from kolfeed.bench.harness import HarnessError
    from kolfeed.bench.serve import BenchServeError, ServeBenchConfig, run
    from recsys.artifacts import ArtifactError
    from recsys.index import IndexBuildError

    try:
        rates = [float(x) for x in step_rates.split(",") if x.strip()]
    except ValueError:
        typer.echo(f"error: --step-rates {step_rates!r}: expected comma-separated numbers", err=True)
        raise typer.Exit(code=2) from None
    cfg = ServeBenchConfig(
        items=items,
        users=users,
        kols=kols,
        dim=dim,
        factory=factory,
        spectrum_decay=spectrum_decay,
        redis_url=redis,
        events_per_user=events_per_user,
        rate=rate,
        duration_s=duration,
        step_rates=rates,
        step_duration_s=step_duration,
        in_process_calls=calls,
        workers=workers,
        workdir=Path(workdir) if workdir else None,
        floor=floor,
        user_neighbours=user_neighbours,
    )
    try:
        report = run(cfg, Path(results), command=" ".join(["kolfeed", *sys.argv[1:]]))
    except (BenchServeError, HarnessError, ArtifactError, IndexBuildError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(json.dumps(report["summary"], indent=2))


@bench_app.command("saturation")
def saturation_command(
    items: int = typer.Option(1_000_000, help="synthetic catalog size (the bench serve world)"),
    users: int = typer.Option(100_000, help="synthetic users (all with recent activity in Redis)"),
    redis: str = typer.Option(
        "redis://127.0.0.1:6379/12", help="Redis db for the benchmark (own key prefix)"
    ),
    workers: int = typer.Option(2, min=1, max=64, help="worker processes of both servers"),
    duration: float = typer.Option(20.0, min=1, help="seconds of each saturating wrk run"),
    connections: int = typer.Option(32, min=1, help="wrk -c: open connections"),
    threads: int = typer.Option(1, min=1, help="wrk -t: client threads"),
    rounds: int = typer.Option(2, min=1, help="alternating feed / trivial rounds (medians reported)"),
    results: str = typer.Option("bench/results", help="directory for saturation.json and saturation.png"),
    workdir: str = typer.Option("", help="keep (and reuse) the run directory here, as bench serve --workdir"),
) -> None:
    """Saturation feeds/s (wrk, random users) vs a trivial FastAPI endpoint's, and CPU-ms per request."""
    import sys

    from kolfeed.bench.harness import HarnessError
    from kolfeed.bench.saturation import SaturationConfig
    from kolfeed.bench.saturation import run as run_saturation
    from kolfeed.bench.serve import BenchServeError, ServeBenchConfig
    from recsys.artifacts import ArtifactError
    from recsys.index import IndexBuildError

    world = ServeBenchConfig(
        items=items,
        users=users,
        redis_url=redis,
        workers=workers,
        workdir=Path(workdir) if workdir else None,
    )
    cfg = SaturationConfig(
        world=world, duration_s=duration, connections=connections, threads=threads, rounds=rounds
    )
    try:
        report = run_saturation(cfg, Path(results), command=" ".join(["kolfeed", *sys.argv[1:]]))
    except (BenchServeError, HarnessError, ArtifactError, IndexBuildError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(json.dumps(report["summary"], indent=2))


@bench_app.command("chaos")
def chaos_command(
    run: str = typer.Option("", help="run directory to serve (default: build world tiny + graph filter)"),
    results: str = typer.Option("bench/results", help="directory for chaos.json and chaos.png"),
    feed_requests: int = typer.Option(3000, min=1, help="outage: feed requests offered"),
    event_batches: int = typer.Option(1000, min=1, help="outage: event batches offered"),
    events_per_batch: int = typer.Option(10, min=1, max=1000),
    duration: float = typer.Option(30.0, min=1.0, help="outage: seconds the load lasts"),
    down: float = typer.Option(8.0, min=0.1, help="outage: seconds Redis stays down"),
    overload_seconds: float = typer.Option(6.0, min=1.0, help="overload: seconds at 3x the capacity"),
) -> None:
    """Kill Redis mid-load, SIGKILL the service mid-ingest, and overload it 3x: what survives."""
    from kolfeed.bench.chaos import KillParams, OutageParams, OverloadParams, run_all
    from kolfeed.bench.harness import HarnessError

    outage = OutageParams(
        feed_requests=feed_requests,
        event_batches=event_batches,
        events_per_batch=events_per_batch,
        duration_s=duration,
        kill_at_s=duration * 0.3,
        down_s=down,
    )
    kill = KillParams(writers=16, events_per_batch=events_per_batch, kill_after_s=3.0)
    overload = OverloadParams(measure_s=3.0, overload_s=overload_seconds)
    try:
        out = run_all(Path(run) if run else None, Path(results), outage, kill, overload)
    except (HarnessError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    f, e, k, o = out["outage"]["feed"], out["outage"]["events"], out["sigkill"], out["overload"]
    typer.echo(
        f"outage: feed sent={f['sent']} answered={f['answered']} degraded={f['degraded']} "
        f"errors={f['errors']} p99={f['latency']['p99_ms']}ms | events acknowledged={e['acknowledged']} "
        f"recovered_in_store={e['recovered_in_store']} in_log={e['in_log']}"
    )
    typer.echo(
        f"sigkill: events acknowledged={k['acknowledged']} in_log_at_acked_seq={k['in_log_at_acked_seq']} "
        f"logged_unacknowledged={k['unacknowledged_but_logged']}"
    )
    typer.echo(
        f"overload: sustainable={o['sustainable_rps']} req/s offered={o['offered_rps']} req/s "
        f"accepted={o['accepted']} (p99 {o['accepted_latency']['p99_ms']}ms) 503={o['rejected_503']} "
        f"(p99 {o['rejected_latency']['p99_ms']}ms) timeouts={o['client_timeouts']}"
    )


@bench_app.command("scale")
def scale_command(
    config: str = typer.Option("configs/train/gowalla.yaml", help="train config; only data.path changes"),
    users: int = typer.Option(100_000, min=10),
    items: int = typer.Option(100_000, min=10),
    interactions: int = typer.Option(3_000_000, min=100),
    seed: int = typer.Option(0),
    results: str = typer.Option("bench/results", help="directory for scale.json and scale.png"),
    engine: list[str] = typer.Option(
        [], help="compare training engines instead (repeatable: --engine spark --engine local)"
    ),
    events: list[str] = typer.Option(
        ["10M"], help="with --engine: event-export sizes (repeatable: 10M, 30M)"
    ),
    work: str = typer.Option("", help="with --engine: keep generated data here (default: a temp dir)"),
    timeout_min: float = typer.Option(60.0, help="with --engine: stop a run after this many minutes"),
    memory_gb: float = typer.Option(
        12.0, help="with --engine: stop a run whose process tree holds more than this (both engines)"
    ),
    budget_min: float = typer.Option(120.0, help="with --engine: total time budget of the benchmark"),
) -> None:
    """The shipped config on a generated ~100k x 100k x 3M LightGCN split: time, RSS, quality.

    With --engine: world_als.yaml on generated event exports (--events), per engine: wall time, peak
    memory of driver, JVM and workers, Recall@20 (bench/results/scale_engines.json/.png)."""
    if engine:
        _engines_bench(engine, events, config, results, work, timeout_min, budget_min, memory_gb)
        return
    from kolfeed.bench.scale import BenchError, run

    try:
        out = run(Path(config), users, items, interactions, Path(results), seed=seed)
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for r in out["rows"]:
        typer.echo(
            f"{r['model']:<28} recall@20={r['recall@20']:.4f} ndcg@20={r['ndcg@20']:.4f} "
            f"eval_users={r['eval_users']:.0f} run={r['run_wall_seconds']:.1f}s "
            f"peak_rss={r['peak_rss_mb']:.0f}MB"
        )
    typer.echo(f"within budget (15 min, 8 GB): {out['within_budget']}")


@bench_app.command("import")
def bench_import(
    events: int = typer.Option(10_000_000, help="rows of the synthetic shop CSV"),
    results: str = typer.Option("bench/results", help="directory for import.json and import.png"),
    workdir: str = typer.Option("", help="where the CSV and dataset go (default: a temp dir, kept)"),
    seed: int = typer.Option(0),
) -> None:
    """Time `kolfeed data import` on a synthetic shop CSV: wall/CPU seconds and peak RSS, beside a
    plain pyarrow read of the same file."""
    from kolfeed.bench.shop_import import run

    out = run(events, Path(results), Path(workdir) if workdir else None, seed)
    imp, read = out["import"], out["plain_csv_read"]
    typer.echo(
        f"{out['events_rows']:,} events ({out['csv_bytes'] / 1e9:.2f} GB): import "
        f"{imp['wall_s']:.1f} s wall, {imp['cpu_s']:.1f} CPU-s, peak RSS {imp['peak_rss_mb']:.0f} MB; "
        f"plain CSV read {read['cpu_s']:.1f} CPU-s, {read['peak_rss_mb']:.0f} MB "
        f"(import/read CPU x{out['import_over_plain_read_cpu']})"
    )


@bench_app.command("shop")
def bench_shop(
    scale: str = typer.Option("small", help="world scale the shop export is written from"),
    seed: int = typer.Option(7),
    results: str = typer.Option("bench/results", help="directory for shop_behaviours_<scale>.json/.png"),
    workdir: str = typer.Option("", help="where the world, export, dataset and runs go (default: temp)"),
) -> None:
    """The held-back acceptance's stand-in: shop export → import → world_als on all behaviours vs
    purchases only, Recall@20 on held-out purchases."""
    from kolfeed.bench.shop_import import run_behaviours

    out = run_behaviours(scale, seed, Path(results), Path(workdir) if workdir else None)
    for name, v in out["variants"].items():
        typer.echo(f"{name:>15}: buy/recall@20 {v['buy_recall@20']:.4f}  buy/ndcg@20 {v['buy_ndcg@20']:.4f}")
    typer.echo(f"all / purchases only: x{out['ratio_all_over_buy']}")


@bench_app.command("ingest")
def ingest_command(
    run: str = typer.Option("", help="run directory to serve (default: build world tiny + graph filter)"),
    results: str = typer.Option("bench/results", help="directory for ingest.json and ingest.png"),
    baseline_ref: list[str] = typer.Option(
        ["be7112b", "341b763"],
        help="git commits measured side by side as baselines, oldest first (default: main before group "
        "commit, and main before the CPU cuts of the events path); '' for none",
    ),
    requests: int = typer.Option(6000, min=1, help="hey -n"),
    concurrency: int = typer.Option(32, min=1, help="hey -c"),
    rounds: int = typer.Option(2, min=1, help="alternating baseline / current rounds (medians reported)"),
    kill_after: float = typer.Option(2.0, min=0.1, help="SIGKILL check: seconds of load before the kill"),
    workers: int = typer.Option(
        1, min=1, max=8, help="kolfeed serve --workers (> 1: a private redis-server is the store)"
    ),
    restart: bool = typer.Option(
        True, help="also count double-counted events after a Redis / Redis Cluster restart mid-stream"
    ),
    tag: str = typer.Option("", help="result file suffix: ingest<_tag>.json"),
) -> None:
    """Acknowledged one-event POSTs/s against older commits (hey), a SIGKILL under load, a Redis restart."""
    from kolfeed.bench.harness import HarnessError
    from kolfeed.bench.ingest import IngestParams
    from kolfeed.bench.ingest import run as run_ingest
    from kolfeed.bench.local_cluster import LocalClusterError

    params = IngestParams(
        requests=requests,
        concurrency=concurrency,
        rounds=rounds,
        kill_after_s=kill_after,
        baseline_refs=tuple(ref for ref in baseline_ref if ref),
        workers=workers,
        restart_count=restart,
    )
    try:
        out = run_ingest(Path(run) if run else None, Path(results), params, tag)
    except (HarnessError, LocalClusterError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for label, s in out["summary"].items():
        typer.echo(
            f"{label}: {s['acked_per_s_median']:,.0f} acked req/s, "
            f"{s['server_cpu_ms_per_ack_median']:.3f} server CPU-ms per ack, p99 {s['p99_ms_median']} ms"
        )
    k = out["sigkill"]
    typer.echo(
        f"sigkill: {k['acknowledged']} acknowledged, {k['in_log_at_acked_seq']} in the log at their seq, "
        f"{k['in_export_once']} in the export once, lost {k['lost']}"
    )
    restarted = out["restart_exactly_once"]
    if restarted:
        for name in ("redis", "cluster"):
            r = restarted[name]
            typer.echo(
                f"restart ({name}): {r['events']} events, {r['applied_once']} counted once, "
                f"{r['double_counted']} double-counted, {r['lost']} lost "
                f"(trending {r['trending_total']} of {r['trending_expected']})"
            )
    typer.echo(f"load average {out['load_average_at_start']} -> {out['load_average_at_end']}")


@bench_app.command("cluster")
def cluster_command(
    run: str = typer.Option("", help="run directory to serve (default: build world tiny + graph filter)"),
    results: str = typer.Option("bench/results", help="directory for cluster.json and cluster.png"),
    concurrency: int = typer.Option(8, min=1, max=256, help="closed-loop feed clients"),
    event_batches_per_s: float = typer.Option(20.0, min=0.1, help="event batches posted per second"),
    events_per_batch: int = typer.Option(10, min=1, max=1000),
    phase_seconds: float = typer.Option(10.0, min=2.0, max=120.0, help="seconds per measured phase"),
) -> None:
    """Two replicas on a local 3-primary Redis Cluster vs one replica on one Redis; then kill a
    replica, then a primary, under load: feeds/s, p50/p99, CPU-ms per feed, events lost."""
    from kolfeed.bench.cluster import ClusterBenchParams, run_cluster_bench
    from kolfeed.bench.harness import HarnessError
    from kolfeed.bench.local_cluster import LocalClusterError

    params = ClusterBenchParams(
        concurrency=concurrency,
        event_batches_per_s=event_batches_per_s,
        events_per_batch=events_per_batch,
        steady_s=phase_seconds,
        replica_down_s=phase_seconds * 0.8,
        primary_down_s=phase_seconds * 0.8,
    )
    try:
        out = run_cluster_bench(Path(run) if run else None, Path(results), params)
    except (HarnessError, LocalClusterError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    base = out["baseline_single_redis_one_replica"]
    rows = [
        ("1 replica, 1 Redis", base),
        *((ph["phase"], ph) for ph in out["cluster_two_replicas"]["phases"]),
    ]
    for name, ph in rows:
        typer.echo(
            f"{name:>20}: {ph['feeds_per_s']:7.1f} feeds/s  p50 {ph['latency']['p50_ms']} ms  "
            f"p99 {ph['latency']['p99_ms']} ms  degraded {ph['degraded']}/{ph['feeds_answered']}  "
            f"errors {ph['errors']}  replica CPU {ph['replicas_cpu_ms_per_feed']} ms/feed  "
            f"events {ph['events_acknowledged_per_s']}/s"
        )
        if "victim_shard_users" in ph:
            v, o = ph["victim_shard_users"], ph["other_users"]
            typer.echo(
                f"{'':>22}degraded: users on the killed primary {v['degraded']}/{v['answered']}, "
                f"other users {o['degraded']}/{o['answered']}"
            )
    ev = out["cluster_two_replicas"]["events"]
    typer.echo(
        f"events: acknowledged {ev['acknowledged']}  "
        f"in store after recovery {ev['in_store_after_recovery']}  lost {ev['lost']}  "
        f"in logs {ev['in_logs']}; ratios {out['ratios']}"
    )


@bench_app.command("tune")
def tune_command(
    data: list[str] = typer.Option(
        ["gowalla=../shared/data/gowalla:lightgcn", "ml-100k=../shared/data/ml-100k:recbole"],
        help="NAME=PATH:FORMAT (repeatable)",
    ),
    results: str = typer.Option("bench/results", help="directory for tune_<datasets>.json and .png"),
    timeout: float | None = typer.Option(None, help="kolfeed tune --timeout (default: auto.yaml's budget)"),
    workdir: str = typer.Option("", help="keep tune and run directories here (default: a temp dir)"),
) -> None:
    """kolfeed tune + train of auto.yaml vs the shipped config, popularity, ALS, GF-CF and an SVD filter."""
    from kolfeed.bench.tune import BenchTuneError, Dataset, run

    try:
        sets = [Dataset.parse(d) for d in data]
        report = run(
            sets,
            Path(results),
            timeout,
            Path(workdir) if workdir else None,
            lambda m: typer.echo(m, err=True),
        )
    except BenchTuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for ds in report["datasets"]:
        for r in ds["rows"]:
            typer.echo(
                f"{ds['dataset']:<8} {r['method']:<34} "
                f"recall@20={r['recall@20']:.4f} ndcg@20={r['ndcg@20']:.4f} "
                f"wall={r['wall_seconds']:.0f}s cpu={r['cpu_seconds']:.0f}s rss={r['peak_rss_mb']:.0f}MB"
            )
        typer.echo(
            f"{ds['dataset']}: beats GF-CF/ALS/SVD on both = {ds['tuned_beats_gfcf_als_svd_on_both']}, "
            f"within 15 min = {ds['within_15_minutes']} (load {ds['load_average_before']})"
        )


def _engines_bench(
    engines: list[str],
    events: list[str],
    config: str,
    results: str,
    work: str,
    timeout_min: float,
    budget_min: float,
    memory_gb: float,
) -> None:
    import tempfile

    from kolfeed.bench.engines import parse_count, run

    bad = [e for e in engines if e not in ("local", "spark")]
    if bad:
        raise typer.BadParameter(f"unknown engine {bad[0]!r}; expected local or spark", param_hint="--engine")
    try:
        counts = [parse_count(e) for e in events]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--events") from None
    if config == "configs/train/gowalla.yaml":  # the legacy default: the engines compare on world ALS
        config = "configs/train/world_als.yaml"
    with tempfile.TemporaryDirectory(prefix="kolfeed-bench-engines-") as tmp:
        root = Path(work) if work else Path(tmp)
        limits = {"timeout": timeout_min * 60, "budget": budget_min * 60, "memory_mb": memory_gb * 1024}
        out = run(engines, counts, Path(config), Path(results), root, **limits)
    for r in out["rows"]:
        if "wall_seconds" not in r:
            typer.echo(f"{r['events']:>12,} events  {r['engine']:<6} {r['status']}")
            continue
        typer.echo(
            f"{r['events']:>12,} events  {r['engine']:<6} {r['status']:<10} wall={r['wall_seconds']:.0f}s "
            f"peak={r['peak_total_mb']:.0f}MB (driver {r['peak_driver_mb']:.0f}, jvm {r['peak_jvm_mb']:.0f}, "
            f"workers {r['peak_workers_mb']:.0f}) recall@20={r.get('recall@20') or 0:.4f}"
        )


@bench_app.command("sizing")
def sizing_command(
    run_dir: Path = typer.Argument(..., help="a trained run directory (its item and user embeddings)"),
    redis: str = typer.Option("redis://127.0.0.1:6379/15", help="Redis db to measure per-user memory in"),
    users: int = typer.Option(5000, min=100, help="users whose day of activity is written"),
    results: str = typer.Option("bench/results", help="directory for sizing.json and sizing.png"),
) -> None:
    """Per-unit figures for docs/SCALING.md: IVF-PQ recall and bytes per item, Redis bytes per user."""
    from kolfeed.bench.sizing import run

    out = run(run_dir, redis, users, Path(results))
    for cat in out["index"]["catalogues"]:
        best = cat["sweep"][-1]
        typer.echo(
            f"{cat['factory']} on {cat['items']:,} items: {cat['bytes_per_item']:.1f} B/item, "
            f"recall@100 {best['recall@100']:.3f} at nprobe {best['nprobe']}"
        )
    r = out["redis"]
    typer.echo(f"redis: {r['bytes_per_user']:.0f} B per user ({r['user_keys']} keys for {r['users']} users)")
