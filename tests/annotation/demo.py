"""A tiny demo-like build store for the annotation tests, from real data.

Sentences, mentions and entities are the rows the project's own classes and sentences stages
wrote for configs/demo.yaml (the real enwiki dump excerpt gensim ships); see
tests/fixtures/annotation/PROVENANCE.md. Image candidates are the real test photos, stored
through the images stage's ContentStore. Their ranks and scores are assigned by a fixed rule
here, since no pretrained CLIP is available offline; which image the rule makes the re-ranked
choice is what the tests then reason about.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mesed_build import store as st
from mesed_build.images.content_store import ContentStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PHOTOS = ["dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"]
MODEL_ID = "test-clip/random"


def load_rows() -> dict[str, list[dict]]:
    with open(FIXTURES / "annotation" / "demo_store.json", encoding="utf-8") as fh:
        return json.load(fh)


def store_photos(store: st.Store, root: Path) -> list[str]:
    content = ContentStore(root)
    shas = []
    rows = []
    for name in PHOTOS:
        path = FIXTURES / "images" / name
        sha, _new = content.put(path.read_bytes())
        with Image.open(path) as im:
            width, height = im.size
        rows.append({"sha256": sha, "path": content.relpath(sha), "source_url": f"file:///fixtures/images/{name}",
                     "source_page": None, "licence": "see tests/fixtures/images/PROVENANCE.md", "width": width,
                     "height": height, "bytes": path.stat().st_size, "mime": "image/jpeg", "fetched_at": st.utcnow()})
        shas.append(sha)
    store.upsert(st.images, rows)
    return shas


def populate(store: st.Store, root: Path, *, seed: int = 13, annotation: dict | None = None) -> dict:
    """Fill `store` and the content store at `root`; returns {"photos": [sha...], "pairs": [(wiki, pid, hash)...]}."""
    data = load_rows()
    for table in ("classes", "entities", "class_members", "sentences", "mentions", "entity_sentences"):
        store.upsert(getattr(st, table), data[table])
    photos = store_photos(store, root)
    class_of = {}
    for m in sorted(data["class_members"], key=lambda r: r["class_name"]):
        class_of.setdefault(m["page_id"], m["class_name"])
    pairs = sorted((r["wiki"], int(r["page_id"]), r["sentence_hash"]) for r in data["entity_sentences"])
    queries, candidates, scores = [], [], []
    for i, (wiki, pid, sh) in enumerate(pairs):
        queries.append({"wiki": wiki, "page_id": pid, "sentence_hash": sh, "query": "q", "keywords": "[]",
                        "class_name": class_of.get(pid), "model": "all-MiniLM-L6-v2"})
        # five of the six photos, in an order that turns with i; the re-ranked choice is rank i % 3,
        # so a third of the pairs keep the search engine's top-1 and two thirds do not
        order = [photos[(i + k) % len(photos)] for k in range(5)]
        chosen_rank = i % 3
        for rank, sha in enumerate(order):
            candidates.append({"wiki": wiki, "page_id": pid, "sentence_hash": sh, "rank": rank, "provider": "local",
                               "url": f"file:///pool/{rank}/{sha}.jpg", "source_page": None, "title": None,
                               "licence": None, "width": None, "height": None, "image_sha256": sha, "status": "ok"})
            score = 0.9 if rank == chosen_rank else 0.5 - 0.05 * rank
            scores.append({"image_sha256": sha, "sentence_hash": sh, "model_id": MODEL_ID, "wiki": wiki, "page_id": pid,
                           "clip_term": score, "object_term": score, "alpha": 0.5, "score": score, "n_objects": 1,
                           "chosen": rank == chosen_rank})
    store.upsert(st.image_queries, queries)
    store.upsert(st.image_candidates, candidates)
    store.upsert(st.image_scores, scores)
    store.upsert(st.infobox_images, [
        {"wiki": e["wiki"], "page_id": e["page_id"], "file_title": None, "url": None,
         "image_sha256": photos[int(e["page_id"]) % len(photos)], "status": "ok"} for e in data["entities"]])
    build_id = store.start_build("demo", "0" * 64, {"seed": seed, "annotation": annotation or {}}, ["annotation"], {})
    store.finish_build(build_id, "completed")
    return {"photos": photos, "pairs": pairs}
