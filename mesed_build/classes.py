"""Stage 1, classes: the 3-layer class schema and the entities of every fine class.

Each fine class's list pages are read with mwparserfromhell (wiki.listpages) or its categories
listed; the links are resolved through redirects to canonical entities.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.context import BuildContext
from mesed_build.wiki.listpages import list_page_entries
from mesed_build.wiki.source import PageRef, normalize_title

STAGE = "classes"
log = logging.getLogger(__name__)


def write_class_schema(ctx: BuildContext) -> None:
    rows = [
        {
            "name": node.name,
            "level": node.level,
            "parent": node.parent,
            "position": position,
            "sources": json.dumps([s.__dict__ for s in node.sources], sort_keys=True),
        }
        for position, node in enumerate(ctx.config.classes)
    ]
    with ctx.store.begin() as conn:
        conn.execute(st.classes.delete().where(st.classes.c.name.not_in([r["name"] for r in rows])))
        ctx.store.upsert(st.classes, rows, conn=conn)


def run(ctx: BuildContext) -> dict[str, int]:
    """Crawl every fine class's sources into entities and class membership. Returns counts."""
    write_class_schema(ctx)
    source = ctx.source
    wiki = ctx.wiki
    fine = ctx.config.fine_classes
    drops: list[tuple[str, str, str, str | None]] = []
    reasons: Counter = Counter()

    list_titles = sorted({normalize_title(s.list_page) for c in fine for s in c.sources if s.list_page})
    texts = {}
    for page in tqdm(source.wikitext(list_titles), desc="list pages", total=len(list_titles), disable=not ctx.progress):
        texts[page.title] = page
    resolved_lists = source.resolve(list_titles)

    members: dict[str, dict[int, dict]] = {}  # class -> page_id -> membership row
    entity_rows: dict[int, dict] = {}
    for cls in tqdm(fine, desc="classes", disable=not ctx.progress):
        raw_members: list[tuple[str, str, str]] = []  # (target title, anchor, source)
        for src in cls.sources:
            if src.list_page:
                title = normalize_title(src.list_page)
                ref = resolved_lists.get(title)
                page = texts.get(ref.title if ref else title)
                if page is None:
                    drops.append((STAGE, "list_page_missing", f"{cls.name}: {src.list_page}", None))
                    reasons["list_page_missing"] += 1
                    continue
                page_drops: Counter = Counter()
                try:
                    entries = list_page_entries(
                        page.text, sections=src.sections, exclude_sections=src.exclude_sections,
                        table_column=src.table_column, drops=page_drops,
                    )
                except ValueError as exc:
                    drops.append((STAGE, "unparsable_list_page", f"{cls.name}: {src.list_page}", str(exc)))
                    reasons["unparsable_list_page"] += 1
                    continue
                for reason, n in page_drops.items():
                    reasons[reason] += n
                    drops.append((STAGE, reason, f"{cls.name}: {src.list_page}", None, n))
                if not entries:
                    drops.append((STAGE, "list_page_without_entries", f"{cls.name}: {src.list_page}", None))
                    reasons["list_page_without_entries"] += 1
                raw_members.extend((e.target, e.anchor, page.title) for e in entries if e.target != page.title)
            else:
                for ref in source.category_members(src.category):
                    raw_members.append((ref.title, ref.title, src.category))

        resolved: dict[str, PageRef | None] = source.resolve([t for t, _, _ in raw_members]) if raw_members else {}
        class_members: dict[int, dict] = {}
        for target, anchor, origin in raw_members:
            ref = resolved.get(target)
            if ref is None:
                drops.append((STAGE, "red_link", f"{cls.name}: {target}", origin))
                reasons["red_link"] += 1
                continue
            if ref.is_disambiguation:
                drops.append((STAGE, "links_to_disambiguation_page", f"{cls.name}: {target}", origin))
                reasons["links_to_disambiguation_page"] += 1
                continue
            if ref.page_id in class_members:
                reasons["duplicate_member"] += 1
                continue  # two list entries (or a redirect and its target) name the same entity
            class_members[ref.page_id] = {
                "class_name": cls.name, "wiki": wiki, "page_id": ref.page_id, "source": origin, "anchor": anchor,
            }
            entity_rows[ref.page_id] = {
                "wiki": wiki, "page_id": ref.page_id, "title": ref.title, "rev_id": ref.rev_id, "qid": ref.wikibase_item,
            }
        if len(class_members) < ctx.config.limits["min_entities_per_class"]:
            drops.append((STAGE, "class_too_small", cls.name, f"{len(class_members)} entities"))
            reasons["class_too_small"] += 1
        members[cls.name] = class_members

    with ctx.store.begin() as conn:
        ctx.store.upsert(st.entities, sorted(entity_rows.values(), key=lambda r: r["page_id"]), conn=conn)
        # a class taken out of the config takes its members with it
        conn.execute(st.class_members.delete().where(st.class_members.c.class_name.not_in(list(members))))
        for cls_name, rows in members.items():
            # a rebuild replaces the membership: an entry removed from a list page leaves the class
            conn.execute(st.class_members.delete().where(st.class_members.c.class_name == cls_name))
            ctx.store.upsert(st.class_members, list(rows.values()), conn=conn)
        conn.execute(st.vocabulary.delete().where(st.vocabulary.c.kind == "target"))
        ctx.store.upsert(
            st.vocabulary,
            [{"wiki": r["wiki"], "page_id": r["page_id"], "kind": "target", "source": r["class_name"]}
             for rows in members.values() for r in rows.values()],
            update=[],
            conn=conn,
        )
        conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE))
        ctx.store.record_drops(drops, conn=conn)

    counts = {
        "fine_classes": len(fine),
        "entities": len(entity_rows),
        "memberships": sum(len(r) for r in members.values()),
        "empty_classes": sum(1 for r in members.values() if not r),
    }
    counts.update({f"dropped_{k}": v for k, v in sorted(reasons.items())})
    return counts


def class_sizes(store: st.Store) -> dict[str, int]:
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.classes.c.name, sa.func.count(st.class_members.c.page_id))
            .select_from(st.classes.outerjoin(st.class_members, st.class_members.c.class_name == st.classes.c.name))
            .where(st.classes.c.level == "fine")
            .group_by(st.classes.c.name, st.classes.c.position)
            .order_by(st.classes.c.position)
        ).all()
    return {name: int(n) for name, n in rows}
