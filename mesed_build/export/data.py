"""Everything an export needs from the store, read once and shared by every format.

Small tables (classes, entities, queries, gt, the image chosen for each sentence) are held in
memory; sentences are streamed in sentence-hash order, so an export is deterministic and its
memory does not grow with the number of sentences.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.export.mesed import ExportError, entity_names
from mesed_build.sentences.stage import iter_export_sentences

# letters (any script), digits, space and a few punctuation marks survive in a class file name;
# everything else (path separators, dots, quotes, control characters) becomes "_"
UNSAFE_IN_FILE_NAME = re.compile(r"[^\w \-(),'&+]", re.UNICODE)
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
MIME_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
IMAGE_DIR = "image"


def class_file_name(name: str) -> str:
    """The file name (without .txt) a class gets in query/, query_seed=5/ and gt/.

    The reference code takes the class name as the file name up to its first dot, so a class
    name may hold no dot; nor may it hold a path separator. Such characters become "_".
    """
    mapped = UNSAFE_IN_FILE_NAME.sub("_", unicodedata.normalize("NFC", name)).strip()
    if not mapped or set(mapped) == {"_"}:
        raise ExportError(f"class {name!r}: no usable characters for a file name")
    if mapped.upper() in WINDOWS_RESERVED:
        mapped += "_"
    return mapped


def wiki_base_url(wiki: str) -> str | None:
    match = re.fullmatch(r"([a-z][a-z0-9_-]*)wiki", wiki)
    return f"https://{match.group(1).replace('_', '-')}.wikipedia.org" if match else None


def article_url(wiki: str, title: str | None, page_id: int, rev_id: int | None) -> str | None:
    base = wiki_base_url(wiki)
    if base is None:
        return None
    if rev_id is not None:
        return f"{base}/w/index.php?oldid={rev_id}"
    if title:
        return f"{base}/wiki/{quote(title.replace(' ', '_'), safe='/:()_,')}"
    return f"{base}/w/index.php?curid={page_id}"


@dataclass
class ImageFile:
    sha256: str
    store_path: Path  # where the bytes are in the build's content store
    export_path: str  # relative to an export root, under image/
    mime: str
    width: int
    height: int
    size: int
    licence: str | None
    source_url: str
    source_page: str | None
    verified: bool = False  # bytes checked against sha256 during this export


@dataclass
class ExportData:
    wiki: str
    build: dict | None
    classes: list[dict]  # class records (schemas/class.schema.json), in config order
    entities: list[dict]  # entity records (schemas/entity.schema.json), by eid
    queries: list[dict]  # query records (schemas/query.schema.json)
    gt: list[dict]  # gt records (schemas/gt.schema.json), by class then eid
    annotations: list[dict]  # annotation records (schemas/annotation.schema.json), by item then label id
    vocabulary_by_kind: dict[str, int]
    chosen_image: dict[str, str]  # sentence hash -> image sha256
    images: dict[str, ImageFile]  # sha256 -> the image, for every chosen image
    articles: dict[int, dict]  # article page id -> {title, rev_id}
    drops: dict[str, int]  # the build's drops, stage/reason -> count
    export_drops: Counter = field(default_factory=Counter)  # what the export itself left out, by reason
    image_model: str | None = None
    n_sentences: int = 0
    progress: bool = False

    @property
    def eids(self) -> set[int]:
        return {e["eid"] for e in self.entities}

    @property
    def fine_classes(self) -> list[dict]:
        return [c for c in self.classes if c["level"] == "fine"]

    @property
    def image_uses(self) -> dict[str, int]:
        """sha256 -> number of sentences it illustrates."""
        return dict(sorted(Counter(self.chosen_image.values()).items()))

    def image_of(self, sentence_hash: str) -> ImageFile | None:
        sha = self.chosen_image.get(sentence_hash)
        return self.images[sha] if sha else None

    def iter_sentences(self, store: st.Store) -> Iterator[dict]:
        """One dict per exported sentence (hash order): the stored sentence, its mentions and its image."""
        sentences = iter_export_sentences(store, self.wiki)
        for sentence in tqdm(sentences, total=self.n_sentences, desc="sentences", disable=not self.progress):
            article = self.articles.get(int(sentence["article_page_id"]), {})
            yield {
                **sentence,
                "article_title": article.get("title"),
                "image": self.image_of(sentence["sentence_hash"]),
            }


def build_wiki(store: st.Store, default: str = "enwiki") -> str:
    """The wiki id of the store's latest build (its config's `wiki.wiki_id`)."""
    build = store.latest_build()
    if build is None:
        return default
    return (json.loads(build["config"]).get("wiki") or {}).get("wiki_id") or default


def default_image_root(store: st.Store, build_dir: str | Path | None = None) -> Path | None:
    """The build's image content store, as the images stage chose it: the config's `images.image_dir`,
    else `<build dir>/images` (the build dir holds store.sqlite)."""
    build = store.latest_build()
    if build is not None:
        configured = (json.loads(build["config"]).get("images") or {}).get("image_dir")
        if configured:
            return Path(configured)
    if build_dir is not None:
        return Path(build_dir) / "images"
    if store.url.startswith("sqlite:///"):
        return Path(store.url[len("sqlite:///"):]).parent / "images"
    return None


def load_export_data(store: st.Store, *, wiki: str = "enwiki", image_root: str | Path | None = None,
                     image_model: str | None = None) -> ExportData:
    names = entity_names(store, wiki)
    with store.engine.connect() as c:
        class_rows = c.execute(sa.select(st.classes).order_by(st.classes.c.position)).mappings().all()
        members: dict[str, list[int]] = defaultdict(list)
        for row in c.execute(
            sa.select(st.class_members.c.class_name, st.class_members.c.page_id)
            .where(st.class_members.c.wiki == wiki)
            .order_by(st.class_members.c.class_name, st.class_members.c.page_id)
        ):
            members[row.class_name].append(int(row.page_id))
        entity_rows = {
            int(r.page_id): r
            for r in c.execute(sa.select(st.entities).where(st.entities.c.wiki == wiki))
            if int(r.page_id) in names
        }
        kinds: dict[int, list[str]] = defaultdict(list)
        vocabulary_by_kind: Counter = Counter()
        for row in c.execute(
            sa.select(st.vocabulary.c.page_id, st.vocabulary.c.kind)
            .where(st.vocabulary.c.wiki == wiki)
            .order_by(st.vocabulary.c.page_id, st.vocabulary.c.kind)
        ):
            kinds[int(row.page_id)].append(row.kind)
            vocabulary_by_kind[row.kind] += 1
        sentence_counts = {
            int(pid): int(n)
            for pid, n in c.execute(
                sa.select(st.entity_sentences.c.page_id, sa.func.count())
                .where(st.entity_sentences.c.wiki == wiki)
                .group_by(st.entity_sentences.c.page_id)
            )
        }
        query_rows = c.execute(
            sa.select(st.queries).where(st.queries.c.wiki == wiki)
            .order_by(st.queries.c.class_name, st.queries.c.seed_count, st.queries.c.query_index)
        ).mappings().all()
        gt_rows = c.execute(
            sa.select(st.gt).where(st.gt.c.wiki == wiki).order_by(st.gt.c.class_name, st.gt.c.page_id)
        ).mappings().all()
        articles = {
            int(r.article_page_id): {"rev_id": r.article_rev_id, "title": None, "n_sentences": int(r.n)}
            for r in c.execute(
                sa.select(st.sentences.c.article_page_id,
                          sa.func.max(st.sentences.c.article_rev_id).label("article_rev_id"),
                          sa.func.count().label("n"))
                .where(st.sentences.c.wiki == wiki)
                .group_by(st.sentences.c.article_page_id)
            )
        }
        n_sentences = sum(a["n_sentences"] for a in articles.values())
        ids = sorted(articles)
        for i in range(0, len(ids), 500):
            for r in c.execute(
                sa.select(st.pages.c.page_id, st.pages.c.title)
                .where(st.pages.c.wiki == wiki, st.pages.c.page_id.in_(ids[i : i + 500]))
            ):
                articles[int(r.page_id)]["title"] = r.title

    classes = _class_records(class_rows, members, names)
    file_names = {c["name"]: c["file_name"] for c in classes if c["level"] == "fine"}
    eid2cls: dict[int, list[str]] = defaultdict(list)
    for cls in classes:
        if cls["level"] == "fine":
            for eid in members.get(cls["name"], ()):
                if eid in names:
                    eid2cls[eid].append(cls["file_name"])
    base = wiki_base_url(wiki)
    entities = []
    for eid, name in names.items():
        row = entity_rows.get(eid)
        entities.append({
            "eid": eid,
            "name": name,
            "wiki": wiki,
            "qid": row.qid if row is not None else None,
            "rev_id": int(row.rev_id) if row is not None and row.rev_id is not None else None,
            "url": f"{base}/wiki/{quote(name.replace(' ', '_'), safe='/:()_,')}" if base else None,
            "classes": eid2cls.get(eid, []),
            "kinds": kinds.get(eid, []),
            "n_sentences": sentence_counts.get(eid, 0),
        })

    export_drops: Counter = Counter()
    queries = []
    for row in query_rows:
        if row["class_name"] not in file_names:
            raise ExportError(f"store table queries: class {row['class_name']!r} is not a fine class of this build")
        seeds = [int(s) for s in json.loads(row["seeds"])]
        missing = [s for s in seeds if s not in names]
        if missing:
            raise ExportError(
                f"store table queries: class {row['class_name']!r}, {row['seed_count']}-seed query "
                f"{row['query_index']}: seed eid(s) {missing} have no exported sentence; a query must use "
                "entities that are in entity2id.txt (rerun the queries stage)")
        queries.append({
            "class_name": row["class_name"], "file_name": file_names[row["class_name"]],
            "seed_count": int(row["seed_count"]), "query_index": int(row["query_index"]), "seeds": seeds,
        })
    gt = []
    for row in gt_rows:
        if row["class_name"] not in file_names:
            raise ExportError(f"store table gt: class {row['class_name']!r} is not a fine class of this build")
        eid = int(row["page_id"])
        if eid not in names:
            # the reference code (and our benchmark) need every gt eid in entity2id.txt
            export_drops["gt_entity_without_sentences"] += 1
            continue
        gt.append({"class_name": row["class_name"], "file_name": file_names[row["class_name"]],
                   "eid": eid, "name": names[eid], "label": int(row["label"])})

    chosen, model = chosen_images(store, wiki, image_model, export_drops)
    images = _image_files(store, chosen, image_root)
    return ExportData(
        wiki=wiki, build=store.latest_build(), classes=classes, entities=entities, queries=queries, gt=gt,
        annotations=_annotation_records(store, wiki),
        vocabulary_by_kind=dict(sorted(vocabulary_by_kind.items())), chosen_image=chosen, images=images,
        articles=articles, drops=store.drops_by_reason(), export_drops=export_drops, image_model=model,
        n_sentences=n_sentences,
    )


def _class_records(class_rows, members: dict[str, list[int]], names: dict[int, str]) -> list[dict]:
    records = []
    seen: dict[str, str] = {}
    for row in class_rows:
        file_name = class_file_name(row["name"])
        if row["level"] == "fine":
            if file_name.casefold() in seen:
                raise ExportError(
                    f"classes {seen[file_name.casefold()]!r} and {row['name']!r} both map to the file name "
                    f"{file_name!r} (names may not differ only in case or in characters unsafe in a file name)")
            seen[file_name.casefold()] = row["name"]
        ids = members.get(row["name"], [])
        records.append({
            "name": row["name"],
            "file_name": file_name,
            "level": row["level"],
            "parent": row["parent"],
            "position": int(row["position"]),
            "n_entities": len(ids),
            "n_exported_entities": sum(1 for eid in ids if eid in names),
            "sources": json.loads(row["sources"] or "[]"),
        })
    return records


def as_utc(value):
    """SQLite hands back the stored UTC times without their zone, PostgreSQL with it: make them equal."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _utc_iso(value) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _annotation_records(store: st.Store, wiki: str) -> list[dict]:
    """Every label of the review queue on this wiki's sentences; annotators by number only."""
    item, lab = st.annotation_items, st.annotation_labels
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(lab, item.c.sentence_hash, item.c.page_id, item.c.class_name, item.c.strategy,
                      item.c.calibration)
            .select_from(lab.join(item, item.c.item_id == lab.c.item_id))
            .where(item.c.wiki == wiki)
            .where(sa.exists().where(st.sentences.c.sentence_hash == item.c.sentence_hash))
            .order_by(lab.c.item_id, lab.c.label_id)
        ).mappings().all()
    return [
        {
            "item_id": r["item_id"], "sentence_id": r["sentence_hash"], "eid": int(r["page_id"]),
            "class_name": r["class_name"], "strategy": r["strategy"], "calibration": bool(r["calibration"]),
            "image_sha256": r["image_sha256"], "annotator": int(r["user_id"]), "label": r["label"],
            "replacement_sha256": r["replacement_sha256"], "replacement_label": r["replacement_label"],
            "none_fits": bool(r["none_fits"]),
            "created_at": _utc_iso(r["created_at"]),
        }
        for r in rows
    ]


