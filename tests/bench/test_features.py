"""Patch-grid image features: layout of the grid, one fp16 row per unique image, counted drops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mesed_build.bench.features import (
    FEATURES_FILE,
    INDEX_FILE,
    ImageFeatureStore,
    build_backbone,
    compute_image_features,
    image_patches,
)


def test_patches_are_the_6x6_grid_in_row_major_order(tmp_path):
    grid = np.zeros((192, 192, 3), dtype=np.uint8)
    for r in range(6):
        for c in range(6):
            grid[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = 7 * (r * 6 + c)
    Image.fromarray(grid).save(tmp_path / "grid.png")
    patches = image_patches(tmp_path / "grid.png", normalize="none")
    assert patches.shape == (36, 3, 32, 32)
    for index in range(36):
        assert torch.allclose(patches[index], torch.full((3, 32, 32), 7 * index / 255.0))


def test_non_square_images_are_resized_without_keeping_aspect(tmp_path):
    Image.new("RGB", (400, 100), (255, 0, 0)).save(tmp_path / "wide.png")
    patches = image_patches(tmp_path / "wide.png", normalize="imagenet")
    assert patches.shape == (36, 3, 32, 32)
    # pure red, ImageNet-normalised: (1 - 0.485) / 0.229 in the red channel everywhere
    assert patches[:, 0].mean().item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-4)


def test_one_fp16_row_per_unique_image_and_missing_images_are_counted(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for name in ("dog.jpg", "kite.jpg"):
        Image.open(f"/work/main/tests/fixtures/bench/enwiki_mini/images/{name}").save(root / "images" / name)
    images = ["images/dog.jpg", "images/kite.jpg", "images/dog.jpg", "images/gone.jpg"]
    torch.manual_seed(0)
    store = compute_image_features(root, images, tmp_path / "feats", weights=None, progress=False)
    assert store.features.dtype == np.float16 and store.features.shape == (2, 36, 2048)
    assert store.meta["dropped"] == {"image_missing": 1}
    assert set(store.index) == {"images/dog.jpg", "images/kite.jpg"}
    # the stored row is what a ResNet-50 trunk gives for that image's patches (same random weights)
    torch.manual_seed(0)
    model, dim = build_backbone("resnet50", None)
    with torch.inference_mode():
        direct = model(image_patches(root / "images" / "kite.jpg")).numpy()
    row = store.features[store.index["images/kite.jpg"]].astype(np.float32)
    assert dim == 2048
    np.testing.assert_allclose(row, direct, rtol=2e-2, atol=2e-2)
    assert not np.allclose(row, store.features[store.index["images/dog.jpg"]].astype(np.float32))
    # a finished store with the same settings is reused, not recomputed
    before = (tmp_path / "feats" / FEATURES_FILE).stat().st_mtime_ns
    again = compute_image_features(root, images, tmp_path / "feats", weights=None, progress=False)
    assert (tmp_path / "feats" / FEATURES_FILE).stat().st_mtime_ns == before
    assert again.index == store.index


def test_unfinished_store_is_refused(tmp_path):
    (tmp_path / INDEX_FILE).write_text(json.dumps({"complete": False, "images": []}))
    with pytest.raises(RuntimeError, match="did not finish"):
        ImageFeatureStore.open(tmp_path)


def test_offline_without_cached_weights_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(RuntimeError, match="not in .* and the process is offline"):
        build_backbone("resnet50", "IMAGENET1K_V2")
