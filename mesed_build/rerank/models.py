"""Model factory for the re-ranker, in the open_clip style: a name plus a pretrained tag.

CLIP comes from `open_clip.create_model_and_transforms(name, pretrained=tag, cache_dir=...)`, the
detector from torchvision's `fasterrcnn_*(weights=...)` builders. `pretrained: null` / `weights: null`
build the same architecture with random weights (tests, benchmarks, the offline demo).
When the process is offline and the weights are not cached, loading fails with one line naming the
model and the command that fetches it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CLIP = {"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
DEFAULT_DETECTOR = {"name": "fasterrcnn_resnet50_fpn_v2", "weights": "DEFAULT"}

# detectors the re-ranker knows: torchvision builder name -> its weights enum (DEFAULT resolves there)
DETECTORS = {
    "fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights",
    "fasterrcnn_resnet50_fpn": "FasterRCNN_ResNet50_FPN_Weights",
    "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
}

FETCH_HINT = "mesed-build models fetch --config CONFIG (on a machine with internet)"


class ModelNotAvailable(RuntimeError):
    """Weights are not cached and cannot be downloaded (offline). The message is one line."""


class UnknownModel(ValueError):
    pass


def is_offline(explicit: bool | None = None) -> bool:
    if explicit is not None:
        return explicit
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "MESED_OFFLINE"))


def known_clip_tags(name: str) -> list[str]:
    import open_clip

    if name not in open_clip.list_models():
        raise UnknownModel(f"rerank.clip.name: unknown open_clip model {name!r} (see open_clip.list_models())")
    return list(open_clip.list_pretrained_tags_by_model(name))


def clip_weights_cached(name: str, pretrained: str, cache_dir: str | Path | None) -> bool:
    """Whether open_clip would find these weights without the network (HF hub cache or URL cache)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo = cfg["hf_hub"].rstrip("/")
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(found, str):
                return True
        return False
    if cfg.get("url"):
        root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "clip"
        return (root / os.path.basename(cfg["url"])).exists()
    return False


@dataclass
class ClipModel:
    model: Any
    preprocess: Any
    tokenizer: Any
    name: str
    pretrained: str | None

    @property
    def model_id(self) -> str:
        return f"{self.name}/{self.pretrained or 'random'}"


def check_clip(name: str, pretrained: str | None, *, cache_dir: str | Path | None = None,
               offline: bool | None = None) -> None:
    """Raise UnknownModel / ModelNotAvailable now, without loading anything."""
    tags = known_clip_tags(name)
    if pretrained and pretrained not in tags:
        raise UnknownModel(f"rerank.clip.pretrained: {name} has no pretrained tag {pretrained!r}; known: {', '.join(tags)}")
    if pretrained and is_offline(offline) and not clip_weights_cached(name, pretrained, cache_dir):
        raise ModelNotAvailable(f"CLIP weights {name}/{pretrained} are not cached in {cache_dir or 'the Hugging Face cache'} "
                                f"and the process is offline; fetch them with: {FETCH_HINT}")


def load_clip(name: str = DEFAULT_CLIP["name"], pretrained: str | None = DEFAULT_CLIP["pretrained"], *,
              cache_dir: str | Path | None = None, device: str = "cpu", offline: bool | None = None) -> ClipModel:
    import open_clip

    check_clip(name, pretrained, cache_dir=cache_dir, offline=offline)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, cache_dir=str(cache_dir) if cache_dir else None, device=device)
    except (RuntimeError, OSError) as exc:
        if pretrained and (is_offline(offline) or "download" in str(exc).lower()):
            where = cache_dir or "the Hugging Face cache"
            raise ModelNotAvailable(f"CLIP weights {name}/{pretrained} are not cached in {where} and cannot be "
                                    f"downloaded (offline); fetch them with: {FETCH_HINT}") from exc
        raise
    model.eval()
    return ClipModel(model, preprocess, open_clip.get_tokenizer(name), name, pretrained)