def _queue_in_use(store: st.Store, wiki: str, chosen_rows) -> bool:
    """Whether the annotation queue holds the re-ranked choices (then its results decide the images).

    A queue that shows other images than the re-ranker now chooses (rerank was rerun after the last
    `annotate sync`) would export stale images, so that is an error, not a guess.
    """
    item = st.annotation_items
    with store.engine.connect() as c:
        queued = {(int(p), h): sha for p, h, sha in c.execute(
            sa.select(item.c.page_id, item.c.sentence_hash, item.c.image_sha256)
            .where(item.c.strategy == "rerank", item.c.wiki == wiki))}
    if not queued:
        return False
    current = {(int(p), h): sha for h, p, sha in chosen_rows}
    stale = sum(1 for key, sha in current.items() if queued.get(key) != sha)
    if stale:
        raise ExportError(f"the annotation queue is out of date: {stale} re-ranked (entity, sentence) choices differ "
                          "from what it shows; run `mesed-build annotate sync` (labels are kept), then export")
    return True


def chosen_images(store: st.Store, wiki: str, image_model: str | None,
                   export_drops: Counter) -> tuple[dict[str, str], str | None]:
    """sentence hash -> sha256 of its image: the annotators' choice where one exists (majority vote,
    annotation.results.final_images), else the re-ranker's choice.

    A sentence that serves several entities takes the image of the first entity by page id (the
    rule the annotation results use). Sentences the annotators left with no fitting image get none
    and are counted as `image_none_fits`.
    """
    t = st.image_scores
    with store.engine.connect() as c:
        models = [r[0] for r in c.execute(
            sa.select(t.c.model_id).where(t.c.chosen.is_(True), t.c.wiki == wiki).distinct().order_by(t.c.model_id))]
        if image_model is None:
            if len(models) > 1:
                raise ExportError(f"image_scores holds chosen images of several re-rank models ({', '.join(models)}); "
                                  "pick one with --image-model")
            image_model = models[0] if models else None
        elif image_model not in models:
            raise ExportError(f"--image-model {image_model!r}: no chosen images from it; the store has "
                              f"{', '.join(models) or 'none'}")
        if image_model is None:
            return {}, None
        exported = {r[0] for r in c.execute(sa.select(st.sentences.c.sentence_hash).where(st.sentences.c.wiki == wiki))}
        rows = c.execute(
            sa.select(t.c.sentence_hash, t.c.page_id, t.c.image_sha256)
            .where(t.c.chosen.is_(True), t.c.wiki == wiki, t.c.model_id == image_model)
            .order_by(t.c.sentence_hash, t.c.page_id, t.c.image_sha256)
        ).all()
    if len(models) == 1:
        try:
            from annotation.results import final_images
        except ImportError:  # the annotation package is not installed: re-ranked choices only
            final_images = None
        if final_images is not None and _queue_in_use(store, wiki, rows):
            tally: dict[str, int] = {}
            final = final_images(store, tally)
            none_fits = sum(1 for shash, sha in final.items() if sha is None and shash in exported)
            if none_fits:
                export_drops["image_none_fits"] += none_fits
            return {shash: sha for shash, sha in sorted(final.items()) if sha is not None and shash in exported}, image_model
    chosen: dict[str, str] = {}
    for shash, _page_id, sha in rows:
        if shash in exported:
            chosen.setdefault(shash, sha)
    return chosen, image_model


