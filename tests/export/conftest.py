"""The demo build the export tests share (built once per session), with chosen images.

The text stages (classes, vocabulary, sentences, queries) run for real on the demo config. The
images/rerank stages need KeyBERT, CLIP and Faster R-CNN and take minutes on this machine, so their
output is written the way those stages write it: real photos into the content store (sha256-named)
and eq. 1 score rows with the top candidate marked chosen, for a subset of the sentences. One
re-ranked image is then labelled by annotators: irrelevant with "none fits" (the export must drop it),
and another one relevant (Table 1 on the card).
"""

from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import pytest
import sqlalchemy as sa
from PIL import Image

from mesed_build import store as st

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "export"
STAGES = ("classes", "vocabulary", "sentences", "queries")
PHOTOS = {
    "dog.jpg": (FIXTURES / "dog.jpg", "CC BY-SA 4.0"),
    "eagle.jpg": (FIXTURES / "eagle.jpg", "CC0"),
    "grace_hopper.jpg": (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", "Public domain"),
}
MODEL_ID = "clip:ViT-B-32/random+fasterrcnn_resnet50_fpn_v2/random"
N_ILLUSTRATED = 24  # sentences (by hash order) that get candidate images
FIXED_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def build_demo_store(build_dir: Path) -> None:
    """The demo config's text stages, recorded as a build in the manifest (no Prefect server)."""
    from flows.build import run_stage
    from mesed_build.config import load_config
    from mesed_build.context import open_context
    from mesed_build.store import package_versions

    config = load_config(DEMO_CONFIG, build_dir=build_dir)
    ctx = open_context(config)
    try:
        ctx.build_id = ctx.store.start_build(config.name, config.config_hash, config.raw, list(STAGES),
                                             package_versions())
        for stage in STAGES:
            run_stage(ctx, stage)
        ctx.store.finish_build(ctx.build_id, "completed")
    finally:
        ctx.close()


def add_chosen_images(store: st.Store, image_root: Path) -> dict:
    """Photos in the content store + 2 scored candidates per (entity, sentence); the best is chosen."""
    from mesed_build.images.content_store import ContentStore

    content = ContentStore(image_root)
    shas = []
    image_rows = []
    for name, (path, licence) in PHOTOS.items():
        payload = path.read_bytes()
        sha, _ = content.put(payload)
        shas.append(sha)
        with Image.open(io.BytesIO(payload)) as im:
            width, height = im.size
        image_rows.append({
            "sha256": sha, "path": content.relpath(sha), "source_url": f"https://upload.wikimedia.org/test/{name}",
            "source_page": f"https://commons.wikimedia.org/wiki/File:{name}", "licence": licence, "width": width,
            "height": height, "bytes": len(payload), "mime": "image/jpeg", "fetched_at": FIXED_TIME,
        })
    store.upsert(st.images, image_rows)
    with store.engine.connect() as c:
        hashes = [r[0] for r in c.execute(
            sa.select(st.sentences.c.sentence_hash).order_by(st.sentences.c.sentence_hash).limit(N_ILLUSTRATED))]
        mentions = c.execute(
            sa.select(st.mentions.c.sentence_hash, st.mentions.c.page_id).where(st.mentions.c.sentence_hash.in_(hashes))
        ).all()
    score_rows = []
    expected: dict[str, dict[int, str]] = {}
    for sentence_hash, page_id in mentions:
        i = int(hashlib.sha256(f"{sentence_hash}:{page_id}".encode()).hexdigest(), 16)
        first, second = shas[i % 3], shas[(i // 3) % 3]
        if first == second:
            second = shas[(i % 3 + 1) % 3]
        scores = {first: 0.6 + (i % 7) / 100, second: 0.3}
        best = max(scores, key=scores.get)
        expected.setdefault(sentence_hash, {})[int(page_id)] = best
        for sha, score in scores.items():
            score_rows.append({
                "image_sha256": sha, "sentence_hash": sentence_hash, "model_id": MODEL_ID, "wiki": "enwiki",
                "page_id": int(page_id), "clip_term": score, "object_term": score, "alpha": 0.5, "score": score,
                "n_objects": 1, "chosen": sha == best,
            })
    store.upsert(st.image_scores, score_rows)
    # the sentence's image is that of its first entity by page id
    return {h: by_entity[min(by_entity)] for h, by_entity in expected.items()}


def add_annotations(store: st.Store, chosen: dict[str, str]) -> dict[str, str]:
    """Fill the review queue and label two re-ranked images: one irrelevant with "none fits", one
    relevant to entity and sentence (through the annotation queue's own functions)."""
    from annotation.queue import item_id_for, options_for_store, submit_label, sync_items

    sync_items(store, options_for_store(store))
    store.upsert(st.annotation_users, [{"user_id": 1, "name": "ann1", "role": "annotator", "password_hash": "-",
                                         "active": True, "created_at": FIXED_TIME}])
    none_fits, relevant = sorted(chosen)[:2]
    with store.engine.connect() as c:
        first_entity = {h: int(c.execute(sa.select(sa.func.min(st.image_scores.c.page_id))
                                         .where(st.image_scores.c.sentence_hash == h)).scalar_one())
                        for h in (none_fits, relevant)}
    submit_label(store, 1, item_id_for("enwiki", first_entity[none_fits], none_fits, "rerank"), "IR", none_fits=True,
                 now=FIXED_TIME)
    submit_label(store, 1, item_id_for("enwiki", first_entity[relevant], relevant, "rerank"), "ES", now=FIXED_TIME)
    return {"none_fits": none_fits, "relevant": relevant}


@pytest.fixture(scope="session")
def export_build(tmp_path_factory):
    """(build_dir, store URL, expected image per sentence, annotated sentences). Read-only for tests."""
    reuse = os.environ.get("MESED_TEST_EXPORT_BUILD")  # a kept build dir, to iterate on the tests quickly
    build_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("export-demo")
    if not (build_dir / "store.sqlite").exists():
        build_demo_store(build_dir)
    url = f"sqlite:///{(build_dir / 'store.sqlite').as_posix()}"
    store = st.Store(url)
    try:
        expected = add_chosen_images(store, build_dir / "images")
        annotated = add_annotations(store, expected)
    finally:
        store.close()
    expected.pop(annotated["none_fits"])
    return {"build_dir": build_dir, "url": url, "images": expected, "annotated": annotated}


@pytest.fixture(scope="session")
def export_all(export_build, tmp_path_factory):
    """The demo build exported in all three formats (small shards, to get several)."""
    from mesed_build.export.run import export

    out = tmp_path_factory.mktemp("exports") / "all"
    store = st.Store(export_build["url"])
    try:
        result = export(store, out, formats="all", shard_bytes="200KB")
    finally:
        store.close()
    return {"out": out, "result": result}


def copy_store(export_build, directory: Path) -> st.Store:
    """A writable copy of the shared demo store (with its content store) for tests that change it."""
    import shutil

    target = directory / "build"
    shutil.copytree(export_build["build_dir"], target)
    return st.Store(f"sqlite:///{(target / 'store.sqlite').as_posix()}")
