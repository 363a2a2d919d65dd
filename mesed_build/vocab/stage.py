"""Stage 3, vocabulary: add random, BM25 and polysemous negatives to the candidate vocabulary.

Targets come from the classes stage (`vocabulary.kind = 'target'`). This stage adds rows of kind
'random', 'bm25' and 'polysemous' (and `entities` rows for new pages); the sentences stage, run
again afterwards, gives the negatives their contexts. Reruns replace this stage's rows, so a
changed config never leaves stale negatives behind. Synonyms are the `synonyms` stage
(mesed_build.vocab.synonyms), which runs after the sentences.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.vocab.bm25 import TitleIndex
from mesed_build.vocab.polysemy import (
    bare_name,
    disambiguation_senses,
    disambiguation_titles,
    is_disambiguation_wikitext,
    qualified_senses,
)
from mesed_build.vocab.random import is_list_title, random_negatives
from mesed_build.wiki.source import PageRef

STAGE = "vocabulary"
KINDS = ("random", "bm25", "polysemous")
log = logging.getLogger(__name__)

DEFAULTS = {
    "random": {"count": 100},
    # index: 'pages' (articles the source has), 'pages_and_links' (also every title they link to:
    # an excerpt's links reach far beyond its pages), or 'auto' (the latter for partial dumps and the API)
    # wiki_search: live builds also ask CirrusSearch, since an API build has no title index of the whole wiki
    "bm25": {"top_k": 5, "index": "auto", "wiki_search": True, "k1": 1.5, "b": 0.75, "epsilon": 0.25},
    "polysemy": {"enabled": True, "max_senses_per_page": 50, "listed_on": True, "qualified_titles": True},
}


def options(config) -> dict:
    section = config.section("vocabulary")
    return {key: {**value, **(section.get(key) or {})} for key, value in DEFAULTS.items()}


def _targets(ctx) -> list[tuple[int, str]]:
    with ctx.store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.entities.c.page_id, st.entities.c.title)
            .where(st.entities.c.wiki == ctx.wiki)
            .where(sa.exists().where(st.vocabulary.c.wiki == st.entities.c.wiki,
                                     st.vocabulary.c.page_id == st.entities.c.page_id,
                                     st.vocabulary.c.kind == "target"))
            .order_by(st.entities.c.page_id)
        ).all()
    return [(int(r.page_id), r.title) for r in rows]


def _is_partial(ctx) -> bool:
    return ctx.config.wiki["source"] == "dump" and bool(ctx.config.wiki.get("dump", {}).get("partial"))


def title_corpus(ctx, mode: str = "auto") -> list[str]:
    """The titles BM25 searches: the source's articles, plus (pages_and_links) every title they link to."""
    if mode == "auto":
        mode = "pages_and_links" if (_is_partial(ctx) or ctx.config.wiki["source"] == "api") else "pages"
    if mode not in ("pages", "pages_and_links"):
        raise ValueError(f"vocabulary.bm25.index: {mode!r} is not one of auto, pages, pages_and_links")
    titles: dict[str, None] = {}
    not_entities: set[str] = set()
    with ctx.store.engine.connect() as c:
        for row in c.execute(
            sa.select(st.pages.c.title, st.pages.c.namespace, st.pages.c.redirect_target, st.pages.c.is_disambiguation)
            .where(st.pages.c.wiki == ctx.wiki).order_by(st.pages.c.page_id)
        ):
            if row.namespace == 0 and row.redirect_target is None and not row.is_disambiguation:
                titles[row.title] = None
            else:
                not_entities.add(row.title)
        # the targets (and not the negatives of an earlier run: the corpus must not depend on it)
        for (title,) in c.execute(
            sa.select(st.entities.c.title).where(st.entities.c.wiki == ctx.wiki)
            .where(sa.exists().where(st.vocabulary.c.wiki == st.entities.c.wiki,
                                     st.vocabulary.c.page_id == st.entities.c.page_id,
                                     st.vocabulary.c.kind == "target"))
            .order_by(st.entities.c.page_id)
        ):
            titles[title] = None
        if mode == "pages_and_links":
            for (title,) in c.execute(
                sa.select(st.links.c.target_title).where(st.links.c.wiki == ctx.wiki,
                                                         ~st.links.c.target_title.like("Category:%"))
                .distinct().order_by(st.links.c.target_title)
            ):
                if title not in not_entities:
                    titles[title] = None
    return [t for t in titles if not is_list_title(t) and not t.endswith("(disambiguation)")]


