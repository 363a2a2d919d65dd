"""The `mesed-build` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from mesed_build import __version__

DEFAULT_BUILD_DIR = Path("builds/demo")


class UserError(click.ClickException):
    """An error the user can fix; printed as one line, without a traceback."""


def _user_errors():
    # the library's error types whose messages already name the file, line or URL
    from mesed_build.config import ConfigError
    from mesed_build.export.mesed import ExportError
    from mesed_build.store import StoreLayoutError
    from mesed_build.wiki.source import WikiError

    from mesed_build.images.providers import ProviderError
    from mesed_build.images.query import QueryModelError
    from mesed_build.rerank.models import ModelNotAvailable, UnknownModel

    return (ConfigError, WikiError, ExportError, FileNotFoundError, ProviderError, QueryModelError,
            ModelNotAvailable, UnknownModel, StoreLayoutError)


def open_store(config_path: str | None, build_dir: str | None, db: str | None):
    """The store a command works on: --db wins, then --config's database, then --build-dir."""
    from mesed_build.config import load_config
    from mesed_build.store import Store, StoreLayoutError

    if db:
        url = db
    elif config_path:
        url = load_config(config_path, build_dir=build_dir).database_url
    else:
        directory = Path(build_dir) if build_dir else DEFAULT_BUILD_DIR
        store_file = directory / "store.sqlite"
        if not store_file.exists():
            raise UserError(f"{store_file}: no build store here (run `mesed-build build --config ...` first, "
                            "or pass --build-dir/--config/--db)")
        url = f"sqlite:///{store_file.as_posix()}"
    try:
        return Store(url)
    except StoreLayoutError as exc:
        raise UserError(str(exc)) from exc


store_options = [
    click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                 help="Build config; its database is used."),
    click.option("--build-dir", type=click.Path(file_okay=False),
                 help=f"Build directory holding store.sqlite [default: {DEFAULT_BUILD_DIR}]."),
    click.option("--db", help="SQLAlchemy URL of the store, e.g. postgresql+psycopg://user@host/db."),
]


