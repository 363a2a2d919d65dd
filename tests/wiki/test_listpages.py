"""List page -> entities on real list pages from the enwiki excerpts, and on malformed wikitext."""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter

import pytest

from mesed_build.wiki.dump import iter_dump_pages
from mesed_build.wiki.listpages import list_page_entries
from mesed_build.wiki.source import normalize_title

DATA = importlib.resources.files("gensim") / "test/test_data"


def page_text(dump: str, title: str) -> str:
    import html

    page = next(p for p in iter_dump_pages(DATA / dump) if p.title == title)
    return html.unescape(page.text)


@pytest.fixture(scope="module")
def anthropologists():
    return page_text("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "List of anthropologists")


@pytest.fixture(scope="module")
def prison_break():
    return page_text("enwiki-table-markup.xml.bz2", "List of Prison Break characters")


def test_every_linked_list_item_of_the_anthropologists_list(anthropologists):
    # independent reading: a bullet line whose first thing is a wikilink is an entry
    expected = []
    for line in anthropologists.splitlines():
        if re.match(r"^==\s*(See also|References|External links|Further reading)\s*==", line):
            break
        m = re.match(r"^\*\s*\[\[([^\]|#]+)", line)
        if m and normalize_title(m.group(1)) not in expected:
            expected.append(normalize_title(m.group(1)))
    drops = Counter()
    entries = list_page_entries(anthropologists, drops=drops)
    assert [e.target for e in entries] == expected
    assert len(entries) > 200
    boas = next(e for e in entries if e.target == "Franz Boas")
    assert boas.section == "B" and boas.anchor == "Franz Boas"
    adair = entries[0]
    assert adair.target == "John Adair (anthropologist)" and adair.anchor == "John Adair"
    # unlinked names ("*Florence Babb") are counted, not silently lost
    body = re.split(r"^==\s*See also", anthropologists, flags=re.M)[0]
    unlinked = sum(1 for line in body.splitlines() if re.match(r"^\*\s*[^\s\[]", line))
    assert drops["list_item_without_link"] == unlinked > 0


def test_table_columns_of_the_prison_break_list(prison_break):
    actors = [e.target for e in list_page_entries(prison_break, table_column="Actor")]
    characters = [e.target for e in list_page_entries(prison_break, table_column="Character")]
    # rows read straight from the markup: |align="center"| [[Actor]] then |align="center"| [[Character]]
    cells = re.findall(r'\|align="center"\| \[\[([^\]|]+)', prison_break)
    assert actors[:5] == cells[0:10:2]
    assert characters[:5] == cells[1:10:2]
    assert "Wentworth Miller" in actors and "Wentworth Miller" not in characters
    assert "Michael Scofield" in characters and "Michael Scofield" not in actors
    assert not set(actors) & {"Prison Break (season 1)", "Stand-in"}  # header links and notes are not entries


def test_column_that_does_not_exist_is_counted(prison_break):
    drops = Counter()
    assert list_page_entries(prison_break, table_column="Director", drops=drops) == []
    assert drops["table_column_not_found"] >= 1


SYNTHETIC = """{{Infobox list|title=[[Not an entry]]}}
Intro with a [[Lead link]].
== Painters ==
* [[Claude Monet]] (1840–1926), French [[Impressionism|impressionist]]
* ''[[Vincent van Gogh|Van Gogh]]''
* [[File:Monet.jpg|thumb|[[Not an entry either]]]]
* [[Category:Painters]]
* [[fr:Paul Cézanne]]
* [[#Sculptors|see below]]
* a painter called [[Ignored by the head rule]]
{{Navbox|list1=[[Navbox entry]]}}
== Sculptors ==
* [[Auguste Rodin]]<ref>[[Ref link]]</ref>
== See also ==
* [[List of sculptors]]
== External links ==
* [[Museum]]
"""


def test_entries_skip_templates_files_categories_interwiki_and_closing_sections():
    entries = [e.target for e in list_page_entries(SYNTHETIC)]
    assert entries == ["Claude Monet", "Vincent van Gogh", "Auguste Rodin"]


def test_section_selectors():
    assert [e.target for e in list_page_entries(SYNTHETIC, sections=("Sculptors",))] == ["Auguste Rodin"]
    assert [e.target for e in list_page_entries(SYNTHETIC, exclude_sections=("Painters",))] == ["Auguste Rodin"]


@pytest.mark.parametrize(
    "text",
    [
        "== A ==\n* [[Ada Lovelace]]\n* {{unclosed template [[Hidden]]\n* [[Alan Turing]]\n",
        "== A ==\n* [[Ada Lovelace]]\n* [[Broken link\n* [[Alan Turing]]\n",
        "== A ==\n* [[Ada Lovelace]]\n{| class=wikitable\n| [[Cell]]\n* [[Alan Turing]]\n",
    ],
)
def test_malformed_wikitext_keeps_what_is_readable(text):
    entries = [e.target for e in list_page_entries(text)]
    assert "Ada Lovelace" in entries
