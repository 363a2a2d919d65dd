"""Stage 2, sentences: the sentences of other articles that hyperlink to each vocabulary entity.

For every entity in the `vocabulary` table that has no sentences yet: its backlinking articles ->
wikitext -> plain-text paragraphs with link spans (sentences.wikitext) -> sentences and tokens with
exact mention spans (sentences.segment). Sentences that mention no vocabulary entity are not kept;
duplicates, too short/long sentences and those beyond the per-entity cap are dropped and counted.
The cap is deterministic: candidates are ordered by a hash of (build seed, entity, sentence).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from tqdm.auto import tqdm

from mesed_build import store as st
from mesed_build.context import BuildContext
from mesed_build.sentences.segment import Sentence, split_paragraph
from mesed_build.sentences.wikitext import article_paragraphs

STAGE = "sentences"
log = logging.getLogger(__name__)
# API sources fetch articles per chunk of entities; a dump is streamed once for everything
API_CHUNK = 50


def sentence_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cap_order(seed: int, page_id: int, shash: str) -> str:
    return hashlib.sha256(f"{seed}:{page_id}:{shash}".encode()).hexdigest()


def _vocabulary(ctx: BuildContext) -> list[tuple[int, str]]:
    """(page_id, title) of every vocabulary entity, ordered by page id."""
    with ctx.store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.entities.c.page_id, st.entities.c.title)
            .where(st.entities.c.wiki == ctx.wiki)
            .where(
                sa.exists().where(
                    st.vocabulary.c.wiki == st.entities.c.wiki, st.vocabulary.c.page_id == st.entities.c.page_id
                )
            )
            .order_by(st.entities.c.page_id)
        ).all()
    return [(int(r.page_id), r.title) for r in rows]


def _done_entities(ctx: BuildContext) -> set[int]:
    """Entities finished by an earlier run: with chosen sentences, or recorded as having none."""
    with ctx.store.engine.connect() as c:
        with_sentences = {
            int(r[0])
            for r in c.execute(
                sa.select(st.entity_sentences.c.page_id).where(st.entity_sentences.c.wiki == ctx.wiki).distinct()
            )
        }
        without = {
            r[0]
            for r in c.execute(
                sa.select(st.drops.c.item).where(st.drops.c.stage == STAGE, st.drops.c.reason == "entity_without_sentences")
            )
        }
    return with_sentences | {int(item.split(":", 1)[0]) for item in without}


def _title_index(ctx: BuildContext, vocab: list[tuple[int, str]]) -> dict[str, int]:
    """Link target title -> vocabulary entity, the redirects that lead to it included."""
    index = {title: page_id for page_id, title in vocab}
    for target, redirects in ctx.source.redirects_to(list(index)).items():
        for redirect in redirects:
            if target in index:
                index.setdefault(redirect, index[target])
    return index


def _excluded_articles(ctx: BuildContext) -> set[str]:
    """The class sources' list pages: their items are not sentences about the entities."""
    return {s.list_page for c in ctx.config.fine_classes for s in c.sources if s.list_page}


def run(ctx: BuildContext) -> dict[str, int]:
    vocab = _vocabulary(ctx)
    done = _done_entities(ctx)
    todo = [(pid, title) for pid, title in vocab if pid not in done]
    index = _title_index(ctx, vocab)
    counts: Counter = Counter(entities_in_vocabulary=len(vocab), entities_already_done=len(vocab) - len(todo))
    if not todo:
        return dict(counts)
    chunk = len(todo) if ctx.config.wiki["source"] == "dump" else API_CHUNK
    for start in range(0, len(todo), chunk):
        _run_chunk(ctx, todo[start : start + chunk], index, counts)
    return dict(sorted(counts.items()))