def with_store_options(fn):
    for option in reversed(store_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mesed-build")
def main() -> None:
    """Build, inspect, export and benchmark a MESED-style multi-modal Entity Set Expansion dataset.

    Typical use: `mesed-build build --config configs/demo.yaml`, then `mesed-build stats`,
    then `mesed-build export --format mesed --out DIR`.
    """


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Build config (YAML), validated before any work.")
@click.option("--build-dir", type=click.Path(file_okay=False), help="Override the config's build directory.")
@click.option("--db", help="Override the config's store URL (e.g. PostgreSQL for shared builds).")
@click.option("--stages", help="Comma-separated stages to run (default: all, in pipeline order).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def build(config_path: str, build_dir: str | None, db: str | None, stages: str | None, progress: bool | None) -> None:
    """Run the build flow (Prefect): classes, vocabulary, sentences, synonyms, images, rerank, annotation, queries.

    Every stage is re-runnable: a rerun skips finished work and adds no duplicate rows.
    """
    from mesed_build.config import load_config

    try:
        config = load_config(config_path, build_dir=build_dir, database_url=db)  # fail before Prefect starts
    except _user_errors() as exc:
        raise UserError(str(exc)) from exc
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.build import STAGES, build_flow

    selected = [s.strip() for s in stages.split(",")] if stages else None
    if selected:
        unknown = [s for s in selected if s not in STAGES]
        if unknown:
            raise UserError(f"--stages: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    show = sys.stderr.isatty() if progress is None else progress
    try:
        results = build_flow(config_path=config_path, build_dir=build_dir, database_url=db, stages=selected,
                             progress=show)
    except _user_errors() as exc:
        raise UserError(str(exc)) from exc
    for stage, counts in results.items():
        click.echo(f"{stage}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    click.echo(f"store: {config.database_url}")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--cron", default="0 3 1,20 * *", show_default=True,
              help="Schedule (the dumps appear on the 1st and the 20th of each month).")
@click.option("--name", help="Deployment name [default: rebuild-<config name>].")
@click.option("--port", type=int, default=4200, show_default=True,
              help="Port of the local Prefect server started when PREFECT_API_URL is not set.")
def serve(config_path: str, cron: str, name: str | None, port: int) -> None:
    """Serve the build flow as a scheduled Prefect deployment (blocks until interrupted).

    With PREFECT_API_URL set, the deployment goes to that Prefect server. Without it, a local
    `prefect server start` (with its scheduler) runs for as long as this command does: Prefect's
    ephemeral server cannot fire schedules.
    """
    from mesed_build.config import load_config

    try:
        load_config(config_path)
    except _user_errors() as exc:
        raise UserError(str(exc)) from exc
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.serve import ServeError
    from flows.serve import serve as serve_flow

    try:
        serve_flow(config_path, cron, name, port)  # checks the cron before anything starts
    except ServeError as exc:
        raise UserError(str(exc)) from exc


@main.command()
@with_store_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Also write PNG plots (class sizes, sentences per entity, image scores, relevance) here.")
def stats(config_path: str | None, build_dir: str | None, db: str | None, as_json: bool, plots_dir: str | None) -> None:
    """Counts per stage, entities per class and drops by reason for a build."""
    from mesed_build.stats import collect_stats, format_stats

    store = open_store(config_path, build_dir, db)
    try:
        result = collect_stats(store)
        if plots_dir:
            from mesed_build.plots import write_plots

            result["plots"] = write_plots(store, plots_dir)
    finally:
        store.close()
    click.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else format_stats(result))
    if plots_dir and not as_json:
        click.echo("")
        click.echo(f"plots in {plots_dir}:")
        for name, status in result["plots"].items():
            click.echo(f"  {name}: {status}")


@main.command()
@with_store_options
@click.option("--format", "fmt", type=click.Choice(["mesed", "parquet", "webdataset", "all"]), default="mesed",
              show_default=True, help="Output format; `all` writes mesed/, parquet/ and webdataset/ under --out.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--images-dir", type=click.Path(file_okay=False), help="Image content store [default: BUILD_DIR/images].")
@click.option("--image-model", help="Re-rank model whose chosen images to use, when the store holds several.")
@click.option("--shard-size", default="1GB", show_default=True, help="Target size of WebDataset/Parquet image shards.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def export(config_path: str | None, build_dir: str | None, db: str | None, fmt: str, out: str, force: bool,
           images_dir: str | None, image_model: str | None, shard_size: str, progress: bool | None) -> None:
    """Export the dataset: the MESED layout, Parquet (Hugging Face) or WebDataset, with a dataset card.

    The same store always gives byte-identical files; a killed export leaves nothing at --out.
    """
    from mesed_build.export.run import export as run_export

    store = open_store(config_path, build_dir, db)
    try:
        if build_dir is None and config_path:
            from mesed_build.config import load_config

            build_dir = str(load_config(config_path).build_dir)
        result = run_export(store, Path(out), formats=[fmt], force=force, image_root=images_dir, build_dir=build_dir,
                            image_model=image_model, shard_bytes=shard_size,
                            progress=sys.stderr.isatty() if progress is None else progress)
    except _user_errors() as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    for name, written in result["formats"].items():
        click.echo(f"{name}: {written['bytes']} bytes; " + ", ".join(f"{k}={v}" for k, v in written["counts"].items()))
    click.echo(f"wrote {out} in {result['seconds']:.2f} s")


# --- commands registered by other packages (keep one line each) -----------------------
from mesed_build.bench.cli import bench, evaluate  # noqa: E402

main.add_command(bench)
main.add_command(evaluate)
from annotation.cli import annotate; main.add_command(annotate)  # noqa: E402
from mesed_build.diff import diff_command; main.add_command(diff_command)  # noqa: E402
from mesed_build.rerank.cli import models; main.add_command(models)  # noqa: E402
