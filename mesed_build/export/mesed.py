"""The MESED layout (MULTIEXPAN.md §1): entity2id.txt, sentences.json, query/, query_seed=5/, gt/,
eid2cls.pkl and image/, plus classes.json (the hierarchy and each class's file name).

Entity ids are the Wikipedia page ids, so an entity keeps its eid across rebuilds and build
directories. (Entities that a partial dump lacks have negative ids derived from their title.)
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from mesed_build import store as st

if TYPE_CHECKING:
    from mesed_build.export.data import ExportData

QUERY3_DIR = "query"
QUERY5_DIR = "query_seed=5"
GT_DIR = "gt"
# protocol 4 reads on every Python 3 the reference code may run on
PICKLE_PROTOCOL = 4


class ExportError(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(out: Path) -> None:
    """Temp dirs of exports to `out` that were killed (their process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(\d+)\..*\.tmp$")
    for sibling in out.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and sibling.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(sibling, ignore_errors=True)


@contextmanager
def atomic_directory(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Write into a temp dir beside `out` and rename it into place only when the block succeeds.

    A killed export leaves nothing at `out` (only a hidden temp dir, removed by the next export to
    the same place). With `force`, an existing `out` is replaced only once the new one is complete.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    # one export at a time per `out`: two at once would both pass the emptiness check below
    # (the lock file lives in the temp dir, not beside the export it guards)
    key = hashlib.sha256(str(out.resolve()).encode("utf-8")).hexdigest()[:16]
    lock = FileLock(Path(tempfile.gettempdir()) / f"mesed-build-export-{key}.lock", timeout=0)
    try:
        lock.acquire()
    except FileLockTimeout:
        raise ExportError(f"{out}: another export to this directory is running; wait for it to finish") from None
    try:
        with _locked_directory(out, force) as tmp:
            yield tmp
    finally:
        lock.release()


@contextmanager
def _locked_directory(out: Path, force: bool) -> Iterator[Path]:
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: output directory exists and is not empty (use --force to replace it)")
    _remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if out.exists():
            # swap: the old export disappears only after the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.old.", suffix=".tmp", dir=out.parent))
            os.replace(out, old / "export")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
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


def sentence_record(sentence: dict) -> dict:
    """A sentences.json line (schemas/sentence.schema.json) from an ExportData.iter_sentences() item."""
    image = sentence["image"]
    return {
        "tokens": sentence["tokens"],
        "entityMentions": [
            {"entityId": int(m["page_id"]), "start": m["token_start"], "end": m["token_end"]}
            for m in sentence["mentions"]
        ],
        "image": image.export_path if image is not None else None,
        "sentence_id": sentence["sentence_hash"],
        "article_page_id": int(sentence["article_page_id"]),
        "article_rev_id": int(sentence["article_rev_id"]) if sentence["article_rev_id"] is not None else None,
    }


def write_json_line(fh, record: dict) -> None:
    fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def read_image_bytes(image) -> bytes:
    """A content-store image's bytes, checked against the sha256 that names them."""
    data = image.store_path.read_bytes()
    if not image.verified:  # once per export: a WebDataset reads an image for every sentence it illustrates
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise ExportError(f"{image.store_path}: content does not match its sha256 {image.sha256} (corrupt store)")
        image.verified = True
    return data


def copy_image(image, target: Path) -> None:
    target.write_bytes(read_image_bytes(image))


def write_entity2id(data: ExportData, directory: Path) -> None:
    from mesed_build.export.validate import check

    with open(directory / "entity2id.txt", "w", encoding="utf-8", newline="\n") as fh:
        for lineno, entity in enumerate(data.entities, 1):
            check("entity", entity, f"entity2id.txt:{lineno}")
            fh.write(f"{entity['name']}\t{entity['eid']}\n")


def write_sentences(data: ExportData, store: st.Store, directory: Path, *, copy_images: bool = True) -> dict[str, int]:
    from mesed_build.export.validate import check_sentence

    eids = data.eids
    n_sentences = n_mentions = n_with_image = 0
    written: set[str] = set()
    if copy_images:
        (directory / "image").mkdir()
    with open(directory / "sentences.json", "w", encoding="utf-8", newline="\n") as fh:
        for lineno, sentence in enumerate(data.iter_sentences(store), 1):
            record = sentence_record(sentence)
            check_sentence(record, f"sentences.json:{lineno}", eids)
            write_json_line(fh, record)
            n_sentences += 1
            n_mentions += len(record["entityMentions"])
            image = sentence["image"]
            if image is not None:
                n_with_image += 1
                if copy_images and image.sha256 not in written:
                    copy_image(image, directory / image.export_path)
                    written.add(image.sha256)
    return {"sentences": n_sentences, "mentions": n_mentions, "sentences_with_image": n_with_image,
            "images": len(written)}


def write_queries_and_gt(data: ExportData, directory: Path) -> dict[str, int]:
    from mesed_build.export.validate import check

    for name in (QUERY3_DIR, QUERY5_DIR, GT_DIR):
        (directory / name).mkdir()
    by_file: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for query in data.queries:
        by_file[(query["file_name"], query["seed_count"])].append(query)
    counts = {"queries_3": 0, "queries_5": 0, "gt_rows": 0}
    for (file_name, seed_count), queries in sorted(by_file.items()):
        folder = QUERY3_DIR if seed_count == 3 else QUERY5_DIR
        with open(directory / folder / f"{file_name}.txt", "w", encoding="utf-8", newline="\n") as fh:
            for lineno, query in enumerate(queries, 1):
                check("query", query, f"{folder}/{file_name}.txt:{lineno}")
                fh.write(" ".join(str(s) for s in query["seeds"]) + "\n")
            if seed_count == 3:
                fh.write("EXIT\n")
        counts[f"queries_{seed_count}"] += len(queries)
    gt_by_file: dict[str, list[dict]] = defaultdict(list)
    for row in data.gt:
        gt_by_file[row["file_name"]].append(row)
    for file_name, rows in sorted(gt_by_file.items()):
        with open(directory / GT_DIR / f"{file_name}.txt", "w", encoding="utf-8", newline="\n") as fh:
            for lineno, row in enumerate(rows, 1):
                check("gt", row, f"{GT_DIR}/{file_name}.txt:{lineno}")
                fh.write(f"{row['eid']}\t{row['name']}\t{row['label']}\n")
        counts["gt_rows"] += len(rows)
    return counts


def write_eid2cls(data: ExportData, directory: Path) -> None:
    eid2cls = {entity["eid"]: list(entity["classes"]) for entity in data.entities}
    with open(directory / "eid2cls.pkl", "wb") as fh:
        pickle.dump(eid2cls, fh, protocol=PICKLE_PROTOCOL)


def write_classes(data: ExportData, directory: Path) -> None:
    from mesed_build.export.validate import check

    for index, record in enumerate(data.classes):
        check("class", record, f"classes.json:[{index}]")
    with open(directory / "classes.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(data.classes, fh, ensure_ascii=False, indent=1, sort_keys=True)
        fh.write("\n")


def write_mesed(data: ExportData, store: st.Store, directory: Path) -> dict[str, int]:
    """The whole MESED layout into an existing (empty) directory. Returns counts."""
    write_entity2id(data, directory)
    counts = {"entities": len(data.entities)}
    counts.update(write_sentences(data, store, directory))
    counts.update(write_queries_and_gt(data, directory))
    write_eid2cls(data, directory)
    write_classes(data, directory)
    return counts


def write_mesed_text(store: st.Store, directory: Path, wiki: str = "enwiki", *, image_root: Path | None = None) -> dict[str, int]:
    """Write entity2id.txt and sentences.json (with image paths, without copying the images)."""
    from mesed_build.export.data import default_image_root, load_export_data

    data = load_export_data(store, wiki=wiki, image_root=image_root or default_image_root(store))
    write_entity2id(data, Path(directory))
    counts = write_sentences(data, store, Path(directory), copy_images=False)
    return {"entities": len(data.entities), "sentences": counts["sentences"], "mentions": counts["mentions"]}


def export_mesed(store: st.Store, out: Path, *, wiki: str | None = None, force: bool = False,
                 image_root: Path | None = None) -> dict[str, int]:
    """The MESED layout (with its dataset card) at `out`, written atomically."""
    from mesed_build.export.run import export

    result = export(store, out, formats=("mesed",), wiki=wiki, force=force, image_root=image_root)
    return result["formats"]["mesed"]["counts"]
