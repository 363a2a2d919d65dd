"""Queries and gt: distinct seed sets per fine class, deterministic from the build seed, on the demo build."""

from __future__ import annotations

import copy
import itertools
import random
import sqlite3
from pathlib import Path

import pytest
import yaml

from mesed_build.config import config_from_dict
from mesed_build.context import open_context
from mesed_build.queries import (
    QueryError,
    class_rng,
    draw_queries,
    format_gt_file,
    format_query_file,
    load_gt,
    load_queries,
    run,
)
from mesed_build.stats import collect_stats, format_stats

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def test_draws_are_distinct_sets_of_distinct_seeds():
    pool = list(range(100, 130))
    for size in (3, 5):
        queries = draw_queries(pool, size, 5, random.Random(1))
        assert len(queries) == 5
        assert all(len(set(q)) == size and set(q) <= set(pool) for q in queries)
        assert len({frozenset(q) for q in queries}) == 5
    # the smallest pools: 5 entities give 10 sets of 3 but only 1 set of 5; 6 give 6 sets of 5
    small = draw_queries(range(6), 5, 5, random.Random(2))
    assert len({frozenset(q) for q in small}) == 5
    with pytest.raises(QueryError, match=r"class 'Tiny': 5 entities with enough sentences give 1 distinct sets of 5 seeds, "
                                         r"5 are needed \(at least 6 entities\)"):
        draw_queries(range(5), 5, 5, random.Random(3), "Tiny")


def test_draws_depend_on_seed_and_class_only():
    pool = list(range(1000))
    a = draw_queries(pool, 3, 5, class_rng(13, "Jazz Vocalists", 3))
    assert a == draw_queries(list(reversed(pool)), 3, 5, class_rng(13, "Jazz Vocalists", 3))  # order of input ignored
    assert a != draw_queries(pool, 3, 5, class_rng(14, "Jazz Vocalists", 3))
    assert a != draw_queries(pool, 3, 5, class_rng(13, "Chinese Actors", 3))


def test_every_seed_set_can_come_out():
    # small pools are enumerated: over many seeds every one of the C(6,3) = 20 sets is drawn
    seen = {frozenset(q) for s in range(200) for q in draw_queries(range(6), 3, 5, random.Random(s))}
    assert seen == {frozenset(c) for c in itertools.combinations(range(6), 3)}


def test_file_formats():
    eid_of = {11: 0, 12: 1, 13: 2}
    assert format_query_file([[13, 11, 12]], eid_of, exit_line=True) == "2 0 1\nEXIT\n"
    assert format_query_file([[13, 11, 12]], eid_of, exit_line=False) == "2 0 1\n"
    assert format_gt_file([(13, 1), (11, 1)], eid_of, {11: "Aristotle", 13: "Ayn Rand"}) == (
        "0\tAristotle\t1\n2\tAyn Rand\t1\n")


@pytest.fixture
def demo_store(demo_build, tmp_path):
    """A private copy of the shared demo build (classes + sentences), to run the queries stage on."""
    ctx, build_dir = demo_build
    target = tmp_path / "store.sqlite"
    with sqlite3.connect(build_dir / "store.sqlite") as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return tmp_path


def _ctx(build_dir: Path, **queries):
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["build_dir"] = str(build_dir)
    raw["queries"] = {**raw.get("queries", {}), **queries}
    if "seed" in queries:
        raw["seed"] = raw["queries"].pop("seed")
    return open_context(config_from_dict(copy.deepcopy(raw), path=DEMO))


def test_queries_stage_on_the_demo(demo_store):
    ctx = _ctx(demo_store)
    try:
        counts = run(ctx)
        queries = load_queries(ctx.store)
        gt = load_gt(ctx.store)
        assert counts["classes_with_queries"] >= 1
        assert counts["queries"] == 10 * counts["classes_with_queries"]
        anthropologists = queries["Anthropologists"]
        assert [len(q) for q in anthropologists[3]] == [3] * 5 and [len(q) for q in anthropologists[5]] == [5] * 5
        members = {pid for pid, label in gt["Anthropologists"]}
        assert all(label == 1 for _, label in gt["Anthropologists"])
        assert {s for q in anthropologists[3] + anthropologists[5] for s in q} <= members
        # an entity of two classes is in the gt of both (Albania: a UN member state and a country in Europe)
        in_two = set(p for p, _ in gt.get("Member States Of The United Nations", [])) & set(
            p for p, _ in gt.get("Countries In Europe", []))
        assert in_two, "expected a country in both classes' gt"

        # every class either has its 10 queries or is recorded as too small, naming its size
        stats = collect_stats(ctx.store)["queries"]
        assert set(stats["per_class"]) | set(stats["classes_too_small"]) == {c.name for c in ctx.config.fine_classes}
        assert "Anthropologists: 5 x 3 seeds, 5 x 5 seeds" in format_stats(collect_stats(ctx.store))

        # a rerun gives identical queries
        run(ctx)
        assert load_queries(ctx.store) == queries
    finally:
        ctx.close()

    other = _ctx(demo_store, seed=14)
    try:
        run(other)
        assert load_queries(other.store)["Anthropologists"] != anthropologists
    finally:
        other.close()


def test_too_small_class_fails_the_stage_by_name(demo_store):
    ctx = _ctx(demo_store, small_classes="fail", min_sentences=1)
    try:
        with pytest.raises(QueryError, match=r"class 'Metaphysicians': \d entities with enough sentences give "
                                             r"\d+ distinct sets of 3 seeds.*it has 3 entities"):
            run(ctx)
        assert load_queries(ctx.store) == {}  # nothing half-written
    finally:
        ctx.close()
