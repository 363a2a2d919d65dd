"""Paragraph -> sentences -> tokens, with every link turned into a token-span mention.

syntok does the work (a rule-based English tokenizer and sentence segmenter that keeps character offsets).
Token boundaries are forced at link edges by tokenizing the text between link edges and each anchor on its
own, then handing the joined token stream to syntok's segmenter. So for every mention the tokens of its span
are exactly what the tokenizer makes of the anchor text alone.

syntok sometimes ends a sentence after an initial or a title inside a name ("Cecil B. DeMille", "Lt. Gen.",
"W. E. B. Du Bois"). A boundary inside a link's anchor is such an error, so the two sentences are joined
again instead of losing the mention.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

from syntok import segmenter
from syntok.tokenizer import Token, Tokenizer

from mesed_build.sentences.wikitext import Link, Paragraph

# Drop reasons counted in `drops`.
MENTION_WITHOUT_TOKENS = "mention_without_tokens"

# "n't" stays as written and hyphens are tokens, so the tokens and their offsets cover all the text
_TOKENIZER = Tokenizer(emit_hyphen_or_underscore_sep=True, replace_not_contraction=False)


@dataclass(frozen=True)
class Mention:
    token_start: int
    token_end: int  # INCLUSIVE
    char_start: int  # in Sentence.text
    char_end: int  # exclusive
    target: str
    anchor: str


@dataclass(frozen=True)
class Sentence:
    text: str
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]  # char span of each token in text
    mentions: tuple[Mention, ...]


# syntok cuts text into whitespace-free chunks and tokenizes each chunk on its own, so a chunk's tokens
# can be remembered: words repeat, and this halves the cost of tokenizing. (The first token's spacing,
# the only thing that depends on the neighbours, is the text between it and the previous token.)
_CHUNKS = Tokenizer._spaces  # the very pattern syntok splits on
_CHUNK_CACHE: dict[str, tuple[tuple[int, str], ...]] = {}
_CHUNK_CACHE_SIZE = 200_000
# Most chunks are an ASCII word (no lowercase-uppercase transition, so syntok does not split it) or a
# number, between ASCII punctuation. syntok makes one token of each prefix character, one of the word,
# one of a leading "..." in the tail and one of each other tail character. Such chunks skip syntok;
# test_segment checks the result against syntok on every chunk of the real dump excerpt.
_ASCII_PUNCTUATION = r"[!-/:-@\[-`{-~]*"
_SIMPLE_CHUNK = re.compile(rf"({_ASCII_PUNCTUATION})([A-Z]*[a-z]+|[A-Z]+|[0-9]+)({_ASCII_PUNCTUATION})")


def _chunk_pieces(chunk: str) -> tuple[tuple[int, str], ...]:
    """(offset, value) of the tokens syntok makes of one whitespace-free chunk."""
    simple = _SIMPLE_CHUNK.fullmatch(chunk)
    if simple is None:
        return tuple((t.offset, t.value) for t in _TOKENIZER.tokenize(chunk) if t.value)
    prefix, word, tail = simple.groups()
    pieces = [(i, c) for i, c in enumerate(prefix)]
    pieces.append((len(prefix), word))
    position = len(prefix) + len(word)
    if tail.startswith("..."):
        pieces.append((position, "..."))
        position += 3
        tail = tail[3:]
    pieces.extend((position + i, c) for i, c in enumerate(tail))
    return tuple(pieces)


def _append_tokens(text: str, start: int, end: int, tokens: list[Token]) -> None:
    """Append exactly the tokens syntok's `Tokenizer.tokenize(text[start:end])` makes (without its empty
    trailing-space marker), with offsets in `text`, to `tokens`."""
    last = tokens[-1] if tokens else None
    end_of_last = last.offset + len(last.value) if last else 0
    cache = _CHUNK_CACHE
    for match in _CHUNKS.finditer(text, start, end):
        chunk = match.group()
        pieces = cache.get(chunk)
        if pieces is None:
            pieces = _chunk_pieces(chunk)
            if len(cache) >= _CHUNK_CACHE_SIZE:
                cache.clear()
            cache[chunk] = pieces
        base = match.start()
        for relative, value in pieces:
            offset = base + relative
            tokens.append(Token(text[end_of_last:offset], value, offset))
            end_of_last = offset + len(value)


def tokenize(text: str) -> list[str]:
    """The tokens syntok makes of `text` on its own (what a mention's token span equals)."""
    tokens: list[Token] = []
    _append_tokens(text, 0, len(text), tokens)
    return [token.value for token in tokens]


def _tokens(text: str, edges: list[int], anchor_starts: set[int]) -> tuple[list[Token], dict[int, int]]:
    """syntok tokens of `text`, each piece between consecutive edges tokenized on its own, and for each
    edge the index of the first token at or after it.

    Anchors are always tokenized on their own. Another piece that directly follows the previous one
    (no space between) is tokenized with the previous character in front, so that "[[Aristotle]]'s"
    gives "'s" as in "Aristotle's" rather than "'", "s".
    """
    tokens: list[Token] = []
    first_at: dict[int, int] = {}
    for start, end in zip(edges, edges[1:]):
        count = first_at[start] = len(tokens)
        if start in anchor_starts or start == 0 or text[start - 1].isspace() or text[start].isspace():
            _append_tokens(text, start, end, tokens)
            continue
        _append_tokens(text, start - 1, end, tokens)
        if len(tokens) > count and tokens[count].offset == start - 1 and len(tokens[count].value) == 1:
            del tokens[count]  # the context character, a token of the previous piece already
        else:  # the previous character sticks to this piece's first token: no context after all
            del tokens[count:]
            _append_tokens(text, start, end, tokens)
    first_at[edges[-1]] = len(tokens)
    return tokens, first_at


def _sentences(tokens: list[Token], inside_link: list[bool]) -> list[list[Token]]:
    """syntok's sentences, joining again the ones that a boundary inside a link anchor separates."""
    joined: list[list[Token]] = []
    boundary = 0  # index of the first token of the next sentence
    for sentence in segmenter.segment(iter(tokens)):
        if joined and inside_link[boundary]:
            joined[-1].extend(sentence)
        else:
            joined.append(sentence)
        boundary += len(sentence)
    if boundary != len(tokens):  # syntok only drops empty tokens, and there are none
        raise AssertionError(f"syntok returned {boundary} of {len(tokens)} tokens")
    return joined


def split_paragraph(paragraph: Paragraph, drops: collections.Counter | None = None) -> list[Sentence]:
    """The sentences of a paragraph, tokenized, each with the mentions of the links inside it.

    A link whose anchor yields no token (only invisible characters) is dropped and counted as
    MENTION_WITHOUT_TOKENS. Sentences without mentions are returned too.
    """
    drops = drops if drops is not None else collections.Counter()
    text = paragraph.text
    edges = {0, len(text)}
    for link in paragraph.links:
        edges.add(link.start)
        edges.add(link.end)
    tokens, first_at = _tokens(text, sorted(edges), {link.start for link in paragraph.links})
    if not tokens:
        return []

    # each link's tokens: [first, last) in the paragraph's token list
    spans: list[tuple[int, int, Link]] = []
    inside_link = [False] * (len(tokens) + 1)
    for link in sorted(paragraph.links, key=lambda link: link.start):
        first, last = first_at[link.start], first_at[link.end]
        if first == last:
            drops[MENTION_WITHOUT_TOKENS] += 1
            continue
        spans.append((first, last, link))
        for index in range(first + 1, last):
            inside_link[index] = True

    sentences: list[Sentence] = []
    next_span = 0
    sentence_first = 0  # paragraph index of the sentence's first token
    for sentence_tokens in _sentences(tokens, inside_link):
        sentence_end = sentence_first + len(sentence_tokens)
        start = sentence_tokens[0].offset
        last_token = sentence_tokens[-1]
        mentions: list[Mention] = []
        while next_span < len(spans) and spans[next_span][0] < sentence_end:
            first, last, link = spans[next_span]
            next_span += 1
            mentions.append(
                Mention(
                    token_start=first - sentence_first,
                    token_end=last - 1 - sentence_first,
                    char_start=link.start - start,
                    char_end=link.end - start,
                    target=link.target,
                    anchor=link.anchor,
                )
            )
        values = [t.value for t in sentence_tokens]
        starts = [t.offset - start for t in sentence_tokens]
        sentences.append(
            Sentence(
                text=text[start : last_token.offset + len(last_token.value)],
                tokens=tuple(values),
                offsets=tuple(zip(starts, [s + len(v) for s, v in zip(starts, values)])),
                mentions=tuple(mentions),
            )
        )
        sentence_first = sentence_end
    return sentences
