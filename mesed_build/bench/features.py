"""Patch-grid image features: a CNN trunk over the 6x6 grid of 32x32 patches of a 192x192 image.

Features are computed once per unique image and stored as one fp16 .npy memmap ([N, 36, D]) with a
JSON index beside it, so that MESED scale (~434k images, ~64 GB) never has to fit in RAM.

Normalisation: the reference feeds raw [0, 1] pixels. We apply the ImageNet mean/std by default,
because torchvision's pretrained trunks expect it; `normalize="none"` reproduces the reference.

Feature standardisation (a deviation, switchable): the store also keeps the per-dimension mean and
std of its features, and the benchmark standardises features with them by default. Trunk outputs
share a large common component (raw cosine > 0.99 between unrelated images with random weights),
which slows the image branch's learning; the reference feeds the raw features.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SIZE = 192
PATCH = 32
GRID = IMAGE_SIZE // PATCH  # 6
NUM_PATCHES = GRID * GRID  # 36
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES_FILE = "image_features.f16.npy"
INDEX_FILE = "image_features.json"
STATS_FILE = "image_features.stats.npz"
STATS_MAX_IMAGES = 4096


class FeatureError(RuntimeError):
    """The image backbone cannot be built (e.g. weights not cached while offline)."""


def image_patches(path: str | Path, normalize: str = "imagenet"):
    """RGB image -> resized to 192x192 (aspect not kept) -> [36, 3, 32, 32], row-major patches."""
    import torch

    with Image.open(path) as img:
        img = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
    if normalize == "imagenet":
        pixels = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    elif normalize != "none":
        raise ValueError(f"normalize must be 'imagenet' or 'none', got {normalize!r}")
    x = torch.from_numpy(pixels).permute(2, 0, 1)  # [3, 192, 192]
    x = x.reshape(3, GRID, PATCH, GRID, PATCH).permute(1, 3, 0, 2, 4)  # [6, 6, 3, 32, 32]
    return x.reshape(NUM_PATCHES, 3, PATCH, PATCH).contiguous()


def _weights_cached(weights_enum) -> bool:
    import torch

    filename = os.path.basename(weights_enum.url)
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).exists()


def build_backbone(name: str = "resnet50", weights: str | None = None):
    """A torchvision classification model with its fc removed: patches -> [P, D] pooled features."""
    import torch
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError as exc:
        raise FeatureError(f"unknown torchvision backbone {name!r}") from exc
    weights_enum = None
    if weights is not None:
        weights_enum = torchvision.models.get_weight(f"{torchvision.models.get_model_weights(name).__name__}.{weights}")
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("MESED_OFFLINE") == "1"
        if offline and not _weights_cached(weights_enum):
            raise FeatureError(
                f"{name} weights {weights} are not in {torch.hub.get_dir()}/checkpoints and the process is offline; "
                f"fetch them once online with `python -c \"import torchvision; torchvision.models.{name}(weights='{weights}')\"`"
            )
    try:
        model = builder(weights=weights_enum)
    except Exception as exc:  # noqa: BLE001 - any download failure becomes one clear line
        raise FeatureError(f"cannot build {name} with weights {weights}: {exc}") from None
    if not hasattr(model, "fc"):
        raise FeatureError(f"backbone {name!r} has no `fc` layer to remove; use a ResNet-family model")
    dim = model.fc.in_features
    model.fc = torch.nn.Identity()
    model.eval()
    return model, dim


@dataclass
class ImageFeatureStore:
    """Read-only view of the features: row lookup by image path (as written in sentences.json)."""

    features: np.ndarray  # memmap [N, 36, D] float16
    index: dict[str, int]
    meta: dict
    # per-dimension mean/std over stored patches; `standardize` applies them when batches are built
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    standardize: bool = False

    @classmethod
    def open(cls, folder: str | Path) -> ImageFeatureStore:
        folder = Path(folder)
        meta = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if not meta.get("complete"):
            raise FeatureError(f"{folder / INDEX_FILE}: feature extraction did not finish; rerun it")
        features = np.load(folder / FEATURES_FILE, mmap_mode="r")
        store = cls(features, {p: i for i, p in enumerate(meta["images"])}, meta)
        if (folder / STATS_FILE).exists():
            with np.load(folder / STATS_FILE) as stats:
                store.mean, store.std = stats["mean"], stats["std"]
        return store

    def compute_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per feature dimension over (up to STATS_MAX_IMAGES evenly spaced) stored images."""
        n = len(self.features)
        rows = np.unique(np.linspace(0, n - 1, num=min(n, STATS_MAX_IMAGES)).astype(np.int64)) if n else []
        total = np.zeros(self.dim)
        total_sq = np.zeros(self.dim)
        count = 0
        for r in rows:
            x = np.asarray(self.features[r], dtype=np.float64)
            total += x.sum(0)
            total_sq += (x * x).sum(0)
            count += len(x)
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0.0))
        return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    def rows(self, images: list[str]) -> np.ndarray:
        return np.asarray([self.index[p] for p in images], dtype=np.int64)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), 36, D] float16, reading only those rows from disk."""
        order = np.argsort(rows)
        out = np.empty((len(rows),) + self.features.shape[1:], dtype=np.float16)
        out[order] = self.features[rows[order]]
        return out


def _config_key(images: list[str], backbone: str, weights: str | None, normalize: str) -> str:
    h = hashlib.sha256(json.dumps([backbone, weights, normalize, images]).encode("utf-8"))
    return h.hexdigest()


def compute_image_features(
    root: str | Path,
    images: list[str],
    out_dir: str | Path,
    *,
    backbone: str = "resnet50",
    weights: str | None = None,
    normalize: str = "imagenet",
    device: str = "cpu",
    batch_images: int = 8,
    progress: bool | None = None,
) -> ImageFeatureStore:
    """Compute [36, D] features once per unique image; reuse a finished store with the same settings.

    Unreadable or missing images are not stored; their paths are counted by reason in the index
    (`dropped`), and the sentences using them are dropped later with that reason.
    """
    import torch
    from tqdm import tqdm

    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unique = sorted(set(images))
    key = _config_key(unique, backbone, weights, normalize)
    index_path = out_dir / INDEX_FILE
    if index_path.exists():
        meta = json.loads(index_path.read_text(encoding="utf-8"))
        if meta.get("key") == key and meta.get("complete"):
            return ImageFeatureStore.open(out_dir)
    readable: list[str] = []
    dropped: Counter[str] = Counter()
    dropped_examples: dict[str, str] = {}
    for image in unique:
        path = Path(image) if Path(image).is_absolute() else root / image
        if not path.is_file():
            dropped["image_missing"] += 1
            dropped_examples.setdefault("image_missing", str(path))
            continue
        readable.append(image)
    model, dim = build_backbone(backbone, weights)
    model.to(device)
    features = np.lib.format.open_memmap(
        out_dir / FEATURES_FILE, mode="w+", dtype=np.float16, shape=(len(readable), NUM_PATCHES, dim)
    )
    stored: list[str] = []
    show = progress if progress is not None else os.isatty(2)
    bar = tqdm(total=len(readable), desc="image features", unit="img", disable=not show)
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.cat([p for _, p in pending]).to(device)
        with torch.inference_mode(), torch.autocast(
            device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")
        ):
            out = model(x).float().view(len(pending), NUM_PATCHES, dim).cpu().numpy()
        start = len(stored)
        features[start : start + len(pending)] = out.astype(np.float16)
        stored.extend(name for name, _ in pending)
        bar.update(len(pending))
        pending.clear()

    for image in readable:
        path = Path(image) if Path(image).is_absolute() else root / image
        try:
            patches = image_patches(path, normalize)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            dropped["image_unreadable"] += 1
            dropped_examples.setdefault("image_unreadable", f"{path}: {exc}")
            continue
        pending.append((image, patches))
        if len(pending) >= batch_images:
            flush()
    flush()
    bar.close()
    features.flush()
    del features
    if len(stored) < len(readable):
        # unreadable images left unused rows at the end; shrink the file to what was stored
        full = np.load(out_dir / FEATURES_FILE, mmap_mode="r")
        kept = np.array(full[: len(stored)])
        del full
        np.save(out_dir / FEATURES_FILE, kept)
    meta = {
        "key": key,
        "complete": True,
        "backbone": backbone,
        "weights": weights,
        "normalize": normalize,
        "dim": dim,
        "images": stored,
        "dropped": dict(dropped),
        "dropped_examples": dropped_examples,
    }
    store = ImageFeatureStore(np.load(out_dir / FEATURES_FILE, mmap_mode="r"), {p: i for i, p in enumerate(stored)}, meta)
    mean, std = store.compute_stats()
    np.savez(out_dir / STATS_FILE, mean=mean, std=std)
    # the index is written last: its `complete` flag is what marks the store as finished
    index_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return ImageFeatureStore.open(out_dir)
