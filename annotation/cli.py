"""`mesed-build annotate ...`: the review queue's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mesed_build.cli import DEFAULT_BUILD_DIR, UserError, open_store, with_store_options


def _image_root(config_path: str | None, build_dir: str | None, image_dir: str | None, store) -> Path:
    """Where the images stage put image bytes: --image-dir, else the config's images.image_dir, else BUILD_DIR/images."""
    if image_dir:
        return Path(image_dir)
    if config_path:
        from mesed_build.config import load_config

        config = load_config(config_path, build_dir=build_dir)
        return Path(config.section("images").get("image_dir") or config.build_dir / "images")
    build = store.latest_build()
    configured = json.loads(build["config"]).get("images", {}).get("image_dir") if build else None
    return Path(configured) if configured else Path(build_dir or DEFAULT_BUILD_DIR) / "images"


def _queue_options(store, overrides: dict):
    from annotation.queue import QueueError, options_for_store

    try:
        return options_for_store(store, overrides)
    except QueueError as exc:
        raise UserError(str(exc)) from exc


def queue_option_flags(fn):
    for option in reversed([
        click.option("--overlap-share", type=float, help="Share of items given to k annotators [config or 0.1]."),
        click.option("--overlap-k", type=int, help="Annotators per overlap item [config or 3]."),
        click.option("--calibration-share", type=float, help="Share of items whose top-1 is judged too [config or 0.1]."),
        click.option("--lease-seconds", type=int, help="How long an annotator holds an item [config or 900]."),
        click.option("--model-id", help="Rerank model whose choices are reviewed (when the store has several)."),
    ]):
        fn = option(fn)
    return fn


def _overrides(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


@click.group("annotate")
def annotate() -> None:
    """The image review queue: accounts, the web app, Label Studio interop."""


@annotate.command("add-user")
@with_store_options
@click.argument("name")
@click.option("--role", type=click.Choice(["annotator", "admin"]), default="annotator", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts).")
@click.option("--replace", is_flag=True, help="Reset the password and role of an existing user.")
def add_user(config_path, build_dir, db, name: str, role: str, password_stdin: bool, replace: bool) -> None:
    """Create an account (admins create annotators); the password is hashed with argon2id."""
    from annotation.auth import AuthError
    from annotation.auth import add_user as create

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    store = open_store(config_path, build_dir, db)
    try:
        user = create(store, name, password, role, replace=replace)
    except AuthError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"user {user.name} ({user.role}) {'updated' if replace else 'created'}")


