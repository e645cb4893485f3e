"""`kolfeed index build RUN_DIR`: build the FAISS retrieval index of a run directory."""

from __future__ import annotations

import json

import typer

from kolfeed.failure import fail

index_app = typer.Typer(help="FAISS retrieval index over a run's item embeddings.", no_args_is_help=True)


@index_app.command("build")
def build(
    run_dir: str = typer.Argument(..., help="run directory (verified before and re-checksummed after)"),
    factory: str = typer.Option(
        "Flat",
        "--factory",
        help='FAISS factory string: "Flat", "HNSW32", "IVF1024,Flat"; prefix "MIPS," (e.g. '
        '"MIPS,IVF4096,SQfp16") searches inner products through an L2 index (large catalogs)',
    ),
    ef_search: int = typer.Option(128, "--ef-search", help="HNSW efSearch"),
    nprobe: int = typer.Option(32, "--nprobe", help="IVF lists probed per query"),
    recall_queries: int = typer.Option(
        1000, "--recall-queries", help="user vectors sampled to measure recall"
    ),
    user_neighbours: int = typer.Option(
        512,
        "--user-neighbours",
        min=0,
        help="search each user's first K neighbours now and keep them in the run, so the feed reads them "
        "instead of searching per request (0: search per request; not kept over 1 GB)",
    ),
) -> None:
    """Write index.faiss + index.json (recall@100 vs exact inner product) and update the manifest."""
    from recsys.artifacts import ArtifactError
    from recsys.index import IndexBuildError, build_run_index

    try:
        info = build_run_index(
            run_dir,
            factory,
            ef_search=ef_search,
            nprobe=nprobe,
            recall_queries=recall_queries,
            user_neighbours_k=user_neighbours,
        )
    except (ArtifactError, IndexBuildError, FileNotFoundError) as exc:
        fail(exc)
    typer.echo(json.dumps(info, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
