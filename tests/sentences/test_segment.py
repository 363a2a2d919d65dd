"""Sentences and tokens with mention spans, on the real enwiki dump excerpt."""

from __future__ import annotations

import collections
import re

import pytest
from syntok import segmenter
from syntok.tokenizer import Tokenizer

from mesed_build.sentences import segment
from mesed_build.sentences.segment import Mention, split_paragraph, tokenize
from mesed_build.sentences.wikitext import Link, Paragraph

_NOT_IN_TOKENS = re.compile(r"[\s\u200b]")


@pytest.fixture(scope="module")
def split(enwiki_paragraphs):
    """Every paragraph of the excerpt with its sentences, and the drops counted on the way."""
    drops = collections.Counter()
    by_title = {
        title: [(p, split_paragraph(p, drops)) for p in paragraphs]
        for title, paragraphs in enwiki_paragraphs[0].items()
    }
    return by_title, drops


def test_tokens_and_mentions_are_exact_in_every_paragraph(split):
    by_title, drops = split
    links = mentions = sentences = 0
    for paragraphs in by_title.values():
        for paragraph, paragraph_sentences in paragraphs:
            links += len(paragraph.links)
            position = 0
            for sentence in paragraph_sentences:
                sentences += 1
                # sentences are consecutive slices of the paragraph
                position = paragraph.text.index(sentence.text, position)
                assert sentence.text == sentence.text.strip()
                assert len(sentence.tokens) == len(sentence.offsets)
                for token, (start, end) in zip(sentence.tokens, sentence.offsets):
                    assert sentence.text[start:end] == token
                # the tokens cover every visible character
                assert "".join(sentence.tokens) == _NOT_IN_TOKENS.sub("", sentence.text)
                for mention in sentence.mentions:
                    mentions += 1
                    assert sentence.text[mention.char_start : mention.char_end] == mention.anchor
                    assert list(sentence.tokens[mention.token_start : mention.token_end + 1]) == tokenize(
                        mention.anchor
                    )
                    assert sentence.offsets[mention.token_start][0] == mention.char_start
                    assert sentence.offsets[mention.token_end][1] == mention.char_end
                position += len(sentence.text)
    assert sentences > 20_000
    # every link of the excerpt becomes a mention: a boundary inside an anchor is repaired, not dropped
    assert mentions == links and not drops


def test_cached_tokenizer_is_exactly_syntok(enwiki_paragraphs):
    """segment remembers the tokens of each whitespace-free chunk; the result must be syntok's, spacing too."""
    syntok_tokenizer = Tokenizer(emit_hyphen_or_underscore_sep=True, replace_not_contraction=False)
    checked = 0
    for title in sorted(enwiki_paragraphs[0])[:40]:  # a third of the excerpt keeps this test quick
        for paragraph in enwiki_paragraphs[0][title]:
            expected = [(t.spacing, t.value, t.offset) for t in syntok_tokenizer.tokenize(paragraph.text) if t.value]
            ours = []
            segment._append_tokens(paragraph.text, 0, len(paragraph.text), ours)
            assert [(t.spacing, t.value, t.offset) for t in ours] == expected
            checked += len(expected)
    assert checked > 100_000


def test_simple_chunk_shortcut_is_exactly_syntok(enwiki_paragraphs):
    """Every whitespace-free chunk of the excerpt: the shortcut for ASCII words gives syntok's tokens."""
    syntok_tokenizer = Tokenizer(emit_hyphen_or_underscore_sep=True, replace_not_contraction=False)
    chunks = {
        match.group()
        for paragraphs in enwiki_paragraphs[0].values()
        for paragraph in paragraphs
        for match in segment._CHUNKS.finditer(paragraph.text)
    }
    shortcut = [chunk for chunk in chunks if segment._SIMPLE_CHUNK.fullmatch(chunk)]
    assert len(shortcut) > 50_000
    for chunk in shortcut:
        expected = tuple((t.offset, t.value) for t in syntok_tokenizer.tokenize(chunk) if t.value)
        assert segment._chunk_pieces(chunk) == expected, chunk


def test_anarchism_first_sentence(split):
    paragraph, sentences = split[0]["Anarchism"][0]
    first = sentences[0]
    assert first.text == (
        "Anarchism is a political philosophy that advocates self-governed societies based on voluntary institutions."
    )
    assert first.tokens == (
        "Anarchism", "is", "a", "political", "philosophy", "that", "advocates", "self", "-", "governed",
        "societies", "based", "on", "voluntary", "institutions", ".",
    )
    assert first.mentions == (
        Mention(3, 4, 15, 35, "Political philosophy", "political philosophy"),
        Mention(7, 9, 51, 64, "Self-governance", "self-governed"),
    )
    assert sentences[1].text.startswith("These are often described as stateless societies,")
    assert sentences[1].mentions[0].target == "Stateless society"


def test_sentence_boundary_inside_an_anchor_is_joined(split):
    # syntok on its own ends a sentence after "Cecil B." (Ayn Rand: "... famed director [[Cecil B. DeMille]] led ...")
    plain = "A chance meeting with famed director Cecil B. DeMille led to a job as an extra in his film."
    assert len([s for p in segmenter.analyze(plain) for s in p]) == 2
    found = [
        (sentence, mention)
        for _, sentences in split[0]["Ayn Rand"]
        for sentence in sentences
        for mention in sentence.mentions
        if mention.target == "Cecil B. DeMille"
    ]
    assert len(found) == 1
    sentence, mention = found[0]
    assert "A chance meeting with famed director Cecil B. DeMille led to a job as an extra" in sentence.text
    assert sentence.tokens[mention.token_start : mention.token_end + 1] == ("Cecil", "B", ".", "De", "Mille")


def test_token_boundaries_are_forced_at_link_edges():
    # "[[Aristotle]]'s" and "[[bus]]es": the anchor's edge is a token edge even where syntok would not cut
    paragraph = Paragraph(
        "Aristotle's pupils rode buses daily.",
        (Link(0, 9, "Aristotle", "Aristotle"), Link(24, 29, "Bus", "buses")),
        "",
    )
    (sentence,) = split_paragraph(paragraph)
    assert sentence.tokens == ("Aristotle", "'s", "pupils", "rode", "buses", "daily", ".")
    inner = Paragraph("Half-Life", (Link(0, 4, "Half", "Half"),), "")
    (sentence,) = split_paragraph(inner)
    assert sentence.tokens[:1] == ("Half",) and sentence.mentions[0].token_end == 0


def test_sentences_without_mentions_are_kept(split):
    paragraph, sentences = split[0]["Anarchism"][1]
    assert len(sentences) > 3
    assert any(not s.mentions for s in sentences) and any(s.mentions for s in sentences)
    assert sum(len(s.mentions) for s in sentences) == len(paragraph.links)


def test_anchor_without_tokens_is_counted():
    # a hand-made paragraph whose only link covers a zero-width space, which syntok treats as spacing
    paragraph = Paragraph("See \u200b here.", (Link(4, 5, "Foo", "\u200b"),), "")
    drops = collections.Counter()
    (sentence,) = split_paragraph(paragraph, drops)
    assert sentence.mentions == () and sentence.tokens == ("See", "here", ".")
    assert drops == {segment.MENTION_WITHOUT_TOKENS: 1}
