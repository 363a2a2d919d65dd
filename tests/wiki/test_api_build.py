"""An API build and a dump build of the same classes, over the same real pages, give the same data."""

from __future__ import annotations

import importlib.resources

import sqlalchemy as sa

from flows.build import run_stage
from mesed_build import store as st
from mesed_build.config import config_from_dict
from mesed_build.context import open_context
from tests.wiki.dump_api_server import DumpAPIServer, DumpBackedAPI

DATA = importlib.resources.files("gensim") / "test/test_data"
DUMPS = [DATA / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
         DATA / "enwiki-table-markup.xml.bz2"]

CLASSES = [{"name": "Location", "children": [{"name": "GPE", "children": [
    {"name": "Member States Of The United Nations",
     "sources": [{"category": "Category:Member states of the United Nations"}]},
    {"name": "Landlocked Countries", "sources": [{"category": "Category:Landlocked countries"}]},
]}]}, {"name": "Person", "children": [{"name": "Philosopher", "children": [
    {"name": "Metaphysicians", "sources": [{"category": "Category:Metaphysicians"}]},
]}]}]


def build(tmp_path, name, wiki):
    config = config_from_dict({"name": name, "seed": 13, "wiki": wiki, "classes": CLASSES,
                               "build_dir": str(tmp_path / name)})
    ctx = open_context(config)
    for stage in ("classes", "sentences"):
        run_stage(ctx, stage)
    with ctx.store.engine.connect() as c:
        members = set(c.execute(sa.select(st.class_members.c.class_name, st.class_members.c.page_id)).all())
        sentences = set(c.execute(sa.select(st.sentences.c.sentence_hash, st.sentences.c.tokens)).all())
        mentions = set(c.execute(sa.select(st.mentions.c.sentence_hash, st.mentions.c.token_start,
                                           st.mentions.c.token_end, st.mentions.c.page_id)).all())
    ctx.close()
    return members, sentences, mentions


def test_api_build_equals_dump_build(tmp_path):
    dump = build(tmp_path, "dump", {"source": "dump", "dump": {"paths": [str(p) for p in DUMPS]}})
    api = DumpBackedAPI(DUMPS, st.Store(f"sqlite:///{tmp_path}/server.sqlite"))
    with DumpAPIServer(api) as server:
        live = build(tmp_path, "api", {"source": "api", "api": {
            "endpoint": server.url, "user_agent": "mesed-build-tests/0.1 (tests@example.org)", "backoff_s": 0.01}})
    members, sentences, mentions = live
    assert len(members) >= 10 and len(sentences) >= 20
    assert live == dump
    assert any(r.get("prop") == "redirects" for r in api.requests)
    assert all(r.get("maxlag") == "5" for r in api.requests)



def test_api_vocabulary_draws_search_random_and_keeps_the_unseedable_draw(tmp_path):
    """The vocabulary stage on the API: CirrusSearch hits and list=random draws become negatives
    through `resolve`, every one a real article of the excerpt and none a target."""
    api = DumpBackedAPI(DUMPS, st.Store(f"sqlite:///{tmp_path}/server.sqlite"))
    vocabulary = {"random": {"count": 5}, "bm25": {"top_k": 3, "wiki_search": True}}
    with DumpAPIServer(api) as server:
        config = config_from_dict({
            "name": "api", "seed": 13, "build_dir": str(tmp_path / "api"), "classes": CLASSES,
            "vocabulary": vocabulary, "wiki": {"source": "api", "api": {
                "endpoint": server.url, "user_agent": "mesed-build-tests/0.1 (tests@example.org)", "backoff_s": 0.01}}})
        ctx = open_context(config)
        run_stage(ctx, "classes")
        run_stage(ctx, "vocabulary")
        rows = vocabulary_rows(ctx)
        targets = {r.title for r in rows if r.kind == "target"}
        assert len(targets) >= 9
        # every target was searched once, and the hits that are not targets are its BM25 negatives
        searches = [r["srsearch"] for r in api.requests if r.get("list") == "search"]
        assert sorted(searches) == sorted(targets)
        expected = {(hit.title, target) for target in targets for hit in api.source.search(target, limit=3)
                    if hit.title not in targets}
        assert {(r.title, r.source) for r in rows if r.kind == "bm25"} == expected
        assert ("Demographics of Angola", "Angola") in expected  # a hard negative of the kind the paper means
        # list=random: five real articles of the excerpt, none a target, a redirect or a disambiguation page
        drawn = sorted(r.title for r in rows if r.kind == "random")
        assert len(drawn) == 5 and not targets & set(drawn)
        for row in rows:
            if row.kind != "target":
                page = api.by_title[row.title]
                assert page["namespace"] == 0 and page["redirect_target"] is None and not page["is_disambiguation"]
        # list=random cannot be seeded: a rerun keeps the draw instead of drawing other pages
        random_requests = sum(r.get("list") == "random" for r in api.requests)
        again = run_stage(ctx, "vocabulary")
        assert again["random_kept_from_earlier_run"] == 5
        assert sum(r.get("list") == "random" for r in api.requests) == random_requests
        assert sorted(r.title for r in vocabulary_rows(ctx) if r.kind == "random") == drawn
        ctx.close()


def vocabulary_rows(ctx):
    with ctx.store.engine.connect() as c:
        return c.execute(sa.select(st.vocabulary.c.kind, st.entities.c.title, st.vocabulary.c.source)
                         .join(st.entities, sa.and_(st.entities.c.wiki == st.vocabulary.c.wiki,
                                                    st.entities.c.page_id == st.vocabulary.c.page_id))).all()
