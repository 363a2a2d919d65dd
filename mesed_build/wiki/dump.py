"""Wikipedia pages-articles XML dumps (.xml.bz2): a streaming reader and a WikiSource over a store index.

One pass over each dump records every page (id, title, revision, redirect target, disambiguation flag)
and its outgoing article and category links in the store, so "who links to X" needs no API. Wikitext is
not kept in the store: `wikitext()` streams the dump again and picks the pages asked for, which keeps
memory constant for a full 20 GB dump.
"""

from __future__ import annotations

import bz2
import hashlib
import html
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.wiki.source import PageRef, PageText, WikiError, WikiSource, link_target, normalize_title

_LINK = re.compile(r"\[\[([^\[\]|\n]+)")
_CATEGORY = re.compile(r"\[\[\s*Category\s*:\s*([^\]|\n]+)", re.IGNORECASE)
# the disambiguation templates and their common redirects / variants
_DISAMBIG = re.compile(
    r"\{\{\s*(disambiguation|disambig|dab|disamb|hndis|geodis|set index article|surname|given name"
    r"|(?:[a-z ]+ )?disambiguation)\s*(\||\}\})",
    re.IGNORECASE,
)
CATEGORY_PREFIX = "Category:"
BATCH = 500


class DumpError(WikiError):
    """A dump file is unreadable or cut off; the message names the file, byte and last good page."""


@dataclass(frozen=True)
class DumpPage:
    page_id: int
    title: str
    namespace: int
    rev_id: int | None
    text: str
    redirect_target: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_dump_pages(path: str | Path) -> Iterator[DumpPage]:
    """Stream the pages of a pages-articles dump (.xml.bz2 or plain .xml) in constant memory."""
    path = Path(path)
    raw = open(path, "rb")
    stream = bz2.BZ2File(raw) if path.suffix == ".bz2" else raw
    last: DumpPage | None = None
    try:
        context = ET.iterparse(stream, events=("start", "end"))
        _, root = next(context)
        page: dict = {}
        in_revision = False
        for event, elem in context:
            tag = _local(elem.tag)
            if event == "start":
                if tag == "page":
                    page = {}
                elif tag == "revision":
                    in_revision = True
                continue
            if tag == "title":
                page["title"] = elem.text or ""
            elif tag == "ns":
                page["ns"] = int(elem.text or 0)
            elif tag == "id" and not in_revision and "id" not in page:
                page["id"] = int(elem.text)
            elif tag == "id" and in_revision and "rev_id" not in page:
                page["rev_id"] = int(elem.text)
            elif tag == "redirect":
                page["redirect"] = elem.get("title")
            elif tag == "text":
                page["text"] = elem.text or ""
            elif tag == "revision":
                in_revision = False
            elif tag == "page":
                last = DumpPage(
                    page_id=page["id"],
                    title=page.get("title", ""),
                    namespace=page.get("ns", 0),
                    rev_id=page.get("rev_id"),
                    text=page.get("text", ""),
                    redirect_target=normalize_title(page["redirect"]) if page.get("redirect") else None,
                )
                root.clear()  # constant memory: drop the finished page's elements
                yield last
    except (EOFError, ET.ParseError, OSError) as exc:
        where = f"after page {last.title!r} (id {last.page_id})" if last else "before the first page"
        raise DumpError(
            f"{path}: dump is cut off or corrupt at compressed byte {raw.tell()}, {where}: {exc}. "
            "Pages before that point were read; re-download the file to read the rest."
        ) from exc
    finally:
        stream.close()
        if stream is not raw:
            raw.close()


def dump_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}"


def outgoing_links(text: str) -> tuple[set[str], set[str]]:
    """(article link targets, category names) of a page's wikitext, by a cheap scan."""
    articles: set[str] = set()
    for match in _LINK.finditer(text):
        target = link_target(match.group(1))
        if target:
            articles.add(target)
    categories = {normalize_title(c) for c in _CATEGORY.findall(text)}
    return articles, categories


def synthetic_page_id(title: str) -> int:
    """A stable negative id for an entity that a partial dump (an excerpt) does not contain."""
    return -int(hashlib.sha256(normalize_title(title).encode("utf-8")).hexdigest()[:13], 16)


