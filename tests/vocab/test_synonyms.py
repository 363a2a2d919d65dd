"""Hard positives: far Wikidata synonyms replace mentions, end to end on the real dump excerpt + replayed SPARQL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from mesed_build import store as st
from mesed_build.config import config_from_dict
from mesed_build.context import open_context
from mesed_build.sentences.segment import tokenize
from mesed_build.stats import collect_stats, format_stats
from mesed_build.vocab.synonyms import Replacement, apply_replacements, display_name, eligible_synonyms
from tests.vocab.sparql_server import Fault, SparqlServer

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
UA = "mesed-build-tests/0.1 (https://example.org/mesed-build; tests@example.org)"


def test_eligible_synonyms_follow_the_papers_rule():
    # Q140 (lion): 'African lion' and 'Asiatic Lion' are more than 5 edits from 'Lion'
    assert eligible_synonyms("Lion", "lion", ["African lion", "Asiatic Lion", "lion"]) == [
        ("African lion", 9), ("Asiatic Lion", 8)]
    # Q42: every alias of Douglas Adams is within 5 edits of the name
    assert eligible_synonyms("Douglas Adams", "Douglas Adams",
                             ["Douglas Noël Adams", "Douglas Noel Adams", "Douglas N. Adams"]) == []
    # Q6512: distance 6 qualifies, initials do not
    got = dict(eligible_synonyms("Søren Kierkegaard", "Søren Kierkegaard",
                                 ["Climacus", "Kierkegaard", "Soren Kierkegaard", "Søren Aabye Kierkegaard", "B"]))
    assert got == {"Climacus": 15, "Kierkegaard": 6, "Søren Aabye Kierkegaard": 6}
    assert display_name("Ada (programming language)") == "Ada"


def _sentence(text: str):
    tokens = tokenize(text)
    offsets, position = [], 0
    for token in tokens:
        start = text.index(token, position)
        offsets.append([start, start + len(token)])
        position = start + len(token)
    return tokens, offsets


def test_replacement_moves_every_later_token_and_mention():
    # a sentence of the real 'Andrei Tarkovsky' article in the dump excerpt
    text = ("This allowed Tarkovsky to see films of the Italian neorealists, French New Wave, and of directors such "
            "as Kurosawa, Buñuel, Bergman, Bresson, Andrzej Wajda (whose film Ashes and Diamonds influenced "
            "Tarkovsky) and Mizoguchi.")
    tokens, offsets = _sentence(text)
    start = tokens.index("Kurosawa")
    wajda = tokens.index("Andrzej")
    mentions = [
        {"token_start": start, "token_end": start, "char_start": offsets[start][0], "char_end": offsets[start][1],
         "anchor_text": "Kurosawa", "page_id": 1},
        {"token_start": start + 2, "token_end": start + 2, "char_start": offsets[start + 2][0],
         "char_end": offsets[start + 2][1], "anchor_text": "Buñuel", "page_id": 2},
        {"token_start": wajda, "token_end": wajda + 1, "char_start": offsets[wajda][0],
         "char_end": offsets[wajda + 1][1], "anchor_text": "Andrzej Wajda", "page_id": 3},
    ]
    new_text, new_tokens, new_offsets, new_mentions, spans = apply_replacements(
        text, tokens, offsets, mentions,
        [Replacement(start, start, "Kurosawa Akira"), Replacement(wajda, wajda + 1, "Wajda")], tokenize)
    assert new_text == text.replace("Kurosawa,", "Kurosawa Akira,").replace("Andrzej Wajda", "Wajda")
    assert new_tokens == tokenize(new_text)
    assert all(new_text[s:e] == tok for tok, (s, e) in zip(new_tokens, new_offsets))
    for m in new_mentions:
        assert new_text[m["char_start"]:m["char_end"]] == m["anchor_text"]
        assert " ".join(new_tokens[m["token_start"]:m["token_end"] + 1]) == " ".join(tokenize(m["anchor_text"]))
    assert [m["anchor_text"] for m in new_mentions] == ["Kurosawa Akira", "Buñuel", "Wajda"]
    assert spans == {start: (start, start + 1), wajda: (wajda + 1, wajda + 1)}
    with pytest.raises(ValueError, match="outside"):
        apply_replacements(text, tokens, offsets, mentions, [Replacement(len(tokens), len(tokens), "x")], tokenize)


def _config(build_dir: Path, synonyms: dict):
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["build_dir"] = str(build_dir)
    raw["vocabulary"] = {**raw.get("vocabulary", {}), "synonyms": synonyms}
    return config_from_dict(copy.deepcopy(raw), path=DEMO)


@pytest.fixture(scope="module")
def store_with_targets(tmp_path_factory):
    """The dump excerpt's store with two targets, 'Lion' (no QID, as dumps give) and 'Akira Kurosawa'
    (QID given, as the API gives), and their real sentences from the sentences stage."""
    from mesed_build.sentences import stage as sentences

    build_dir = tmp_path_factory.mktemp("synonyms")
    ctx = open_context(_config(build_dir, {"endpoint": None}))
    refs = ctx.source.resolve(["Lion", "Akira Kurosawa"])
    ctx.store.upsert(st.entities, [
        {"wiki": ctx.wiki, "page_id": r.page_id, "title": r.title, "rev_id": r.rev_id,
         "qid": "Q8006" if r.title == "Akira Kurosawa" else None} for r in refs.values()])
    ctx.store.upsert(st.vocabulary, [
        {"wiki": ctx.wiki, "page_id": r.page_id, "kind": "target", "source": "test"} for r in refs.values()])
    counts = sentences.run(ctx)
    assert counts["entities_with_sentences"] == 2
    ctx.close()
    return build_dir, {t: r.page_id for t, r in refs.items()}


def _rows(ctx, table):
    with ctx.store.engine.connect() as c:
        return [dict(r) for r in c.execute(sa.select(table)).mappings()]


def test_offline_build_skips_synonyms_with_the_reason_in_stats(store_with_targets):
    from mesed_build.vocab import synonyms

    build_dir, _ = store_with_targets
    ctx = open_context(_config(build_dir, {"endpoint": None}))
    try:
        assert synonyms.run(ctx) == {"skipped_no_endpoint": 1}
        stats = collect_stats(ctx.store)
        assert stats["synonyms"]["skipped"].startswith("no_endpoint: no SPARQL endpoint configured")
        assert "skipped: no_endpoint" in format_stats(stats)
    finally:
        ctx.close()


def test_synonyms_end_to_end_against_replayed_wikidata(store_with_targets):
    from mesed_build.vocab import synonyms

    build_dir, ids = store_with_targets
    with SparqlServer() as server:
        options = {"endpoint": server.endpoint, "user_agent": UA, "share": 1.0, "batch_size": 50, "max_retries": 2,
                   "backoff_s": 0.01}
        ctx = open_context(_config(build_dir, options))
        try:
            before = {r["sentence_hash"]: r for r in _rows(ctx, st.sentences)}
            # the sitelink query answers; the names query fails (500, 3 attempts): dropped per item, nothing cached
            server.script(Fault(), *[Fault(500)] * 3)
            counts = synonyms.run(ctx)
            assert counts["sitelink_batches_ok"] == 1 and counts["qids_found_by_title"] == 1  # Lion -> Q140
            assert counts["batches_server_error"] == 1 and counts["qids_server_error"] == 2
            assert ctx.store.drops_by_reason()["synonyms/server_error"] == 2
            assert _rows(ctx, st.synonym_replacements) == []

            # the next run asks again and replaces every mention (share 1.0)
            counts = synonyms.run(ctx)
            assert counts["batches_ok"] == 1 and counts["mentions_replaced"] == 3 and counts["targets_replaced"] == 2
            assert "synonyms/server_error" not in ctx.store.drops_by_reason()
            replaced = {r["original"]: r for r in _rows(ctx, st.synonym_replacements)}
            assert set(replaced) == {"lions", "Akira Kurosawa", "Kurosawa"}
            assert replaced["lions"]["synonym"] in ("African lion", "Asiatic Lion")
            assert replaced["lions"]["qid"] == "Q140" and replaced["Kurosawa"]["synonym"] == "Kurosawa Akira"
            provenance = json.loads(replaced["lions"]["provenance"])
            assert provenance["property"] == "skos:altLabel" and provenance["endpoint"] == server.endpoint

            sentences = {r["sentence_hash"]: r for r in _rows(ctx, st.sentences)}
            mentions = _rows(ctx, st.mentions)
            for m in mentions:
                s = sentences[m["sentence_hash"]]
                tokens = json.loads(s["tokens"])
                assert s["text"][m["char_start"]:m["char_end"]] == m["anchor_text"]
                assert tokens[m["token_start"]:m["token_end"] + 1] == tokenize(m["anchor_text"])
            # the originals are kept
            originals = {r["sentence_hash"]: r for r in _rows(ctx, st.synonym_sentences)}
            assert {h: r["original_text"] for h, r in originals.items()} == {h: before[h]["text"] for h in originals}
            assert "Its keen hearing warns it of predators: lions" in "".join(r["original_text"] for r in originals.values())

            # a rerun is a no-op: cached names, no second replacement
            queries = len(server.requests)
            counts = synonyms.run(ctx)
            assert counts.get("mentions_replaced", 0) == 0 and counts["targets_already_replaced"] == 2
            assert len(server.requests) == queries  # QIDs and names come from the store's cache
            assert {r["sentence_hash"]: r["text"] for r in _rows(ctx, st.sentences)} == {
                h: r["text"] for h, r in sentences.items()}
            stats = collect_stats(ctx.store)["synonyms"]
            assert stats == {"entities_replaced": 2, "mentions_replaced": 3, "wikidata_items_cached": 2, "skipped": None}

            # new negatives ('Leopard', 'Hyena', linked after 'lions' in the same sentence) make the sentences stage
            # extract the aardvark sentence again: it writes the original back, and the synonyms stage redoes it
            _add_negatives_and_rerun_sentences(ctx, ["Leopard", "Hyena"])
            lion_hash = replaced["lions"]["sentence_hash"]
            assert _rows_of(ctx, st.sentences, lion_hash)[0]["text"] == originals[lion_hash]["original_text"]
            counts = synonyms.run(ctx)
            assert counts["sentences_replaced_again"] == 1
            sentence = _rows_of(ctx, st.sentences, lion_hash)[0]
            synonym = replaced["lions"]["synonym"]
            assert sentence["text"] == f"Its keen hearing warns it of predators: {synonym}, leopards, hunting dogs, hyenas, and pythons."
            tokens = json.loads(sentence["tokens"])
            found = {m["anchor_text"]: m for m in _rows_of(ctx, st.mentions, lion_hash)}
            assert set(found) == {synonym, "leopards", "hyenas"}
            for anchor, m in found.items():
                assert sentence["text"][m["char_start"]:m["char_end"]] == anchor
                assert tokens[m["token_start"]:m["token_end"] + 1] == tokenize(anchor)
            assert found["leopards"]["token_start"] == tokens.index("leopards")
            assert len(_rows(ctx, st.synonym_replacements)) == 3
        finally:
            ctx.close()


def _rows_of(ctx, table, sentence_hash):
    with ctx.store.engine.connect() as c:
        return [dict(r) for r in c.execute(sa.select(table).where(table.c.sentence_hash == sentence_hash)).mappings()]


def _add_negatives_and_rerun_sentences(ctx, titles):
    from mesed_build.sentences import stage as sentences

    refs = ctx.source.resolve(titles)
    ctx.store.upsert(st.entities, [{"wiki": ctx.wiki, "page_id": r.page_id, "title": r.title, "rev_id": r.rev_id,
                                    "qid": None} for r in refs.values()], update=[])
    ctx.store.upsert(st.vocabulary, [{"wiki": ctx.wiki, "page_id": r.page_id, "kind": "random", "source": "test"}
                                     for r in refs.values()])
    assert sentences.run(ctx)["entities_with_sentences"] == 2


def test_an_endpoint_without_user_agent_is_refused_by_name(store_with_targets):
    from mesed_build.vocab import synonyms

    build_dir, _ = store_with_targets
    ctx = open_context(_config(build_dir, {"endpoint": "http://127.0.0.1:9/sparql"}))
    try:
        with pytest.raises(ValueError, match=r"vocabulary.synonyms.user_agent is required"):
            synonyms.run(ctx)
    finally:
        ctx.close()
