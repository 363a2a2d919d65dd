"""The vocabulary stage on the demo build (the real dump excerpt): random, BM25 and polysemous negatives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.config import load_config
from mesed_build.context import open_context
from mesed_build.vocab import stage
from mesed_build.vocab.bm25 import tokenize_title

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


@pytest.fixture
def ctx(demo_build, tmp_path):
    """A private copy of the shared demo build (classes + sentences) with two extra targets whose names
    the excerpt's disambiguation pages cover: 'Austin, Texas' ('Austin (disambiguation)') and
    'Ada Lovelace' (listed on the page 'Ada')."""
    _, build_dir = demo_build
    with sqlite3.connect(build_dir / "store.sqlite") as src, sqlite3.connect(tmp_path / "store.sqlite") as dst:
        src.backup(dst)
    context = open_context(load_config(DEMO, build_dir=tmp_path))
    refs = context.source.resolve(["Austin, Texas", "Ada Lovelace"])
    context.store.upsert(st.entities, [{"wiki": context.wiki, "page_id": r.page_id, "title": r.title, "rev_id": None,
                                        "qid": None} for r in refs.values()], update=[])
    context.store.upsert(st.vocabulary, [{"wiki": context.wiki, "page_id": r.page_id, "kind": "target",
                                          "source": "test"} for r in refs.values()])
    yield context
    context.close()


def _vocabulary(ctx) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    with ctx.store.engine.connect() as c:
        for row in c.execute(
            sa.select(st.vocabulary.c.kind, st.vocabulary.c.page_id, st.vocabulary.c.source, st.entities.c.title)
            .join(st.entities, sa.and_(st.entities.c.wiki == st.vocabulary.c.wiki,
                                       st.entities.c.page_id == st.vocabulary.c.page_id))
            .order_by(st.vocabulary.c.kind, st.vocabulary.c.page_id)
        ).mappings():
            out.setdefault(row["kind"], []).append(dict(row))
    return out


def test_vocabulary_stage_yields_all_three_kinds(ctx):
    counts = stage.run(ctx)
    vocab = _vocabulary(ctx)
    targets = {r["page_id"] for r in vocab["target"]}
    target_titles = {r["title"] for r in vocab["target"]}

    # random: the configured count (30), seeded, never a target, list or disambiguation page
    assert counts["random"] == len(vocab["random"]) == 30
    assert not {r["page_id"] for r in vocab["random"]} & targets
    with ctx.store.engine.connect() as c:
        flags = dict(c.execute(sa.select(st.pages.c.page_id, st.pages.c.is_disambiguation)).all())
    assert all(r["page_id"] in flags and not flags[r["page_id"]] for r in vocab["random"])  # real pages of the dump
    assert not any(r["title"].startswith("List of") for r in vocab["random"])

    # BM25: each negative shares a word with the target it was found for, and is no target itself
    assert counts["bm25"] == len(vocab["bm25"]) > 100
    for row in vocab["bm25"]:
        assert row["source"] in target_titles and row["page_id"] not in targets
        assert set(tokenize_title(row["title"])) & set(tokenize_title(row["source"])), row

    # polysemous: the other senses listed on the excerpt's disambiguation pages, and qualified titles
    poly = {r["title"]: r["source"] for r in vocab["polysemous"]}
    assert poly["Austin College"] == "Austin (disambiguation)"
    assert poly["Austin Motor Company"] == "Austin (disambiguation)"
    assert poly["Ada (programming language)"] == "Ada"  # the page 'Ada' lists the target 'Ada Lovelace'
    assert poly["Angola (Portugal)"] == "title qualifier of Angola"
    assert "Austin, Texas" not in poly and "Ada Lovelace" not in poly
    assert counts["polysemy_disambiguation_pages"] == 2

    # a rerun gives the same vocabulary (dump builds are seeded), without duplicates
    assert stage.run(ctx) == counts
    assert _vocabulary(ctx) == vocab


def test_negatives_get_sentences_when_the_sentences_stage_runs_again(ctx):
    from mesed_build.sentences import stage as sentences

    stage.run(ctx)
    counts = sentences.run(ctx)
    assert counts["entities_already_done"] > 0  # the targets were done before
    with ctx.store.engine.connect() as c:
        kinds = dict(c.execute(
            sa.select(st.vocabulary.c.kind, sa.func.count(sa.distinct(st.entity_sentences.c.page_id)))
            .join(st.entity_sentences, sa.and_(st.entity_sentences.c.wiki == st.vocabulary.c.wiki,
                                               st.entity_sentences.c.page_id == st.vocabulary.c.page_id))
            .group_by(st.vocabulary.c.kind)).all())
    assert kinds["random"] > 0 and kinds["bm25"] > 0 and kinds["polysemous"] > 0


def test_vocabulary_options_are_validated_with_their_line(tmp_path):
    from mesed_build.config import ConfigError

    text = DEMO.read_text(encoding="utf-8").replace("    top_k: 3", "    top_k: -1")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    line = text.splitlines().index("    top_k: -1") + 1
    with pytest.raises(ConfigError, match=rf"bad.yaml:{line}: vocabulary.bm25.top_k: -1 is less than the minimum of 0"):
        load_config(bad)
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(DEMO.read_text(encoding="utf-8").replace("  small_classes: skip", "  small_class: skip"),
                        encoding="utf-8")
    with pytest.raises(ConfigError, match=r"queries.small_class: Additional properties are not allowed"):
        load_config(misspelt)
