"""Image embeddings for Table 1's diversity column, from the rerank stage's own CLIP model.

Loading CLIP is slow and needs torch, so the dashboard leaves diversity empty and
`mesed-build annotate table1 --diversity` computes it on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image

from mesed_build import store as st


def clip_embedder(store: st.Store, image_root: str | Path, rerank_options: Mapping[str, Any],
                  seed: int = 0) -> Callable[[Sequence[str]], np.ndarray]:
    """sha256s -> unit CLIP image embeddings (each image embedded once), with the rerank config's model."""
    from mesed_build.rerank.stage import DEFAULTS, build_scorer

    scorer = build_scorer({**DEFAULTS, **dict(rerank_options), "use_detector": False}, seed=seed)
    root = Path(image_root).resolve()
    cache: dict[str, np.ndarray] = {}

    def load(sha: str) -> Image.Image:
        with store.engine.connect() as conn:
            rel = conn.execute(sa.select(st.images.c.path).where(st.images.c.sha256 == sha)).scalar_one_or_none()
        if rel is None:
            raise FileNotFoundError(f"image {sha}: not in the store's images table")
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {sha} is missing from the content store {root} (wrong --image-dir?)")
        with Image.open(path) as im:
            return im.convert("RGB")

    def embed(shas: Sequence[str]) -> np.ndarray:
        missing = sorted(set(shas) - cache.keys())
        if missing:
            cache.update(zip(missing, scorer.embed_images([load(sha) for sha in missing])))
        return np.stack([cache[sha] for sha in shas])

    return embed