def _entity_row(ctx, ref: PageRef) -> dict:
    return {"wiki": ctx.wiki, "page_id": ref.page_id, "title": ref.title, "rev_id": ref.rev_id,
            "qid": ref.wikibase_item}


class _Negatives:
    """Negatives found so far: one vocabulary row per (page, kind), the first finder is its source."""

    def __init__(self, ctx, targets: set[int]):
        self.ctx = ctx
        self.targets = targets
        self.rows: dict[tuple[int, str], dict] = {}
        self.entities: dict[int, dict] = {}
        self.drops: list[tuple] = []

    def add(self, ref: PageRef | None, kind: str, source: str, counts: Counter, item: str) -> bool:
        if ref is None:
            counts[f"{kind}_not_in_wiki"] += 1
            self.drops.append((STAGE, f"{kind}_not_in_wiki", item, f"found from {source}"))
            return False
        if ref.page_id in self.targets:
            counts[f"{kind}_is_target"] += 1
            return False
        if ref.is_disambiguation or ref.namespace != 0 or is_list_title(ref.title):
            counts[f"{kind}_not_an_entity"] += 1
            self.drops.append((STAGE, f"{kind}_not_an_entity", item, f"found from {source}"))
            return False
        key = (ref.page_id, kind)
        if key in self.rows:
            counts[f"{kind}_found_again"] += 1
            return False
        self.rows[key] = {"wiki": self.ctx.wiki, "page_id": ref.page_id, "kind": kind, "source": source[:512]}
        self.entities.setdefault(ref.page_id, _entity_row(self.ctx, ref))
        return True


def _existing(ctx, kind: str) -> int:
    return ctx.store.count(st.vocabulary, st.vocabulary.c.wiki == ctx.wiki, st.vocabulary.c.kind == kind)


def add_random(ctx, opts: dict, found: _Negatives, counts: Counter) -> bool:
    """Random negatives; False when a live build already drew them (list=random cannot be seeded)."""
    n = int(opts["count"])
    if ctx.config.wiki["source"] == "api" and n > 0 and _existing(ctx, "random") >= n:
        counts["random_kept_from_earlier_run"] = _existing(ctx, "random")
        return False
    source_name = f"dump sample (seed {ctx.config.seed})" if ctx.config.wiki["source"] == "dump" else "list=random"
    for ref in random_negatives(ctx.source, n, ctx.config.seed, found.targets, counts):
        found.add(ref, "random", source_name, counts, ref.title)
    return True


def add_bm25(ctx, opts: dict, targets: list[tuple[int, str]], found: _Negatives, counts: Counter,
             titles: list[str]) -> None:
    top_k = int(opts["top_k"])
    if top_k <= 0 or not targets:
        return
    counts["bm25_index_titles"] = len(titles)
    if not titles:
        return
    index = TitleIndex(titles, titles, k1=opts["k1"], b=opts["b"], epsilon=opts["epsilon"])
    # the class's own members, and every other target, are never negatives
    index.block(title for _, title in targets)
    hits: list[tuple[str, str]] = []  # (target title, hit title)
    for _, title in tqdm(targets, desc="bm25 negatives", disable=not ctx.progress):
        hits.extend((title, hit.title) for hit in index.top_k(title, top_k))
    if opts.get("wiki_search") and ctx.config.wiki["source"] == "api":
        # CirrusSearch is BM25-based too; it sees the whole wiki, not only the pages this build saw
        for _, title in tqdm(targets, desc="wiki search", disable=not ctx.progress):
            hits.extend((title, ref.title) for ref in ctx.source.search(title, limit=top_k))
    counts["bm25_hits"] = len(hits)
    resolved = ctx.source.resolve(sorted({h for _, h in hits}))
    for target_title, hit in hits:
        found.add(resolved.get(hit), "bm25", target_title, counts, hit)


def _listed_on(ctx, titles: list[str]) -> dict[str, list[str]]:
    """Target title -> disambiguation pages in the store that link to it (the name is ambiguous there)."""
    out: dict[str, list[str]] = defaultdict(list)
    with ctx.store.engine.connect() as c:
        for i in range(0, len(titles), 500):
            chunk = titles[i : i + 500]
            for row in c.execute(
                sa.select(st.links.c.target_title, st.pages.c.title)
                .join(st.pages, sa.and_(st.pages.c.wiki == st.links.c.wiki,
                                        st.pages.c.page_id == st.links.c.source_page_id))
                .where(st.links.c.wiki == ctx.wiki, st.links.c.target_title.in_(chunk),
                       st.pages.c.is_disambiguation.is_(True))
                .order_by(st.pages.c.page_id)
            ):
                out[row.target_title].append(row.title)
    return out


