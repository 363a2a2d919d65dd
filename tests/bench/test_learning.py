"""A short CPU training run on the synthetic set: MEP loss falls, MultiExpan beats random by a wide
margin, and on image-disambiguated classes the multi-modal model beats text-mep (it uses images)."""

from __future__ import annotations

import json

import pytest

from mesed_build.bench.loader import load_mesed
from mesed_build.bench.metrics import read_ranked, reference_ap
from mesed_build.bench.runner import RunOptions, run_benchmark

TINY = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)


def _run(data, out, features, method):
    return run_benchmark(RunOptions(
        data=data, out=out, method=method, mode=0, bert_config=TINY, device="cpu", epochs=5, micro_batch=16,
        global_batch=16, lr=5e-3, target_size=7, sentences_per_entity=8, image_weights=None, features_dir=features,
        num_heads=4, bucket_batches=1, progress=False,
        model_overrides=dict(image_layers=1, fusion_layers=1, dropout=0.0, head_dropout=0.0),
    ))


def _map10(data, out, classes):
    scores = [reference_ap(data.gold[r.class_name], r.ranked, 10) for r in read_ranked(out / "ranked.jsonl")
              if r.class_name in classes and len(r.seeds) == 3]
    return sum(scores) / len(scores)


@pytest.mark.slow
def test_multimodal_model_learns_and_uses_images(synthetic_set, synthetic_features, tmp_path):
    data = load_mesed(synthetic_set)
    image_classes = json.loads((synthetic_set / "synthetic.json").read_text())["image_disambiguated_classes"]
    assert set(image_classes) == set(data.class_names)
    multi = _run(synthetic_set, tmp_path / "multi", synthetic_features, "multiexpan")
    _run(synthetic_set, tmp_path / "text", synthetic_features, "text-mep")  # read back by _map10
    rand = run_benchmark(RunOptions(data=synthetic_set, out=tmp_path / "random", method="random", target_size=7))
    assert multi["synthetic"] is True and "SYNTHETIC" in (tmp_path / "multi" / "metrics.md").read_text()
    losses = [e["phases"][-1]["mean_mep_loss"] for e in multi["training"]["mode0"]]
    assert losses[-1] < losses[0] - 0.5, losses
    # 3 seeds of 6 members leave 3 gold entities among 4 outputs: the best possible AP@10 is 3 / 6 = 0.5
    assert multi["seed3"]["MAP@10"] > 3 * rand["seed3"]["MAP@10"] and multi["seed3"]["MAP@10"] > 0.3
    multi_img = _map10(data, tmp_path / "multi", image_classes)
    text_img = _map10(data, tmp_path / "text", image_classes)
    assert multi_img > text_img + 0.1, (multi_img, text_img)
