"""Polysemous negatives: the other senses of a target's name, read off Wikipedia disambiguation pages.

A target 'Ada (programming language)' has the base name 'Ada'; the page 'Ada' (or
'Ada (disambiguation)') lists the other things called Ada. Each list entry's first article
link is that entry's sense (the Manual of Style puts exactly one navigable link per entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mwparserfromhell

from mesed_build.wiki.source import link_target, normalize_title

# templates that mark a page as a disambiguation page (lower-case, spaces for underscores)
DISAMBIGUATION_TEMPLATES = frozenset(
    {
        "disambiguation", "disambig", "disamb", "dab", "dis", "disambiguation page",
        "hndis", "human name disambiguation", "geodis", "place name disambiguation", "numberdis",
        "number disambiguation", "letter-number combination disambiguation", "lnd", "lcdis",
        "mathdab", "math disambiguation", "molecular formula disambiguation", "mil-unit-dis",
        "military unit disambiguation", "hospitaldis", "schooldis", "school disambiguation",
        "roaddis", "road disambiguation", "shipindex", "species latin name disambiguation",
        "taxonomy disambiguation", "genus disambiguation", "call sign disambiguation",
        "chinese title disambiguation", "airport disambiguation", "biology disambiguation",
    }
)
# sections whose links are not senses of the name
_SKIP_SECTIONS = frozenset({"see also", "references", "external links", "notes", "further reading"})
_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")
_DAB_SUFFIX = " (disambiguation)"
_TEMPLATE_OPENING = re.compile(r"\{\{\s*([^{}|\n]+?)\s*(?=\||\}\})")


@dataclass(frozen=True)
class Sense:
    title: str  # normalised link target
    section: str  # heading it was listed under ('' for the lead)
    line: int  # 1-based line in the wikitext


def is_disambiguation_wikitext(text: str) -> bool:
    """True when the wikitext carries a disambiguation template ({{disambiguation}}, {{hndis}}, {{geodis}}, ...)."""
    # a regex over template openings: parsing a long article with mwparserfromhell costs ~100x more
    for match in _TEMPLATE_OPENING.finditer(text):
        name = match.group(1).strip().replace("_", " ").lower()
        if name in DISAMBIGUATION_TEMPLATES or name.endswith(" disambiguation"):
            return True
    return False


def base_names(title: str) -> list[str]:
    """The names a title may be ambiguous under: itself, without its qualifier, and before its first comma."""
    names = [normalize_title(title)]
    bare = _QUALIFIER.sub("", title).strip()
    if bare:
        names.append(normalize_title(bare))
    head = bare.split(",", 1)[0].strip()
    if head:
        names.append(normalize_title(head))
    return list(dict.fromkeys(n for n in names if n))


def qualified_senses(title: str, titles_by_base: dict[str, list[str]]) -> list[str]:
    """Other titles that disambiguate the same name with a qualifier: 'Angola' -> ['Angola (Portugal)'].

    Wikipedia's title policy adds a parenthetical disambiguator exactly when a name has several
    senses, so 'X (qualifier)' is a sense of X even where no disambiguation page lists it.
    `titles_by_base` maps bare names (see bare_name) to the titles carrying them.
    """
    own = normalize_title(title)
    own_qualifier = _qualifier(own)
    out = []
    for t in titles_by_base.get(bare_name(title), ()):
        if t == own:
            continue
        q = _qualifier(t)
        if own_qualifier and q and (q.startswith(own_qualifier) or own_qualifier.startswith(q)):
            continue  # 'X (Prison Break)' and 'X (Prison Break character)': one topic under two titles
        out.append(t)
    return out


def _qualifier(title: str) -> str:
    match = _QUALIFIER.search(title)
    return match.group(0).strip()[1:-1].strip().lower() if match else ""


def bare_name(title: str) -> str:
    """A title without its parenthetical qualifier: 'Ada (programming language)' -> 'Ada'."""
    return normalize_title(_QUALIFIER.sub("", title).strip() or title)


def disambiguation_titles(title: str) -> list[str]:
    """Titles to look up for a target's disambiguation page, most specific first."""
    out: list[str] = []
    for name in base_names(title):
        if name.endswith(_DAB_SUFFIX):
            out.append(name)
            continue
        out.append(name + _DAB_SUFFIX)
        if name != normalize_title(title):
            out.append(name)  # the bare name itself may be the disambiguation page
    return list(dict.fromkeys(out))


def _first_article_link(wikicode) -> str | None:
    for link in wikicode.filter_wikilinks(recursive=True):
        target = link_target(str(link.title))
        if target is not None:
            return target
    return None


def disambiguation_senses(text: str, page_title: str = "") -> list[Sense]:
    """The senses listed on a disambiguation page, in page order, without duplicates.

    One sense per list entry (its first article link), plus the bold-linked primary topic of
    the lead; entries under See also / References are skipped, as are links to other
    disambiguation pages and to the page itself.
    """
    own = normalize_title(page_title) if page_title else None
    senses: dict[str, Sense] = {}
    section = ""
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        heading = re.match(r"^(={2,6})\s*(.*?)\s*\1$", line)
        if heading:
            section = heading.group(2)
            continue
        if section.lower() in _SKIP_SECTIONS:
            continue
        if line.startswith(("*", "#")):
            body = line.lstrip("*#:; ")
        elif section == "" and "'''[[" in line:
            body = line  # the primary topic: "'''[[Austin]]''' is the capital of Texas"
        else:
            continue
        target = _first_article_link(mwparserfromhell.parse(body))
        if target is None or target == own or target.endswith(_DAB_SUFFIX):
            continue
        senses.setdefault(target, Sense(target, section, number))
    return list(senses.values())
