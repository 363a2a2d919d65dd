"""Stage 7, queries: seed sets and ground truth for every fine class, deterministic from the build seed.

Per fine class: 5 queries of 3 seeds and 5 queries of 5 seeds (MESED's protocol). Seeds are distinct
within a query and the queries of one size are distinct sets; they are drawn from the class's
entities that have at least `min_sentences` sentences. The gt of a class lists all its entities
with label 1; an entity of two classes (a light novel that is also a manga) is in both classes' gt.

The draw depends only on the build seed, the class name and the sorted eligible page ids, so a
rebuild from the same sources gives identical queries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa

from mesed_build import store as st

STAGE = "queries"
DEFAULTS = {
    "min_sentences": 2,  # MultiExpan drops entities with fewer than 2 usable sentences
    "queries_per_size": 5,
    "seed_sizes": [3, 5],
    "small_classes": "fail",  # or 'skip': record the class as dropped and carry on
}
# enumerate every seed set when there are at most this many; sample otherwise
_ENUMERATE_LIMIT = 20000


class QueryError(ValueError):
    """A class cannot give the queries it needs; the message names the class and its size."""


def options(config) -> dict:
    return {**DEFAULTS, **config.section("queries")}


def class_rng(seed: int, class_name: str, size: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:queries:{class_name}:{size}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_queries(entities: Sequence[int], size: int, count: int, rng: random.Random, class_name: str = "?") -> list[list[int]]:
    """`count` distinct seed sets of `size` distinct entities; each set in draw order."""
    pool = sorted(set(entities))
    possible = math.comb(len(pool), size)
    if possible < count:
        raise QueryError(
            f"class {class_name!r}: {len(pool)} entities with enough sentences give {possible} distinct "
            f"sets of {size} seeds, {count} are needed (at least {_min_pool(size, count)} entities)"
        )
    if possible <= _ENUMERATE_LIMIT:
        chosen = rng.sample(list(itertools.combinations(pool, size)), count)
        # the order within a query is a draw too (the reference reads seeds in file order)
        return [rng.sample(list(c), size) for c in chosen]
    queries: list[list[int]] = []
    seen: set[frozenset[int]] = set()
    while len(queries) < count:
        query = rng.sample(pool, size)
        if frozenset(query) not in seen:
            seen.add(frozenset(query))
            queries.append(query)
    return queries


def _min_pool(size: int, count: int) -> int:
    n = size
    while math.comb(n, size) < count:
        n += 1
    return n


def _class_members(store: st.Store, wiki: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with store.engine.connect() as c:
        for name, page_id in c.execute(
            sa.select(st.class_members.c.class_name, st.class_members.c.page_id)
            .where(st.class_members.c.wiki == wiki).order_by(st.class_members.c.class_name, st.class_members.c.page_id)
        ):
            out.setdefault(name, []).append(int(page_id))
    return out


def _sentence_counts(store: st.Store, wiki: str) -> dict[int, int]:
    with store.engine.connect() as c:
        return {
            int(pid): int(n)
            for pid, n in c.execute(
                sa.select(st.entity_sentences.c.page_id, sa.func.count())
                .where(st.entity_sentences.c.wiki == wiki).group_by(st.entity_sentences.c.page_id)
            )
        }


def run(ctx) -> dict[str, int]:
    opts = options(ctx.config)
    if opts["small_classes"] not in ("fail", "skip"):
        raise QueryError(f"queries.small_classes: {opts['small_classes']!r} is not 'fail' or 'skip'")
    store, wiki, seed = ctx.store, ctx.wiki, ctx.config.seed
    members = _class_members(store, wiki)
    sentences = _sentence_counts(store, wiki)
    counts: Counter = Counter()
    query_rows: list[dict] = []
    gt_rows: list[dict] = []
    drops: list[tuple] = []
    failures: list[str] = []
    for fine in ctx.config.fine_classes:
        entities = members.get(fine.name, [])
        # the gold set stands whether or not the class can give queries
        gt_rows.extend({"class_name": fine.name, "wiki": wiki, "page_id": pid, "label": 1} for pid in entities)
        eligible = [pid for pid in entities if sentences.get(pid, 0) >= opts["min_sentences"]]
        try:
            drawn = {size: draw_queries(eligible, size, opts["queries_per_size"], class_rng(seed, fine.name, size),
                                        fine.name) for size in opts["seed_sizes"]}
        except QueryError as exc:
            message = (f"{exc}; it has {len(entities)} entities, {len(eligible)} with at least "
                       f"{opts['min_sentences']} sentences (queries.min_sentences)")
            failures.append(message)
            drops.append((STAGE, "class_too_small", fine.name, message))
            counts["classes_too_small"] += 1
            continue
        for size, seed_sets in drawn.items():
            for index, seeds in enumerate(seed_sets):
                query_rows.append({"class_name": fine.name, "seed_count": size, "query_index": index, "wiki": wiki,
                                   "seeds": json.dumps(seeds)})
        counts["classes_with_queries"] += 1
    if failures and opts["small_classes"] == "fail":
        raise QueryError("queries: " + "; ".join(failures)
                         + ". Lower queries.min_sentences, grow the class, or set queries.small_classes: skip")
    with store.begin() as conn:
        conn.execute(st.queries.delete().where(st.queries.c.wiki == wiki))
        conn.execute(st.gt.delete().where(st.gt.c.wiki == wiki))
        conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE))
        store.upsert(st.queries, query_rows, conn=conn)
        store.upsert(st.gt, gt_rows, conn=conn)
        store.record_drops(drops, conn=conn)
    counts["queries"] = len(query_rows)
    counts["gt_rows"] = len(gt_rows)
    return dict(sorted(counts.items()))


# --- readers for export and stats ---------------------------------------------------------------------


def load_queries(store: st.Store, wiki: str = "enwiki") -> dict[str, dict[int, list[list[int]]]]:
    """class -> seed count -> queries (lists of page ids), in query order."""
    out: dict[str, dict[int, list[list[int]]]] = {}
    with store.engine.connect() as c:
        for row in c.execute(
            sa.select(st.queries).where(st.queries.c.wiki == wiki)
            .order_by(st.queries.c.class_name, st.queries.c.seed_count, st.queries.c.query_index)
        ):
            out.setdefault(row.class_name, {}).setdefault(row.seed_count, []).append(json.loads(row.seeds))
    return out


def load_gt(store: st.Store, wiki: str = "enwiki") -> dict[str, list[tuple[int, int]]]:
    """class -> [(page id, label)], ordered by page id."""
    out: dict[str, list[tuple[int, int]]] = {}
    with store.engine.connect() as c:
        for row in c.execute(
            sa.select(st.gt).where(st.gt.c.wiki == wiki).order_by(st.gt.c.class_name, st.gt.c.page_id)
        ):
            out.setdefault(row.class_name, []).append((int(row.page_id), int(row.label)))
    return out


def format_query_file(seed_sets: Sequence[Sequence[int]], eid_of: dict[int, int], *, exit_line: bool) -> str:
    """MESED's query/<Class>.txt: one query a line, space-separated eids; the 3-seed file ends with EXIT."""
    lines = [" ".join(str(eid_of[pid]) for pid in seeds) for seeds in seed_sets]
    if exit_line:
        lines.append("EXIT")
    return "\n".join(lines) + "\n"


def format_gt_file(rows: Sequence[tuple[int, int]], eid_of: dict[int, int], name_of: dict[int, str]) -> str:
    """MESED's gt/<Class>.txt: eid<TAB>name<TAB>label, ordered by eid."""
    lines = sorted((eid_of[pid], name_of[pid], label) for pid, label in rows)
    return "".join(f"{eid}\t{name}\t{label}\n" for eid, name, label in lines)


def query_stats(store: st.Store, wiki: str = "enwiki") -> dict:
    """For `mesed-build stats`: queries per class (by seed count) and classes dropped as too small."""
    per_class: dict[str, dict[str, int]] = {}
    for name, by_size in load_queries(store, wiki).items():
        per_class[name] = {f"{size}_seeds": len(q) for size, q in sorted(by_size.items())}
    with store.engine.connect() as c:
        too_small = [r.item for r in c.execute(sa.select(st.drops.c.item).where(
            st.drops.c.stage == STAGE, st.drops.c.reason == "class_too_small").order_by(st.drops.c.item))]
    return {"per_class": per_class, "classes_too_small": too_small}
