"""Decide whether downloaded bytes are a raster image we accept, and normalise it.

Pillow opens the bytes; anything that is not a raster image (HTML, SVG, PDF, ...) is refused with a
reason, and so is an image whose declared size exceeds the decompression-bomb pixel limit (checked
from the header, before any pixel is decoded). Accepted images get their EXIF orientation applied,
are converted to RGB, shrunk so the longest side fits, and re-encoded as JPEG.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

RASTER_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
DEFAULT_MAX_PIXELS = 40_000_000
_RASTER_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
DEFAULT_LONGEST_SIDE = 512


class Rejected(Exception):
    """An input refused for a countable reason (`reason` is a short stable slug)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes  # re-encoded JPEG
    width: int
    height: int
    source_format: str
    mime: str = "image/jpeg"


def _markup_kind(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "svg"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:512]:
        return "html"
    if text.startswith(b"<"):
        return "svg" if b"<svg" in text else "html"
    if text.startswith(b"%pdf"):
        return "pdf"
    return None


def normalise(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, longest_side: int = DEFAULT_LONGEST_SIDE,
              jpeg_quality: int = 90) -> NormalisedImage:
    """The accepted, re-encoded image, or `Rejected` with the reason."""
    if not data:
        raise Rejected("empty_body")
    kind = _markup_kind(data[:1024])
    if kind is not None:
        raise Rejected(f"not_raster_{kind}", f"body starts like {kind.upper()}")
    try:
        with warnings.catch_warnings():
            # our own pixel limit below is the one that counts; Pillow's warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise Rejected("decompression_bomb", str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # an image signature that Pillow cannot parse is a broken image, not some other file type
        reason = "corrupt_image" if data.startswith(_RASTER_MAGIC) else "not_an_image"
        raise Rejected(reason, str(exc)[:200]) from exc
    fmt = image.format or "?"
    if fmt not in RASTER_FORMATS:
        raise Rejected("unsupported_format", fmt)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise Rejected("corrupt_image", f"size {width}x{height}")
    if width * height > max_pixels:
        raise Rejected("decompression_bomb", f"{width}x{height} = {width * height} pixels > {max_pixels}")
    if fmt == "JPEG" and max(width, height) > longest_side:
        # decode at a reduced DCT scale (1/2, 1/4, 1/8) that still covers the target size: the same
        # result after the resize below, for a fraction of the decoding work
        scale = longest_side / max(width, height)
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError as exc:
        raise Rejected("decompression_bomb", str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Rejected("corrupt_image", str(exc)[:200]) from exc
    image = to_rgb(image)
    if max(image.size) > longest_side:
        # bicubic (antialiased, as Pillow always filters over the whole footprint when shrinking) is
        # what CLIP's own preprocessing uses, at two thirds of Lanczos's cost
        image.thumbnail((longest_side, longest_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=jpeg_quality)
    return NormalisedImage(out.getvalue(), image.width, image.height, fmt)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (black would turn logos into dark squares)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
