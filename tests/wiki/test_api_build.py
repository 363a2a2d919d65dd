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
