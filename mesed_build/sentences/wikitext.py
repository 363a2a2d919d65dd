"""Wikitext -> plain-text paragraphs with the exact character span of every article link.

A careful scanner rather than a full parse: a mwparserfromhell parse of a whole article costs about
three times what the sentences stage can afford (see bench/extract_sentences.py). The scanner works in
three passes:

1. Block removal on the whole article: comments, <ref>s and other content-less tags, templates and
   tables (a balanced scan of ``{{ }}`` / ``{| |}``), and File/Image/Category/interlanguage links
   (a balanced scan of ``[[ ]]``, so that links nested in image captions go too).
2. Lines -> paragraphs: headings set the current section (skipped sections are never converted), list
   items and blank lines end paragraphs.
3. Inline conversion of each kept paragraph: links keep their visible text and become `Link`s, external
   links keep their label, quotes/tags go, entities are decoded and whitespace is collapsed. Every
   piece of output goes through one builder that knows its offset, so `text[start:end] == anchor`
   holds by construction.

With `wanted`, an article without a wanted link target costs one regex scan, and only the paragraphs that
hold a wanted link are converted.

Malformed wikitext never raises: the unreadable part is dropped (up to the end of its paragraph) and the
reason is counted in `drops`.
"""

from __future__ import annotations

import collections
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from mesed_build.wiki.source import link_target

# Sections that hold no prose about the article's subject (compared case-insensitively).
SKIPPED_SECTIONS = frozenset(
    s.casefold()
    for s in (
        "See also", "References", "External links", "Further reading", "Notes", "Bibliography", "Sources",
        "Notes and references", "References and notes", "Footnotes", "Citations", "Works cited",
    )
)

# Drop reasons counted in `drops`.
UNCLOSED_COMMENT = "wikitext_unclosed_comment"
UNCLOSED_TAG = "wikitext_unclosed_tag"
UNBALANCED_TEMPLATE = "wikitext_unbalanced_template"
UNBALANCED_TABLE = "wikitext_unbalanced_table"
UNBALANCED_LINK = "wikitext_unbalanced_link"
EMPTY_ANCHOR = "link_empty_anchor"


@dataclass(frozen=True)
class Link:
    start: int  # char offset in Paragraph.text (inclusive)
    end: int  # exclusive; text[start:end] == anchor
    target: str  # normalised namespace-0 title, from link_target()
    anchor: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    links: tuple[Link, ...]
    section: str  # heading it sits under, '' for the lead


# ---------------------------------------------------------------------------------------------------
# Pass 1: block removal

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# Tags whose whole content is not prose. `ref\b` does not match `references`, which is listed itself.
_CONTENTLESS_TAGS = (
    "ref", "references", "math", "gallery", "timeline", "imagemap", "score", "syntaxhighlight", "source",
    "chem", "ce", "graph", "mapframe", "maplink", "templatedata", "hiero", "inputbox", "categorytree",
    "table", "pre", "includeonly", "templatestyles", "indicator",
)
_TAG_NAMES = "|".join(_CONTENTLESS_TAGS)
_CONTENTLESS = re.compile(
    rf"<({_TAG_NAMES})\b[^>]*?/>|<({_TAG_NAMES})\b[^>]*>.*?</\2\s*>", re.DOTALL | re.IGNORECASE
)
_CONTENTLESS_OPEN = re.compile(rf"<({_TAG_NAMES})\b[^>]*>", re.IGNORECASE)
_CONTENTLESS_CLOSE = re.compile(rf"</({_TAG_NAMES})\s*>", re.IGNORECASE)
_NOWIKI = re.compile(r"<nowiki\s*>(.*?)</nowiki\s*>|<nowiki\s*/>", re.DOTALL | re.IGNORECASE)
_NOWIKI_ESCAPES = str.maketrans({"[": "&#91;", "]": "&#93;", "{": "&#123;", "}": "&#125;", "'": "&#39;",
                                 "<": "&lt;", ">": "&gt;", "|": "&#124;", "=": "&#61;", "*": "&#42;",
                                 "#": "&#35;", ":": "&#58;", ";": "&#59;"})
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
# direction marks and the byte-order mark: invisible, and they would stick to tokens
_INVISIBLE = re.compile("[\u200e\u200f\u202a-\u202e\ufeff]")
# Template/table brackets. Tables open and close only at the start of a line.
# `|}}` at the start of a line ends a template (an empty last parameter), not a table.
_BRACES = re.compile(r"\{\{|\}\}|^[ \t]*\{\||^[ \t]*\|\}(?!\})", re.MULTILINE)
_BRACKETS = re.compile(r"\[\[|\]\]")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
# Invisible link prefixes (when written without a leading colon): images, categories, interlanguage.
_HIDDEN_LINK_NAMESPACES = frozenset(("file", "image", "category"))
_INTERLANGUAGE = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z0-9]+)*|simple)$")


