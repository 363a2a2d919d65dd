"""The commons provider against real recorded MediaWiki responses, served by the replay server."""

from __future__ import annotations

import pytest

from mesed_build.images.providers import ProviderError, get_provider
from mesed_build.images.providers.commons import CommonsProvider, MediaWikiClient
from tests.replay_server import ReplayServer, Scripted

UA = "mesed-build-tests/0.1 (https://example.org/mesed-build; tests@example.org)"
CASSETTES = ["search-file-namespace.json", "imageinfo-url.json", "imageinfo-commons-file.json",
             "imageinfo-missing-file.json"]


@pytest.fixture
def server():
    with ReplayServer(CASSETTES) as srv:
        # the cassettes were recorded with narrower iiprop lists than we ask for (we add extmetadata
        # for the licence); a wider request gets a superset answer, so iiprop is not matched on
        for interaction in srv.interactions:
            interaction.params.pop("iiprop", None)
        yield srv


def provider(server, waits=None, **kw) -> CommonsProvider:
    client = MediaWikiClient(server.endpoint, UA, backoff_s=0.01, max_retries=2,
                             sleep=(waits.append if waits is not None else (lambda s: None)))
    return CommonsProvider(client, **kw)


def test_file_search_titles(server):
    titles = provider(server).search_titles("Python programming", 10)
    assert len(titles) == 10
    assert titles[0] == "File:Python Programming.pdf"
    assert titles[1] == "File:Think Python.pdf"
    assert all(t.startswith("File:") for t in titles)
    request = server.requests[-1]
    assert request.params["srnamespace"] == "6" and request.params["maxlag"] == "5"
    assert request.headers["user-agent"] == UA
    assert "gzip" in request.headers["accept-encoding"]


def test_imageinfo_resolves_urls_sizes_and_skips_missing(server):
    p = provider(server)
    einstein = p.imageinfo(["File:Albert_Einstein_Head.jpg"])
    # asked with underscores, answered normalised: the result is keyed by what we asked for
    assert list(einstein) == ["File:Albert_Einstein_Head.jpg"]
    candidate = einstein["File:Albert_Einstein_Head.jpg"]
    assert candidate.url == "https://upload.wikimedia.org/wikipedia/commons/d/d3/Albert_Einstein_Head.jpg"  # offline-ok: recorded value
    assert candidate.source_page == "https://commons.wikimedia.org/wiki/File:Albert_Einstein_Head.jpg"  # offline-ok: recorded value
    logo = p.imageinfo(["File:Python-logo-notext.svg"])["File:Python-logo-notext.svg"]
    assert (logo.width, logo.height, logo.mime) == (110, 110, "image/svg+xml")
    assert p.imageinfo(["File:ThisFileDoesNotExist12345.png"]) == {}


def test_search_keeps_only_existing_raster_files(server, monkeypatch):
    p = provider(server, batch_size=1)  # one title per call, as the recordings were made
    monkeypatch.setattr(p, "search_titles", lambda q, limit: [
        "File:Python-logo-notext.svg", "File:ThisFileDoesNotExist12345.png", "File:Albert_Einstein_Head.jpg"])
    found = p.search("Einstein", limit=10)
    assert [c.title for c in found] == ["File:Albert Einstein Head.jpg"]


def test_a_failed_api_call_is_a_clear_error(server):
    # the imageinfo call for the recorded search's titles was not recorded: the replay answers 404
    p = provider(server)
    with pytest.raises(ProviderError, match=r"api\.php.*HTTP 404"):
        p.search("Python programming", limit=10)


def test_rate_limit_is_retried_with_retry_after(server):
    waits: list[float] = []
    server.script(Scripted.rate_limited(retry_after=3), Scripted.maxlag(lag=7.0, retry_after=2))
    titles = provider(server, waits).search_titles("Python programming")
    assert titles[0] == "File:Python Programming.pdf"
    assert waits == [3.0, 2.0]


def test_gives_up_with_a_clear_error(server):
    server.script(*[Scripted.unavailable(503)] * 3)
    with pytest.raises(ProviderError, match="gave up after 3 tries"):
        provider(server).search_titles("Python programming")


def test_registry_errors_before_any_work(monkeypatch):
    with pytest.raises(ProviderError, match="unknown provider 'bing'.*commons, google-cse, local"):
        get_provider("bing", {})
    monkeypatch.delenv("GOOGLE_CSE_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_CSE_CX", "abc")
    with pytest.raises(ProviderError, match="GOOGLE_CSE_KEY"):
        get_provider("google-cse", {})
    with pytest.raises(ProviderError, match="user_agent"):
        get_provider("commons", {})
