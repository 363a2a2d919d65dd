"""MultiExpan throughput: training samples/s and expansion seconds per query set.

    python bench/multiexpan_throughput.py --device cuda|cpu --out DIR [--size small|mesed]

Data is generated (stated in the results), at MESED-like shapes:
- training: V entities, sentences of 20-60 WordPiece ids (uniform), one [MASK] each, and random
  fp16 image features [36, 2048] for a pool of unique images read from an on-disk memmap;
  a randomly initialised BERT of the configured size (bert-base shape on --size mesed; weights do
  not change the cost). We time one MEP phase slice (mode 0) and one mode-4 epoch slice
  (2 contrastive, 2 cluster, 1 MEP+MD phases), counting samples that went through the encoder.
- expansion: V = 14,489 entities and 70 classes with 3 seeds, synthetic entity distributions
  (Dirichlet-like rows with class structure), at target 105 and 203. The cached implementation
  (`expand_joint`) is timed against the straightforward one (`expand_joint_naive`) in the same run,
  on the same inputs, and both must return the same sets; the ratio is reported.

Writes DIR/multiexpan_<device>.json and DIR/multiexpan_<device>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {
    # training shapes, and expansion shapes (V, classes, targets)
    "small": dict(bert=dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192),
                  heads=4, vocab=2000, micro=8, steps=8, images=64,
                  expand_vocab=6000, expand_classes=20, targets=(105, 203)),
    "mesed": dict(bert=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
                  heads=12, vocab=14489, micro=128, steps=12, images=4096,
                  expand_vocab=14489, expand_classes=70, targets=(105, 203)),
}


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {mem:.0f} GB, Python {platform.python_version()}"


def synthetic_training_data(size: dict, folder: Path, seed: int = 0):
    from mesed_build.bench.features import ImageFeatureStore
    from mesed_build.bench.samples import PreparedData, Sample

    rng = np.random.default_rng(seed)
    vocab = size["vocab"]
    n_images = size["images"]
    feats = np.lib.format.open_memmap(folder / "f.npy", mode="w+", dtype=np.float16, shape=(n_images, 36, 2048))
    for start in range(0, n_images, 256):
        stop = min(start + 256, n_images)
        feats[start:stop] = rng.standard_normal((stop - start, 36, 2048), dtype=np.float32).astype(np.float16)
    feats.flush()
    store = ImageFeatureStore(np.load(folder / "f.npy", mmap_mode="r"), {str(i): i for i in range(n_images)}, {})
    samples = []
    per_entity = 4
    for e in range(vocab):
        for _ in range(per_entity):
            length = int(rng.integers(20, 61))
            ids = rng.integers(1000, 30000, size=length).astype(np.int32)
            ids[0], ids[-1] = 101, 102
            pos = int(rng.integers(1, length - 1))
            ids[pos] = 103
            samples.append(Sample(ids, pos, e, int(rng.integers(0, n_images))))
    return PreparedData(None, list(range(vocab)), samples), store


def bench_training(device: str, size: dict, folder: Path) -> dict:
    import torch

    from mesed_build.bench.model import ModelConfig, MultiExpan
    from mesed_build.bench.train import NEGATIVE_GROUP, TrainConfig, Trainer

    prepared, store = synthetic_training_data(size, folder)
    vocab = size["vocab"]
    n_classes = 70
    rng = np.random.default_rng(1)
    rows = rng.permutation(vocab)
    groups = {f"class{c}": sorted(int(r) for r in rows[c * 8 : c * 8 + 8]) for c in range(n_classes)}
    groups[NEGATIVE_GROUP] = sorted(int(r) for r in rows[n_classes * 8 : n_classes * 8 + 300])
    bert = dict(vocab_size=30522, max_position_embeddings=512, **size["bert"])
    results = {}
    for mode in (0, 4):
        torch.manual_seed(0)
        cfg = ModelConfig(num_entities=vocab, num_clusters=n_classes + 1, text_model=None, bert_config=bert,
                          num_heads=size["heads"])
        model = MultiExpan(cfg)
        model.freeze_text_layers()
        train_cfg = TrainConfig(mode=mode, epochs=1, micro_batch=size["micro"], global_batch=size["micro"] * 2,
                                sentences_per_entity=1, pair_sentences=4, max_steps_per_phase=size["steps"],
                                bf16=True)
        # warm-up (CUDA kernels and autotuning for many sequence lengths, the allocator) on a separate
        # trainer with every phase of the mode, not timed: the GPU run of 2026-11-26 showed a first
        # phase 3x slower than the same phase run second when only 2 MEP steps warmed up
        warm_cfg = TrainConfig(**{**train_cfg.__dict__, "max_steps_per_phase": 6})
        warm = Trainer(model, prepared, warm_cfg, folder / f"warm{mode}", image_store=store, device=device,
                       pair_groups=groups, progress=False)
        if warm_cfg.uses_cl:
            warm.contrastive_phase(99, 0)
        if warm_cfg.uses_cluster:
            warm.cluster_phase(99, 0)
        warm.mep_phase(99)
        trainer = Trainer(model, prepared, train_cfg, folder / f"mode{mode}", image_store=store, device=device,
                          pair_groups=groups, progress=False)
        phases = []
        if train_cfg.uses_cl:
            phases += [trainer.contrastive_phase(0, i) for i in range(2)]
        if train_cfg.uses_cluster:
            phases += [trainer.cluster_phase(0, i) for i in range(2)]
        phases.append(trainer.mep_phase(0))
        seconds = sum(p.seconds for p in phases)
        # a pair phase encodes two sentences per pair
        encoded = sum(p.samples * (2 if p.name.startswith(("cl", "cluster")) else 1) for p in phases)
        results[f"mode{mode}"] = {
            "phases": [p.as_dict() for p in phases],
            "seconds": seconds,
            "sentences_encoded": encoded,
            "sentences_per_second": encoded / seconds,
        }
        del model, trainer
        if device.startswith("cuda"):
            results[f"mode{mode}"]["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return results


def synthetic_distributions(vocab: int, n_classes: int, seed: int = 0):
    """Rows with class structure: each class's members put extra mass on the class's members."""
    rng = np.random.default_rng(seed)
    members = rng.permutation(vocab)[: n_classes * 60].reshape(n_classes, 60)
    logits = rng.standard_normal((vocab, vocab), dtype=np.float32)
    for c in range(n_classes):
        block = members[c]
        logits[np.ix_(block, block)] += 2.5
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    log_probs = np.log(probs)
    seeds = [list(map(int, members[c][:3])) for c in range(n_classes)]
    return log_probs, probs, seeds, members


def bench_expansion(size: dict, naive_targets: set[int], checkpoint=None) -> dict:
    from mesed_build.bench.expand import _KLCache, expand_joint, expand_joint_naive, standardize_rows

    vocab, n_classes = size["expand_vocab"], size["expand_classes"]
    t0 = time.perf_counter()
    log_probs, probs, seeds, members = synthetic_distributions(vocab, n_classes)
    gen_seconds = time.perf_counter() - t0
    results = {"vocab": vocab, "classes": n_classes, "seeds": 3, "generate_seconds": gen_seconds, "targets": {}}
    t0 = time.perf_counter()
    z = standardize_rows(log_probs)
    cache = _KLCache(probs)
    results["cache_build_seconds"] = time.perf_counter() - t0
    for target in size["targets"]:
        t0 = time.perf_counter()
        fast = expand_joint(None, probs, seeds, target, standardized=z, kl_cache=cache)
        fast_s = time.perf_counter() - t0
        hits = np.mean([len(set(f) & set(map(int, m))) / len(f) for f, m in zip(fast, members)])
        row = {
            "cached_seconds": fast_s,
            "cached_plus_cache_build_seconds": fast_s + results["cache_build_seconds"],
            "share_of_output_in_class": float(hits),
        }
        if target in naive_targets:
            t0 = time.perf_counter()
            slow = expand_joint_naive(log_probs, probs, seeds, target)
            slow_s = time.perf_counter() - t0
            row.update(straightforward_seconds=slow_s, speedup=slow_s / fast_s, same_output=fast == slow)
        results["targets"][str(target)] = row
        print(f"expansion target {target}: {json.dumps(row)}", flush=True)
        if checkpoint is not None:
            checkpoint(results)
    return results


def markdown(report: dict) -> str:
    lines = [
        f"# MultiExpan throughput ({report['device']})",
        "",
        f"Machine: {report['machine']}. Generated data ({report['size']} size): {report['data']}",
        "",
        f"Load average at start: {', '.join(f'{x:.1f}' for x in report.get('load_average_at_start', ()))}"
        + (f"; torch CPU threads: {report['cpu_threads']}" if report.get("cpu_threads") else "")
        + ". Phases are timed after a warm-up pass of every phase.",
        "",
    ]
    if "training" in report:
        lines += ["| run | phases | sentences encoded | seconds | sentences/s |", "|---|---|---|---|---|"]
        for mode, r in report["training"].items():
            names = ", ".join(p["phase"] for p in r["phases"])
            lines.append(f"| {mode} slice | {names} | {r['sentences_encoded']} | {r['seconds']:.2f} | "
                         f"{r['sentences_per_second']:.1f} |")
        lines.append("")
    e = report["expansion"]
    lines += [
        f"Expansion: V = {e['vocab']}, {e['classes']} classes, 3 seeds; one query set = all classes expanded "
        f"jointly. Cache build (z-normalised l_e, KL row sums): {e['cache_build_seconds']:.1f} s.",
        "",
        "| target | cached (s) | straightforward (s) | speedup (ratio) | same output |",
        "|---|---|---|---|---|",
    ]
    for target, r in e["targets"].items():
        if "straightforward_seconds" in r:
            lines.append(f"| {target} | {r['cached_seconds']:.2f} | {r['straightforward_seconds']:.2f} | "
                         f"{r['speedup']:.1f}x | {r['same_output']} |")
        else:
            lines.append(f"| {target} | {r['cached_seconds']:.2f} | not run | - | - |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="default: mesed on CUDA, small on CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-expansion", action="store_true")
    parser.add_argument("--naive-targets", default="105,203",
                        help="targets at which the straightforward expansion is also timed ('' for none)")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    if not args.device.startswith("cuda"):
        # on a shared, loaded CPU more threads than free cores make every step many times slower
        torch.set_num_threads(args.threads)
    size_name = args.size or ("mesed" if args.device.startswith("cuda") else "small")
    size = SIZES[size_name]
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": args.device,
        "machine": machine(args.device),
        "size": size_name,
        "data": (f"training: {size['vocab']} entities x 4 sentences of 20-60 ids, {size['images']} unique images "
                 f"(random fp16 [36, 2048] memmap), random-init BERT {size['bert']}, micro-batch {size['micro']}, "
                 f"{size['steps']} micro-batches per phase, bf16 autocast on CUDA; expansion: synthetic "
                 f"distributions, V={size['expand_vocab']}, {size['expand_classes']} classes of 60 members"),
        "synthetic": True,
        "cpu_threads": None if args.device.startswith("cuda") else args.threads,
        "load_average_at_start": os.getloadavg(),
    }
    name = f"multiexpan_{'cuda' if args.device.startswith('cuda') else 'cpu'}"

    def save(expansion=None) -> None:
        # written after every stage, so a run stopped at its time limit keeps what it measured
        if expansion is not None:
            report["expansion"] = expansion
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        if "expansion" in report:
            (args.out / f"{name}.md").write_text(markdown(report), encoding="utf-8")

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_training:
            report["training"] = bench_training(args.device, size, Path(tmp))
            print(json.dumps({k: v["sentences_per_second"] for k, v in report["training"].items()}), flush=True)
            save()
    if not args.skip_expansion:
        naive = {int(t) for t in args.naive_targets.split(",") if t.strip()}
        save(bench_expansion(size, naive, checkpoint=save))
    print(markdown(report) if "expansion" in report else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
