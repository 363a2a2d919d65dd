"""Extending a build with a new class, and taking one out, on the real dump excerpt: the store ends
as a fresh build of the new config would."""

from __future__ import annotations

import copy

import sqlalchemy as sa
import yaml

from flows.build import run_stage
from mesed_build import store as st
from mesed_build.config import config_from_dict
from mesed_build.context import open_context
from tests.conftest import DEMO_CONFIG


def demo_raw(build_dir, without: set[str] = frozenset()) -> dict:
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["build_dir"] = str(build_dir)

    def prune(nodes):
        kept = []
        for node in nodes:
            if node["name"] in without:
                continue
            node = copy.deepcopy(node)
            if "children" in node:
                node["children"] = prune(node["children"])
            kept.append(node)
        return kept

    raw["classes"] = prune(raw["classes"])
    return raw


def build(raw) -> dict:
    ctx = open_context(config_from_dict(raw, path=DEMO_CONFIG))
    for stage in ("classes", "sentences"):
        run_stage(ctx, stage)
    with ctx.store.engine.connect() as c:
        state = {
            "classes": set(c.execute(sa.select(st.classes.c.name)).scalars()),
            "members": set(c.execute(sa.select(st.class_members.c.class_name, st.class_members.c.page_id))),
            "targets": set(c.execute(sa.select(st.vocabulary.c.page_id).where(st.vocabulary.c.kind == "target"))
                           .scalars()),
            "entity_sentences": set(c.execute(sa.select(st.entity_sentences.c.page_id,
                                                        st.entity_sentences.c.sentence_hash))),
            "mentions": set(c.execute(sa.select(st.mentions.c.sentence_hash, st.mentions.c.token_start,
                                                st.mentions.c.token_end, st.mentions.c.page_id))),
        }
    ctx.close()
    return state


def test_adding_then_removing_a_class_equals_fresh_builds(tmp_path):
    new_class, old_class = "Landlocked Countries", "Countries In Europe"
    extended = tmp_path / "extended"
    before = build(demo_raw(extended, without={new_class}))
    assert new_class not in before["classes"]

    after = build(demo_raw(extended))
    fresh = build(demo_raw(tmp_path / "fresh"))
    assert after == fresh
    added = {pid for cls, pid in after["members"] if cls == new_class}
    assert added and added <= after["targets"]
    assert before["members"] < after["members"]

    shrunk = build(demo_raw(extended, without={old_class}))
    assert shrunk == build(demo_raw(tmp_path / "fresh-without", without={old_class}))
    assert old_class not in shrunk["classes"]
    assert not {pid for cls, pid in shrunk["members"] if cls == old_class}
