"""Stage 4, images: for each (entity, sentence), a KeyBERT query, the provider's top candidates,
downloaded safely into the content store; and each entity's infobox image for eq. 1.

Every step skips what the store already holds (cached queries, searched sentences, fetched URLs,
resolved infobox images), so a rerun after a kill only does the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.config import resolve_data_path
from mesed_build.context import BuildContext
from mesed_build.images.content_store import ContentStore
from mesed_build.images.downloader import Downloader, DownloaderConfig, FetchResult
from mesed_build.images.infobox import infobox_file_names
from mesed_build.images.providers import Candidate, ImageSearchProvider, ProviderError, get_provider
from mesed_build.images.providers.commons import CommonsProvider, MediaWikiClient
from mesed_build.images.query import DEFAULT_SENTENCE_MODEL

STAGE = "images"
log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "provider": "commons",
    "candidates": 10,
    "keybert_model": DEFAULT_SENTENCE_MODEL,
    "keywords": 3,
    "max_sentences_per_entity": None,  # None: every kept sentence of the entity
    # MESED gives every sentence an image, negatives' too: the benchmark drops sentences without one
    "targets_only": False,
    "query_batch": 64,
}


@dataclass(frozen=True)
class Item:
    wiki: str
    page_id: int
    sentence_hash: str
    text: str
    entity: str
    class_name: str | None

    @property
    def key(self) -> str:
        return f"{self.wiki}:{self.page_id}:{self.sentence_hash}"


def options(ctx: BuildContext) -> dict[str, Any]:
    opts = {**DEFAULTS, **ctx.config.section("images")}
    local = dict(opts.get("local") or {})
    if local.get("folder"):
        # a pool folder is relative to the config file, like the dump paths
        local["folder"] = str(resolve_data_path(local["folder"], ctx.config.path))
        if local.get("index"):
            local["index"] = str(resolve_data_path(local["index"], ctx.config.path))
        opts["local"] = local
    return opts


def image_root(ctx: BuildContext, opts: Mapping[str, Any]) -> Path:
    root = Path(opts.get("image_dir") or ctx.config.build_dir / "images")
    return root


def make_downloader(ctx: BuildContext, opts: Mapping[str, Any], provider: ImageSearchProvider) -> Downloader:
    local_roots = [provider.folder] if getattr(provider, "folder", None) else []
    try:
        config = DownloaderConfig.from_options(opts, local_roots=local_roots)
    except (TypeError, ValueError) as exc:
        raise ProviderError(f"images: {exc}") from exc
    return Downloader(config, ContentStore(image_root(ctx, opts)))


def select_items(ctx: BuildContext, opts: Mapping[str, Any]) -> list[Item]:
    """The (entity, sentence) pairs that get images, in a deterministic order."""
    cap = opts.get("max_sentences_per_entity")
    es, s, e = st.entity_sentences, st.sentences, st.entities
    with ctx.store.engine.connect() as c:
        # an entity's class: the first fine class (config order) that lists it
        first_class: dict[int, str] = {}
        for page_id, name in c.execute(
            sa.select(st.class_members.c.page_id, st.class_members.c.class_name)
            .select_from(st.class_members.join(st.classes, st.classes.c.name == st.class_members.c.class_name))
            .where(st.class_members.c.wiki == ctx.wiki)
            .order_by(st.classes.c.position, st.class_members.c.page_id)
        ):
            first_class.setdefault(int(page_id), name)
        stmt = (
            sa.select(es.c.page_id, es.c.sentence_hash, es.c.rank, s.c.text, e.c.title)
            .select_from(es.join(s, s.c.sentence_hash == es.c.sentence_hash)
                         .join(e, sa.and_(e.c.wiki == es.c.wiki, e.c.page_id == es.c.page_id)))
            .where(es.c.wiki == ctx.wiki)
            .order_by(es.c.page_id, es.c.rank, es.c.sentence_hash)
        )
        if cap is not None:
            stmt = stmt.where(es.c.rank < int(cap))
        rows = c.execute(stmt).all()
    items = []
    for page_id, shash, _rank, text, title in rows:
        cls = first_class.get(int(page_id))
        if opts["targets_only"] and cls is None:
            continue
        items.append(Item(ctx.wiki, int(page_id), shash, text, title, cls))
    return items


def _existing_keys(ctx: BuildContext, table: sa.Table) -> set[tuple[int, str]]:
    with ctx.store.engine.connect() as c:
        return {(int(p), h) for p, h in c.execute(
            sa.select(table.c.page_id, table.c.sentence_hash).where(table.c.wiki == ctx.wiki).distinct())}


def build_queries(ctx: BuildContext, items: list[Item], opts: Mapping[str, Any], counts: Counter) -> dict[tuple[int, str], str]:
    done = {}
    with ctx.store.engine.connect() as c:
        for p, h, q in c.execute(sa.select(st.image_queries.c.page_id, st.image_queries.c.sentence_hash,
                                           st.image_queries.c.query).where(st.image_queries.c.wiki == ctx.wiki)):
            done[(int(p), h)] = q
    todo = [it for it in items if (it.page_id, it.sentence_hash) not in done]
    counts["queries_cached"] += len(items) - len(todo)
    if todo:
        from mesed_build.images.query import QueryBuilder

        builder = QueryBuilder(opts["keybert_model"], top_n=int(opts["keywords"]), device=opts.get("device"))
        batch = int(opts["query_batch"])
        for start in tqdm(range(0, len(todo), batch), desc="queries", disable=not ctx.progress):
            chunk = todo[start : start + batch]
            queries = builder.build([(it.text, it.entity, it.class_name) for it in chunk])
            rows = []
            for it, q in zip(chunk, queries, strict=True):
                done[(it.page_id, it.sentence_hash)] = q.text
                rows.append({"wiki": it.wiki, "page_id": it.page_id, "sentence_hash": it.sentence_hash,
                             "query": q.text, "keywords": _json(q.keywords), "class_name": it.class_name,
                             "model": opts["keybert_model"]})
            ctx.store.upsert(st.image_queries, rows)
        counts["queries_built"] += len(todo)
    return done


def search_candidates(ctx: BuildContext, items: list[Item], queries: Mapping[tuple[int, str], str],
                      provider: ImageSearchProvider, opts: Mapping[str, Any], counts: Counter) -> None:
    searched = _existing_keys(ctx, st.image_candidates)
    with ctx.store.engine.connect() as c:
        empty = {r[0] for r in c.execute(sa.select(st.drops.c.item).where(
            st.drops.c.stage == STAGE, st.drops.c.reason == "no_candidates"))}
    todo = [it for it in items if (it.page_id, it.sentence_hash) not in searched and it.key not in empty]
    counts["sentences_already_searched"] += len(items) - len(todo)
    limit = int(opts["candidates"])
    by_query: dict[str, list[Candidate]] = {}
    for it in tqdm(todo, desc="image search", disable=not ctx.progress):
        query = queries[(it.page_id, it.sentence_hash)]
        if query not in by_query:
            by_query[query] = provider.search(query, limit)
        found = by_query[query]
        if not found:
            counts["sentences_without_candidates"] += 1
            ctx.store.record_drop(STAGE, "no_candidates", it.key, query)
            continue
        ctx.store.upsert(st.image_candidates, [
            {"wiki": it.wiki, "page_id": it.page_id, "sentence_hash": it.sentence_hash, "rank": rank,
             "provider": provider.name, "url": cand.url, "source_page": cand.source_page, "title": cand.title,
             "licence": cand.licence, "width": cand.width, "height": cand.height, "image_sha256": None,
             "status": "pending"}
            for rank, cand in enumerate(found)
        ])
        counts["candidates"] += len(found)


def fetch_urls(ctx: BuildContext, downloader: Downloader, urls: Iterable[str],
               meta: Mapping[str, tuple[str | None, str | None]], counts: Counter) -> dict[str, tuple[str | None, str]]:
    """url -> (sha256 or None, status); fetches only URLs the store has not seen."""
    urls = list(dict.fromkeys(urls))
    known: dict[str, tuple[str | None, str]] = {}
    with ctx.store.engine.connect() as c:
        for chunk in _chunked(urls, 500):
            for url, sha, status in c.execute(sa.select(st.image_fetches.c.url, st.image_fetches.c.image_sha256,
                                                        st.image_fetches.c.status).where(st.image_fetches.c.url.in_(chunk))):
                known[url] = (sha, status)
    todo = [u for u in urls if u not in known]
    counts["urls_already_fetched"] += len(urls) - len(todo)
    for chunk in _chunked(todo, 64):  # write as we go: a kill loses at most one chunk
        results = downloader.fetch_many(chunk, progress=ctx.progress)
        _record_fetches(ctx, results, meta)
        for r in results:
            known[r.url] = (r.sha256, r.status)
            counts["images_downloaded" if r.ok else f"rejected_{r.status}"] += 1
    return known


def _record_fetches(ctx: BuildContext, results: list[FetchResult], meta) -> None:
    now = st.utcnow()
    fetch_rows, image_rows, drops = [], [], []
    for r in results:
        fetch_rows.append({"url": r.url, "image_sha256": r.sha256, "status": r.status, "detail": r.detail[:2000],
                           "fetched_at": now})
        if r.ok:
            source_page, licence = meta.get(r.url, (None, None))
            image_rows.append({"sha256": r.sha256, "path": downloader_relpath(r.sha256), "source_url": r.url,
                               "source_page": source_page, "licence": licence, "width": r.width,
                               "height": r.height, "bytes": r.bytes, "mime": r.mime, "fetched_at": now})
        else:
            drops.append((STAGE, r.status, r.url, r.detail[:500]))
    with ctx.store.begin() as conn:
        ctx.store.upsert(st.image_fetches, fetch_rows, conn=conn)
        ctx.store.upsert(st.images, image_rows, update=[], conn=conn)  # the first source of an image stays
        ctx.store.record_drops(drops, conn=conn)


def downloader_relpath(sha: str) -> str:
    return ContentStore(".").relpath(sha)


def download_candidates(ctx: BuildContext, downloader: Downloader, counts: Counter) -> None:
    cand = st.image_candidates
    with ctx.store.engine.connect() as c:
        rows = c.execute(sa.select(cand.c.url, cand.c.source_page, cand.c.licence).where(
            cand.c.wiki == ctx.wiki, cand.c.status == "pending")).all()
    meta = {url: (page, licence) for url, page, licence in rows}
    outcome = fetch_urls(ctx, downloader, meta, meta, counts)
    with ctx.store.begin() as conn:
        for url, (sha, status) in outcome.items():
            conn.execute(cand.update().where(cand.c.url == url, cand.c.status == "pending")
                         .values(image_sha256=sha, status=status))


def infobox_images(ctx: BuildContext, items: list[Item], provider: ImageSearchProvider, downloader: Downloader,
                   opts: Mapping[str, Any], counts: Counter) -> None:
    """Img(e) for every entity of `items`: its infobox image (mesed_build.images.infobox), resolved in
    the local pool or through imageinfo, then downloaded like any candidate."""
    with ctx.store.engine.connect() as c:
        done = {int(r[0]) for r in c.execute(sa.select(st.infobox_images.c.page_id).where(
            st.infobox_images.c.wiki == ctx.wiki))}
    entities = {it.page_id: it.entity for it in items if it.page_id not in done}
    if not entities:
        return
    titles = {title: pid for pid, title in entities.items()}
    client = None
    if ctx.config.wiki["source"] == "api":
        api = ctx.config.wiki["api"]
        client = MediaWikiClient(api["endpoint"], api["user_agent"])
    names = {titles[t]: name for t, name in infobox_file_names(ctx.source, titles, client).items()}

    urls: dict[int, str] = {}
    meta: dict[str, tuple[str | None, str | None]] = {}
    rows: dict[int, dict] = {}
    files = _resolve_files(provider, opts, client, (name for name in names.values() if name))
    for pid, name in names.items():
        row = {"wiki": ctx.wiki, "page_id": pid, "file_title": name, "url": None, "image_sha256": None}
        rows[pid] = row
        if name is None:
            row["status"] = "no_infobox_image"
            continue
        cand = files.get(name)
        if cand is None:
            row["status"] = "not_in_pool" if provider.name == "local" else "file_not_found"
            continue
        row["url"], urls[pid] = cand.url, cand.url
        meta[cand.url] = (cand.source_page, cand.licence)
    outcome = fetch_urls(ctx, downloader, urls.values(), meta, counts)
    drops = []
    for pid, row in rows.items():
        if pid in urls:
            sha, status = outcome[urls[pid]]
            row["image_sha256"], row["status"] = sha, status
        if row["status"] != "ok":
            drops.append(("images", f"infobox_{row['status']}", f"{ctx.wiki}:{pid}", row["file_title"]))
        counts[f"infobox_{row['status']}"] += 1
    with ctx.store.begin() as conn:
        ctx.store.upsert(st.infobox_images, list(rows.values()), conn=conn)
        ctx.store.record_drops(drops, conn=conn)


def _resolve_files(provider: ImageSearchProvider, opts: Mapping[str, Any], wiki: MediaWikiClient | None,
                   names: Iterable[str]) -> dict[str, Candidate]:
    """File name -> Candidate: from the local pool, else through imageinfo on the wiki itself (API
    builds: it serves the files it shares from Commons and its own non-free ones), else on Commons."""
    names = sorted(set(names))
    if provider.name == "local":
        entries = {name: provider.by_file_name(name) for name in names}
        return {name: provider.candidate(entry) for name, entry in entries.items() if entry is not None}
    if wiki is not None:
        files = CommonsProvider(wiki)
    else:
        files = provider if isinstance(provider, CommonsProvider) else CommonsProvider.from_options(opts)
    found = files.imageinfo(f"File:{name}" for name in names)  # 50 titles a request
    return {name: found[f"File:{name}"] for name in names if f"File:{name}" in found}


def preflight(ctx: BuildContext) -> None:
    """Fail before any stage of the build runs: unknown provider, missing credentials, an unreadable
    local pool, a User-Agent without contact."""
    opts = options(ctx)
    provider = get_provider(opts["provider"], opts)
    make_downloader(ctx, opts, provider)
    provider.close()


def run(ctx: BuildContext) -> dict[str, int]:
    opts = options(ctx)
    # everything that can fail on configuration fails here, before any work
    provider = get_provider(opts["provider"], opts)
    downloader = make_downloader(ctx, opts, provider)
    counts: Counter = Counter()
    items = select_items(ctx, opts)
    counts["sentences"] = len(items)
    counts["entities"] = len({it.page_id for it in items})
    if not items:
        return dict(counts)
    queries = build_queries(ctx, items, opts, counts)
    search_candidates(ctx, items, queries, provider, opts, counts)
    download_candidates(ctx, downloader, counts)
    infobox_images(ctx, items, provider, downloader, opts, counts)
    provider.close()
    return dict(sorted(counts.items()))


def image_stats(store: st.Store) -> dict[str, Any]:
    """What `stats` shows for images and rerank."""
    cand = st.image_candidates
    with store.engine.connect() as c:
        by_status = {s: int(n) for s, n in c.execute(sa.select(cand.c.status, sa.func.count()).group_by(cand.c.status))}
        sentences_with = c.execute(sa.select(sa.func.count()).select_from(
            sa.select(cand.c.wiki, cand.c.page_id, cand.c.sentence_hash).distinct().subquery())).scalar_one()
        infobox = {s: int(n) for s, n in c.execute(
            sa.select(st.infobox_images.c.status, sa.func.count()).group_by(st.infobox_images.c.status))}
        scores = st.image_scores
        scored = int(c.execute(sa.select(sa.func.count()).select_from(scores)).scalar_one())
        chosen = int(c.execute(sa.select(sa.func.count()).select_from(scores).where(scores.c.chosen)).scalar_one())
        mean = c.execute(sa.select(sa.func.avg(scores.c.score), sa.func.avg(scores.c.clip_term),
                                   sa.func.avg(scores.c.object_term)).where(scores.c.chosen)).one()
    return {
        "candidates": sum(by_status.values()),
        "candidates_by_status": by_status,
        "sentences_with_candidates": int(sentences_with),
        "images_stored": store.count(st.images),
        "infobox_images": infobox,
        "scores": scored,
        "chosen_images": chosen,
        "chosen_mean": {"score": _round(mean[0]), "clip_term": _round(mean[1]), "object_term": _round(mean[2])},
    }


def format_image_stats(stats: Mapping[str, Any]) -> list[str]:
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(stats["candidates_by_status"].items())) or "none"
    infobox = ", ".join(f"{k} {v}" for k, v in sorted(stats["infobox_images"].items())) or "none"
    mean = stats["chosen_mean"]
    return [
        f"images: {stats['candidates']} candidates ({by_status}) for {stats['sentences_with_candidates']} "
        f"sentences; {stats['images_stored']} images stored",
        f"infobox images: {infobox}",
        f"rerank: {stats['scores']} scores, {stats['chosen_images']} chosen images "
        f"(mean score {mean['score']}, clip term {mean['clip_term']}, object term {mean['object_term']})",
    ]


def _round(x):
    return None if x is None else round(float(x), 4)


def _json(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _chunked(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
