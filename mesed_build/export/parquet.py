"""The Parquet / Hugging Face form: one table per record kind under data/, loadable with
`datasets.load_dataset("parquet", data_files=...)` or, through the card's `configs`, with
`datasets.load_dataset(EXPORT_DIR, "sentences")`.

Tables: entities, sentences (mentions nested), images (bytes + licence + source, sharded by size),
classes (the hierarchy), queries, gt and the image relevance annotations. The images table's `image` column carries the Hugging Face
`Image` feature in the schema metadata, so `datasets` decodes it to a PIL image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mesed_build import store as st
from mesed_build.export.data import ExportData
from mesed_build.export.mesed import read_image_bytes, sentence_record
from mesed_build.export.validate import check, check_sentence

DATA_DIR = "data"
SENTENCE_BATCH = 5000
COMPRESSION = "zstd"
IMAGE_ROW_GROUP_BYTES = 64 * 2**20

MENTION = pa.struct([
    ("entity_id", pa.int64()), ("start", pa.int32()), ("end", pa.int32()),
    ("anchor_text", pa.string()), ("char_start", pa.int32()), ("char_end", pa.int32()),
])
SCHEMAS = {
    "entities": pa.schema([
        ("eid", pa.int64()), ("name", pa.string()), ("wiki", pa.string()), ("qid", pa.string()),
        ("rev_id", pa.int64()), ("url", pa.string()), ("classes", pa.list_(pa.string())),
        ("kinds", pa.list_(pa.string())), ("n_sentences", pa.int32()),
    ]),
    "sentences": pa.schema([
        ("sentence_id", pa.string()), ("text", pa.string()), ("tokens", pa.list_(pa.string())),
        ("mentions", pa.list_(MENTION)), ("image_sha256", pa.string()), ("image_path", pa.string()),
        ("article_page_id", pa.int64()), ("article_rev_id", pa.int64()), ("article_title", pa.string()),
    ]),
    "images": pa.schema(
        [
            ("sha256", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("mime", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("bytes", pa.int64()),
            ("licence", pa.string()), ("source_url", pa.string()), ("source_page", pa.string()),
            ("n_sentences", pa.int32()),
        ],
        # only the image column needs telling: datasets infers the others from the Arrow types
        metadata={"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})},
    ),
    "classes": pa.schema([
        ("name", pa.string()), ("file_name", pa.string()), ("level", pa.string()), ("parent", pa.string()),
        ("position", pa.int32()), ("n_entities", pa.int32()), ("n_exported_entities", pa.int32()),
        ("sources", pa.string()),
    ]),
    "queries": pa.schema([
        ("class_name", pa.string()), ("file_name", pa.string()), ("seed_count", pa.int32()),
        ("query_index", pa.int32()), ("seeds", pa.list_(pa.int64())),
    ]),
    "gt": pa.schema([
        ("class_name", pa.string()), ("file_name", pa.string()), ("eid", pa.int64()), ("name", pa.string()),
        ("label", pa.int32()),
    ]),
    "annotations": pa.schema([
        ("item_id", pa.string()), ("sentence_id", pa.string()), ("eid", pa.int64()), ("class_name", pa.string()),
        ("strategy", pa.string()), ("calibration", pa.bool_()), ("image_sha256", pa.string()),
        ("annotator", pa.int32()), ("label", pa.string()), ("replacement_sha256", pa.string()),
        ("replacement_label", pa.string()), ("none_fits", pa.bool_()), ("created_at", pa.string()),
    ]),
}
# config name -> data_files pattern (relative to the export root), in the card's order
CONFIGS = {
    "sentences": f"{DATA_DIR}/sentences.parquet",
    "entities": f"{DATA_DIR}/entities.parquet",
    "images": f"{DATA_DIR}/images/*.parquet",
    "classes": f"{DATA_DIR}/classes.parquet",
    "queries": f"{DATA_DIR}/queries.parquet",
    "gt": f"{DATA_DIR}/gt.parquet",
    "annotations": f"{DATA_DIR}/annotations.parquet",
}


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression=COMPRESSION)


def _write_table(path: Path, name: str, rows: list[dict]) -> None:
    with _writer(path, SCHEMAS[name]) as writer:
        # an empty table is a file with the schema and no row group (`datasets` cannot load it, so the
        # card lists configs only for tables with rows)
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[name]))


def write_parquet(data: ExportData, store: st.Store, directory: Path, *, shard_bytes: int) -> dict[str, int]:
    data_dir = directory / DATA_DIR
    (data_dir / "images").mkdir(parents=True)

    for i, entity in enumerate(data.entities):
        check("entity", entity, f"{DATA_DIR}/entities.parquet:row {i}")
    _write_table(data_dir / "entities.parquet", "entities", data.entities)

    for i, record in enumerate(data.classes):
        check("class", record, f"{DATA_DIR}/classes.parquet:row {i}")
    _write_table(data_dir / "classes.parquet", "classes",
                 [{**c, "sources": json.dumps(c["sources"], sort_keys=True, ensure_ascii=False)} for c in data.classes])

    for i, query in enumerate(data.queries):
        check("query", query, f"{DATA_DIR}/queries.parquet:row {i}")
    _write_table(data_dir / "queries.parquet", "queries", data.queries)

    for i, row in enumerate(data.gt):
        check("gt", row, f"{DATA_DIR}/gt.parquet:row {i}")
    _write_table(data_dir / "gt.parquet", "gt", data.gt)

    for i, row in enumerate(data.annotations):
        check("annotation", row, f"{DATA_DIR}/annotations.parquet:row {i}")
    _write_table(data_dir / "annotations.parquet", "annotations", data.annotations)

    eids = data.eids
    n_sentences = 0
    uses: dict[str, int] = {}
    with _writer(data_dir / "sentences.parquet", SCHEMAS["sentences"]) as writer:
        batch: list[dict] = []
        for i, sentence in enumerate(data.iter_sentences(store)):
            check_sentence(sentence_record(sentence), f"{DATA_DIR}/sentences.parquet:row {i}", eids)
            image = sentence["image"]
            if image is not None:
                uses[image.sha256] = uses.get(image.sha256, 0) + 1
            batch.append({
                "sentence_id": sentence["sentence_hash"],
                "text": sentence["text"],
                "tokens": sentence["tokens"],
                "mentions": [
                    {"entity_id": int(m["page_id"]), "start": m["token_start"], "end": m["token_end"],
                     "anchor_text": m["anchor_text"], "char_start": m["char_start"], "char_end": m["char_end"]}
                    for m in sentence["mentions"]
                ],
                "image_sha256": image.sha256 if image else None,
                "image_path": image.export_path if image else None,
                "article_page_id": int(sentence["article_page_id"]),
                "article_rev_id": sentence["article_rev_id"],
                "article_title": sentence["article_title"],
            })
            n_sentences += 1
            if len(batch) >= SENTENCE_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMAS["sentences"]))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMAS["sentences"]))

    n_shards = _write_images(data, uses, data_dir / "images", shard_bytes)
    return {
        "rows_sentences": n_sentences, "rows_entities": len(data.entities), "rows_images": len(uses),
        "rows_classes": len(data.classes), "rows_queries": len(data.queries), "rows_gt": len(data.gt),
        "rows_annotations": len(data.annotations),
        "image_shards": n_shards,
    }


def _write_images(data: ExportData, uses: dict[str, int], folder: Path, shard_bytes: int) -> int:
    """Images in sha256 order; a new file whenever the current one would pass `shard_bytes`."""
    schema = SCHEMAS["images"]
    shard, size, writer, group, group_size = 0, 0, None, [], 0

    def flush():
        nonlocal group, group_size
        if group:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
        group, group_size = [], 0

    try:
        for sha in sorted(uses):
            image = data.images[sha]
            payload = read_image_bytes(image)
            if writer is None or (size and size + len(payload) > shard_bytes):
                if writer is not None:
                    flush()
                    writer.close()
                    shard += 1
                writer, size = _writer(folder / f"part-{shard:05d}.parquet", schema), 0
            group.append({
                "sha256": sha, "image": {"bytes": payload, "path": Path(image.export_path).name},
                "mime": image.mime, "width": image.width, "height": image.height, "bytes": len(payload),
                "licence": image.licence, "source_url": image.source_url, "source_page": image.source_page,
                "n_sentences": uses[sha],
            })
            size += len(payload)
            group_size += len(payload)
            if group_size >= IMAGE_ROW_GROUP_BYTES:
                flush()
        if writer is None:  # no image yet: the table exists, with no rows
            writer = _writer(folder / "part-00000.parquet", schema)
        flush()
    finally:
        if writer is not None:
            writer.close()
    return shard + 1
