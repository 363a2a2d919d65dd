"""Every method on the SYNTHETIC set (`mesed-build bench synth`): a metrics table per method.

    python bench/multiexpan_synthetic.py --device cpu|cuda --out DIR [--text-model PATH|tiny-random]

The set is generated here (4 sibling-class families, 2 of them image-disambiguated; see
mesed_build/bench/synth.py). It only shows that the models learn and that MultiExpan uses images;
its numbers say nothing about real entity set expansion. Image features come from a ResNet-50 with
random weights (no pretrained weights are available offline), standardised per dimension.

Writes DIR/multiexpan_synthetic_<device>.json and .md (reference metrics, textbook P@k, and MAP@10
on the image-disambiguated classes alone).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TINY = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--text-model", default="tiny-random")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every trained model (mode 0 included)")
    parser.add_argument("--later-mode-epochs", type=int, default=3,
                        help="modes 1-4: epochs on top of the --epochs mode-0 model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--lr", type=float, default=None, help="default: 5e-3 (tiny-random), 1e-3 otherwise")
    parser.add_argument("--entities-per-class", type=int, default=15)
    parser.add_argument("--vocab", default=None, help="WordPiece vocab.txt for tiny-random [default: MiniLM's]")
    parser.add_argument("--methods", default="random,text-emb,image-only,text-mep:0,multiexpan:0,multiexpan:4")
    args = parser.parse_args(argv)
    import torch

    from mesed_build.bench.loader import load_mesed
    from mesed_build.bench.metrics import metrics_markdown, read_ranked, reference_ap
    from mesed_build.bench.runner import RunOptions, run_benchmark
    from mesed_build.bench.synth import SynthConfig, make_synthetic

    if not args.device.startswith("cuda"):
        # on a shared, loaded CPU more threads than free cores make every step many times slower
        torch.set_num_threads(args.threads)
    tiny = args.text_model == "tiny-random"
    lr = args.lr or (5e-3 if tiny else 1e-3)
    epc = args.entities_per_class
    results: dict = {}
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        make_synthetic(root, SynthConfig(entities_per_class=epc, distractors=2 * epc, sentences_per_entity=8))
        data = load_mesed(root)
        image_classes = set(json.loads((root / "synthetic.json").read_text())["image_disambiguated_classes"])
        features = Path(tmp) / "features"
        for spec in args.methods.split(","):
            method, _, mode = spec.partition(":")
            label = f"{method} (mode {mode})" if mode else method
            out = Path(tmp) / spec.replace(":", "_")
            opts = RunOptions(
                data=root, out=out, method=method, mode=int(mode or 0), device=args.device,
                epochs=args.later_mode_epochs if int(mode or 0) > 0 else args.epochs, mode0_epochs=args.epochs,
                text_model=args.text_model, bert_config=TINY if tiny else None, num_heads=4 if tiny else 12,
                model_overrides=dict(image_layers=1, fusion_layers=1, dropout=0.0, head_dropout=0.0) if tiny else {},
                micro_batch=16, global_batch=32, lr=lr, target_size=epc + 1, mining_target=epc + 3,
                negative_ranks=(epc - 2, epc), sentences_per_entity=8, pair_sentences=4, image_weights=None,
                features_dir=features, bucket_batches=1, progress=False, tokenizer_vocab=args.vocab,
            )
            started = time.perf_counter()
            report = run_benchmark(opts)
            seconds = time.perf_counter() - started
            ranked = read_ranked(out / "ranked.jsonl")
            image_map10 = {}
            for seeds in (3, 5):
                scores = [reference_ap(data.gold[r.class_name], r.ranked, 10) for r in ranked
                          if r.class_name in image_classes and len(r.seeds) == seeds]
                image_map10[f"seed{seeds}"] = sum(scores) / len(scores)
            results[label] = {"seed3": report["seed3"], "seed5": report["seed5"], "seconds": seconds,
                              "image_classes_MAP@10": image_map10, "training": report.get("training"),
                              "mining": report.get("mining")}
            rows[label] = {"seed3": report["seed3"], "seed5": report["seed5"]}
            print(f"{label}: MAP@10 {report['seed3']['MAP@10']:.3f} (3 seeds), image classes "
                  f"{image_map10['seed3']:.3f}, {seconds:.0f} s", flush=True)
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    if device == "cuda":
        machine = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    else:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        machine = f"{os.cpu_count()}-core {platform.machine()} CPU, {mem:.0f} GB, Python {platform.python_version()}"
    setup = (f"SYNTHETIC set: {len(data.class_names)} classes x {epc} entities + {2 * epc} distractors, 8 sentences "
             f"each; target size {epc + 1} (seeds included); text model {args.text_model}, {args.epochs} epochs "
             f"(modes 1-4: {args.later_mode_epochs} more on the mode-0 model), "
             f"lr {lr}; ResNet-50 with random weights. Machine: {machine}. With {epc} members per class "
             f"the best possible MAP@10 is {100 * (epc - 3) / min(epc, 10):.0f}% with 3 seeds and "
             f"{100 * (epc - 5) / min(epc, 10):.0f}% with 5 seeds (the seeds cannot be returned).")
    md = metrics_markdown(rows, f"SYNTHETIC set: every method ({device})", setup)
    md += "\nMAP@10 (%) on the image-disambiguated classes only (text alone cannot separate these siblings):\n\n"
    md += "| method | 3 seeds | 5 seeds | seconds |\n|---|---|---|---|\n"
    for label, r in results.items():
        md += (f"| {label} | {100 * r['image_classes_MAP@10']['seed3']:.2f} | "
               f"{100 * r['image_classes_MAP@10']['seed5']:.2f} | {r['seconds']:.0f} |\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"multiexpan_synthetic_{device}.json").write_text(
        json.dumps({"setup": setup, "synthetic": True, "results": results}, indent=1, default=str), encoding="utf-8")
    (args.out / f"multiexpan_synthetic_{device}.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
