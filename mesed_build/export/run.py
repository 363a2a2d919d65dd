"""`mesed-build export`: one or all formats, written atomically and deterministically.

A single format is written at the root of `out`; `all` writes `out/mesed`, `out/parquet` and
`out/webdataset` (each self-contained, with its own card) plus a top-level card.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from mesed_build import store as st
from mesed_build.export.card import render_card, write_attribution
from mesed_build.export.data import build_wiki, default_image_root, load_export_data
from mesed_build.export.mesed import ExportError, atomic_directory, write_mesed

FORMATS = ("mesed", "parquet", "webdataset")
DEFAULT_SHARD_BYTES = 10**9
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str | int) -> int:
    """'1GB', '500MB', '64MiB', '1000000' -> bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ExportError(f"size {text!r}: expected a number with an optional unit (e.g. 1GB, 500MB, 64MiB)")
    unit = (match.group(2) or "").lower().removesuffix("b")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ExportError(f"size {text!r}: must be positive")
    return size


def write_checksums(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    with open(directory / "SHA256SUMS", "w", encoding="utf-8", newline="\n") as fh:
        for path in files:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
            fh.write(f"{digest.hexdigest()}  {path.relative_to(directory).as_posix()}\n")


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _write_format(fmt: str, data, store: st.Store, directory: Path, shard_bytes: int) -> dict[str, int]:
    if fmt == "mesed":
        counts = write_mesed(data, store, directory)
    elif fmt == "parquet":
        from mesed_build.export.parquet import write_parquet

        counts = write_parquet(data, store, directory, shard_bytes=shard_bytes)
    elif fmt == "webdataset":
        from mesed_build.export.webdataset import write_webdataset

        counts = write_webdataset(data, store, directory, shard_bytes=shard_bytes)
    else:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}, all")
    write_attribution(data, directory)
    (directory / "README.md").write_text(render_card(data, store, [fmt], counts), encoding="utf-8", newline="\n")
    write_checksums(directory)
    return counts


def export(store: st.Store, out: str | Path, *, formats=("mesed",), wiki: str | None = None, force: bool = False,
           image_root: str | Path | None = None, build_dir: str | Path | None = None, image_model: str | None = None,
           shard_bytes: int | str = DEFAULT_SHARD_BYTES, progress: bool = False) -> dict:
    """Export the store to `out`. Returns counts, the bytes of each format and the seconds taken."""
    formats = list(FORMATS) if formats in ("all", ["all"], ("all",)) else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown}; known: {', '.join(FORMATS)}, all")
    shard_bytes = parse_size(shard_bytes)
    started = time.perf_counter()
    out = Path(out)
    # refuse a non-empty --out before reading the store
    if out.exists() and out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: output directory exists and is not empty (use --force to replace it)")
    data = load_export_data(store, wiki=wiki or build_wiki(store), image_root=image_root or default_image_root(store, build_dir),
                            image_model=image_model)
    data.progress = progress
    result: dict = {"formats": {}}
    with atomic_directory(out, force=force) as tmp:
        if len(formats) == 1:
            counts = _write_format(formats[0], data, store, tmp, shard_bytes)
            result["formats"][formats[0]] = {"counts": counts, "bytes": directory_bytes(tmp)}
        else:
            all_counts: dict[str, int] = {}
            for fmt in formats:
                (tmp / fmt).mkdir()
                counts = _write_format(fmt, data, store, tmp / fmt, shard_bytes)
                all_counts.update(counts)
                result["formats"][fmt] = {"counts": counts, "bytes": directory_bytes(tmp / fmt)}
            (tmp / "README.md").write_text(render_card(data, store, formats, all_counts), encoding="utf-8",
                                           newline="\n")
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["entities"] = len(data.entities)
    result["sentences"] = data.n_sentences
    return result
