"""The WebDataset form: tar shards of about `shard_bytes` each, one sample per sentence with its image.

A sample is `<sentence_id>.json` (tokens, text, mentions with entity ids and names, the image's
licence and source) plus `<sentence_id>.jpg` (or .png/.webp/.gif: the stored format) when the
sentence has an image. Members are written in sentence-hash order with fixed owner, mode and mtime,
so the same store gives byte-identical shards. `shards.json` lists the shards and their sample counts.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from mesed_build import store as st
from mesed_build.export.data import ExportData, as_utc
from mesed_build.export.mesed import read_image_bytes, sentence_record
from mesed_build.export.validate import check_sentence

SHARD_PATTERN = "shard-{:06d}.tar"
BLOCK = tarfile.BLOCKSIZE


def _member_size(n: int) -> int:
    return BLOCK + (n + BLOCK - 1) // BLOCK * BLOCK


def _add(tar: tarfile.TarFile, name: str, payload: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(payload))


def _mtime(data: ExportData) -> int:
    """The build's start time: deterministic for a store, and not 1970 in `tar tv`."""
    started = as_utc((data.build or {}).get("started_at"))
    return int(started.timestamp()) if started is not None else 0


def write_webdataset(data: ExportData, store: st.Store, directory: Path, *, shard_bytes: int) -> dict[str, int]:
    names = {e["eid"]: e["name"] for e in data.entities}
    eids = set(names)
    mtime = _mtime(data)
    shards: list[dict] = []
    tar = None
    size = 0
    n_samples = n_images = 0

    def close() -> None:
        if tar is not None:
            tar.close()
            shards[-1]["bytes"] = (directory / shards[-1]["name"]).stat().st_size

    try:
        for sentence in data.iter_sentences(store):
            key = sentence["sentence_hash"]
            image = sentence["image"]
            record = {
                "sentence_id": key,
                "tokens": sentence["tokens"],
                "text": sentence["text"],
                "mentions": [
                    {"entity_id": int(m["page_id"]), "name": names[int(m["page_id"])], "start": m["token_start"],
                     "end": m["token_end"]}
                    for m in sentence["mentions"]
                ],
                "entity_ids": sorted({int(m["page_id"]) for m in sentence["mentions"]}),
                "image_sha256": image.sha256 if image else None,
                "image_licence": image.licence if image else None,
                "image_source_url": image.source_url if image else None,
                "image_source_page": image.source_page if image else None,
                "article_page_id": int(sentence["article_page_id"]),
                "article_rev_id": sentence["article_rev_id"],
                "article_title": sentence["article_title"],
            }
            members = [(f"{key}.json", json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))]
            if image is not None:
                members.append((f"{key}.{Path(image.export_path).suffix.lstrip('.')}", read_image_bytes(image)))
            sample_size = sum(_member_size(len(p)) for _, p in members)
            if tar is None or (size and size + sample_size > shard_bytes):
                close()
                shards.append({"name": SHARD_PATTERN.format(len(shards)), "samples": 0, "images": 0})
                tar = tarfile.open(directory / shards[-1]["name"], "w", format=tarfile.USTAR_FORMAT)
                size = 0
            check_sentence(sentence_record(sentence), f"{shards[-1]['name']}:{key}.json", eids)
            for name, payload in members:
                _add(tar, name, payload, mtime)
            size += sample_size
            shards[-1]["samples"] += 1
            shards[-1]["images"] += image is not None
            n_samples += 1
            n_images += image is not None
        close()
        tar = None
    finally:
        if tar is not None:
            tar.close()
    pattern = (f"shard-{{000000..{len(shards) - 1:06d}}}.tar" if len(shards) > 1 else
               (shards[0]["name"] if shards else None))
    with open(directory / "shards.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump({"shards": shards, "pattern": pattern, "samples": n_samples, "shard_bytes": shard_bytes},
                  fh, indent=1, sort_keys=True)
        fh.write("\n")
    return {"webdataset_samples": n_samples, "webdataset_images": n_images, "webdataset_shards": len(shards)}
