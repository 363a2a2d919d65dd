"""Disambiguation pages of the real enwiki dump excerpt: detection and the senses they list."""

from __future__ import annotations

import html
import importlib.resources

import pytest

from mesed_build.vocab.polysemy import (
    bare_name,
    disambiguation_senses,
    disambiguation_titles,
    is_disambiguation_wikitext,
    qualified_senses,
)
from mesed_build.wiki.dump import iter_dump_pages

DUMP = importlib.resources.files("gensim") / "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    out = {}
    for page in iter_dump_pages(str(DUMP)):
        if page.namespace == 0 and page.redirect_target is None:
            out[page.title] = html.unescape(page.text)
    return out


def test_detects_the_excerpts_disambiguation_pages(pages):
    found = sorted(title for title, text in pages.items() if is_disambiguation_wikitext(text))
    # {{disambiguation|geo}}, {{Disambiguation}}, {{Disambiguation|geo|hndis}} and {{geodis}}
    assert found == [
        "Aa River", "Aberdeen (disambiguation)", "Ada", "Alien", "Animal (disambiguation)",
        "Argument (disambiguation)", "Asia Minor (disambiguation)", "Austin (disambiguation)",
    ]


def test_austin_senses(pages):
    senses = disambiguation_senses(pages["Austin (disambiguation)"], "Austin (disambiguation)")
    titles = [s.title for s in senses]
    assert titles[0] == "Austin"  # the bold-linked primary topic of the lead
    assert titles[1:4] == ["Austin, Western Australia", "Austin, Manitoba", "Austin, Ontario"]
    # one sense per entry: the first article link ('Austin College', not 'Sherman, Texas')
    assert "Austin College" in titles and "Sherman, Texas" not in titles
    # a nested entry and a piped link
    assert "Austin Township, Macon County, Illinois" in titles and "Austin (song)" in titles
    # See also, other disambiguation pages and Special: links are not senses
    assert "Austen (disambiguation)" not in titles and "Austin Station (disambiguation)" not in titles
    assert not any(t.startswith("Special:") for t in titles)
    assert len(titles) == len(set(titles))
    section = {s.title: s.section for s in senses}
    assert section["Austin Motor Company"] == "Business"


def test_ada_and_geodis_pages(pages):
    ada = [s.title for s in disambiguation_senses(pages["Ada"], "Ada")]
    assert "Ada (programming language)" in ada and "Ada Lovelace" in ada
    assert "Ada (disambiguation)" not in ada and "ADA (disambiguation)" not in ada
    rivers = [s.title for s in disambiguation_senses(pages["Aa River"], "Aa River")]
    assert rivers[:2] == ["Aa (river, France)", "Aa (Meuse)"]
    assert "Gauja" in rivers  # 'Former names' is a section of senses too
    assert "AA (disambiguation)" not in rivers


def test_an_article_is_not_a_disambiguation_page(pages):
    assert not is_disambiguation_wikitext(pages["Anarchism"])
    assert not is_disambiguation_wikitext(pages["Aristotle"])


def test_where_a_targets_disambiguation_page_may_be():
    assert disambiguation_titles("Ada (programming language)") == [
        "Ada (programming language) (disambiguation)", "Ada (disambiguation)", "Ada",
    ]
    assert disambiguation_titles("Austin, Texas") == ["Austin, Texas (disambiguation)", "Austin (disambiguation)", "Austin"]
    assert disambiguation_titles("Austin") == ["Austin (disambiguation)"]


def test_qualified_titles_are_senses_of_the_bare_name():
    titles = ["Angola", "Angola (Portugal)", "James Whistler (Prison Break)", "James Whistler (Prison Break character)",
              "Alien (film)", "Alien (law)", "Alien"]
    by_base: dict[str, list[str]] = {}
    for t in titles:
        by_base.setdefault(bare_name(t), []).append(t)
    assert qualified_senses("Angola", by_base) == ["Angola (Portugal)"]
    assert qualified_senses("Alien (film)", by_base) == ["Alien (law)", "Alien"]
    # the same topic under two qualifiers is not another sense
    assert qualified_senses("James Whistler (Prison Break)", by_base) == []
