"""Real wikitext for the sentences tests: the enwiki dump excerpts that the gensim wheel ships."""

from __future__ import annotations

import collections
import importlib.resources

import pytest

from mesed_build.sentences.wikitext import Paragraph, article_paragraphs
from mesed_build.wiki.dump import DumpPage, iter_dump_pages

_TEST_DATA = importlib.resources.files("gensim") / "test" / "test_data"
ENWIKI_EXCERPT = str(_TEST_DATA / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
TABLE_MARKUP_EXCERPT = str(_TEST_DATA / "enwiki-table-markup.xml.bz2")


def articles(path: str) -> dict[str, DumpPage]:
    """The namespace-0, non-redirect pages of a dump, by title."""
    return {
        page.title: page
        for page in iter_dump_pages(path)
        if page.namespace == 0 and page.redirect_target is None
    }


@pytest.fixture(scope="session")
def enwiki() -> dict[str, DumpPage]:
    pages = articles(ENWIKI_EXCERPT)
    assert len(pages) == 106  # the excerpt's 206 pages hold 106 articles; the rest are redirects
    return pages


@pytest.fixture(scope="session")
def table_markup() -> dict[str, DumpPage]:
    return articles(TABLE_MARKUP_EXCERPT)


@pytest.fixture(scope="session")
def enwiki_paragraphs(enwiki) -> tuple[dict[str, list[Paragraph]], collections.Counter]:
    """Every article of the excerpt converted once (wanted=None), and the drops counted on the way."""
    drops: collections.Counter = collections.Counter()
    return {title: article_paragraphs(page.text, drops=drops) for title, page in enwiki.items()}, drops
