"""Counts per stage and drops by reason: what `mesed-build stats` prints."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.classes import class_sizes
from mesed_build.queries import query_stats
from mesed_build.sentences.stage import sentences_per_entity
from mesed_build.vocab.synonyms import synonym_stats


def collect_stats(store: st.Store, wiki: str = "enwiki") -> dict:
    fine_sizes = class_sizes(store)
    per_entity = sentences_per_entity(store, wiki)
    with store.engine.connect() as c:
        vocabulary = {
            kind: int(n)
            for kind, n in c.execute(
                sa.select(st.vocabulary.c.kind, sa.func.count()).group_by(st.vocabulary.c.kind).order_by(st.vocabulary.c.kind)
            )
        }
        members_with_sentences = c.execute(
            sa.select(st.class_members.c.class_name, sa.func.count(sa.distinct(st.class_members.c.page_id)))
            .where(sa.exists().where(st.entity_sentences.c.wiki == st.class_members.c.wiki,
                                     st.entity_sentences.c.page_id == st.class_members.c.page_id))
            .group_by(st.class_members.c.class_name)
        ).all()
    build = store.latest_build()
    stats = {
        "classes": store.count(st.classes, st.classes.c.level == "fine"),
        "classes_by_level": {
            level: store.count(st.classes, st.classes.c.level == level) for level in ("top", "coarse", "fine")
        },
        "entities": store.count(st.entities),
        "sentences": store.count(st.sentences),
        "mentions": store.count(st.mentions),
        "vocabulary": vocabulary,
        "entities_per_class": fine_sizes,
        "entities_with_sentences_per_class": {name: int(n) for name, n in members_with_sentences},
        "sentences_per_entity": _summary(list(per_entity.values())),
        "synonyms": synonym_stats(store, wiki),
        "queries": query_stats(store, wiki),
        "dropped": store.drops_by_reason(),
        "build": _build_summary(build),
    }
    from annotation.results import annotation_summary  # the review queue's progress, kappa and Table 1

    stats["annotation"] = annotation_summary(store)
    from mesed_build.images.stage import image_stats  # candidates, stored images, infobox images, eq. 1 scores

    stats["images"] = image_stats(store)
    return stats


def _vocab_lines(stats: dict) -> list[str]:
    """Hard positives and queries per class (issue 3)."""
    syn, queries = stats["synonyms"], stats["queries"]
    lines = ["", f"synonyms: {syn['entities_replaced']} entities replaced, {syn['mentions_replaced']} mentions replaced, "
             f"{syn['wikidata_items_cached']} Wikidata items cached"]
    if syn["skipped"]:
        lines.append(f"  skipped: {syn['skipped']}")
    lines.append("queries per fine class:")
    for name, sizes in queries["per_class"].items():
        lines.append(f"  {name}: " + ", ".join(f"{n} x {size.replace('_', ' ')}" for size, n in sizes.items()))
    for name in queries["classes_too_small"]:
        lines.append(f"  {name}: none (class too small; see dropped queries/class_too_small)")
    return lines


def _summary(values: list[int]) -> dict:
    if not values:
        return {"entities": 0, "min": 0, "mean": 0.0, "max": 0}
    return {"entities": len(values), "min": min(values), "mean": round(sum(values) / len(values), 2), "max": max(values)}


def _build_summary(build: dict | None) -> dict | None:
    if build is None:
        return None
    return {
        "build_id": build["build_id"],
        "name": build["name"],
        "status": build["status"],
        "config_hash": build["config_hash"],
        "started_at": build["started_at"].isoformat() if build["started_at"] else None,
        "finished_at": build["finished_at"].isoformat() if build["finished_at"] else None,
        "versions": json.loads(build["versions"]),
        "stages": {name: run["counts"] for name, run in build["stage_runs"].items()},
        "error": build["error"],
    }


def format_stats(stats: dict) -> str:
    lines = []
    build = stats.get("build")
    if build:
        lines.append(f"build #{build['build_id']} {build['name']}: {build['status']} "
                     f"(config {build['config_hash'][:12]}, started {build['started_at']})")
        if build.get("error"):
            lines.append(f"  error: {build['error']}")
    levels = stats["classes_by_level"]
    lines.append(f"classes: {levels['top']} top / {levels['coarse']} coarse / {levels['fine']} fine")
    lines.append(f"entities: {stats['entities']}   sentences: {stats['sentences']}   mentions: {stats['mentions']}")
    if stats["vocabulary"]:
        lines.append("vocabulary: " + ", ".join(f"{k} {v}" for k, v in stats["vocabulary"].items()))
    spe = stats["sentences_per_entity"]
    lines.append(f"sentences per entity: min {spe['min']} / mean {spe['mean']} / max {spe['max']} "
                 f"over {spe['entities']} entities")
    lines.append("")
    lines.append("entities per fine class (with sentences):")
    with_sentences = stats["entities_with_sentences_per_class"]
    width = max((len(n) for n in stats["entities_per_class"]), default=10)
    for name, n in stats["entities_per_class"].items():
        lines.append(f"  {name:<{width}}  {n:>6}  ({with_sentences.get(name, 0)})")
    lines.extend(_vocab_lines(stats))
    if build and build["stages"]:
        lines.append("")
        lines.append("stages:")
        for stage, counts in build["stages"].items():
            lines.append(f"  {stage}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if "images" in stats:
        from mesed_build.images.stage import format_image_stats

        lines.append("")
        lines.extend(format_image_stats(stats["images"]))
    lines.append("")
    lines.append("dropped (stage/reason):")
    if not stats["dropped"]:
        lines.append("  nothing")
    for reason, n in stats["dropped"].items():
        lines.append(f"  {reason:<48} {n:>8}")
    if "annotation" in stats:
        from annotation.results import format_summary

        lines.append("")
        lines.extend(format_summary(stats["annotation"]))
    return "\n".join(lines)
