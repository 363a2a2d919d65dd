"""`mesed-build diff OLD NEW`: what a rebuild changed, for scheduled rebuilds.

OLD and NEW are build directories (holding store.sqlite), store files or SQLAlchemy URLs. The diff
compares entities per fine class (added / removed), sentences per entity, the sentence set, and the
image each sentence gets in the export (annotators' choice, else the re-ranker's).
Entities are compared by eid (the Wikipedia page id), which a rebuild keeps.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.export.mesed import ExportError

TEXT_LIMIT = 20  # items listed per section in the text output; --json lists all


def store_url(spec: str) -> str:
    if "://" in spec:
        return spec
    path = Path(spec)
    if path.is_dir():
        path = path / "store.sqlite"
    if not path.is_file():
        raise ExportError(f"{spec}: no build store here (expected a build directory with store.sqlite, a .sqlite "
                          "file or a database URL)")
    return f"sqlite:///{path.resolve().as_posix()}"


def snapshot(store: st.Store, wiki: str | None = None, image_model: str | None = None) -> dict:
    """The parts of a build that a diff compares."""
    from mesed_build.export.data import chosen_images, build_wiki

    wiki = wiki or build_wiki(store)
    with store.engine.connect() as c:
        fine = [r[0] for r in c.execute(
            sa.select(st.classes.c.name).where(st.classes.c.level == "fine").order_by(st.classes.c.position))]
        members: dict[str, set[int]] = {name: set() for name in fine}
        for name, pid in c.execute(
            sa.select(st.class_members.c.class_name, st.class_members.c.page_id).where(st.class_members.c.wiki == wiki)
        ):
            members.setdefault(name, set()).add(int(pid))
        names = {int(pid): title for pid, title in c.execute(
            sa.select(st.entities.c.page_id, st.entities.c.title).where(st.entities.c.wiki == wiki))}
        per_entity = {int(pid): int(n) for pid, n in c.execute(
            sa.select(st.entity_sentences.c.page_id, sa.func.count())
            .where(st.entity_sentences.c.wiki == wiki).group_by(st.entity_sentences.c.page_id))}
        sentences = {r[0] for r in c.execute(sa.select(st.sentences.c.sentence_hash).where(st.sentences.c.wiki == wiki))}
    images, _ = chosen_images(store, wiki, image_model, Counter())
    return {"classes": fine, "members": members, "names": names, "sentences_per_entity": per_entity,
            "sentences": sentences, "images": images}


def _entity(eid: int, names_new: dict, names_old: dict) -> dict:
    return {"eid": eid, "name": names_new.get(eid) or names_old.get(eid)}


def diff_snapshots(old: dict, new: dict) -> dict:
    names_old, names_new = old["names"], new["names"]
    classes = {}
    for name in list(dict.fromkeys(new["classes"] + old["classes"])):
        before, after = old["members"].get(name, set()), new["members"].get(name, set())
        classes[name] = {
            "old_size": len(before) if name in old["members"] else None,
            "new_size": len(after) if name in new["members"] else None,
            "added": [_entity(e, names_new, names_old) for e in sorted(after - before)],
            "removed": [_entity(e, names_new, names_old) for e in sorted(before - after)],
        }
    counts_old, counts_new = old["sentences_per_entity"], new["sentences_per_entity"]
    changed_counts = [
        {**_entity(e, names_new, names_old), "old": counts_old.get(e, 0), "new": counts_new.get(e, 0)}
        for e in sorted(set(counts_old) | set(counts_new)) if counts_old.get(e, 0) != counts_new.get(e, 0)
    ]
    img_old, img_new = old["images"], new["images"]
    common = old["sentences"] & new["sentences"]
    image_changes = [
        {"sentence_id": h, "old": img_old.get(h), "new": img_new.get(h)}
        for h in sorted(common) if img_old.get(h) != img_new.get(h)
    ]
    return {
        "classes_added": [n for n in new["classes"] if n not in old["classes"]],
        "classes_removed": [n for n in old["classes"] if n not in new["classes"]],
        "classes": classes,
        "sentences": {
            "old": len(old["sentences"]), "new": len(new["sentences"]),
            "added": len(new["sentences"] - old["sentences"]), "removed": len(old["sentences"] - new["sentences"]),
        },
        "sentence_counts_changed": changed_counts,
        "images": {
            "old": len(img_old), "new": len(img_new),
            # among sentences in both builds: a different image, a new one, or one no longer there
            "changed": sum(1 for c in image_changes if c["old"] and c["new"]),
            "gained": sum(1 for c in image_changes if not c["old"]),
            "lost": sum(1 for c in image_changes if not c["new"]),
            "sentences": image_changes,
        },
    }


def diff_stores(old: st.Store, new: st.Store, wiki: str | None = None, image_model: str | None = None) -> dict:
    return diff_snapshots(snapshot(old, wiki, image_model), snapshot(new, wiki, image_model))


def _listing(items: list, render, indent: str) -> list[str]:
    lines = [indent + render(i) for i in items[:TEXT_LIMIT]]
    if len(items) > TEXT_LIMIT:
        lines.append(f"{indent}... and {len(items) - TEXT_LIMIT} more (--json lists all)")
    return lines


def format_diff(result: dict) -> str:
    lines = []
    for key, word in (("classes_added", "added"), ("classes_removed", "removed")):
        if result[key]:
            lines.append(f"classes {word}: " + ", ".join(result[key]))
    lines.append("entities per fine class:")
    unchanged = 0
    for name, c in result["classes"].items():
        if not c["added"] and not c["removed"]:
            unchanged += 1
            continue
        lines.append(f"  {name}: {c['old_size'] or 0} -> {c['new_size'] or 0} "
                     f"(+{len(c['added'])} -{len(c['removed'])})")
        lines += _listing(c["added"], lambda e: f"+ {e['name']} ({e['eid']})", "    ")
        lines += _listing(c["removed"], lambda e: f"- {e['name']} ({e['eid']})", "    ")
    if unchanged:
        lines.append(f"  {unchanged} class(es) unchanged")
    s = result["sentences"]
    lines.append(f"sentences: {s['old']} -> {s['new']} (+{s['added']} -{s['removed']})")
    changed = result["sentence_counts_changed"]
    lines.append(f"sentence count changed for {len(changed)} entities")
    lines += _listing(changed, lambda e: f"{e['name']} ({e['eid']}): {e['old']} -> {e['new']}", "  ")
    i = result["images"]
    lines.append(f"images: {i['old']} -> {i['new']} sentences with an image; among sentences in both builds "
                 f"{i['changed']} changed image, {i['gained']} gained one, {i['lost']} lost theirs")
    lines += _listing(i["sentences"], lambda c: f"{c['sentence_id'][:12]}: {(c['old'] or 'none')[:12]} -> "
                                                f"{(c['new'] or 'none')[:12]}", "  ")
    return "\n".join(lines)


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (lists every change).")
@click.option("--wiki", help="Wiki id of the builds [default: the latest build's].")
@click.option("--image-model", help="Re-rank model whose chosen images to compare, when a store holds several.")
def diff_command(old: str, new: str, as_json: bool, wiki: str | None, image_model: str | None) -> None:
    """What changed between two builds: entities per class, sentence counts and images.

    OLD and NEW are build directories (with store.sqlite), store files or SQLAlchemy URLs.
    """
    try:
        stores = [st.Store(store_url(spec), create=False) for spec in (old, new)]
    except ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        result = diff_stores(stores[0], stores[1], wiki, image_model)
    except (ExportError, sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    finally:
        for s in stores:
            s.close()
    click.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else format_diff(result))