def _paragraph_end(text: str, pos: int) -> int:
    match = _PARAGRAPH_END.search(text, pos)
    return match.start() if match else len(text)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with the nested and overlapping ones merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` without the given sorted, non-overlapping spans."""
    if not spans:
        return text
    pieces = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _strip_comments_and_tags(text: str, drops: collections.Counter) -> str:
    if "<!--" in text:
        text = _COMMENT.sub("", text)
        unclosed = text.find("<!--")
        if unclosed >= 0:  # MediaWiki hides everything after an unclosed comment; so do we
            drops[UNCLOSED_COMMENT] += 1
            text = text[:unclosed]
    if "<" not in text:
        return text
    if "<nowiki" in text or "<NOWIKI" in text:
        text = _NOWIKI.sub(lambda m: (m.group(1) or "").translate(_NOWIKI_ESCAPES), text)
    text = _CONTENTLESS.sub("", text)
    # An opening tag left over has no closing tag: drop to the end of its paragraph.
    match = _CONTENTLESS_OPEN.search(text)
    while match:
        drops[UNCLOSED_TAG] += 1
        end = _paragraph_end(text, match.end())
        text = text[: match.start()] + text[end:]
        match = _CONTENTLESS_OPEN.search(text, match.start())
    if "</" in text:  # a closing tag without its opening tag
        text = _CONTENTLESS_CLOSE.sub("", text)
    return text


def _strip_templates_and_tables(text: str, drops: collections.Counter) -> str:
    """Remove every balanced template and table; an unclosed one is removed to the end of its paragraph."""
    if "{" not in text and "|}" not in text:
        return text
    spans: list[tuple[int, int]] = []
    stack: list[tuple[bool, int]] = []  # (is_table, start)
    pos = 0
    while True:
        for match in _BRACES.finditer(text, pos):
            token = match.group()
            start = match.start()
            if token == "{{" or token.endswith("{|"):
                stack.append((token != "{{", start))
                continue
            closes_table = token != "}}"
            # close the innermost opener of the same kind; openers above it were never closed
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth][0] == closes_table:
                    break
            else:
                drops[UNBALANCED_TABLE if closes_table else UNBALANCED_TEMPLATE] += 1
                if not stack:  # a stray closer outside any template: remove just that
                    spans.append((start, match.end()))
                continue
            for is_table, _ in stack[depth + 1:]:
                drops[UNBALANCED_TABLE if is_table else UNBALANCED_TEMPLATE] += 1
            outer_start = stack[0][1]
            del stack[depth:]
            if not stack:
                spans.append((outer_start, match.end()))
        if not stack:
            break
        # The outermost opener never closed: drop to the end of its paragraph and scan on from there.
        is_table, start = stack[0]
        drops[UNBALANCED_TABLE if is_table else UNBALANCED_TEMPLATE] += 1
        pos = _paragraph_end(text, start)
        spans.append((start, pos))
        stack.clear()
    # a stray closer's span can lie inside an unclosed opener's span
    return _cut(text, _merge(spans))


def _is_hidden_link(inner: str) -> bool:
    """Whether a link (its text after '[[') renders as nothing, or as an image, not as text."""
    head = inner.split("|", 1)[0]
    if ":" not in head:
        return False
    head = head.lstrip(" \t")
    if head.startswith(":"):
        return False  # [[:Category:X]] / [[:File:X]] are visible links
    prefix = head.split(":", 1)[0].strip()
    return prefix.lower() in _HIDDEN_LINK_NAMESPACES or bool(_INTERLANGUAGE.match(prefix))


def _strip_hidden_links(text: str, drops: collections.Counter) -> str:
    """Remove File/Image/Category/interlanguage links, with any links nested in their captions."""
    if "[[" not in text:
        return text
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    for match in _BRACKETS.finditer(text):
        if match.group() == "[[":
            stack.append(match.start())
        elif stack:
            start = stack.pop()
            if _is_hidden_link(text[start + 2 : match.start()]):
                spans.append((start, match.end()))
    # An unclosed image link would leak its caption and options: drop it to the end of its paragraph.
    for start in stack:
        if _is_hidden_link(text[start + 2 : start + 200]):
            drops[UNBALANCED_LINK] += 1
            spans.append((start, _paragraph_end(text, start)))
    return _cut(text, _merge(spans))


def strip_blocks(wikitext: str, drops: collections.Counter | None = None) -> str:
    """Pass 1: the article without comments, content-less tags, templates, tables and hidden links."""
    drops = drops if drops is not None else collections.Counter()
    text = _strip_comments_and_tags(wikitext, drops)
    text = _strip_templates_and_tables(text, drops)
    text = _strip_hidden_links(text, drops)
    if "__" in text:
        text = _MAGIC_WORD.sub("", text)
    if _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    return text


# ---------------------------------------------------------------------------------------------------
# Pass 3: inline conversion

_FORMATTING_TAGS = (
    "span", "small", "big", "sup", "sub", "b", "i", "u", "s", "strike", "del", "ins", "em", "strong", "tt",
    "var", "kbd", "samp", "abbr", "cite", "dfn", "q", "font", "center", "div", "blockquote", "poem", "p",
    "br", "hr", "bdi", "bdo", "mark", "time", "data", "wbr", "li", "ul", "ol", "dl", "dt", "dd", "caption",
    "tr", "td", "th", "tbody", "thead", "section", "ruby", "rb", "rt", "rp", "nowiki", "code", "noinclude",
    "onlyinclude",
)
_BREAKING_TAGS = frozenset(("br", "p", "hr", "div", "li", "dd", "dt", "tr", "td", "th", "blockquote"))
_INLINE = re.compile(
    # English link trail: lowercase ASCII letters only, whatever the case-insensitivity of the rest
    r"(?P<link>\[\[(?P<target>[^\[\]|\n]*)(?:\|(?P<anchor>[^\[\]]*))?\]\](?P<trail>(?-i:[a-z]+))?)"
    r"|(?P<ext>\[(?:https?:|ftp:|//|mailto:|news:|irc:)[^\s\[\]<>\"]*(?:[ \t]+(?P<label>[^\]\n]*))?\])"
    r"|(?P<tag></?(?P<tagname>" + "|".join(_FORMATTING_TAGS) + r")\b[^>]*>)"
    r"|(?P<quotes>''+)"
    r"|(?P<stray>\[\[|\]\])",
    re.IGNORECASE,
)
# the zero-width space separates tokens (syntok splits on it) but is no \s
_WS = re.compile(r"[\s\u200b]+")
_HEADING = re.compile(r"^(={1,6})(.+?)\1\s*$")
_LIST_MARKER = re.compile(r"^[*#:;]+[ \t]*")
_LINK_HEAD = re.compile(r"\[\[([^\[\]|\n]+)")
_HAS_WORD = re.compile(r"\w")


@lru_cache(maxsize=200_000)
def _target(raw: str) -> str | None:
    if "&" in raw:
        raw = html.unescape(raw)
    return link_target(raw)


def _quotes(run: str) -> str:
    """What a run of apostrophes shows: '' / ''' / ''''' are markup, '''' is an apostrophe + bold."""
    n = len(run)
    if n in (2, 3, 5):
        return ""
    if n == 4:
        return "'"
    return "'" * (n - 5)


class _Builder:
    """Accumulates plain text with whitespace collapsed, knowing the offset of everything emitted."""

    __slots__ = ("parts", "length", "space")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.space = True  # at the start nothing needs a separating space

    def text(self, chunk: str) -> None:
        if not chunk:
            return
        if "&" in chunk:
            chunk = _INVISIBLE.sub("", html.unescape(chunk))  # &lrm; and friends
        chunk = _WS.sub(" ", chunk)
        if self.space and chunk[0] == " ":
            chunk = chunk[1:]
            if not chunk:
                return
        self.parts.append(chunk)
        self.length += len(chunk)
        self.space = chunk[-1] == " "

    def space_break(self) -> None:
        if not self.space:
            self.parts.append(" ")
            self.length += 1
            self.space = True

    def result(self) -> str:
        text = "".join(self.parts)
        return text[:-1] if text.endswith(" ") else text


def _emit_formatting(kind: str | None, match: re.Match, out: _Builder) -> bool:
    """Bold/italic quotes, inline tags and external links, the same in body text and in anchors."""
    if kind == "quotes":
        out.text(_quotes(match.group("quotes")))
    elif kind == "tag":
        if match.group("tagname").lower() in _BREAKING_TAGS:
            out.space_break()
    elif kind == "ext":
        _plain(match.group("label") or "", out)
    else:
        return False
    return True


def _plain(fragment: str, out: _Builder) -> None:
    """Emit the visible text of wikitext without links (an anchor, a label, a heading)."""
    pos = 0
    for match in _INLINE.finditer(fragment):
        out.text(fragment[pos : match.start()])
        pos = match.end()
        kind = match.lastgroup
        if _emit_formatting(kind, match, out):
            continue
        if kind == "link":  # a link inside an anchor is malformed: keep its text only
            _plain(match.group("anchor") if match.group("anchor") is not None else match.group("target"), out)
            out.text(match.group("trail") or "")
    out.text(fragment[pos:])


def plain_text(fragment: str) -> str:
    """The visible text of a piece of inline wikitext (after pass 1), whitespace collapsed."""
    out = _Builder()
    _plain(fragment, out)
    return out.result()


def _convert(raw: str, section: str, drops: collections.Counter) -> Paragraph | None:
    out = _Builder()
    links: list[Link] = []
    pos = 0
    for match in _INLINE.finditer(raw):
        out.text(raw[pos : match.start()])
        pos = match.end()
        kind = match.lastgroup
        if kind == "link":
            target_raw = match.group("target")
            anchor_raw = match.group("anchor")
            if anchor_raw is None:
                shown = target_raw.strip().lstrip(":").replace("_", " ")
            else:
                shown = anchor_raw
            if shown[:1].isspace():
                out.space_break()
            anchor_out = _Builder()
            _plain(shown, anchor_out)
            anchor_out.text(match.group("trail") or "")
            anchor = anchor_out.result()
            if not anchor:
                drops[EMPTY_ANCHOR] += 1
                continue
            start = out.length
            out.parts.append(anchor)
            out.length += len(anchor)
            out.space = False
            target = _target(target_raw)
            if target is not None:
                links.append(Link(start, out.length, target, anchor))
            if shown[-1:].isspace() and not match.group("trail"):
                out.space_break()
        elif _emit_formatting(kind, match, out):
            pass
        else:  # stray [[ or ]]
            drops[UNBALANCED_LINK] += 1
    out.text(raw[pos:])
    text = out.result()
    if not _HAS_WORD.search(text):
        return None
    return Paragraph(text, tuple(links), section)


# ---------------------------------------------------------------------------------------------------
# Pass 2: paragraphs and sections


def _has_wanted_link(wikitext: str, wanted: Callable[[str], bool]) -> bool:
    for match in _LINK_HEAD.finditer(wikitext):
        target = _target(match.group(1))
        if target is not None and wanted(target):
            return True
    return False


def article_paragraphs(
    wikitext: str,
    wanted: Callable[[str], bool] | None = None,
    drops: collections.Counter | None = None,
) -> list[Paragraph]:
    """The prose paragraphs of an article, in order, with their article links.

    With `wanted`, only the paragraphs holding at least one link whose target satisfies it are returned
    (all their links are kept); the rest of the article is not converted.
    """
    drops = drops if drops is not None else collections.Counter()
    if wanted is not None and not _has_wanted_link(wikitext, wanted):
        return []
    text = strip_blocks(wikitext, drops)
    paragraphs: list[Paragraph] = []
    section = ""
    skip_level = 0  # >0: inside a skipped section of that heading level
    lines: list[str] = []

    def flush() -> None:
        if not lines:
            return
        raw = "\n".join(lines)
        lines.clear()
        if wanted is not None and ("[[" not in raw or not _has_wanted_link(raw, wanted)):
            return
        paragraph = _convert(raw, section, drops)
        if paragraph is None:
            return
        # the cheap scan may have seen a wanted link that renders as nothing or is malformed
        if wanted is None or any(wanted(link.target) for link in paragraph.links):
            paragraphs.append(paragraph)

    for line in text.split("\n"):
        first = line[:1]
        if first == "=":
            heading = _HEADING.match(line.rstrip())
            if heading:
                flush()
                level = len(heading.group(1))
                title = plain_text(heading.group(2))
                if skip_level and level <= skip_level:
                    skip_level = 0
                if not skip_level and title.casefold() in SKIPPED_SECTIONS:
                    skip_level = level
                section = title
                continue
        if skip_level:
            continue
        if not line or line.isspace():
            flush()
        elif first in "*#:;":
            flush()
            lines.append(_LIST_MARKER.sub("", line, count=1))
            flush()
        elif line.startswith("----"):
            flush()
        else:
            lines.append(line)
    flush()
    return paragraphs
