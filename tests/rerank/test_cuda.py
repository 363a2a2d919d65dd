"""Eq. 1 scoring on a CUDA device (batched, fp16 autocast) agrees with the CPU run of the same weights."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine: bench/gpu.sh)"),
]

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def test_cuda_batched_scores_match_cpu():
    from mesed_build.rerank.detector import ObjectDetector
    from mesed_build.rerank.models import ClipModel, DetectorModel, load_clip, load_detector
    from mesed_build.rerank.scorer import Eq1Scorer, ScoreRequest

    torch.manual_seed(0)
    clip_cpu = load_clip("ViT-B-32", None)
    det_cpu = load_detector("fasterrcnn_resnet50_fpn_v2", None, min_size=384, max_size=512)
    clip_gpu = ClipModel(copy.deepcopy(clip_cpu.model).cuda(), clip_cpu.preprocess, clip_cpu.tokenizer, "ViT-B-32", None)
    det_gpu = DetectorModel(copy.deepcopy(det_cpu.model).cuda(), det_cpu.name, None, None)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    requests = [ScoreRequest("s", "A dog sits on a porch beside a bicycle.",
                             [(f"p{i}", im) for i, im in enumerate(photos)], ("inf", photos[0]))]

    def run(clip, det, device):
        scorer = Eq1Scorer(clip, ObjectDetector(det, device=device, batch_size=8, score_threshold=0.0, max_objects=3),
                           alpha=0.5, device=device, batch_size=32)
        return scorer, scorer.score(requests)["s"]

    gpu_scorer, on_gpu = run(clip_gpu, det_gpu, "cuda")
    _, on_cpu = run(clip_cpu, det_cpu, "cpu")
    assert next(clip_gpu.model.parameters()).is_cuda
    emb = gpu_scorer.embed_images(photos)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    for g, c in zip(on_gpu, on_cpu, strict=True):
        # fp16 autocast on the GPU: the sentence term agrees to about 1e-2
        assert g.clip_term == pytest.approx(c.clip_term, abs=2e-2)
        assert g.object_term is not None and 1 <= g.n_objects <= 3
        assert g.score == pytest.approx(0.5 * g.clip_term + 0.5 * g.object_term)
