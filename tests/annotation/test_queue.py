"""The queue on real demo rows: overlap, leases, undo, skip, calibration, majority vote, Table 1,
and no lost or duplicated label when annotators work in parallel (SQLite WAL and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from annotation import queue, results
from mesed_build import store as st
from mesed_build.store import utcnow
from tests.annotation.conftest import add_user


def items_of(store, **where):
    with store.engine.connect() as conn:
        stmt = sa.select(st.annotation_items)
        for key, value in where.items():
            stmt = stmt.where(st.annotation_items.c[key] == value)
        return [dict(r) for r in conn.execute(stmt.order_by(st.annotation_items.c.position)).mappings()]


def labels_of(store):
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(st.annotation_labels)).mappings()]


def single_entity_pairs(demo):
    per_sentence = Counter(h for _, _, h in demo.pairs)
    return [p for p in demo.pairs if per_sentence[p[2]] == 1]


def test_sync_follows_the_rerank_choices_and_the_overlap_share(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    items = items_of(demo.store)
    assert len(items) == len(demo.pairs) == 48
    # the demo store's rule: pair i's candidates are photos[(i + k) % 6] for rank k, and rank i % 3 is chosen
    expected = {pair: demo.photos[(i + i % 3) % 6] for i, pair in enumerate(demo.pairs)}
    assert {(r["wiki"], r["page_id"], r["sentence_hash"]): r["image_sha256"] for r in items} == expected
    assert all(r["required"] == 1 and r["strategy"] == "rerank" for r in items)

    everything = queue.sync_items(demo.store, queue.QueueOptions(overlap_share=1.0, overlap_k=4, seed=13))
    assert everything["overlap_items"] == 48 and {r["required"] for r in items_of(demo.store)} == {4}
    half = queue.sync_items(demo.store, queue.QueueOptions(overlap_share=0.5, seed=13))
    assert 10 <= half["overlap_items"] <= 38
    again = {r["item_id"]: r["required"] for r in items_of(demo.store)}
    queue.sync_items(demo.store, queue.QueueOptions(overlap_share=0.5, seed=13))
    assert {r["item_id"]: r["required"] for r in items_of(demo.store)} == again  # deterministic from the seed
    queue.sync_items(demo.store, queue.QueueOptions(overlap_share=0.5, seed=14))
    assert {r["item_id"]: r["required"] for r in items_of(demo.store)} != again


def test_calibration_asks_about_the_top1_only_where_it_differs(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 1.0})
    top1 = items_of(demo.store, strategy="top1")
    # rank 0 is photos[i % 6]; it differs from the choice (rank i % 3) unless i % 3 == 0
    expected = {pair: demo.photos[i % 6] for i, pair in enumerate(demo.pairs) if i % 3}
    assert {(r["wiki"], r["page_id"], r["sentence_hash"]): r["image_sha256"] for r in top1} == expected


def test_leases_keep_single_items_apart_and_expire(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0, "lease_seconds": 60})
    options = demo.options()
    alice, bob = add_user(demo, "alice"), add_user(demo, "bob")
    t0 = utcnow()
    first = queue.next_item(demo.store, alice.user_id, options, now=t0)
    assert queue.next_item(demo.store, alice.user_id, options, now=t0)["item_id"] == first["item_id"]  # kept
    other = queue.next_item(demo.store, bob.user_id, options, now=t0)
    assert other["item_id"] != first["item_id"]
    queue.skip_item(demo.store, bob.user_id, other["item_id"], now=t0)  # bob lets go of his item

    later = t0 + timedelta(seconds=61)  # alice's lease has expired: her item is free again
    assert queue.next_item(demo.store, bob.user_id, options, now=later)["item_id"] == first["item_id"]
    with pytest.raises(queue.QueueConflict):
        queue.submit_label(demo.store, alice.user_id, first["item_id"], "ES", now=later)
    assert queue.next_item(demo.store, alice.user_id, options, now=later)["item_id"] not in (first["item_id"],)
    queue.submit_label(demo.store, bob.user_id, first["item_id"], "S", now=later)
    assert [(r["item_id"], r["user_id"], r["label"]) for r in labels_of(demo.store)] == [
        (first["item_id"], bob.user_id, "S")]


def test_undo_skip_and_resubmit(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    options = demo.options()
    alice, bob = add_user(demo, "alice"), add_user(demo, "bob")
    first = queue.next_item(demo.store, alice.user_id, options)
    queue.submit_label(demo.store, alice.user_id, first["item_id"], "ES")
    queue.submit_label(demo.store, alice.user_id, first["item_id"], "S")  # a double submit changes, never duplicates
    assert [(r["item_id"], r["label"]) for r in labels_of(demo.store)] == [(first["item_id"], "S")]
    second = queue.next_item(demo.store, alice.user_id, options)
    assert second["item_id"] != first["item_id"]
    assert queue.undo_last(demo.store, alice.user_id, options) == first["item_id"]
    assert labels_of(demo.store) == []
    assert queue.next_item(demo.store, alice.user_id, options)["item_id"] == first["item_id"]  # back to it
    assert queue.undo_last(demo.store, bob.user_id, options) is None  # bob cannot undo alice's work

    queue.skip_item(demo.store, alice.user_id, first["item_id"])
    seen = set()
    while (item := queue.next_item(demo.store, alice.user_id, options)) is not None:
        seen.add(item["item_id"])
        queue.submit_label(demo.store, alice.user_id, item["item_id"], "ES")
    assert first["item_id"] not in seen and len(seen) == 47
    assert queue.next_item(demo.store, bob.user_id, options)["item_id"] == first["item_id"]


def test_labels_validate_replacements(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    alice = add_user(demo, "alice")
    item = queue.next_item(demo.store, alice.user_id, demo.options())
    for kwargs, message in [
        ({}, "replacement candidate or 'none fits'"),
        ({"replacement_sha256": item["image_sha256"]}, "another candidate"),
        ({"replacement_sha256": "0" * 64}, "another candidate"),
        ({"replacement_sha256": demo.photos[0], "none_fits": True}, "not both"),
    ]:
        with pytest.raises(queue.QueueError, match=message):
            queue.submit_label(demo.store, alice.user_id, item["item_id"], "IR", **kwargs)
    with pytest.raises(queue.QueueError, match="one of ES, S, IR"):
        queue.submit_label(demo.store, alice.user_id, item["item_id"], "maybe")
    assert labels_of(demo.store) == []


def label_as(demo, users, item, votes):
    for user, vote in zip(users, votes):
        label, replacement = vote if isinstance(vote, tuple) else (vote, None)
        queue.submit_label(demo.store, user.user_id, item["item_id"], label,
                           replacement_sha256=None if replacement in (None, "none") else replacement,
                           none_fits=replacement == "none")


def test_majority_vote_gives_the_final_images_and_table1(demo_factory):
    demo = demo_factory({"overlap_share": 1.0, "overlap_k": 3, "calibration_share": 0.0})
    users = [add_user(demo, name) for name in ("ann", "ben", "cat")]
    pairs = single_entity_pairs(demo)
    by_pair = {(r["wiki"], r["page_id"], r["sentence_hash"]): r for r in items_of(demo.store, strategy="rerank")}
    a, b, c = (by_pair[p] for p in pairs[:3])
    x_b = next(p for p in demo.photos if p != b["image_sha256"] and p in {
        cand["image_sha256"] for cand in queue.candidates(demo.store, b)})
    x_c = next(cand["image_sha256"] for cand in queue.candidates(demo.store, c) if cand["image_sha256"] != c["image_sha256"])
    label_as(demo, users, a, ["ES", "S", ("IR", "none")])       # kept: 2 of 3 find it relevant
    label_as(demo, users, b, [("IR", x_b), ("IR", x_b), "ES"])  # replaced by x_b
    label_as(demo, users, c, [("IR", "none"), ("IR", "none"), ("IR", x_c)])  # no candidate fits

    counts = {}
    final = results.final_images(demo.store, counts)
    assert final[a["sentence_hash"]] == a["image_sha256"]
    assert final[b["sentence_hash"]] == x_b
    assert final[c["sentence_hash"]] is None
    untouched = {i: p for i, p in enumerate(demo.pairs) if p[2] not in (a["sentence_hash"], b["sentence_hash"], c["sentence_hash"])}
    for i, (_, _, sentence_hash) in untouched.items():
        if Counter(h for _, _, h in demo.pairs)[sentence_hash] == 1:
            assert final[sentence_hash] == demo.photos[(i + i % 3) % 6]  # the re-ranked choice
    assert len(final) == len({h for _, _, h in demo.pairs}) == 47
    assert counts == {"automatic": 44, "kept": 1, "replaced": 1, "none_fits": 1}

    table = results.table1(demo.store)
    # re-ranked images: a is 1 ES / 1 S / 1 IR -> kept, ES does not outnumber S -> S; b and c are IR
    assert table["rows"]["Re-ranking"] == {"n": 3, "ES": 0.0, "S": pytest.approx(1 / 3, abs=1e-4),
                                           "IR": pytest.approx(2 / 3, abs=1e-4), "diversity": None}
    # after review: a S, b replaced by an image its voters found E&S, c none fits (IR)
    assert table["rows"]["Annotation"] == {"n": 3, "ES": pytest.approx(1 / 3, abs=1e-4),
                                           "S": pytest.approx(1 / 3, abs=1e-4), "IR": pytest.approx(1 / 3, abs=1e-4),
                                           "diversity": None}
    assert table["rows"]["Top 1"]["n"] == 0
    reference = statsmodels_fleiss([[1, 1, 1], [1, 0, 2], [0, 0, 3]], method="fleiss")
    assert table["kappa"] == pytest.approx(reference, abs=1e-4)

    embeddings = {sha: [1.0, 0.0] if i % 2 else [0.6, 0.8] for i, sha in enumerate(demo.photos)}
    with_div = results.table1(demo.store, embed=lambda shas: [embeddings[s] for s in shas])
    ann = [a["image_sha256"], x_b]  # the final images that exist
    cos = embeddings[ann[0]][0] * embeddings[ann[1]][0] + embeddings[ann[0]][1] * embeddings[ann[1]][1]
    assert with_div["rows"]["Annotation"]["diversity"] == pytest.approx(1 / cos, abs=1e-4)


def test_top1_row_uses_the_calibration_judgments(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 1.0})
    alice = add_user(demo, "alice")
    same = next(p for i, p in enumerate(demo.pairs) if i % 3 == 0)  # top-1 is the re-ranked choice
    differs = next(p for i, p in enumerate(demo.pairs) if i % 3 == 1)
    rerank = {(r["wiki"], r["page_id"], r["sentence_hash"]): r for r in items_of(demo.store, strategy="rerank")}
    top1 = {(r["wiki"], r["page_id"], r["sentence_hash"]): r for r in items_of(demo.store, strategy="top1")}
    assert same not in top1 and differs in top1
    queue.submit_label(demo.store, alice.user_id, rerank[same]["item_id"], "ES")
    queue.submit_label(demo.store, alice.user_id, rerank[differs]["item_id"], "S")
    queue.submit_label(demo.store, alice.user_id, top1[differs]["item_id"], "IR")
    rows = results.table1(demo.store)["rows"]
    assert rows["Top 1"] == {"n": 2, "ES": 0.5, "S": 0.0, "IR": 0.5, "diversity": None}
    assert rows["Re-ranking"] == {"n": 2, "ES": 0.5, "S": 0.5, "IR": 0.0, "diversity": None}


def test_a_rebuild_that_changes_the_image_reopens_the_item(demo_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    alice = add_user(demo, "alice")
    item = queue.next_item(demo.store, alice.user_id, demo.options())
    queue.submit_label(demo.store, alice.user_id, item["item_id"], "ES")
    queue.sync_items(demo.store, demo.options())  # same choices: the label still counts
    assert results.final_images(demo.store, counts := {}) and counts["kept"] == 1
    other = next(c["image_sha256"] for c in queue.candidates(demo.store, item) if c["image_sha256"] != item["image_sha256"])
    s = st.image_scores
    with demo.store.begin() as conn:
        key = (s.c.wiki == item["wiki"], s.c.page_id == item["page_id"], s.c.sentence_hash == item["sentence_hash"])
        conn.execute(s.update().where(*key).values(chosen=s.c.image_sha256 == other))
    queue.sync_items(demo.store, demo.options())
    counts = {}
    assert results.final_images(demo.store, counts)[item["sentence_hash"]] == other
    assert counts["kept"] == 0
    assert queue.next_item(demo.store, alice.user_id, demo.options())["item_id"] == item["item_id"]


def work_in_parallel(store, options, users, per_user_limit=None):
    """Each annotator thread takes and labels items until the queue has nothing for them."""
    submitted, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(len(users))

    def work(user, index):
        try:
            start.wait()
            n = 0
            while (item := queue.next_item(store, user.user_id, options)) is not None:
                label = ("ES", "S")[n % 2]
                queue.submit_label(store, user.user_id, item["item_id"], label)
                with lock:
                    submitted.append((item["item_id"], user.user_id, label))
                n += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(u, i)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return submitted


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_parallel_annotators_lose_and_duplicate_nothing(backend, demo_factory, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    demo = demo_factory({"overlap_share": 0.5, "overlap_k": 3, "calibration_share": 0.3}, url=url)
    assert demo.store.dialect == backend
    users = [add_user(demo, f"user{i}") for i in range(4)]
    submitted = work_in_parallel(demo.store, demo.options(), users)
    stored = [(r["item_id"], r["user_id"], r["label"]) for r in labels_of(demo.store)]
    assert sorted(stored) == sorted(submitted)
    assert len(set(stored)) == len(stored)
    per_item = Counter(item_id for item_id, _, _ in stored)
    items = items_of(demo.store)
    assert {r["item_id"]: r["required"] for r in items} == {r["item_id"]: per_item[r["item_id"]] for r in items}
    assert len(stored) == sum(r["required"] for r in items)


def test_annotation_options_are_checked_in_the_config_and_at_run_time(tmp_path):
    import yaml

    from mesed_build.config import ConfigError, load_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())
    raw["annotation"] = {"overlap_share": 0.2, "overlap_kk": 3}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: annotation.overlap_kk: Additional properties"):
        load_config(path)
    raw["annotation"] = {"overlap_share": 1.5}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="annotation.overlap_share"):
        load_config(path)
    with pytest.raises(queue.QueueError, match="unknown key.*overlap_kk"):
        queue.QueueOptions.from_options({"overlap_kk": 3})
    with pytest.raises(queue.QueueError, match="overlap_k must be at least 2"):
        queue.QueueOptions.from_options({"overlap_k": 1})


def test_the_build_stage_fills_the_queue_with_the_configs_options(demo_factory, tmp_path):
    import yaml

    from annotation.stage import run
    from mesed_build.config import load_config
    from mesed_build.context import BuildContext

    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())
    raw["annotation"] = {"overlap_share": 1.0, "overlap_k": 2, "calibration_share": 1.0}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    ctx = BuildContext(load_config(path, build_dir=str(tmp_path)), demo.store)
    counts = run(ctx)
    assert counts == {"rerank_items": 48, "top1_items": 32, "overlap_items": 48, "calibration_items": 48, "items": 80}
    assert {r["required"] for r in items_of(demo.store)} == {2}
