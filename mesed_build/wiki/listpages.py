"""List page -> entity links, with mwparserfromhell.

An entry is the first article link of a list item (`*`, `#`) or of a table row (or of the chosen
column's cell), in the article body. Templates (navboxes, {{Main}}, ...), refs, files, categories,
interwiki links, links to sections of the same page, and the closing sections (See also, References,
External links, Further reading, ...) are not entries.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import mwparserfromhell as mwp
from mwparserfromhell.nodes import Heading, Tag, Template, Wikilink

from mesed_build.wiki.source import link_target

CLOSING_SECTIONS = frozenset(
    s.lower()
    for s in ("See also", "References", "External links", "Further reading", "Notes", "Bibliography",
              "Sources", "Footnotes", "Citations", "Notes and references", "Works cited")
)
_LIST_ITEM = re.compile(r"^[*#]+")
_WORDS = re.compile(r"\w")


@dataclass(frozen=True)
class ListEntry:
    target: str  # normalised title the link points to
    anchor: str  # the link's visible text
    section: str  # the heading the entry sits under ('' for the lead)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _first_link(node_code) -> Wikilink | None:
    for link in node_code.filter_wikilinks(recursive=True):
        if link_target(str(link.title)):
            return link
    return None


def _entry(link: Wikilink, section: str) -> ListEntry:
    target = link_target(str(link.title))
    anchor = link.text.strip_code().strip() if link.text is not None else str(link.title).split("#")[0].strip()
    return ListEntry(target=target, anchor=anchor, section=section)


def _strip_non_entries(code) -> None:
    """Remove templates, refs and galleries so their links never count as entries."""
    for node in code.filter(recursive=False, forcetype=(Template, Tag)):
        if isinstance(node, Template):
            code.remove(node)
        elif isinstance(node, Tag) and str(node.tag).lower() in ("ref", "gallery", "references", "noinclude"):
            code.remove(node)


def _table_entries(table: Tag, column: str | int | None, section: str, drops: Counter) -> list[ListEntry]:
    out = []
    column_index: int | None = column if isinstance(column, int) else None
    rows = table.contents.filter_tags(matches=lambda n: str(n.tag).lower() == "tr", recursive=False)
    for row in rows:
        cells = row.contents.filter_tags(matches=lambda n: str(n.tag).lower() in ("td", "th"), recursive=False)
        if not cells:
            continue
        if all(str(c.tag).lower() == "th" for c in cells):
            if isinstance(column, str) and column_index is None:
                names = [_clean(c.contents.strip_code()) for c in cells]
                if _clean(column) in names:
                    column_index = names.index(_clean(column))
            continue
        if column is not None:
            if column_index is None:
                drops["table_column_not_found"] += 1
                return out
            if column_index >= len(cells):
                drops["table_row_without_column"] += 1
                continue
            chosen = [cells[column_index]]
        else:
            chosen = cells
        for cell in chosen:
            link = _first_link(cell.contents)
            if link is not None:
                out.append(_entry(link, section))
                break
        else:
            drops["table_row_without_link"] += 1
    return out


def list_page_entries(
    wikitext: str,
    *,
    sections: tuple[str, ...] = (),
    exclude_sections: tuple[str, ...] = (),
    table_column: str | int | None = None,
    drops: Counter | None = None,
) -> list[ListEntry]:
    """The entity links of a list page, in page order, deduplicated by target."""
    drops = drops if drops is not None else Counter()
    try:
        code = mwp.parse(wikitext, skip_style_tags=True)
    except Exception as exc:  # mwparserfromhell raises ParserError on pathological input
        drops["unparsable_wikitext"] += 1
        raise ValueError(f"wikitext could not be parsed: {exc}") from exc
    wanted = {_clean(s) for s in sections}
    excluded = CLOSING_SECTIONS | {_clean(s) for s in exclude_sections}

    entries: list[ListEntry] = []
    # walk the sections flat, tracking the heading path so a selector matches sub-sections too
    heading_path: list[tuple[int, str]] = []
    for section in code.get_sections(flat=True, include_lead=True):
        headings = section.filter_headings(recursive=False)
        title = display_title = ""
        if headings and isinstance(section.nodes[0], Heading):
            heading = headings[0]
            display_title = heading.title.strip_code().strip()
            title = _clean(display_title)
            heading_path = [(lvl, t) for lvl, t in heading_path if lvl < heading.level] + [(heading.level, title)]
        path_titles = {t for _, t in heading_path}
        if path_titles & excluded:
            continue
        if wanted and not (path_titles & wanted):
            continue
        _strip_non_entries(section)
        # recursive: tables often sit inside <onlyinclude> or <div> wrappers
        tables = section.filter_tags(matches=lambda n: str(n.tag).lower() == "table", recursive=True)
        for table in tables:
            entries.extend(_table_entries(table, table_column, display_title, drops))
        if table_column is not None:
            continue
        for table in tables:
            try:
                section.remove(table)
            except ValueError:
                pass  # nested inside a table removed just before
        for line in str(section).splitlines():
            if not _LIST_ITEM.match(line):
                continue
            item = mwp.parse(_LIST_ITEM.sub("", line, count=1))
            link = _first_link(item)
            if link is None:
                drops["list_item_without_link"] += 1
                continue
            # the entry heads the item; a link later in a description ("a [[hack writer]]") is not one
            head = str(item).split(str(link), 1)[0]
            if _WORDS.search(mwp.parse(head).strip_code()):
                drops["list_item_not_headed_by_link"] += 1
                continue
            entries.append(_entry(link, display_title))

    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.target in seen:
            drops["duplicate_entry"] += 1
            continue
        seen.add(entry.target)
        unique.append(entry)
    return unique
