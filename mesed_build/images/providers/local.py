"""A folder of images with a JSONL of captions and tags, searched with BM25.

Each line of the index (default `captions.jsonl` in the folder) is
`{"file": "dog.jpg", "caption": "...", "tags": ["dog", ...], "licence": "...", "source": "..."}`;
`file` is relative to the folder. Candidates are `file://` URLs, which the downloader reads only
from the pool folder and passes through the same sniffing and resizing as web images.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank_bm25 import BM25Okapi

from mesed_build.images.providers.base import Candidate, ImageSearchProvider, ProviderError

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and the of in on at to for with by from is are was were be as or its it this that".split())


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


@dataclass(frozen=True)
class PoolEntry:
    path: Path
    caption: str
    tags: tuple[str, ...]
    licence: str | None
    source: str | None


def read_index(folder: Path, index: Path) -> list[PoolEntry]:
    entries = []
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProviderError(f"{index}: cannot read the local image index ({exc.strerror})") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            path = (folder / row["file"]).resolve()
            caption = str(row.get("caption") or "")
            tags = tuple(str(t) for t in row.get("tags") or ())
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"{index}:{lineno}: expected a JSON object with 'file', 'caption', 'tags' ({exc})") from exc
        if not path.is_relative_to(folder.resolve()):
            raise ProviderError(f"{index}:{lineno}: file {row['file']!r} is outside the pool folder")
        if not path.exists():
            raise ProviderError(f"{index}:{lineno}: {path} does not exist")
        entries.append(PoolEntry(path, caption, tags, row.get("licence"), row.get("source")))
    if not entries:
        raise ProviderError(f"{index}: no images listed")
    return entries


class LocalProvider(ImageSearchProvider):
    name = "local"

    def __init__(self, folder: str | Path, index: str | Path | None = None):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ProviderError(f"images.local.folder: {self.folder} is not a folder")
        self.index_path = Path(index) if index else self.folder / "captions.jsonl"
        self.entries = read_index(self.folder, self.index_path)
        self._bm25 = BM25Okapi([tokenize(e.caption + " " + " ".join(e.tags)) or ["<empty>"] for e in self.entries])

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LocalProvider:
        local = options.get("local") or {}
        folder = local.get("folder") or options.get("folder")
        if not folder:
            raise ProviderError("images.local.folder is required for the local provider")
        return cls(folder, local.get("index"))

    def by_file_name(self, name: str) -> PoolEntry | None:
        """The pool entry whose file name equals `name` (spaces and underscores alike, case of the
        first letter ignored, as MediaWiki file titles are)."""
        want = name.replace(" ", "_")
        want = want[:1].lower() + want[1:]
        for entry in self.entries:
            have = entry.path.name.replace(" ", "_")
            if have[:1].lower() + have[1:] == want:
                return entry
        return None

    def candidate(self, entry: PoolEntry) -> Candidate:
        return Candidate(url=entry.path.as_uri(), source_page=entry.source, title=entry.caption,
                         licence=entry.licence)

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        terms = tokenize(query)
        if not terms:
            return []
        scores = self._bm25.get_scores(terms)
        # ties keep index order, so results are deterministic
        ranked = sorted(range(len(self.entries)), key=lambda i: (-scores[i], i))
        return [self.candidate(self.entries[i]) for i in ranked[:limit] if scores[i] > 0]
