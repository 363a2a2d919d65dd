"""Paper eq. 1: score(v, t, e) = alpha * cos(CLIP_img(v), CLIP_text(t)) + (1 - alpha) * max_j cos(o_j, Img(e)).

o_j are the CLIP image embeddings of the objects Faster R-CNN finds in candidate v (the whole image
when it finds none), Img(e) the CLIP image embedding of entity e's infobox image. Without an
infobox image the score is the first term alone (cos(v, t)), so candidates are still ranked.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mesed_build.rerank.detector import Box, ObjectDetector
from mesed_build.rerank.models import ClipModel

DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class Eq1Score:
    clip_term: float
    object_term: float | None
    score: float
    n_objects: int


def eq1(clip_term: float, object_term: float | None, alpha: float) -> float:
    if object_term is None:
        return clip_term
    return alpha * clip_term + (1.0 - alpha) * object_term


def eq1_from_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, object_embs: np.ndarray | None,
                        infobox_emb: np.ndarray | None, alpha: float) -> Eq1Score:
    """Eq. 1 on raw (not necessarily unit) embeddings; cosines are computed here."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)

    clip_term = float(unit(image_emb) @ unit(text_emb))
    n = 0 if object_embs is None else len(object_embs)
    if infobox_emb is None or n == 0:
        return Eq1Score(clip_term, None, eq1(clip_term, None, alpha), n)
    object_term = float(np.max(unit(object_embs) @ unit(infobox_emb)))
    return Eq1Score(clip_term, object_term, eq1(clip_term, object_term, alpha), n)


@dataclass
class ScoreRequest:
    key: Hashable  # the caller's id of this sentence (e.g. (wiki, page_id, sentence_hash))
    text: str
    candidates: Sequence[tuple[str, Image.Image]]  # (image id, image)
    infobox: tuple[str, Image.Image] | None = None


class Eq1Scorer:
    """Batched eq. 1 over many sentences: every distinct image, crop and text is embedded once."""

    def __init__(self, clip: ClipModel, detector: ObjectDetector | None, *, alpha: float = DEFAULT_ALPHA,
                 device: str = "cpu", batch_size: int = 32):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"rerank.alpha must be in [0, 1], got {alpha}")
        self.clip, self.detector, self.alpha = clip, detector, alpha
        self.device, self.batch_size = device, max(1, batch_size)

    def _autocast(self):
        import torch

        return torch.autocast("cuda", dtype=torch.float16) if self.device.startswith("cuda") else nullcontext()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.embed_regions([(im, (0, 0, im.width, im.height)) for im in images])

    def embed_regions(self, regions: Sequence[tuple[Image.Image, Box]]) -> np.ndarray:
        """CLIP image embeddings (unit length) of image regions (whole images or object boxes).

        CLIP's own recipe (resize the shorter side to the model's input size with antialiased
        bicubic, centre crop, normalise) done on tensors on the scoring device: an image is
        decoded and uploaded once however many object crops it has, and the per-crop work runs
        on the GPU instead of in PIL on one CPU core."""
        import torch

        out = []
        uploaded: dict[int, torch.Tensor] = {}
        for start in range(0, len(regions), self.batch_size):
            batch = []
            for image, box in regions[start : start + self.batch_size]:
                key = id(image)
                if key not in uploaded:
                    uploaded[key] = self._upload(image)
                left, top, right, bottom = box
                batch.append(self._clip_input(uploaded[key][:, top:bottom, left:right]))
            with torch.inference_mode(), self._autocast():
                emb = self.clip.model.encode_image(torch.stack(batch))
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def _upload(self, image: Image.Image):
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(image.convert("RGB")).to(self.device, non_blocking=True).to(torch.float32).div_(255.0)

    def _clip_geometry(self):
        import torch

        if not hasattr(self, "_geometry"):
            visual = self.clip.model.visual
            size = visual.image_size
            size = size if isinstance(size, int) else int(size[0])
            mean = getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
            std = getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
            shape = (3, 1, 1)
            self._geometry = (size, torch.tensor(mean, device=self.device).view(shape),
                              torch.tensor(std, device=self.device).view(shape))
        return self._geometry

    def _clip_input(self, region):
        import torch

        size, mean, std = self._clip_geometry()
        _, h, w = region.shape
        # the same integer arithmetic as torchvision's Resize(size) and CenterCrop(size)
        if h <= w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
        resized = torch.nn.functional.interpolate(region[None], size=(new_h, new_w), mode="bicubic",
                                                  antialias=True, align_corners=False)[0]
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        square = resized[:, top : top + size, left : left + size].clamp_(0.0, 1.0)
        return (square - mean) / std

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.clip.tokenizer(list(texts[start : start + self.batch_size])).to(self.device)
            with torch.inference_mode(), self._autocast():
                emb = self.clip.model.encode_text(tokens)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def score(self, requests: Sequence[ScoreRequest]) -> dict[Hashable, list[Eq1Score]]:
        """key -> one Eq1Score per candidate, in candidate order."""
        images: dict[str, Image.Image] = {}
        for req in requests:
            images.update(dict(req.candidates))
        candidate_ids = list(images)
        infobox_images = {req.infobox[0]: req.infobox[1] for req in requests if req.infobox is not None}
        infobox_ids = list(infobox_images)
        use_objects = self.detector is not None and bool(infobox_ids)
        # objects are only needed for candidates of sentences whose entity has an infobox image
        needs_objects = list(dict.fromkeys(
            cid for req in requests if req.infobox is not None for cid, _ in req.candidates)) if use_objects else []

        whole = self.embed_images([images[c] for c in candidate_ids])
        whole_by_id = dict(zip(candidate_ids, whole, strict=True))
        infobox_by_id = dict(zip(infobox_ids, self.embed_images([infobox_images[i] for i in infobox_ids]),
                                 strict=True)) if infobox_ids else {}
        objects_by_id: dict[str, np.ndarray] = {}
        if needs_objects:
            boxes = self.detector.boxes([images[c] for c in needs_objects])
            regions, owners = [], []
            for cid, cid_boxes in zip(needs_objects, boxes, strict=True):
                for box in cid_boxes:
                    regions.append((images[cid], box))
                    owners.append(cid)
            crop_embs = self.embed_regions(regions)
            for cid in needs_objects:
                objects_by_id[cid] = crop_embs[[i for i, o in enumerate(owners) if o == cid]]
        texts = self.embed_texts([req.text for req in requests])

        out: dict[Hashable, list[Eq1Score]] = {}
        for req, text_emb in zip(requests, texts, strict=True):
            info = infobox_by_id.get(req.infobox[0]) if req.infobox is not None else None
            out[req.key] = [
                eq1_from_embeddings(whole_by_id[cid], text_emb, objects_by_id.get(cid) if info is not None else None,
                                    info, self.alpha)
                for cid, _ in req.candidates
            ]
        return out

    def boxes_for(self, images: Sequence[Image.Image]) -> list[list[Box]]:
        if self.detector is None:
            return [[(0, 0, im.width, im.height)] for im in images]
        return self.detector.boxes(images)


def diversity(embeddings: np.ndarray) -> float | None:
    """The paper's diversity: 1 / mean pairwise cosine similarity of the chosen images' embeddings
    (None with fewer than two images, or a non-positive mean, where the inverse means nothing)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if len(emb) < 2:
        return None
    emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    sims = emb @ emb.T
    n = len(emb)
    mean = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    return float(1.0 / mean) if mean > 0 else None
