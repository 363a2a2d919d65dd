"""Benchmark: eq. 1 re-ranking throughput (candidates/s), against CLIP-only scoring in the same run.

Models: the default architectures at random weights (open_clip ViT-B-32, torchvision
fasterrcnn_resnet50_fpn_v2; weights do not change the cost). Candidates: --candidates distinct
images cut from the real test photos (tests/fixtures/images) and resized as the downloader stores
them (--side longest side), in sentences of 10 candidates, every entity with an infobox image, so
every candidate goes through the detector and has its object crops embedded.

* ours: Eq1Scorer with the detector (both terms of eq. 1);
* peer: the same Eq1Scorer with no detector, i.e. CLIP-only image-text scoring, the usual re-ranker.
Reported per batch size: candidates/s of each and ours/peer (below 1: the price of the object term).
Both resize and crop on tensors on the scoring device (Eq1Scorer.embed_regions).

    python bench/rerank.py --device cpu     # writes bench/results/rerank_throughput_cpu.{json,md}
    python bench/rerank.py --device cuda    # (bench/gpu.sh) rerank_throughput_cuda.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = ROOT / "tests" / "fixtures" / "images"
MACHINE_CPU = "2-core x86_64 CPU, 24 GB, Python 3.11"
SENTENCES = [
    "A dog sits on a porch in front of a red bicycle.",
    "Horses walk across a dry field below the mountains.",
    "People fly kites on a windy beach.",
    "A giraffe bends towards a zebra among the trees.",
    "An eagle stands at the edge of the water.",
    "A man in a blue jacket stands between a dog and a horse.",
]


def candidates(n: int, side: int, seed: int = 0) -> list[Image.Image]:
    """n distinct images (random windows of the real photos), all side x 3/4 side like stored images."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w = int(photo.width * rng.uniform(0.6, 1.0))
        h = int(w * 3 / 4) if int(w * 3 / 4) <= photo.height else photo.height
        x = int(rng.integers(0, photo.width - w + 1))
        y = int(rng.integers(0, photo.height - h + 1))
        out.append(photo.crop((x, y, x + w, y + h)).resize((side, side * 3 // 4), Image.Resampling.BILINEAR))
    return out


def requests_for(images: list[Image.Image], infobox: Image.Image):
    from mesed_build.rerank.scorer import ScoreRequest

    reqs = []
    for start in range(0, len(images), 10):
        chunk = images[start : start + 10]
        reqs.append(ScoreRequest(start, SENTENCES[(start // 10) % len(SENTENCES)],
                                 [(f"c{start + i}", im) for i, im in enumerate(chunk)], ("infobox", infobox)))
    return reqs


def timed(scorer, reqs, device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    scorer.score(reqs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--candidates", type=int, default=None, help="default: 20 on CPU, 320 on CUDA")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--side", type=int, default=512, help="longest side of the candidate images")
    parser.add_argument("--clip", default="ViT-B-32")
    parser.add_argument("--detector", default="fasterrcnn_resnet50_fpn_v2")
    parser.add_argument("--min-size", type=int, default=384, help="detector's internal resize (shorter side)")
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 2 on cpu, torch's own on cuda)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from mesed_build.rerank.detector import ObjectDetector
    from mesed_build.rerank.models import load_clip, load_detector
    from mesed_build.rerank.scorer import Eq1Scorer

    if args.threads is None and not args.device.startswith("cuda"):
        args.threads = 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    device = args.device
    n = args.candidates or (320 if device.startswith("cuda") else 20)
    clip = load_clip(args.clip, None, device=device)
    det_model = load_detector(args.detector, None, device=device, score_threshold=0.5, max_objects=10,
                              min_size=args.min_size, max_size=args.max_size)
    images = candidates(n, args.side)
    infobox = candidates(1, args.side, seed=1)[0]
    reqs = requests_for(images, infobox)

    # warm-up (CUDA kernels, allocator, first-call overheads) on a couple of sentences
    warm = requests_for(images[:4], infobox)
    Eq1Scorer(clip, ObjectDetector(det_model, device=device, batch_size=4), device=device, batch_size=4).score(warm)

    load_before = os.getloadavg()[0]
    rows = []
    for bs in args.batch_sizes:
        ours = Eq1Scorer(clip, ObjectDetector(det_model, device=device, batch_size=bs, score_threshold=0.5,
                                              max_objects=10), device=device, batch_size=bs)
        peer = Eq1Scorer(clip, None, device=device, batch_size=bs)
        t_peer = timed(peer, reqs, device)
        t_ours = timed(ours, reqs, device)
        row = {"batch_size": bs, "candidates": n, "ours_s": round(t_ours, 3), "peer_s": round(t_peer, 3),
               "ours_candidates_per_s": round(n / t_ours, 3), "peer_candidates_per_s": round(n / t_peer, 3),
               "ratio_ours_to_peer": round((n / t_ours) / (n / t_peer), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    if device.startswith("cuda"):
        machine = f"{torch.cuda.get_device_name(0)}, Python {platform.python_version()}"
    else:
        machine = MACHINE_CPU
    result = {
        "benchmark": "rerank_throughput", "device": device, "machine": machine, "torch": torch.__version__,
        "threads": threads, "clip": f"{args.clip} (random weights)",
        "detector": f"{args.detector} (random weights, min_size {args.min_size}, max_size {args.max_size}, "
                    "score threshold 0.5, at most 10 objects)",
        "images": f"{n} distinct {args.side}x{args.side * 3 // 4} crops of the real test photos, 10 per sentence, "
                  "every entity with an infobox image",
        "peer": "CLIP-only scoring (the same scorer without the detector / object term)",
        # the CPU machine is shared: its 1-minute load average says how much the numbers can be trusted
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                              "cpus": os.cpu_count()},
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = Path(args.out) if args.out else RESULTS / f"rerank_throughput_{'cuda' if device.startswith('cuda') else 'cpu'}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Re-rank throughput (eq. 1) on {device}: {machine}",
        "",
        f"{result['clip']} + {result['detector']}; {result['images']}. torch {torch.__version__}, "
        f"{threads} CPU threads. Peer: {result['peer']}, measured in the same run. "
        f"1-minute load average {result['load_average_1min']['before']} before and "
        f"{result['load_average_1min']['after']} after, on {os.cpu_count()} CPUs.",
        "",
        "| batch size | eq. 1 candidates/s | CLIP-only candidates/s | eq. 1 / CLIP-only |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['ours_candidates_per_s']:.2f} | {r['peer_candidates_per_s']:.2f} "
                     f"| {r['ratio_ours_to_peer']:.3f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
