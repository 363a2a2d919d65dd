"""`mesed-build bench run|synth` and `mesed-build evaluate`. torch is imported inside the commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from mesed_build.bench.loader import LayoutError, load_mesed
from mesed_build.bench.metrics import RankedFileError, evaluate_records, metrics_markdown, read_ranked

METHOD_CHOICES = ("multiexpan", "text-mep", "text-emb", "image-only", "random")


def _ranks(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"expected LO-HI such as 171-200, got {value!r}") from None
    if not 1 <= lo <= hi:
        raise click.BadParameter(f"expected 1 <= LO <= HI, got {value!r}")
    return lo, hi


@click.group("bench")
def bench() -> None:
    """Benchmark MultiExpan (modes 0-4) and baselines on a MESED-layout export."""


@bench.command("run")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A directory in the MESED layout (our export or the original release).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="multiexpan", show_default=True)
@click.option("--mode", type=click.IntRange(0, 4), default=4, show_default=True,
              help="0 MEP, 1 +contrastive, 2 +cluster, 3 +momentum distillation, 4 all (multiexpan, text-mep).")
@click.option("--text-model", default="bert-base-uncased", show_default=True,
              help="BERT-family name or folder (the offline MiniLM folder works); 'tiny-random' for smoke runs.")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True, help="The reference runs 50.")
@click.option("--mode0-epochs", type=click.IntRange(1), default=None,
              help="Modes 1-4: epochs of the MEP-only model they start from [default: --epochs].")
@click.option("--micro-batch", type=click.IntRange(2), default=32, show_default=True)
@click.option("--global-batch", type=click.IntRange(2), default=256, show_default=True,
              help="Gradients accumulate over micro-batches up to this many samples (reference: 2048).")
@click.option("--lr", type=float, default=1e-5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target-size", type=click.IntRange(2), default=None,
              help="Set size after expansion, seeds included [default: 105; 203 for mode 0].")
@click.option("--mining-target", type=click.IntRange(2), default=203, show_default=True,
              help="Set size of the mode-0 expansions that hard negatives are mined from.")
@click.option("--negative-ranks", default="171-200", show_default=True, callback=lambda c, p, v: _ranks(v),
              help="Ranks (1-based) of the mode-0 expansions taken as hard negatives.")
@click.option("--sentences-per-entity", type=click.IntRange(1), default=64, show_default=True)
@click.option("--backbone", default="resnet50", show_default=True, help="torchvision ResNet-family trunk.")
@click.option("--image-weights", default="IMAGENET1K_V2", show_default=True,
              help="torchvision weights tag, or 'none' for random weights.")
@click.option("--image-normalize", type=click.Choice(["imagenet", "none"]), default="imagenet", show_default=True,
              help="'none' feeds raw [0, 1] pixels like the reference.")
@click.option("--image-feature-norm", type=click.Choice(["standardize", "none"]), default="standardize",
              show_default=True, help="Standardise trunk features per dimension; 'none' feeds them raw like the reference.")
@click.option("--features", "features_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the fp16 image features (reused across runs) [default: OUT/features].")
@click.option("--embedding-model", default=None, help="text-emb: sentence encoder folder [default: offline MiniLM].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def run(data_dir, method, mode, text_model, device, epochs, mode0_epochs, micro_batch, global_batch, lr, seed, target_size,
        mining_target, negative_ranks, sentences_per_entity, backbone, image_weights, image_normalize,
        image_feature_norm, features_dir, embedding_model, out_dir) -> None:
    """Train (where the method trains), expand every query, and write ranked.jsonl, metrics.json, metrics.md."""
    from mesed_build.bench.runner import RunOptions, run_benchmark

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opts = RunOptions(
        data=data_dir, out=out_dir, method=method, mode=mode, text_model=text_model, device=device, epochs=epochs,
        mode0_epochs=mode0_epochs,
        micro_batch=micro_batch, global_batch=global_batch, lr=lr, seed=seed, target_size=target_size,
        mining_target=mining_target, negative_ranks=negative_ranks, sentences_per_entity=sentences_per_entity,
        backbone=backbone, image_weights=None if image_weights.lower() == "none" else image_weights,
        image_normalize=image_normalize, image_feature_norm=image_feature_norm, features_dir=features_dir,
        embedding_model=embedding_model,
    )
    try:
        report = run_benchmark(opts)
    except LayoutError as exc:
        raise click.ClickException(str(exc)) from None
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo((out_dir / "metrics.md").read_text(encoding="utf-8"))
    if report.get("drops"):
        entities = report.get("entities", {})
        click.echo(f"trained on {entities.get('trained')} of {entities.get('in_vocabulary')} entities; dropped: "
                   + ", ".join(f"{reason}={count}" for reason, count in sorted(report["drops"].items())))
    for warning in report.get("expansion", {}).get("warnings", [])[:5]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {out_dir / 'ranked.jsonl'}, metrics.json, metrics.md in {report['seconds']:.1f} s")


@bench.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--entities-per-class", type=click.IntRange(6), default=15, show_default=True)
@click.option("--distractors", type=click.IntRange(0), default=30, show_default=True)
@click.option("--sentences-per-entity", type=click.IntRange(2), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def synth(out_dir, entities_per_class, distractors, sentences_per_entity, seed) -> None:
    """Write the SYNTHETIC benchmark set (MESED layout) for testing that models use images."""
    from mesed_build.bench.synth import SynthConfig, make_synthetic

    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.ClickException(f"{out_dir} is not empty; choose a new --out")
    summary = make_synthetic(out_dir, SynthConfig(entities_per_class, distractors, sentences_per_entity, seed=seed))
    click.echo(f"SYNTHETIC set: {summary['entities']} entities, {summary['sentences']} sentences, "
               f"{len(summary['classes'])} classes ({len(summary['image_disambiguated_classes'])} image-disambiguated) "
               f"in {out_dir}")


@click.command("evaluate")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The MESED-layout directory whose queries and gt/ the ranking answers.")
@click.option("--ranked", "ranked_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON Lines: {"class": NAME, "seeds": [eid...], "ranked": [eid...]} per query.')
@click.option("--json", "as_json", is_flag=True, help="Print {\"seed3\": {...}, \"seed5\": {...}} with fractions.")
def evaluate(data_dir, ranked_path, as_json) -> None:
    """Score any system's ranked lists with the reference MAP@k / P@k (and textbook P@k)."""
    try:
        data = load_mesed(data_dir)
        records = read_ranked(ranked_path)
        evaluation = evaluate_records(data, records)
    except LayoutError as exc:
        raise click.ClickException(str(exc)) from None
    except RankedFileError as exc:
        raise click.ClickException(f"{ranked_path}: {exc}" if not str(exc).startswith(str(ranked_path)) else str(exc)) from None
    for group, missing in evaluation.missing.items():
        if missing:
            click.echo(f"warning: {len(missing)} {group} queries have no ranked list and score 0, "
                       f"e.g. class {missing[0][0]!r} query {missing[0][1] + 1}", err=True)
    if as_json:
        click.echo(json.dumps(evaluation.as_json(), indent=1))
    else:
        click.echo(metrics_markdown({ranked_path.name: evaluation}, f"Scores of {ranked_path}"), nl=False)
    sys.stdout.flush()