def _run_chunk(ctx: BuildContext, entities: list[tuple[int, str]], index: dict[str, int], counts: Counter) -> None:
    limits = ctx.config.limits
    source = ctx.source
    excluded = _excluded_articles(ctx)
    wanted_ids = {pid for pid, _ in entities}

    # backlinks: which articles to read, and for which entities
    articles: dict[int, str] = {}
    for page_id, title in tqdm(entities, desc="backlinks", disable=not ctx.progress):
        for ref in source.backlinks(title, limit=limits["max_backlinks_per_entity"]):
            if ref.page_id == page_id or ref.title in excluded or ref.title.startswith("List of"):
                counts["backlinks_from_list_pages_or_self"] += 1
                continue
            articles[ref.page_id] = ref.title
    counts["articles"] += len(articles)

    # candidates: entity -> sentence hashes; the sentences themselves
    candidates: dict[int, set[str]] = defaultdict(set)
    kept: dict[str, tuple[Sentence, int, int | None, list]] = {}
    drops: list[tuple[str, str, str, str | None]] = []
    reasons: Counter = Counter()
    wanted = index.__contains__

    pages = source.wikitext(sorted(articles.values()))
    for page in tqdm(pages, desc="articles", total=len(articles), disable=not ctx.progress):
        para_drops: Counter = Counter()
        for paragraph in article_paragraphs(page.text, wanted=wanted, drops=para_drops):
            for sentence in split_paragraph(paragraph, drops=para_drops):
                mentions = [m for m in sentence.mentions if m.target in index]
                if not mentions:
                    continue
                counts["sentences_seen"] += 1
                shash = sentence_hash(sentence.text)
                if len(sentence.tokens) < limits["min_sentence_tokens"]:
                    reasons["too_short"] += 1
                    drops.append((STAGE, "too_short", shash, sentence.text[:200]))
                    continue
                if len(sentence.tokens) > limits["max_sentence_tokens"]:
                    reasons["too_long"] += 1
                    drops.append((STAGE, "too_long", shash, sentence.text[:200]))
                    continue
                if shash in kept:
                    reasons["duplicate_sentence"] += 1
                    drops.append((STAGE, "duplicate_sentence", shash, f"also in page {page.page_id}"))
                    continue
                kept[shash] = (sentence, page.page_id, page.rev_id, mentions)
                for m in mentions:
                    entity = index[m.target]
                    if entity in wanted_ids:
                        candidates[entity].add(shash)
        for reason, n in para_drops.items():
            reasons[reason] += n
            drops.append((STAGE, reason, f"page {page.page_id}", page.title, n))

    # the per-entity cap, deterministic from the build seed
    seed = ctx.config.seed
    chosen: dict[str, None] = {}
    selection_rows = []
    for page_id, title in entities:
        ranked = sorted(candidates.get(page_id, ()), key=lambda h: cap_order(seed, page_id, h))
        for rank, shash in enumerate(ranked[: limits["max_sentences_per_entity"]]):
            selection_rows.append({"wiki": ctx.wiki, "page_id": page_id, "sentence_hash": shash, "rank": rank})
            chosen[shash] = None
        if not ranked:
            drops.append((STAGE, "entity_without_sentences", f"{page_id}: {title}", None))
            reasons["entity_without_sentences"] += 1
    for shash in kept:
        if shash not in chosen:
            reasons["over_cap"] += 1
            drops.append((STAGE, "over_cap", shash, None))

    sentence_rows, mention_rows = [], []
    for shash in sorted(chosen):
        sentence, article_id, rev_id, mentions = kept[shash]
        sentence_rows.append({
            "sentence_hash": shash, "wiki": ctx.wiki, "article_page_id": article_id, "article_rev_id": rev_id,
            "text": sentence.text, "tokens": json.dumps(list(sentence.tokens), ensure_ascii=False),
            "token_offsets": json.dumps([list(o) for o in sentence.offsets]),
        })
        seen_starts = set()
        for m in mentions:
            if m.token_start in seen_starts:
                continue
            seen_starts.add(m.token_start)
            mention_rows.append({
                "sentence_hash": shash, "token_start": m.token_start, "token_end": m.token_end, "wiki": ctx.wiki,
                "page_id": index[m.target], "anchor_text": m.anchor, "char_start": m.char_start, "char_end": m.char_end,
            })

    with ctx.store.begin() as conn:
        ctx.store.upsert(st.sentences, sentence_rows, conn=conn)
        ctx.store.upsert(st.mentions, mention_rows, conn=conn)
        ctx.store.upsert(st.entity_sentences, selection_rows, conn=conn)
        ctx.store.record_drops(drops, conn=conn)

    counts["sentences_kept"] += len(sentence_rows)
    counts["mentions_kept"] += len(mention_rows)
    counts["entities_with_sentences"] += sum(1 for pid, _ in entities if candidates.get(pid))
    for reason, n in reasons.items():
        counts[f"dropped_{reason}"] += n


def sentences_per_entity(store: st.Store, wiki: str = "enwiki") -> dict[int, int]:
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.entity_sentences.c.page_id, sa.func.count())
            .where(st.entity_sentences.c.wiki == wiki)
            .group_by(st.entity_sentences.c.page_id)
        ).all()
    return {int(pid): int(n) for pid, n in rows}


def iter_export_sentences(store: st.Store, wiki: str = "enwiki") -> Iterable[dict]:
    """Kept sentences with their mentions, ordered by hash (deterministic)."""
    with store.engine.connect() as c:
        mentions_by_sentence: dict[str, list[dict]] = defaultdict(list)
        for row in c.execute(
            sa.select(st.mentions).where(st.mentions.c.wiki == wiki).order_by(
                st.mentions.c.sentence_hash, st.mentions.c.token_start
            )
        ).mappings():
            mentions_by_sentence[row["sentence_hash"]].append(dict(row))
        for row in c.execute(
            sa.select(st.sentences).where(st.sentences.c.wiki == wiki).order_by(st.sentences.c.sentence_hash)
        ).mappings():
            yield {**dict(row), "tokens": json.loads(row["tokens"]), "mentions": mentions_by_sentence[row["sentence_hash"]]}