class DumpSource(WikiSource):
    """WikiSource over one or more pages-articles dumps, indexed into the build store."""

    def __init__(self, paths: Iterable[str | Path], store: st.Store, *, wiki: str = "enwiki", partial: bool = False,
                 progress: bool = False):
        self.paths = [Path(p) for p in paths]
        self.store = store
        self.wiki = wiki
        # An excerpt lacks most pages its links point to; those are not red links there.
        self.partial = partial
        self.progress = progress
        self._indexed = False

    # -- index ---------------------------------------------------------------------

    def ensure_index(self) -> dict[str, int]:
        """Index every dump not yet indexed completely; returns pages/links counts of the new passes."""
        counts = {"pages_indexed": 0, "links_indexed": 0}
        if self._indexed:
            return counts
        for path in self.paths:
            key = dump_key(path)
            with self.store.engine.connect() as c:
                done = c.execute(
                    sa.select(st.source_indexes.c.pages).where(
                        st.source_indexes.c.wiki == self.wiki, st.source_indexes.c.source_key == key
                    )
                ).first()
            if done is None:
                n_pages, n_links = self._index_dump(path)
                counts["pages_indexed"] += n_pages
                counts["links_indexed"] += n_links
                self.store.upsert(
                    st.source_indexes,
                    [{"wiki": self.wiki, "source_key": key, "pages": n_pages, "links": n_links,
                      "completed_at": st.utcnow()}],
                )
        self._indexed = True
        return counts

    def _index_dump(self, path: Path) -> tuple[int, int]:
        page_rows: list[dict] = []
        link_rows: list[dict] = []
        n_pages = n_links = 0

        def flush() -> None:
            with self.store.begin() as conn:
                self.store.upsert(st.pages, page_rows, conn=conn)
                self.store.upsert(st.links, link_rows, update=[], conn=conn)
            page_rows.clear()
            link_rows.clear()

        bar = tqdm(desc=f"indexing {path.name}", unit=" pages", disable=not self.progress)
        try:
            for page in iter_dump_pages(path):
                text = html.unescape(page.text) if "&" in page.text else page.text
                page_rows.append({
                    "wiki": self.wiki, "page_id": page.page_id, "title": normalize_title(page.title),
                    "namespace": page.namespace, "rev_id": page.rev_id, "redirect_target": page.redirect_target,
                    "is_disambiguation": bool(page.namespace == 0 and page.redirect_target is None
                                              and (_DISAMBIG.search(text) or page.title.endswith("(disambiguation)"))),
                })
                if page.namespace == 0 and page.redirect_target is None:
                    articles, categories = outgoing_links(text)
                    targets = articles | {CATEGORY_PREFIX + c for c in categories}
                    link_rows.extend(
                        {"wiki": self.wiki, "source_page_id": page.page_id, "target_title": t[:512]} for t in targets
                    )
                    n_links += len(targets)
                n_pages += 1
                bar.update()
                if len(page_rows) >= BATCH:
                    flush()
        finally:
            # keep every page read before a cut-off or a kill
            flush()
            bar.close()
        return n_pages, n_links

    # -- WikiSource ------------------------------------------------------------------

    def _rows_by_title(self, titles: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self.store.engine.connect() as c:
            for i in range(0, len(titles), 500):
                chunk = titles[i : i + 500]
                for row in c.execute(
                    sa.select(st.pages).where(st.pages.c.wiki == self.wiki, st.pages.c.title.in_(chunk))
                ).mappings():
                    # a title can appear in two dumps: keep the newest revision
                    if row["title"] not in out or (row["rev_id"] or 0) > (out[row["title"]]["rev_id"] or 0):
                        out[row["title"]] = dict(row)
        return out

    def resolve(self, titles: Iterable[str]) -> dict[str, PageRef | None]:
        self.ensure_index()
        titles = list(titles)
        normalized = {t: normalize_title(t) for t in titles}
        rows = self._rows_by_title(sorted(set(normalized.values())))
        # follow redirects (at most 3 hops, as MediaWiki does not chain them further in practice)
        for _ in range(3):
            targets = sorted({r["redirect_target"] for r in rows.values() if r["redirect_target"]} - set(rows))
            if not targets:
                break
            rows.update(self._rows_by_title(targets))
        out: dict[str, PageRef | None] = {}
        for original, title in normalized.items():
            row = rows.get(title)
            hops = 0
            while row is not None and row["redirect_target"] and hops < 3:
                target = row["redirect_target"]
                row = rows.get(target)
                title = target
                hops += 1
            if row is None:
                out[original] = (
                    PageRef(page_id=synthetic_page_id(title), title=title, synthetic=True) if self.partial else None
                )
            elif row["redirect_target"]:
                out[original] = None  # a redirect loop or chain too long
            else:
                out[original] = PageRef(
                    page_id=row["page_id"], title=row["title"], rev_id=row["rev_id"], namespace=row["namespace"],
                    is_disambiguation=bool(row["is_disambiguation"]),
                )
        return out

    def wikitext(self, titles: Iterable[str]) -> Iterator[PageText]:
        self.ensure_index()
        wanted_ids = {ref.page_id for ref in self.resolve(titles).values() if ref is not None and not ref.synthetic}
        yield from self.pages_by_id(wanted_ids)

    def pages_by_id(self, page_ids: set[int]) -> Iterator[PageText]:
        """Stream the dumps once and yield the wanted pages (each at most once)."""
        remaining = set(page_ids)
        for path in self.paths:
            if not remaining:
                return
            for page in iter_dump_pages(path):
                if page.page_id in remaining:
                    remaining.discard(page.page_id)
                    text = html.unescape(page.text) if "&" in page.text else page.text
                    yield PageText(page.page_id, normalize_title(page.title), page.rev_id, text, page.namespace)
                    if not remaining:
                        return

    def redirects_to(self, titles: Iterable[str]) -> dict[str, list[str]]:
        self.ensure_index()
        wanted = sorted({normalize_title(t) for t in titles})
        out: dict[str, list[str]] = {t: [] for t in wanted}
        with self.store.engine.connect() as c:
            for i in range(0, len(wanted), 500):
                rows = c.execute(
                    sa.select(st.pages.c.title, st.pages.c.redirect_target)
                    .where(st.pages.c.wiki == self.wiki, st.pages.c.namespace == 0,
                           st.pages.c.redirect_target.in_(wanted[i : i + 500]))
                    .order_by(st.pages.c.title)
                )
                for title, target in rows:
                    out[target].append(title)
        return out

    def _linking_pages(self, targets: list[str], limit: int | None) -> list[PageRef]:
        with self.store.engine.connect() as c:
            stmt = (
                sa.select(st.pages.c.page_id, st.pages.c.title, st.pages.c.rev_id)
                .join(st.links, sa.and_(st.links.c.wiki == st.pages.c.wiki,
                                         st.links.c.source_page_id == st.pages.c.page_id))
                .where(st.links.c.wiki == self.wiki, st.links.c.target_title.in_(targets),
                       st.pages.c.namespace == 0, st.pages.c.redirect_target.is_(None))
                .distinct()
                .order_by(st.pages.c.page_id)
            )
            if limit is not None:
                stmt = stmt.limit(limit)
            return [PageRef(page_id=r.page_id, title=r.title, rev_id=r.rev_id) for r in c.execute(stmt)]

    def backlinks(self, title: str, limit: int | None = None) -> list[PageRef]:
        self.ensure_index()
        title = normalize_title(title)
        return self._linking_pages([title, *self.redirects_to([title])[title]], limit)

    def category_members(self, category: str) -> list[PageRef]:
        self.ensure_index()
        name = normalize_title(category.split(":", 1)[1] if ":" in category else category)
        return self._linking_pages([CATEGORY_PREFIX + name], None)

    def random_pages(self, n: int, seed: int) -> list[PageRef]:
        """A uniform sample of articles (no redirects, no disambiguation pages), seeded by the build seed."""
        self.ensure_index()
        with self.store.engine.connect() as c:
            rows = c.execute(
                sa.select(st.pages.c.page_id, st.pages.c.title, st.pages.c.rev_id)
                .where(st.pages.c.wiki == self.wiki, st.pages.c.namespace == 0,
                       st.pages.c.redirect_target.is_(None), st.pages.c.is_disambiguation.is_(False))
                .order_by(st.pages.c.page_id)
            ).all()
        chosen = random.Random(seed).sample(rows, min(n, len(rows)))
        return [PageRef(page_id=r.page_id, title=r.title, rev_id=r.rev_id) for r in chosen]

    def search(self, query: str, limit: int = 10, namespace: int = 0) -> list[PageRef]:
        """Titles containing every word of the query (a dump has no search engine; BM25 lives in vocab)."""
        self.ensure_index()
        words = [w.lower() for w in re.findall(r"\w+", query)]
        if not words:
            return []
        with self.store.engine.connect() as c:
            stmt = sa.select(st.pages.c.page_id, st.pages.c.title, st.pages.c.rev_id).where(
                st.pages.c.wiki == self.wiki, st.pages.c.namespace == namespace, st.pages.c.redirect_target.is_(None)
            )
            for w in words:
                stmt = stmt.where(sa.func.lower(st.pages.c.title).contains(w))
            rows = c.execute(stmt.order_by(st.pages.c.page_id).limit(limit)).all()
        return [PageRef(page_id=r.page_id, title=r.title, rev_id=r.rev_id) for r in rows]
