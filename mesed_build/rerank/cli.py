"""`mesed-build models fetch`: download the configured re-ranker weights into the cache."""

from __future__ import annotations

import click


@click.group("models")
def models() -> None:
    """The re-ranker's model weights (CLIP and the object detector)."""


@models.command("fetch")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Build config whose rerank.clip / rerank.detector / rerank.cache_dir to fetch.")
def fetch(config_path: str) -> None:
    """Download the configured weights (needs internet; run it once, then build offline)."""
    from mesed_build.config import ConfigError, load_config
    from mesed_build.rerank.models import ModelNotAvailable, UnknownModel, fetch_models

    try:
        config = load_config(config_path)
        options = config.section("rerank")
        done = fetch_models(options)
        done += fetch_keybert_model(config.section("images"))
    except (ConfigError, ModelNotAvailable, UnknownModel, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not done:
        click.echo("nothing to fetch: the config uses random weights (pretrained/weights: null)")
    for line in done:
        click.echo(f"cached {line} in {options.get('cache_dir') or 'the default cache'}")


def fetch_keybert_model(images_options) -> list[str]:
    """The KeyBERT sentence model, when it is a hub name (not the bundled package nor a folder)."""
    from pathlib import Path

    from mesed_build.images.query import DEFAULT_SENTENCE_MODEL

    spec = images_options.get("keybert_model") or DEFAULT_SENTENCE_MODEL
    if spec.startswith("pkg:") or Path(spec).exists():
        return []
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(spec)  # downloads into the Hugging Face cache
    return [f"sentence model {spec}"]