@annotate.command()
@with_store_options
@queue_option_flags
def sync(config_path, build_dir, db, **flags) -> None:
    """Fill (or refresh) the queue from the rerank stage's choices; labels are kept."""
    from annotation.queue import QueueError, sync_items

    store = open_store(config_path, build_dir, db)
    try:
        counts = sync_items(store, _queue_options(store, _overrides(**flags)))
    except QueueError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    click.echo("queue: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@annotate.command()
@with_store_options
@queue_option_flags
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--image-dir", type=click.Path(file_okay=False), help="Content store root [the images stage's].")
@click.option("--secure-cookies/--no-secure-cookies", default=False, show_default=True,
              help="Mark cookies Secure (set this when serving behind HTTPS).")
@click.option("--no-sync", is_flag=True, help="Do not refresh the queue from the rerank choices at start.")
@click.option("--forwarded-allow-ips", metavar="IPS",
              help="Behind a reverse proxy: the proxy addresses (comma-separated) whose X-Forwarded-For is "
                   "trusted, so login rate limits apply per real client. Off by default: the header is ignored.")
def serve(config_path, build_dir, db, host: str, port: int, image_dir: str | None, secure_cookies: bool,
          no_sync: bool, forwarded_allow_ips: str | None, **flags) -> None:
    """Serve the review queue (uvicorn). Create accounts first with `annotate add-user`."""
    import uvicorn

    from annotation.app import AppSettings, create_app, server_options
    from annotation.auth import list_users
    from annotation.queue import QueueError, sync_items

    store = open_store(config_path, build_dir, db)
    options = _queue_options(store, _overrides(**flags))
    if not no_sync:
        try:
            counts = sync_items(store, options)
        except QueueError as exc:
            raise UserError(str(exc)) from exc
        click.echo("queue: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not list_users(store):
        click.echo("warning: no accounts yet; create one with `mesed-build annotate add-user NAME --role admin`",
                   err=True)
    root = _image_root(config_path, build_dir, image_dir, store)
    app = create_app(store, AppSettings(content_root=root, options=options, secure_cookies=secure_cookies))
    click.echo(f"serving the review queue on http://{host}:{port}/ (images from {root})")
    uvicorn.run(app, **server_options(host, port, forwarded_allow_ips))


@annotate.command("export-labelstudio")
@with_store_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for tasks.json and labeling-config.xml.")
@click.option("--image-url-prefix", default="/data/local-files/?d=", show_default=True,
              help="Prefix of image URLs; the content-store path of each image follows it "
                   "(the default suits Label Studio's local files storage rooted at the content store).")
def export_labelstudio(config_path, build_dir, db, out: str, image_url_prefix: str) -> None:
    """Write the queue as Label Studio tasks (tasks.json) with a labeling config (labeling-config.xml)."""
    from annotation.labelstudio import export_tasks

    store = open_store(config_path, build_dir, db)
    try:
        counts = export_tasks(store, Path(out), image_url_prefix=image_url_prefix)
    finally:
        store.close()
    click.echo(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@annotate.command("import-labelstudio")
@with_store_options
@click.argument("export_json", type=click.Path(exists=True, dir_okay=False))
def import_labelstudio(config_path, build_dir, db, export_json: str) -> None:
    """Read Label Studio's JSON export back into the store (its annotators become inactive accounts)."""
    from annotation.labelstudio import LabelStudioError, import_export

    store = open_store(config_path, build_dir, db)
    try:
        counts = import_export(store, Path(export_json))
    except LabelStudioError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    click.echo("imported: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@annotate.command()
@with_store_options
@click.option("--diversity", is_flag=True,
              help="Also compute diversity with the rerank stage's CLIP model (slow: loads torch and CLIP).")
@click.option("--image-dir", type=click.Path(file_okay=False), help="Content store root [the images stage's].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def table1(config_path, build_dir, db, diversity: bool, image_dir: str | None, as_json: bool) -> None:
    """The paper's Table 1 from the labels: R/T E&S, R/T S and IR shares of Top 1, Re-ranking and Annotation."""
    from annotation.results import LABELS, table1 as make_table

    store = open_store(config_path, build_dir, db)
    try:
        embed = None
        if diversity:
            from annotation.diversity import clip_embedder

            build = store.latest_build()
            config = json.loads(build["config"]) if build else {}
            if config_path:
                from mesed_build.config import load_config

                config = load_config(config_path, build_dir=build_dir).raw
            try:
                embed = clip_embedder(store, _image_root(config_path, build_dir, image_dir, store),
                                      config.get("rerank") or {}, seed=int(config.get("seed", 0)))
            except Exception as exc:  # a model that cannot be loaded offline says so in one line
                raise UserError(f"diversity: {exc}") from exc
        try:
            table = make_table(store, embed=embed)
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from exc
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(table, indent=2, sort_keys=True))
        return
    click.echo(f"{'strategy':<12} {'n':>6}  {'R/T E&S':>8} {'R/T S':>8} {'IR':>8}  diversity")
    for name, row in table["rows"].items():
        shares = " ".join(f"{row[k]:>8.1%}" if row[k] is not None else f"{'n/a':>8}" for k in LABELS)
        div = f"{row['diversity']:.3f}" if row["diversity"] is not None else "n/a"
        click.echo(f"{name:<12} {row['n']:>6}  {shares}  {div}")
    click.echo(f"Fleiss' kappa: {table['kappa'] if table['kappa'] is not None else 'n/a'}")
