"""The MESED layout (MULTIEXPAN.md §1): entity2id.txt and sentences.json.

Entity ids are the Wikipedia page ids, so an entity keeps its eid across rebuilds and build
directories. (Entities that a partial dump lacks have negative ids derived from their title.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.sentences.stage import iter_export_sentences


class ExportError(RuntimeError):
    pass


@contextmanager
def atomic_directory(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Write into a temp dir beside `out` and rename it into place only when the block succeeds."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: output directory exists and is not empty (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def entity_names(store: st.Store, wiki: str) -> dict[int, str]:
    """eid -> canonical title, for every entity with at least one exported mention."""
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.entities.c.page_id, st.entities.c.title)
            .where(st.entities.c.wiki == wiki)
            .where(sa.exists().where(st.mentions.c.wiki == wiki, st.mentions.c.page_id == st.entities.c.page_id))
            .order_by(st.entities.c.page_id)
        ).all()
    return {int(pid): title for pid, title in rows}


def write_mesed_text(store: st.Store, directory: Path, wiki: str = "enwiki") -> dict[str, int]:
    """Write entity2id.txt and sentences.json into `directory`. Returns counts."""
    names = entity_names(store, wiki)
    with open(directory / "entity2id.txt", "w", encoding="utf-8", newline="\n") as fh:
        for eid, name in names.items():
            if "\t" in name or "\n" in name:
                raise ExportError(f"entity {eid}: title {name!r} contains a tab or newline")
            fh.write(f"{name}\t{eid}\n")
    n_sentences = n_mentions = 0
    with open(directory / "sentences.json", "w", encoding="utf-8", newline="\n") as fh:
        for sentence in iter_export_sentences(store, wiki):
            mentions = [
                {"entityId": int(m["page_id"]), "start": m["token_start"], "end": m["token_end"]}
                for m in sentence["mentions"]
            ]
            record = {
                "tokens": sentence["tokens"],
                "entityMentions": mentions,
                "image": None,
                "sentence_id": sentence["sentence_hash"],
                "article_page_id": sentence["article_page_id"],
                "article_rev_id": sentence["article_rev_id"],
            }
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            n_sentences += 1
            n_mentions += len(mentions)
    return {"entities": len(names), "sentences": n_sentences, "mentions": n_mentions}


def export_mesed(store: st.Store, out: Path, *, wiki: str = "enwiki", force: bool = False) -> dict[str, int]:
    with atomic_directory(out, force=force) as tmp:
        return write_mesed_text(store, tmp, wiki)