def add_polysemous(ctx, opts: dict, targets: list[tuple[int, str]], found: _Negatives, counts: Counter,
                   titles: list[str] | None = None) -> None:
    if not opts.get("enabled", True) or not targets:
        return
    source = ctx.source
    candidates: dict[str, list[str]] = {}
    for _, title in targets:
        candidates[title] = disambiguation_titles(title)
    resolved = source.resolve(sorted({t for ts in candidates.values() for t in ts}))
    # target -> disambiguation page titles (canonical, after redirects)
    pages_of: dict[str, list[str]] = defaultdict(list)
    for title, ts in candidates.items():
        for t in ts:
            ref = resolved.get(t)
            if ref is None or getattr(ref, "synthetic", False) or ref.page_id in found.targets:
                continue
            if ref.is_disambiguation or ref.title.endswith("(disambiguation)") or t.endswith("(disambiguation)"):
                if ref.title not in pages_of[title]:
                    pages_of[title].append(ref.title)
    if opts.get("listed_on", True):
        for title, pages in _listed_on(ctx, [t for _, t in targets]).items():
            for page in pages:
                if page not in pages_of[title]:
                    pages_of[title].append(page)
    wanted = sorted({p for ps in pages_of.values() for p in ps})
    counts["polysemy_disambiguation_pages"] = len(wanted)
    senses_of: dict[str, list[str]] = {}
    for page in source.wikitext(wanted):
        if not (is_disambiguation_wikitext(page.text) or page.title.endswith("(disambiguation)")):
            counts["polysemy_page_not_disambiguation"] += 1
            continue
        senses = disambiguation_senses(page.text, page.title)[: int(opts["max_senses_per_page"])]
        senses_of[page.title] = [s.title for s in senses]
    resolved_senses = source.resolve(sorted({s for ss in senses_of.values() for s in ss}))
    for title, pages in pages_of.items():
        for page in pages:
            for sense in senses_of.get(page, ()):
                if sense == title:
                    continue
                found.add(resolved_senses.get(sense), "polysemous", page, counts, sense)
    # after the disambiguation pages, which are the better-attested source of a sense
    if opts.get("qualified_titles", True) and titles:
        _add_qualified(ctx, targets, titles, found, counts)


def _add_qualified(ctx, targets: list[tuple[int, str]], titles: list[str], found: _Negatives, counts: Counter) -> None:
    """Polysemous negatives from titles that carry a target's name with another qualifier."""
    known = set(titles)
    by_base: dict[str, list[str]] = defaultdict(list)
    for t in titles:
        by_base[bare_name(t)].append(t)  # 'Angola' and 'Angola (Portugal)' share the bare name 'Angola'
    qualified = {title: [s for s in qualified_senses(title, by_base) if s in known] for _, title in targets}
    resolved = ctx.source.resolve(sorted({s for ss in qualified.values() for s in ss}))
    for title, senses in qualified.items():
        for sense in senses:
            found.add(resolved.get(sense), "polysemous", f"title qualifier of {title}", counts, sense)


def run(ctx) -> dict[str, int]:
    opts = options(ctx.config)
    counts: Counter = Counter()
    targets = _targets(ctx)
    counts["targets"] = len(targets)
    found = _Negatives(ctx, {pid for pid, _ in targets})
    replace = {"random": add_random(ctx, opts["random"], found, counts), "bm25": True, "polysemous": True}
    titles = title_corpus(ctx, opts["bm25"].get("index", "auto"))
    add_bm25(ctx, opts["bm25"], targets, found, counts, titles)
    add_polysemous(ctx, opts["polysemy"], targets, found, counts, titles)

    with ctx.store.begin() as conn:
        ctx.store.upsert(st.entities, sorted(found.entities.values(), key=lambda r: r["page_id"]), update=[], conn=conn)
        kinds = [k for k in KINDS if replace[k]]
        conn.execute(st.vocabulary.delete().where(st.vocabulary.c.wiki == ctx.wiki, st.vocabulary.c.kind.in_(kinds)))
        conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE))
        ctx.store.upsert(st.vocabulary, sorted(found.rows.values(), key=lambda r: (r["kind"], r["page_id"])),
                         conn=conn)
        ctx.store.record_drops(found.drops, conn=conn)
    for kind in KINDS:
        counts[kind] = _existing(ctx, kind)
    return dict(sorted(counts.items()))
