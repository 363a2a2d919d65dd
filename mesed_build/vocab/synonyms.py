"""Hard positives: replace a share of each target's mentions with a Wikidata synonym far from its name.

The paper's rule: a synonym qualifies when its Levenshtein distance from the entity's name is
greater than 5 ('lion' -> 'Asiatic Lion' does, 'Douglas Adams' -> 'Douglas N. Adams' does not).
Which mentions, and which synonym each gets, follows from the build seed. A replacement updates
the sentence's text, tokens and token offsets and every mention span after it, and is recorded
with the original, the synonym and where the synonym came from. The sentence as first written is
kept in `synonym_sentences`, so a replacement can always be redone from it and never stacks.

Stage `synonyms` (run after `sentences`): fetch labels and aliases for the targets' QIDs (looking
QIDs up by title where the source gave none), cache them, then replace. With no SPARQL endpoint
configured the stage is skipped, and the reason is recorded for `mesed-build stats`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from rapidfuzz.distance import Levenshtein
from tqdm.auto import tqdm

from mesed_build import store as st

STAGE = "synonyms"
_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")

DEFAULTS = {
    "endpoint": None,  # None: no SPARQL endpoint, the stage is skipped (offline builds)
    "user_agent": None,
    "language": "en",
    "batch_size": 200,
    "timeout_s": 60,
    "max_retries": 4,
    "backoff_s": 2.0,
    "max_retry_after_s": 300,
    "min_distance": 6,  # Levenshtein distance > 5
    "min_chars": 3,  # a one- or two-letter alias ('Q', 'AE') is an initial, not a usable synonym
    "share": 0.3,  # of each target's mentions
}


def display_name(title: str) -> str:
    """The name a title stands for: 'Ada (programming language)' -> 'Ada'."""
    return _QUALIFIER.sub("", title).strip() or title


def eligible_synonyms(name: str, label: str | None, aliases: Iterable[str], *, min_distance: int = 6,
                      min_chars: int = 3) -> list[tuple[str, int]]:
    """(synonym, distance) pairs far enough from `name`, in a fixed order (by synonym text).

    Candidates are the Wikidata label and aliases; a candidate that only differs from the name
    by case is never far, and one shorter than min_chars or without a letter is skipped.
    """
    out: dict[str, int] = {}
    for candidate in [label or "", *aliases]:
        candidate = " ".join(candidate.split())
        if len(candidate) < min_chars or not any(ch.isalpha() for ch in candidate):
            continue
        if candidate.casefold() == name.casefold():
            continue
        distance = Levenshtein.distance(name, candidate)
        if distance >= min_distance:
            out[candidate] = distance
    return sorted(out.items())


def _rank(seed: int, *parts) -> str:
    return hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode("utf-8")).hexdigest()


def choose_mentions(seed: int, page_id: int, mentions: Sequence[tuple[str, int]], share: float) -> list[tuple[str, int]]:
    """The (sentence_hash, token_start) mentions of one entity to replace: round(share * n), seeded."""
    n = math.floor(share * len(mentions) + 0.5)
    ranked = sorted(mentions, key=lambda m: _rank(seed, page_id, m[0], m[1]))
    return sorted(ranked[:n])


def choose_synonym(seed: int, page_id: int, sentence_hash: str, token_start: int, synonyms: Sequence[tuple[str, int]]):
    return synonyms[int(_rank(seed, "synonym", page_id, sentence_hash, token_start), 16) % len(synonyms)]


def synonym_tokens(synonym: str, tokenize) -> list[tuple[str, int, int]]:
    """(token, char_start, char_end) of the synonym, offsets within the synonym string."""
    out = []
    position = 0
    for token in tokenize(synonym):
        start = synonym.find(token, position)
        if start < 0:
            raise ValueError(f"tokenizer returned {token!r}, which is not a slice of {synonym!r}")
        out.append((token, start, start + len(token)))
        position = start + len(token)
    return out


@dataclass(frozen=True)
class Replacement:
    token_start: int  # the mention's span in the original tokens (end inclusive)
    token_end: int
    synonym: str


def apply_replacements(text: str, tokens: Sequence[str], offsets: Sequence[Sequence[int]], mentions: Sequence[dict],
                       replacements: Sequence[Replacement], tokenize) -> tuple[str, list[str], list[list[int]], list[dict], dict]:
    """The sentence with the given mentions' spans replaced by synonyms.

    Returns (text, tokens, offsets, mentions, spans): mention dicts keep their other fields, with
    token_start/token_end/char_start/char_end/anchor_text moved to the new text; `spans` maps each
    replacement's original token_start to its new (token_start, token_end).
    """
    by_start = {r.token_start: r for r in replacements}
    for r in replacements:
        if not (0 <= r.token_start <= r.token_end < len(tokens)):
            raise ValueError(f"replacement span {r.token_start}..{r.token_end} is outside the {len(tokens)} tokens")
    new_text_parts: list[str] = []
    new_tokens: list[str] = []
    new_offsets: list[list[int]] = []
    token_map: dict[int, int] = {}  # original token index -> new index (for unreplaced tokens)
    spans: dict[int, tuple[int, int]] = {}
    char_shift_at: list[tuple[int, int]] = []  # (original char position, shift after it)
    cursor = 0  # next unread char of the original text
    shift = 0
    i = 0
    while i < len(tokens):
        r = by_start.get(i)
        if r is None:
            token_map[i] = len(new_tokens)
            start, end = offsets[i]
            new_tokens.append(tokens[i])
            new_offsets.append([start + shift, end + shift])
            i += 1
            continue
        span_start, span_end = offsets[r.token_start][0], offsets[r.token_end][1]
        new_text_parts.append(text[cursor:span_start])
        new_text_parts.append(r.synonym)
        cursor = span_end
        first = len(new_tokens)
        for token, s, e in synonym_tokens(r.synonym, tokenize):
            new_tokens.append(token)
            new_offsets.append([span_start + shift + s, span_start + shift + e])
        spans[r.token_start] = (first, len(new_tokens) - 1)
        shift += len(r.synonym) - (span_end - span_start)
        char_shift_at.append((span_end, shift))
        i = r.token_end + 1
    new_text_parts.append(text[cursor:])
    new_text = "".join(new_text_parts)

    def char_shift(position: int) -> int:
        s = 0
        for boundary, value in char_shift_at:
            if position >= boundary:
                s = value
        return s

    new_mentions = []
    for m in mentions:
        m = dict(m)
        if m["token_start"] in spans:
            start, end = spans[m["token_start"]]
            r = by_start[m["token_start"]]
            m["char_start"] = new_offsets[start][0]
            m["char_end"] = new_offsets[end][1]
            m["anchor_text"] = r.synonym
        else:
            if m["token_start"] not in token_map or m["token_end"] not in token_map:
                raise ValueError(f"mention {m['token_start']}..{m['token_end']} overlaps a replaced span")
            start, end = token_map[m["token_start"]], token_map[m["token_end"]]
            m["char_start"] = m["char_start"] + char_shift(m["char_start"])
            m["char_end"] = m["char_end"] + char_shift(m["char_end"] - 1)
        m["token_start"], m["token_end"] = start, end
        new_mentions.append(m)
    return new_text, new_tokens, new_offsets, new_mentions, spans


# --- the stage ------------------------------------------------------------------------------------------


def options(config) -> dict:
    section = config.section("vocabulary")
    return {**DEFAULTS, **(section.get("synonyms") or {})}


def _skip(ctx, reason: str, detail: str) -> dict[str, int]:
    with ctx.store.begin() as conn:
        conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE, st.drops.c.reason.like("skipped_%")))
        ctx.store.record_drops([(STAGE, f"skipped_{reason}", "stage", detail)], conn=conn)
    return {f"skipped_{reason}": 1}


def _targets(ctx) -> list[dict]:
    with ctx.store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.entities.c.page_id, st.entities.c.title, st.entities.c.qid)
            .where(st.entities.c.wiki == ctx.wiki)
            .where(sa.exists().where(st.vocabulary.c.wiki == st.entities.c.wiki,
                                     st.vocabulary.c.page_id == st.entities.c.page_id,
                                     st.vocabulary.c.kind == "target"))
            .order_by(st.entities.c.page_id)
        ).mappings().all()
    return [dict(r) for r in rows]


def _site_of(wiki: str) -> tuple[str, str]:
    """('https://en.wikipedia.org/', 'en') for 'enwiki'."""
    m = re.match(r"^([a-z-]+)wiki$", wiki)
    if not m:
        raise ValueError(f"cannot derive a Wikipedia site from wiki id {wiki!r} (expected e.g. 'enwiki')")
    lang = m.group(1).replace("_", "-")
    return f"https://{lang}.wikipedia.org/", lang


def _lookup_qids(ctx, client, targets: list[dict], counts: Counter) -> None:
    """Fill in QIDs by sitelink for targets without one (dump sources carry none); cached per title."""
    missing = [t for t in targets if not t["qid"]]
    if not missing:
        return
    with ctx.store.engine.connect() as c:
        cached = {
            r.title: r.qid
            for r in c.execute(sa.select(st.wikidata_sitelinks).where(st.wikidata_sitelinks.c.wiki == ctx.wiki))
        }
    todo = sorted({t["title"] for t in missing if t["title"] not in cached})
    site, lang = _site_of(ctx.wiki)

    def on_batch(result) -> None:
        counts[f"sitelink_batches_{result.outcome}"] += 1
        if result.outcome in ("ok", "empty"):
            now = st.utcnow()
            rows = [{"wiki": ctx.wiki, "title": title, "qid": result.found.get(title), "endpoint": client.endpoint,
                     "fetched_at": now} for title in result.items]
            with ctx.store.begin() as conn:
                ctx.store.upsert(st.wikidata_sitelinks, rows, conn=conn)
                conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE,
                                                     st.drops.c.item.in_([f"title:{t}" for t in result.items])))
            cached.update({row["title"]: row["qid"] for row in rows})
        else:
            ctx.store.record_drops([(STAGE, f"sitelink_{result.outcome}", f"title:{t}", result.error)
                                    for t in result.items])

    client.fetch_qids(todo, site=site, language=lang, on_batch=on_batch)
    updates = []
    for t in missing:
        qid = cached.get(t["title"])
        if qid:
            t["qid"] = qid
            updates.append({"wiki": ctx.wiki, "page_id": t["page_id"], "qid": qid})
    with ctx.store.begin() as conn:
        for u in updates:
            conn.execute(st.entities.update().where(st.entities.c.wiki == u["wiki"],
                                                    st.entities.c.page_id == u["page_id"]).values(qid=u["qid"]))
    counts["qids_found_by_title"] += len(updates)


def _fetch_names(ctx, client, qids: list[str], language: str, counts: Counter) -> dict[str, dict]:
    with ctx.store.engine.connect() as c:
        cached = {
            r.qid: {"label": r.label, "aliases": json.loads(r.aliases), "endpoint": r.endpoint,
                    "fetched_at": r.fetched_at}
            for r in c.execute(sa.select(st.wikidata_names).where(st.wikidata_names.c.language == language))
        }
    todo = [q for q in qids if q not in cached]
    counts["qids_cached"] += len(qids) - len(todo)
    bar = tqdm(total=len(todo), desc="wikidata names", unit=" items", disable=not ctx.progress)

    def on_batch(result) -> None:
        bar.update(len(result.qids))
        counts[f"batches_{result.outcome}"] += 1
        if result.outcome in ("ok", "empty"):
            now = st.utcnow()
            rows = [{"qid": q, "language": language, "label": n.label, "aliases": json.dumps(list(n.aliases),
                     ensure_ascii=False), "endpoint": client.endpoint, "fetched_at": now}
                    for q, n in result.names.items()]
            with ctx.store.begin() as conn:
                ctx.store.upsert(st.wikidata_names, rows, conn=conn)
                # an item that failed in an earlier run and answers now is no longer dropped
                conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE, st.drops.c.item.in_(list(result.qids))))
            for row in rows:
                cached[row["qid"]] = {"label": row["label"], "aliases": json.loads(row["aliases"]),
                                      "endpoint": row["endpoint"], "fetched_at": now}
        else:
            counts[f"qids_{result.outcome}"] += len(result.qids)
            ctx.store.record_drops([(STAGE, result.outcome, q, result.error) for q in result.qids])

    try:
        client.fetch(todo, on_batch=on_batch)
    finally:
        bar.close()
    return cached


def run(ctx) -> dict[str, int]:
    opts = options(ctx.config)
    counts: Counter = Counter()
    # needs no endpoint: sentences written again by a later sentences run get their replacements back
    repair_rewritten(ctx, counts)
    if not opts.get("endpoint"):
        return {**_skip(ctx, "no_endpoint", "no SPARQL endpoint configured (vocabulary.synonyms.endpoint); "
                                            "synonyms and hard positives need Wikidata"), **counts}
    from mesed_build.vocab.wikidata import WikidataClient

    if not opts.get("user_agent"):
        opts["user_agent"] = ctx.config.wiki.get("api", {}).get("user_agent")
    if not opts["user_agent"]:
        raise ValueError("vocabulary.synonyms.user_agent is required with a SPARQL endpoint (or set wiki.api.user_agent):"
                         " Wikimedia asks for a descriptive User-Agent with contact, e.g. 'mesed-build/0.1 (you@example.org)'")
    client = WikidataClient.from_options(opts)
    with ctx.store.begin() as conn:
        conn.execute(st.drops.delete().where(st.drops.c.stage == STAGE, st.drops.c.reason.like("skipped_%")))
    targets = _targets(ctx)
    counts["targets"] = len(targets)
    _lookup_qids(ctx, client, targets, counts)
    with_qid = [t for t in targets if t["qid"]]
    counts["targets_with_qid"] = len(with_qid)
    names = _fetch_names(ctx, client, sorted({t["qid"] for t in with_qid}), opts["language"], counts)
    counts["sparql_queries"] = client.queries_sent
    replace_mentions(ctx, with_qid, names, opts, counts)
    return dict(sorted(counts.items()))


def _mention_fits(m: dict, text: str, offsets: list) -> bool:
    """Whether a mention row describes this tokenization of this text (its span and its anchor)."""
    start, end = m["token_start"], m["token_end"]
    return (0 <= start <= end < len(offsets) and offsets[start][0] == m["char_start"]
            and offsets[end][1] == m["char_end"] and text[m["char_start"]:m["char_end"]] == m["anchor_text"])


def repair_rewritten(ctx, counts: Counter) -> None:
    """Redo the replacements of sentences that the sentences stage wrote again.

    When a later sentences run (new negatives) extracts a replaced sentence once more, it writes the
    original text back, with mention rows at the original positions beside the stale shifted ones.
    Such a sentence gets the mentions that fit its original tokens (new ones included) and its
    recorded replacements again, so reruns never leave a sentence half replaced.
    """
    from mesed_build.sentences.segment import tokenize

    store = ctx.store
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(st.synonym_sentences.c.sentence_hash, st.synonym_sentences.c.original_tokens,
                      st.sentences.c.tokens)
            .join(st.sentences, st.sentences.c.sentence_hash == st.synonym_sentences.c.sentence_hash)
        ).all()
    rewritten = sorted(r.sentence_hash for r in rows if json.loads(r.tokens) == json.loads(r.original_tokens))
    if not rewritten:
        return
    with store.begin() as conn:
        for shash in rewritten:
            sentence = conn.execute(sa.select(st.sentences).where(st.sentences.c.sentence_hash == shash)).mappings().one()
            text, tokens = sentence["text"], json.loads(sentence["tokens"])
            offsets = json.loads(sentence["token_offsets"])
            current = [dict(r) for r in conn.execute(
                sa.select(st.mentions).where(st.mentions.c.sentence_hash == shash).order_by(st.mentions.c.token_start)
            ).mappings()]
            mentions = [m for m in current if _mention_fits(m, text, offsets)]
            recorded = [dict(r) for r in conn.execute(
                sa.select(st.synonym_replacements).where(st.synonym_replacements.c.sentence_hash == shash)
            ).mappings()]
            spans = {(m["token_start"], m["token_end"], m["page_id"]) for m in mentions}
            kept = [r for r in recorded if (r["original_token_start"], r["original_token_end"], r["page_id"]) in spans]
            for r in recorded:
                if r not in kept:  # its mention is gone from the new extraction
                    conn.execute(st.synonym_replacements.delete().where(
                        st.synonym_replacements.c.sentence_hash == shash,
                        st.synonym_replacements.c.original_token_start == r["original_token_start"]))
                    counts["replacements_lost_on_rewrite"] += 1
            new_text, new_tokens, new_offsets, new_mentions, new_spans = apply_replacements(
                text, tokens, offsets, mentions,
                [Replacement(r["original_token_start"], r["original_token_end"], r["synonym"]) for r in kept], tokenize)
            conn.execute(st.synonym_sentences.update().where(st.synonym_sentences.c.sentence_hash == shash).values(
                original_text=text, original_tokens=sentence["tokens"], original_offsets=sentence["token_offsets"],
                original_mentions=json.dumps(mentions, ensure_ascii=False, sort_keys=True)))
            conn.execute(st.sentences.update().where(st.sentences.c.sentence_hash == shash).values(
                text=new_text, tokens=json.dumps(new_tokens, ensure_ascii=False),
                token_offsets=json.dumps(new_offsets)))
            conn.execute(st.mentions.delete().where(st.mentions.c.sentence_hash == shash))
            store.upsert(st.mentions, new_mentions, conn=conn)
            for r in kept:
                start, end = new_spans[r["original_token_start"]]
                conn.execute(st.synonym_replacements.update().where(
                    st.synonym_replacements.c.sentence_hash == shash,
                    st.synonym_replacements.c.original_token_start == r["original_token_start"],
                ).values(token_start=start, token_end=end))
            counts["sentences_replaced_again"] += 1
            counts["stale_mention_rows_removed"] += len(current) - len(mentions)


def replace_mentions(ctx, targets: list[dict], names: dict[str, dict], opts: dict, counts: Counter) -> None:
    from mesed_build.sentences.segment import tokenize

    seed = ctx.config.seed
    store = ctx.store
    with store.engine.connect() as c:
        done_entities = {int(r[0]) for r in c.execute(
            sa.select(st.synonym_replacements.c.page_id).where(st.synonym_replacements.c.wiki == ctx.wiki).distinct())}
    plan: dict[str, list[tuple[Replacement, dict]]] = defaultdict(list)
    for target in targets:
        entry = names.get(target["qid"])
        if entry is None:
            continue
        name = display_name(target["title"])
        synonyms = eligible_synonyms(name, entry["label"], entry["aliases"], min_distance=opts["min_distance"],
                                     min_chars=opts["min_chars"])
        if not synonyms:
            counts["targets_without_far_synonym"] += 1
            continue
        counts["targets_with_far_synonym"] += 1
        if target["page_id"] in done_entities:
            counts["targets_already_replaced"] += 1
            continue
        with store.engine.connect() as c:
            mentions = c.execute(
                sa.select(st.mentions.c.sentence_hash, st.mentions.c.token_start, st.mentions.c.token_end,
                          st.mentions.c.anchor_text)
                .join(st.entity_sentences, sa.and_(st.entity_sentences.c.sentence_hash == st.mentions.c.sentence_hash,
                                                   st.entity_sentences.c.wiki == st.mentions.c.wiki,
                                                   st.entity_sentences.c.page_id == st.mentions.c.page_id))
                .where(st.mentions.c.wiki == ctx.wiki, st.mentions.c.page_id == target["page_id"])
            ).all()
        by_key = {(m.sentence_hash, m.token_start): m for m in mentions}
        for shash, start in choose_mentions(seed, target["page_id"], list(by_key), opts["share"]):
            m = by_key[(shash, start)]
            synonym, distance = choose_synonym(seed, target["page_id"], shash, start, synonyms)
            provenance = {"source": "wikidata", "property": "skos:altLabel" if synonym != entry["label"] else "rdfs:label",
                          "qid": target["qid"], "language": opts["language"], "endpoint": entry["endpoint"],
                          "fetched_at": str(entry["fetched_at"])}
            plan[shash].append((Replacement(m.token_start, m.token_end, synonym), {
                "page_id": target["page_id"], "qid": target["qid"], "original": m.anchor_text,
                "distance": distance, "provenance": json.dumps(provenance, sort_keys=True),
            }))
    if not plan:
        return
    # one transaction: a sentence is either fully replaced and recorded, or untouched
    with store.begin() as conn:
        for shash in sorted(plan):
            sentence = conn.execute(sa.select(st.sentences).where(st.sentences.c.sentence_hash == shash)).mappings().one()
            mention_rows = [dict(r) for r in conn.execute(
                sa.select(st.mentions).where(st.mentions.c.sentence_hash == shash).order_by(st.mentions.c.token_start)
            ).mappings()]
            tokens = json.loads(sentence["tokens"])
            offsets = json.loads(sentence["token_offsets"])
            replacements = [r for r, _ in plan[shash]]
            try:
                text, new_tokens, new_offsets, new_mentions, spans = apply_replacements(
                    sentence["text"], tokens, offsets, mention_rows, replacements, tokenize)
            except ValueError as exc:
                counts["sentences_not_replaceable"] += 1
                store.record_drops([(STAGE, "sentence_not_replaceable", shash, str(exc))], conn=conn)
                continue
            store.upsert(st.synonym_sentences, [{
                "sentence_hash": shash, "original_text": sentence["text"], "original_tokens": sentence["tokens"],
                "original_offsets": sentence["token_offsets"],
                "original_mentions": json.dumps(mention_rows, ensure_ascii=False, sort_keys=True),
            }], update=[], conn=conn)
            conn.execute(st.sentences.update().where(st.sentences.c.sentence_hash == shash).values(
                text=text, tokens=json.dumps(new_tokens, ensure_ascii=False), token_offsets=json.dumps(new_offsets)))
            conn.execute(st.mentions.delete().where(st.mentions.c.sentence_hash == shash))
            store.upsert(st.mentions, new_mentions, conn=conn)
            store.upsert(st.synonym_replacements, [{
                "sentence_hash": shash, "original_token_start": r.token_start, "original_token_end": r.token_end,
                "token_start": spans[r.token_start][0], "token_end": spans[r.token_start][1], "wiki": ctx.wiki,
                "synonym": r.synonym, **meta,
            } for r, meta in plan[shash]], conn=conn)
            counts["mentions_replaced"] += len(replacements)
            counts["sentences_changed"] += 1
    counts["targets_replaced"] = len({meta["page_id"] for items in plan.values() for _, meta in items})


def synonym_stats(store: st.Store, wiki: str = "enwiki") -> dict:
    """For `mesed-build stats`: entities and mentions replaced, or why the stage was skipped."""
    with store.engine.connect() as c:
        mentions_replaced = c.execute(sa.select(sa.func.count()).select_from(st.synonym_replacements)
                                      .where(st.synonym_replacements.c.wiki == wiki)).scalar_one()
        entities = c.execute(sa.select(sa.func.count(sa.distinct(st.synonym_replacements.c.page_id)))
                             .where(st.synonym_replacements.c.wiki == wiki)).scalar_one()
        cached = c.execute(sa.select(sa.func.count()).select_from(st.wikidata_names)).scalar_one()
        skipped = c.execute(sa.select(st.drops.c.reason, st.drops.c.detail)
                            .where(st.drops.c.stage == STAGE, st.drops.c.reason.like("skipped_%"))).first()
    return {
        "entities_replaced": int(entities),
        "mentions_replaced": int(mentions_replaced),
        "wikidata_items_cached": int(cached),
        "skipped": f"{skipped.reason[len('skipped_'):]}: {skipped.detail}" if skipped else None,
    }