def _image_files(store: st.Store, chosen: dict[str, str], image_root: str | Path | None) -> dict[str, ImageFile]:
    shas = sorted(set(chosen.values()))
    if not shas:
        return {}
    if image_root is None:
        raise ExportError("the build has chosen images but no image content store is known; pass --images-dir "
                          "(or --build-dir)")
    root = Path(image_root)
    rows = {}
    with store.engine.connect() as c:
        for i in range(0, len(shas), 500):
            for r in c.execute(sa.select(st.images).where(st.images.c.sha256.in_(shas[i : i + 500]))).mappings():
                rows[r["sha256"]] = r
    files = {}
    for sha in shas:
        row = rows.get(sha)
        if row is None:
            raise ExportError(f"image {sha}: chosen for a sentence but missing from the store's images table")
        path = root / row["path"]
        if not path.is_file():
            raise ExportError(f"{path}: image {sha} is in the store but its bytes are missing from the content store "
                              f"{root} (wrong --images-dir?)")
        ext = MIME_EXTENSIONS.get(row["mime"]) or (Path(row["path"]).suffix.lstrip(".") or "jpg")
        files[sha] = ImageFile(
            sha256=sha, store_path=path, export_path=f"{IMAGE_DIR}/{sha}.{ext}", mime=row["mime"],
            width=int(row["width"]), height=int(row["height"]), size=int(row["bytes"]), licence=row["licence"],
            source_url=row["source_url"], source_page=row["source_page"],
        )
    return files
