"""Baselines on real and synthetic data: text-emb (the real MiniLM), image-only, random."""

from __future__ import annotations

import json

import numpy as np

from mesed_build.bench.baselines import rank_by_centroid
from mesed_build.bench.loader import load_mesed
from mesed_build.bench.metrics import read_ranked, reference_ap
from mesed_build.bench.runner import RunOptions, run_benchmark


def test_rank_by_centroid_orders_by_cosine_and_skips_seeds():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7], [1.0, 0.05]])
    eids = [10, 11, 12, 13, 14]
    out = rank_by_centroid(vectors, eids, {"A": [[10, 11, 99]]}, target_size=5)
    name, seeds, ranked = out[0]
    # mean of unit(10), unit(11) = (0.997, 0.055); dot with unit rows: 14 -> 0.998, 13 -> 0.744, 12 -> 0.055
    assert (name, seeds) == ("A", [10, 11, 99]) and ranked == [14, 13]  # 5 - 3 seeds = 2 outputs


def test_text_emb_with_real_minilm_separates_real_classes(enwiki_mini, tmp_path):
    text = run_benchmark(RunOptions(data=enwiki_mini, out=tmp_path / "text", method="text-emb", device="cpu",
                                    target_size=10))
    rand = run_benchmark(RunOptions(data=enwiki_mini, out=tmp_path / "random", method="random", target_size=10))
    # countries, languages, philosophers and chemical compounds in real Wikipedia sentences
    assert text["seed3"]["MAP@10"] > 2 * rand["seed3"]["MAP@10"] + 0.1, (text["seed3"], rand["seed3"])


def test_image_only_separates_image_disambiguated_siblings(synthetic_set, synthetic_features, tmp_path):
    data = load_mesed(synthetic_set)
    image_classes = json.loads((synthetic_set / "synthetic.json").read_text())["image_disambiguated_classes"]
    run_benchmark(RunOptions(data=synthetic_set, out=tmp_path / "img", method="image-only", device="cpu",
                             target_size=7, image_weights=None, features_dir=synthetic_features))
    scores = [reference_ap(data.gold[r.class_name], r.ranked, 10) for r in read_ranked(tmp_path / "img" / "ranked.jsonl")
              if r.class_name in image_classes and len(r.seeds) == 3]
    # 6 members, 3 seeds: 3 gold left among 4 outputs; the best possible AP@10 is 3 / min(6, 10) = 0.5
    assert sum(scores) / len(scores) > 0.4
