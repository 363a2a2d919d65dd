"""The dump source on the real enwiki excerpt that gensim ships."""

from __future__ import annotations

import bz2
import importlib.resources
import re

import pytest
import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.wiki.dump import DumpError, DumpSource, iter_dump_pages

DATA = importlib.resources.files("gensim") / "test/test_data"
EXCERPT = DATA / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = DATA / "enwiki-table-markup.xml.bz2"


def raw_pages(path):
    """(id, title, redirect) of every page, read with regexes straight from the XML, not with our reader."""
    xml = bz2.open(str(path)).read().decode("utf-8")
    out = []
    for page in re.findall(r"<page>.*?</page>", xml, re.S):
        page_id = int(re.search(r"<id>(\d+)</id>", page).group(1))
        title = re.search(r"<title>(.*?)</title>", page).group(1)
        redirect = re.search(r'<redirect title="(.*?)"', page)
        out.append((page_id, title, redirect.group(1) if redirect else None))
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    store = st.Store(f"sqlite:///{tmp_path_factory.mktemp('dump')}/store.sqlite")
    src = DumpSource([EXCERPT, TABLES], store)
    src.ensure_index()
    yield src
    store.close()


def test_reader_streams_every_page_of_the_real_excerpt():
    expected = raw_pages(EXCERPT)
    pages = list(iter_dump_pages(EXCERPT))
    assert [(p.page_id, p.title) for p in pages] == [(i, t) for i, t, _ in expected]
    assert len(pages) == 206
    assert sum(p.redirect_target is not None for p in pages) == 100
    anarchism = next(p for p in pages if p.title == "Anarchism")
    assert anarchism.rev_id and "[[" in anarchism.text


def test_index_records_pages_redirects_and_links(source):
    expected_ids = {i for i, _, _ in raw_pages(EXCERPT)} | {i for i, _, _ in raw_pages(TABLES)}
    with source.store.engine.connect() as c:
        ids = {r[0] for r in c.execute(sa.select(st.pages.c.page_id))}
        redirects = c.execute(sa.select(sa.func.count()).where(st.pages.c.redirect_target.is_not(None))).scalar()
        n_links = c.execute(sa.select(sa.func.count()).select_from(st.links)).scalar()
    assert ids == expected_ids
    assert redirects == 100
    assert n_links > 20000  # the excerpt has ~29.5k wikilinks, some repeated within a page


def test_resolve_follows_redirects_and_reports_missing(source):
    by_title = {t: i for i, t, r in raw_pages(EXCERPT) if r is None}
    refs = source.resolve(["AynRand", "ayn Rand", "Ayn_Rand", "No such page at all"])
    assert refs["AynRand"].page_id == by_title["Ayn Rand"]
    assert refs["ayn Rand"].page_id == by_title["Ayn Rand"]  # first letter is case-insensitive
    assert refs["Ayn_Rand"].title == "Ayn Rand"
    assert refs["No such page at all"] is None  # a complete dump: a red link


def test_partial_dump_keeps_missing_pages_with_stable_ids(source):
    partial = DumpSource(source.paths, source.store, partial=True)
    first = partial.resolve(["Franz Boas"])["Franz Boas"]
    again = partial.resolve(["Franz_Boas"])["Franz_Boas"]
    assert first.synthetic and first.page_id < 0 and first.page_id == again.page_id


def test_backlinks_include_links_through_redirects(source):
    xml = bz2.open(str(EXCERPT)).read().decode("utf-8")

    def pattern(title):  # MediaWiki titles: the first letter is case-insensitive
        return re.compile(r"\[\[(?i:" + re.escape(title[0]) + ")" + re.escape(title[1:]) + r"[\]|#]")

    redirect, target = next((t, r) for i, t, r in raw_pages(EXCERPT) if r and pattern(t).search(xml))
    linking = {p.page_id for p in source.backlinks(target)}
    pages = {p.page_id: p for p in iter_dump_pages(EXCERPT)}
    via_redirect = {i for i, p in pages.items() if p.redirect_target is None and pattern(redirect).search(p.text)}
    assert via_redirect and via_redirect <= linking


def test_category_members_and_seeded_random_sample(source):
    members = {p.title for p in source.category_members("Category:Member states of the United Nations")}
    xml = bz2.open(str(EXCERPT)).read().decode("utf-8")
    expected = {
        re.search(r"<title>(.*?)</title>", page).group(1)
        for page in re.findall(r"<page>.*?</page>", xml, re.S)
        if "[[Category:Member states of the United Nations" in page
    }
    assert members == expected and len(members) >= 5
    a, b = source.random_pages(10, seed=1), source.random_pages(10, seed=1)
    assert a == b and len(a) == 10
    assert source.random_pages(10, seed=2) != a
    assert not any(p.is_disambiguation or p.title.endswith("(disambiguation)") for p in a)


def test_truncated_dump_names_the_cut_and_keeps_pages_before_it(tmp_path):
    data = EXCERPT.read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) * 2 // 3])
    store = st.Store(f"sqlite:///{tmp_path}/store.sqlite")
    with pytest.raises(DumpError) as err:
        DumpSource([cut], store).ensure_index()
    message = str(err.value)
    assert "cut.xml.bz2" in message and "compressed byte" in message and "after page" in message
    kept = store.count(st.pages)
    assert 0 < kept < 206
    assert store.count(st.source_indexes) == 0  # not marked complete: a rerun reads it again
    # the complete file then indexes everything, keeping what was there
    DumpSource([EXCERPT], store).ensure_index()
    assert store.count(st.pages) == 206
    store.close()


def test_redirects_to_lists_every_redirect_of_a_title(source):
    expected = sorted(t for _, t, r in raw_pages(EXCERPT) if r == "Afroasiatic languages")
    assert len(expected) >= 2
    got = source.redirects_to(["Afroasiatic languages", "No such page at all"])
    assert got == {"Afroasiatic languages": expected, "No such page at all": []}
