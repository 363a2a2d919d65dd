"""Objects in a candidate image (Faster R-CNN), as crop boxes for eq. 1's second term."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from mesed_build.rerank.models import DetectorModel

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels, right/bottom exclusive


def whole_image(image: Image.Image) -> Box:
    return (0, 0, image.width, image.height)


def clamp_box(box: Sequence[float], width: int, height: int) -> Box | None:
    left, top = max(0, int(box[0])), max(0, int(box[1]))
    right, bottom = min(width, int(round(box[2]))), min(height, int(round(box[3])))
    if right - left < 2 or bottom - top < 2:
        return None
    return (left, top, right, bottom)


class ObjectDetector:
    def __init__(self, detector: DetectorModel, *, device: str = "cpu", batch_size: int = 8,
                 score_threshold: float = 0.5, max_objects: int = 10, min_box_px: int = 16):
        self.detector = detector
        self.device = device
        self.batch_size = max(1, batch_size)
        self.score_threshold = score_threshold
        self.max_objects = max_objects
        self.min_box_px = min_box_px

    def boxes(self, images: Sequence[Image.Image]) -> list[list[Box]]:
        """Per image: the boxes of detected objects (score >= threshold, best first, at most
        max_objects, clamped inside the image); an image with none gets the whole image as its object."""
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        # torchvision pads a batch to its largest image, and the padding changes what a random or
        # real detector sees near the borders; batching only same-size images keeps a batched
        # result identical to the one-image result (the downloader's resizing makes sizes repeat)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.size, []).append(i)
        out: list[list[Box] | None] = [None] * len(images)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                tensors = [pil_to_tensor(images[i].convert("RGB")).to(self.device, torch.float32) / 255.0 for i in batch]
                with torch.inference_mode():
                    predictions = self.detector.model(tensors)
                for i, pred in zip(batch, predictions, strict=True):
                    out[i] = self._keep(images[i], pred)
        return out  # type: ignore[return-value]

    def _keep(self, image: Image.Image, pred) -> list[Box]:
        boxes: list[Box] = []
        for box, score in zip(pred["boxes"].tolist(), pred["scores"].tolist(), strict=True):
            if score < self.score_threshold:
                continue
            clamped = clamp_box(box, image.width, image.height)
            if clamped is None or min(clamped[2] - clamped[0], clamped[3] - clamped[1]) < self.min_box_px:
                continue
            boxes.append(clamped)
            if len(boxes) >= self.max_objects:
                break
        return boxes or [whole_image(image)]
