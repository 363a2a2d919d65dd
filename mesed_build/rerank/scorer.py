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
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.clip.preprocess(im.convert("RGB")) for im in images[start : start + self.batch_size]])
            with torch.inference_mode(), self._autocast():
                emb = self.clip.model.encode_image(batch.to(self.device))
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

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
            crops, owners = [], []
            for cid, cid_boxes in zip(needs_objects, boxes, strict=True):
                for box in cid_boxes:
                    crops.append(images[cid].crop(box))
                    owners.append(cid)
            crop_embs = self.embed_images(crops)
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
