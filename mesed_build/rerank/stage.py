"""Stage 5, rerank: every downloaded candidate of every (entity, sentence) gets its eq. 1 score
(both terms kept), and the best one per sentence is marked as the chosen image.

Scores are keyed by (image, sentence, model id) - plus the entity, since a sentence can serve two
entities with different infobox images - so a rerun with the same models skips scored sentences,
and a run with other models adds its own rows beside the old ones.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.context import BuildContext
from mesed_build.images.content_store import ContentStore
from mesed_build.rerank.detector import ObjectDetector
from mesed_build.rerank.models import load_clip, load_detector, options_clip, options_detector
from mesed_build.rerank.scorer import DEFAULT_ALPHA, Eq1Scorer, ScoreRequest, diversity

STAGE = "rerank"
log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "alpha": DEFAULT_ALPHA,
    "device": "cpu",
    "batch_size": 32,
    "sentences_per_batch": 16,
    "use_detector": True,
    "cache_dir": None,
    "offline": None,
    "diversity_sample": 2000,
}


def options(ctx: BuildContext) -> dict[str, Any]:
    return {**DEFAULTS, **ctx.config.section("rerank")}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"rerank.device is {device!r} but torch sees no CUDA device")
    return device


def build_scorer(opts: Mapping[str, Any], seed: int = 0) -> Eq1Scorer:
    import torch

    device = resolve_device(str(opts.get("device", "cpu")))
    # random-weight models (pretrained: null) must be the same on every run of the same config
    torch.manual_seed(seed)
    clip_opts = options_clip(opts)
    clip = load_clip(clip_opts["name"], clip_opts["pretrained"], cache_dir=opts.get("cache_dir"), device=device,
                     offline=opts.get("offline"))
    detector = None
    if opts.get("use_detector", True):
        det = options_detector(opts)
        model = load_detector(det["name"], det["weights"], cache_dir=opts.get("cache_dir"), device=device,
                              offline=opts.get("offline"), score_threshold=det["score_threshold"],
                              max_objects=det["max_objects"], min_size=det["min_size"], max_size=det["max_size"])
        detector = ObjectDetector(model, device=device, batch_size=int(opts.get("batch_size", 32)),
                                  score_threshold=det["score_threshold"], max_objects=det["max_objects"])
    return Eq1Scorer(clip, detector, alpha=float(opts.get("alpha", DEFAULT_ALPHA)), device=device,
                     batch_size=int(opts.get("batch_size", 32)))


def preflight(ctx: BuildContext) -> None:
    """Fail before any stage of the build runs: unknown models, weights missing offline, no CUDA."""
    from mesed_build.rerank.models import check_clip, check_detector

    opts = options(ctx)
    resolve_device(str(opts.get("device", "cpu")))
    clip = options_clip(opts)
    check_clip(clip["name"], clip["pretrained"], cache_dir=opts.get("cache_dir"), offline=opts.get("offline"))
    if opts.get("use_detector", True):
        det = options_detector(opts)
        check_detector(det["name"], det["weights"], cache_dir=opts.get("cache_dir"), offline=opts.get("offline"))


def model_id(scorer: Eq1Scorer) -> str:
    det = scorer.detector.detector.model_id if scorer.detector is not None else "no-detector"
    return f"{scorer.clip.model_id}+{det}"


def _load(store: ContentStore, sha: str) -> Image.Image:
    with Image.open(store.path(sha)) as im:
        return im.convert("RGB")


def run(ctx: BuildContext) -> dict[str, int]:
    from mesed_build.images.stage import image_root
    from mesed_build.images.stage import options as image_options

    opts = options(ctx)
    scorer = build_scorer(opts, seed=ctx.config.seed)
    mid = model_id(scorer)
    images = ContentStore(image_root(ctx, image_options(ctx)))
    counts: Counter = Counter()

    cand, scores = st.image_candidates, st.image_scores
    with ctx.store.engine.connect() as c:
        rows = c.execute(
            sa.select(cand.c.page_id, cand.c.sentence_hash, cand.c.rank, cand.c.image_sha256)
            .where(cand.c.wiki == ctx.wiki, cand.c.status == "ok")
            .order_by(cand.c.page_id, cand.c.sentence_hash, cand.c.rank)
        ).all()
        done = {(int(p), h) for p, h in c.execute(
            sa.select(scores.c.page_id, scores.c.sentence_hash).where(
                scores.c.wiki == ctx.wiki, scores.c.model_id == mid, scores.c.alpha == scorer.alpha).distinct())}
        texts = dict(c.execute(sa.select(st.sentences.c.sentence_hash, st.sentences.c.text)).all())
        infobox = {int(p): sha for p, sha in c.execute(
            sa.select(st.infobox_images.c.page_id, st.infobox_images.c.image_sha256).where(
                st.infobox_images.c.wiki == ctx.wiki, st.infobox_images.c.status == "ok"))}

    groups: dict[tuple[int, str], list[str]] = defaultdict(list)
    for page_id, shash, _rank, sha in rows:
        if sha not in groups[(int(page_id), shash)]:  # two ranks can hold the same image
            groups[(int(page_id), shash)].append(sha)
    todo = [key for key in groups if key not in done]
    counts["sentences_already_scored"] = len(groups) - len(todo)
    batch = max(1, int(opts["sentences_per_batch"]))
    for start in tqdm(range(0, len(todo), batch), desc="rerank", disable=not ctx.progress):
        chunk = todo[start : start + batch]
        cache: dict[str, Image.Image] = {}

        def image(sha: str) -> Image.Image:
            if sha not in cache:
                cache[sha] = _load(images, sha)
            return cache[sha]

        requests = [
            ScoreRequest(key, texts[key[1]], [(sha, image(sha)) for sha in groups[key]],
                         (infobox[key[0]], image(infobox[key[0]])) if key[0] in infobox else None)
            for key in chunk
        ]
        result = scorer.score(requests)
        out = []
        for req in requests:
            page_id, shash = req.key
            sentence_scores = result[req.key]
            best = max(range(len(sentence_scores)), key=lambda i: (sentence_scores[i].score, -i))
            for i, ((sha, _), s) in enumerate(zip(req.candidates, sentence_scores, strict=True)):
                out.append({"image_sha256": sha, "sentence_hash": shash, "model_id": mid, "wiki": ctx.wiki,
                            "page_id": page_id, "clip_term": s.clip_term, "object_term": s.object_term,
                            "alpha": scorer.alpha, "score": s.score, "n_objects": s.n_objects, "chosen": i == best})
            counts["candidates_scored"] += len(sentence_scores)
            counts["sentences_scored"] += 1
            if req.infobox is None:
                counts["sentences_scored_without_infobox_image"] += 1
        ctx.store.upsert(scores, out)

    div = chosen_diversity(ctx, scorer, images, mid, int(opts["diversity_sample"]))
    counts["chosen_images"] = _count_chosen(ctx, mid)
    result = dict(sorted(counts.items()))
    if div is not None:
        result["diversity"] = round(div, 4)
    return result


def _count_chosen(ctx: BuildContext, mid: str) -> int:
    s = st.image_scores
    return ctx.store.count(s, s.c.wiki == ctx.wiki, s.c.model_id == mid, s.c.chosen)


def chosen_diversity(ctx: BuildContext, scorer: Eq1Scorer, images: ContentStore, mid: str, sample: int) -> float | None:
    """The paper's diversity over the chosen image of every sentence (a deterministic sample when
    there are many); an image chosen for two sentences counts twice, as it does in the dataset."""
    s = st.image_scores
    with ctx.store.engine.connect() as c:
        chosen = [r[0] for r in c.execute(sa.select(s.c.image_sha256).where(
            s.c.wiki == ctx.wiki, s.c.model_id == mid, s.c.chosen).order_by(s.c.page_id, s.c.sentence_hash))]
    if len(chosen) < 2:
        return None
    if len(chosen) > sample:
        rng = np.random.default_rng(ctx.config.seed)
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), size=sample, replace=False).tolist())]
    distinct = sorted(set(chosen))
    emb = scorer.embed_images([_load(images, sha) for sha in distinct])
    row = {sha: i for i, sha in enumerate(distinct)}
    return diversity(emb[[row[sha] for sha in chosen]])