@dataclass
class DetectorModel:
    model: Any
    name: str
    weights: str | None
    categories: list[str] | None

    @property
    def model_id(self) -> str:
        return f"{self.name}/{self.weights or 'random'}"


def _weights_enum(name: str, weights: str | None):
    import torchvision

    if name not in DETECTORS:
        raise UnknownModel(f"rerank.detector.name: unknown detector {name!r}; expected one of: {', '.join(DETECTORS)}")
    if not weights:
        return None
    enum = getattr(torchvision.models.detection, DETECTORS[name])
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError as exc:
        raise UnknownModel(f"rerank.detector.weights: {name} has no weights {weights!r}; "
                           f"known: DEFAULT, {', '.join(w.name for w in enum)}") from exc


def check_detector(name: str, weights: str | None, *, cache_dir: str | Path | None = None,
                   offline: bool | None = None):
    """The weights enum (None: random weights); raises UnknownModel / ModelNotAvailable without loading."""
    import torch

    enum = _weights_enum(name, weights)
    if enum is not None:
        hub_dir = Path(cache_dir) / "torch" if cache_dir else Path(torch.hub.get_dir())
        cached = hub_dir / "checkpoints" / os.path.basename(enum.url)
        if not cached.exists() and is_offline(offline):
            raise ModelNotAvailable(f"detector weights {name}/{enum.name} are not cached at {cached} and the "
                                    f"process is offline; fetch them with: {FETCH_HINT}")
    return enum


def load_detector(name: str = DEFAULT_DETECTOR["name"], weights: str | None = DEFAULT_DETECTOR["weights"], *,
                  cache_dir: str | Path | None = None, device: str = "cpu", offline: bool | None = None,
                  score_threshold: float = 0.5, max_objects: int = 10, min_size: int = 800,
                  max_size: int = 1333) -> DetectorModel:
    import torch
    import torchvision

    enum = check_detector(name, weights, cache_dir=cache_dir, offline=offline)
    if enum is not None and cache_dir:
        # torchvision's builders load through torch.hub, whose directory is process-wide
        torch.hub.set_dir(str(Path(cache_dir) / "torch"))
    builder = getattr(torchvision.models.detection, name)
    try:
        model = builder(weights=enum, weights_backbone=None, box_score_thresh=score_threshold,
                        box_detections_per_img=max_objects, min_size=min_size, max_size=max_size)
    except OSError as exc:  # urllib's URLError is an OSError: no network
        raise ModelNotAvailable(f"detector weights {name}/{weights} could not be downloaded ({exc}); "
                                f"fetch them with: {FETCH_HINT}") from exc
    model.eval().to(device)
    categories = list(enum.meta["categories"]) if enum is not None else None
    return DetectorModel(model, name, enum.name if enum is not None else None, categories)


def options_clip(options: Mapping[str, Any]) -> dict[str, Any]:
    clip = {**DEFAULT_CLIP, **(options.get("clip") or {})}
    return {"name": clip["name"], "pretrained": clip.get("pretrained")}


def options_detector(options: Mapping[str, Any]) -> dict[str, Any]:
    det = {**DEFAULT_DETECTOR, **(options.get("detector") or {})}
    return {
        "name": det["name"], "weights": det.get("weights"),
        "score_threshold": float(det.get("score_threshold", 0.5)), "max_objects": int(det.get("max_objects", 10)),
        "min_size": int(det.get("min_size", 800)), "max_size": int(det.get("max_size", 1333)),
    }


def fetch_models(options: Mapping[str, Any]) -> list[str]:
    """Download the configured weights into the cache (needs internet); returns what was fetched."""
    cache_dir = options.get("cache_dir")
    clip = options_clip(options)
    det = options_detector(options)
    done = []
    if clip["pretrained"]:
        load_clip(clip["name"], clip["pretrained"], cache_dir=cache_dir, offline=False)
        done.append(f"CLIP {clip['name']}/{clip['pretrained']}")
    if det["weights"]:
        load_detector(det["name"], det["weights"], cache_dir=cache_dir, offline=False)
        done.append(f"detector {det['name']}/{det['weights']}")
    return done
