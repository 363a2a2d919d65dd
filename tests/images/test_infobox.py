"""Img(e): the infobox image of an entity's page, read the same way from a dump and from the API."""

from __future__ import annotations

import pytest

from mesed_build import store as st
from mesed_build.images.infobox import clean_file_name, infobox_file_names, infobox_image_from_wikitext, page_images
from mesed_build.wiki.api import MediaWikiAPI
from mesed_build.wiki.dump import DumpSource, iter_dump_pages
from tests.wiki.dump_api_server import DumpAPIServer, DumpBackedAPI
from tests.wiki.test_api_build import DUMPS


@pytest.fixture(scope="module")
def articles():
    return {page.title: page.text for path in DUMPS for page in iter_dump_pages(path) if page.namespace == 0}


def test_real_infoboxes_name_their_image(articles):
    assert infobox_image_from_wikitext(articles["Aristotle"]) == "Aristotle Altemps Inv8575.jpg"
    assert infobox_image_from_wikitext(articles["Arthur Schopenhauer"]) == "Schopenhauer.jpg"
    # a country's infobox has image_flag / image_coat, not a picture of the country: no Img(e)
    assert infobox_image_from_wikitext(articles["Algeria"]) is None
    named = [t for t, text in articles.items() if infobox_image_from_wikitext(text)]
    assert 20 <= len(named) < len(articles)


@pytest.mark.parametrize("value, expected", [
    ("[[File:Ayn_Rand.jpg|thumb|200px|Rand in 1943]]", "Ayn Rand.jpg"),
    ("Image:aldous Huxley.gif", "Aldous Huxley.gif"),
    (" Schopenhauer.jpg <!-- the 1859 photograph -->", "Schopenhauer.jpg"),
    ("{{Wikidata|property|P18}}", None),
    ("", None),
    ("Portrait", None),
])
def test_clean_file_name(value, expected):
    assert clean_file_name(value) == expected


def test_api_and_dump_pick_the_same_file(tmp_path, articles):
    dump = DumpSource(DUMPS, st.Store(f"sqlite:///{tmp_path}/dump.sqlite"))
    from_dump = infobox_file_names(dump, articles)
    with DumpAPIServer(DumpBackedAPI(DUMPS, st.Store(f"sqlite:///{tmp_path}/server.sqlite"))) as server:
        api = MediaWikiAPI(server.url, "mesed-build-tests/0.1 (tests@example.org)", backoff_s=0.01)
        from_api = infobox_file_names(api, articles)
    assert from_api == from_dump
    assert from_dump["Ayn Rand"] == "Ayn Rand.jpg"
    assert sum(1 for name in from_dump.values() if name) >= 20


class PageImagesAPI:
    """Answers prop=pageimages in MediaWiki's formatversion-2 shape, normalising and following redirects
    for the titles asked."""

    NORMALIZED = {"algeria": "Algeria"}
    REDIRECTS = {"Algeria": "People's Democratic Republic of Algeria"}
    IMAGES = {"People's Democratic Republic of Algeria": "Flag_of_Algeria.svg",
              "Aristotle": "Aristotle_Altemps_Inv8575.jpg", "Ayn Rand": "Ayn_Rand.jpg"}

    def __init__(self):
        self.asked: list[dict] = []

    def get(self, params):
        self.asked.append(params)
        query = {"normalized": [], "redirects": [], "pages": []}
        for title in params["titles"].split("|"):
            normal = self.NORMALIZED.get(title, title)
            if normal != title:
                query["normalized"].append({"fromencoded": False, "from": title, "to": normal})
            target = self.REDIRECTS.get(normal, normal)
            if target != normal:
                query["redirects"].append({"from": normal, "to": target})
            page = {"ns": 0, "title": target}
            page.update({"pageimage": self.IMAGES[target]} if target in self.IMAGES else {"missing": True})
            query["pages"].append(page)
        return {"batchcomplete": True, "query": query}


def test_page_images_map_back_through_normalisation_and_redirects():
    found = page_images(PageImagesAPI(), ["algeria", "Aristotle", "Nowhere"])
    assert found == {"algeria": "Flag of Algeria.svg", "Aristotle": "Aristotle Altemps Inv8575.jpg", "Nowhere": None}


def test_pages_without_an_infobox_image_fall_back_to_the_page_image(tmp_path, articles):
    dump = DumpSource(DUMPS, st.Store(f"sqlite:///{tmp_path}/dump.sqlite"))
    client = PageImagesAPI()
    names = infobox_file_names(dump, ["Algeria", "Ayn Rand"], page_image_client=client)
    assert names == {"Algeria": "Flag of Algeria.svg", "Ayn Rand": "Ayn Rand.jpg"}
    assert [p["titles"] for p in client.asked] == ["Algeria"]  # only the page whose wikitext names none
