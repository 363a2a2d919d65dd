"""Device selection and bf16 autocast. The CUDA tests skip on machines without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesed_build.bench.train import autocast, resolve_device
from tests.bench.conftest import write_word_vocab

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bf16 autocast on GPU)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error():
    with pytest.raises(RuntimeError, match="--device cuda was asked for, but torch sees no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


@pytest.mark.cuda
@needs_cuda
def test_auto_picks_cuda_and_autocast_runs_bf16():
    from mesed_build.bench.model import ModelConfig, MultiExpan

    assert resolve_device("auto") == "cuda"
    cfg = ModelConfig(num_entities=11, num_clusters=3, text_model=None, num_heads=4,
                      bert_config=dict(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=96))
    model = MultiExpan(cfg).to("cuda")
    batch = {
        "input_ids": torch.randint(5, 100, (4, 9), device="cuda"),
        "attention_mask": torch.ones(4, 9, dtype=torch.long, device="cuda"),
        "mask_positions": torch.tensor([1, 2, 3, 4], device="cuda"),
        "image_features": torch.randn(4, 36, 2048, device="cuda"),
    }
    with autocast("cuda", True):
        hidden = model.encode(batch)
        logits = model.core.mep_head(hidden)
        log_probs = model.core.mep_log_probs(hidden)
    # matrix products run in bf16; LayerNorm (the last op of a reference layer) returns fp32 under autocast
    assert logits.dtype == torch.bfloat16
    assert log_probs.dtype == torch.float32  # the softmax over V entities stays in fp32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(4, device="cuda"), atol=1e-4)


@pytest.mark.cuda
@needs_cuda
def test_mode4_trains_end_to_end_on_cuda(tmp_path, enwiki_mini, enwiki_features):
    from mesed_build.bench.runner import RunOptions, run_benchmark

    vocab = write_word_vocab(enwiki_mini, tmp_path / "vocab.txt")
    report = run_benchmark(RunOptions(
        data=enwiki_mini, out=tmp_path / "run", method="multiexpan", mode=4, device="cuda", epochs=1,
        bert_config=dict(vocab_size=len(vocab.read_text().splitlines()), hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=96),
        tokenizer_vocab=str(vocab),
        micro_batch=8, global_batch=16, lr=1e-3, target_size=8, mining_target=12, negative_ranks=(8, 9),
        sentences_per_entity=2, pair_sentences=2, image_weights=None, features_dir=enwiki_features, num_heads=4,
        max_steps_per_phase=3, progress=False,
    ))
    assert report["device"] == "cuda"
    phases = report["training"]["mode4"][0]["phases"]
    assert [p["phase"] for p in phases] == ["cl1", "cl2", "cluster1", "cluster2", "mep+md"]
    assert all(np.isfinite(p["mean_loss"]) for p in phases)


@pytest.mark.cuda
@needs_cuda
def test_image_features_on_cuda_match_cpu(tmp_path, enwiki_mini):
    from mesed_build.bench.features import compute_image_features

    images = ["images/dog.jpg", "images/kite.jpg"]
    torch.manual_seed(0)
    cpu = compute_image_features(enwiki_mini, images, tmp_path / "cpu", weights=None, device="cpu", progress=False)
    torch.manual_seed(0)
    gpu = compute_image_features(enwiki_mini, images, tmp_path / "gpu", weights=None, device="cuda", progress=False)
    a = np.asarray(cpu.features, dtype=np.float32).reshape(2, -1)
    b = np.asarray(gpu.features, dtype=np.float32).reshape(2, -1)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert (cosine > 0.99).all()  # bf16 autocast on the GPU, fp32 on the CPU
