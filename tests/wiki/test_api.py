"""MediaWikiAPI against a local server replaying real recorded en.wikipedia.org API responses.

Expected values are computed here straight from the cassette files (tests/fixtures/mediawiki/, see
PROVENANCE.md), independently of the client. Where no cassette exists (prop=info|pageprops,
prop=revisions, blredirect's `redirlinks`), small scripted bodies in MediaWiki's documented shapes
stand in, and say so.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from mesed_build.wiki.api import APIError, MediaWikiAPI, WikiConfigError
from mesed_build.wiki.source import PageRef, WikiError
from tests.replay_server import FIXTURE_DIR, Scripted

UA = "mesed-build-tests/0.1 (https://github.com/mesed-build; tests@example.org)"
PYTHON = "Python (programming language)"


def cassette_bodies(name: str) -> list[dict]:
    with open(FIXTURE_DIR / name, encoding="utf-8") as fh:
        return [json.loads(it["response"]["body"]["string"]) for it in json.load(fh)["interactions"]]


def client(server, **kw) -> MediaWikiAPI:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return MediaWikiAPI(server.endpoint, UA, **kw)


# --- real cassettes -----------------------------------------------------------------------------
def test_backlinks_cassette_is_followed_to_the_end_with_polite_requests(replay_server):
    server = replay_server("backlinks-continuation.json")
    api = client(server)
    responses = list(api.query({"list": "backlinks", "bltitle": PYTHON, "bllimit": 500, "redirects": 1}))

    assert len(responses) == 21
    assert sum(len(r["query"]["backlinks"]) for r in responses) == 10_279
    assert "continue" not in responses[-1] and all("continue" in r for r in responses[:-1])
    assert len(server.requests) == 21
    for req in server.requests:
        assert req.answered_by == "replay:backlinks-continuation.json"
        assert req.params["action"] == "query" and req.params["format"] == "json"
        assert req.params["formatversion"] == "2" and req.params["maxlag"] == "5"
        assert req.headers["user-agent"].startswith(UA)
        assert req.headers["accept-encoding"] == "gzip"
    # each continued request carries the token the previous response handed out
    for prev, req in zip(responses, server.requests[1:]):
        assert req.params["blcontinue"] == prev["continue"]["blcontinue"]


def test_backlinks_returns_every_namespace0_article_once(replay_server):
    entries = [e for body in cassette_bodies("backlinks-continuation.json") for e in body["query"]["backlinks"]]
    expected = {(e["pageid"], e["title"]) for e in entries if e["ns"] == 0 and "redirect" not in e}
    redirect_pages = {e["title"] for e in entries if "redirect" in e}
    assert len(entries) == 10_279 and len(expected) == 3_832 and len(redirect_pages) == 55

    api = client(replay_server("backlinks-continuation.json"))
    refs = api.backlinks(PYTHON)

    assert len(refs) == len({r.page_id for r in refs}) == 3_832
    assert {(r.page_id, r.title) for r in refs} == expected
    assert all(r.namespace == 0 for r in refs)
    assert not redirect_pages & {r.title for r in refs}


def test_backlinks_limit_stops_early(replay_server):
    server = replay_server("backlinks-continuation.json")
    refs = client(server).backlinks(PYTHON, limit=300)
    assert len(refs) == 300
    assert len(server.requests) == 1  # the first page alone holds more than 300 articles
    first_page = cassette_bodies("backlinks-continuation.json")[0]["query"]["backlinks"]
    assert [r.title for r in refs] == [e["title"] for e in first_page if e["ns"] == 0 and "redirect" not in e][:300]


def test_backlinks_follow_redirects_through_redirlinks(replay_server):
    server = replay_server()
    # scripted (no cassette has blredirect=1): formatversion-2 shape of list=backlinks&blredirect=1
    server.script(Scripted(body={
        "continue": {"blcontinue": "0|500", "continue": "-||"},
        "query": {"backlinks": [
            {"pageid": 10, "ns": 0, "title": "Guido van Rossum"},
            {"pageid": 11, "ns": 0, "title": "Python language", "redirect": True, "redirlinks": [
                {"pageid": 12, "ns": 0, "title": "Jython"},
                {"pageid": 10, "ns": 0, "title": "Guido van Rossum"},
                {"pageid": 13, "ns": 2, "title": "User:Someone"},
            ]},
        ]},
    }), Scripted(body={"batchcomplete": True, "query": {"backlinks": [{"pageid": 14, "ns": 0, "title": "CPython"}]}}))
    refs = client(server).backlinks(PYTHON)
    assert [r.title for r in refs] == ["Guido van Rossum", "Jython", "CPython"]
    first, second = server.requests
    assert first.params["blredirect"] == "1" and first.params["blnamespace"] == "0"
    assert second.params["blcontinue"] == "0|500"


def test_category_members_from_real_response(replay_server):
    members = cassette_bodies("categorymembers.json")[0]["query"]["categorymembers"]
    expected = [m["title"] for m in members if m["ns"] == 0]
    assert "Portal:Physics" in {m["title"] for m in members} and len(expected) < len(members)

    server = replay_server("categorymembers.json")
    refs = client(server).category_members("Physics")  # the prefix is added
    assert [r.title for r in refs] == expected
    assert refs[0] == PageRef(22939, "Physics")
    assert server.requests[0].params["cmtitle"] == "Category:Physics"
    assert server.requests[0].params["cmnamespace"] == "0"


def test_search_from_real_responses(replay_server):
    server = replay_server("search.json", "search-file-namespace.json")
    api = client(server)
    hits = api.search("Python programming", limit=10)
    expected = cassette_bodies("search.json")[0]["query"]["search"]
    assert [(h.page_id, h.title) for h in hits] == [(e["pageid"], e["title"]) for e in expected]
    assert hits[0] == PageRef(23862, PYTHON)

    files = api.search("Python programming", limit=5, namespace=6)
    assert len(files) == 5
    assert all(f.namespace == 6 and f.title.startswith("File:") for f in files)
    assert server.requests[1].params["srnamespace"] == "6"


def test_random_pages_from_real_response(replay_server):
    server = replay_server("random-category-namespace.json")
    pages = client(server).random_pages(3, seed=7, namespace=14)
    expected = cassette_bodies("random-category-namespace.json")[0]["query"]["random"]
    assert [(p.page_id, p.title, p.namespace) for p in pages] == [(e["id"], e["title"], 14) for e in expected]
    assert server.requests[0].params["rnfilterredir"] == "nonredirects"


def test_query_parses_formatversion1_pages_across_continuation(replay_server):
    server = replay_server("links.json")
    responses = list(client(server).query({"prop": "links", "titles": "Python_(programming_language)",
                                           "pllimit": 500, "redirects": 1}))
    assert len(responses) == 2
    assert all(isinstance(r["query"]["pages"], dict) for r in responses)  # formatversion 1, as recorded
    links = [link["title"] for r in responses for p in r["query"]["pages"].values() for link in p["links"]]
    expected = [link["title"] for body in cassette_bodies("links.json")
                for p in body["query"]["pages"].values() for link in p["links"]]
    assert links == expected and len(links) > 500


# --- resolve and wikitext (scripted bodies in MediaWiki's shapes) -------------------------------
RESOLVE_FV2 = {
    "batchcomplete": True,
    "query": {
        "normalized": [{"fromencoded": False, "from": "python_(programming_language)", "to": PYTHON}],
        "redirects": [{"from": "Guido", "to": "Guido van Rossum"}],
        "pages": [
            {"pageid": 23862, "ns": 0, "title": PYTHON, "lastrevid": 1345678901,
             "pageprops": {"wikibase_item": "Q28865"}},
            {"pageid": 12657, "ns": 0, "title": "Guido van Rossum", "lastrevid": 1300000000,
             "pageprops": {"wikibase_item": "Q30000"}},
            {"pageid": 46332325, "ns": 0, "title": "Python", "lastrevid": 1200000000,
             "pageprops": {"disambiguation": "", "wikibase_item": "Q747452"}},
            {"ns": 0, "title": "No such page 12345", "missing": True},
        ],
    },
}
# the same answer as formatversion 1 gives it: pages keyed by id, flags as empty strings
RESOLVE_FV1 = {
    "batchcomplete": "",
    "query": {
        "normalized": [{"from": "python_(programming_language)", "to": PYTHON}],
        "redirects": [{"from": "Guido", "to": "Guido van Rossum"}],
        "pages": {
            "23862": RESOLVE_FV2["query"]["pages"][0], "12657": RESOLVE_FV2["query"]["pages"][1],
            "46332325": RESOLVE_FV2["query"]["pages"][2],
            "-1": {"ns": 0, "title": "No such page 12345", "missing": ""},
        },
    },
}


@pytest.mark.parametrize("body", [RESOLVE_FV2, RESOLVE_FV1], ids=["formatversion2", "formatversion1"])
def test_resolve_maps_each_input_title(replay_server, body):
    server = replay_server()
    server.script(Scripted(body=body))
    inputs = ["python_(programming_language)", "Guido", "Python", "No such page 12345"]
    got = client(server).resolve(inputs)
    assert list(got) == inputs
    assert got["python_(programming_language)"] == PageRef(23862, PYTHON, 1345678901, 0, "Q28865", False)
    assert got["Guido"] == PageRef(12657, "Guido van Rossum", 1300000000, 0, "Q30000", False)
    assert got["Python"].is_disambiguation and got["Python"].wikibase_item == "Q747452"
    assert got["No such page 12345"] is None
    params = server.requests[0].params
    assert params["prop"] == "info|pageprops" and params["ppprop"] == "wikibase_item|disambiguation"
    assert params["redirects"] == "1" and params["titles"].split("|") == inputs


def test_resolve_batches_fifty_titles(replay_server):
    server = replay_server()
    empty = {"batchcomplete": True, "query": {"pages": []}}
    server.script(*(Scripted(body=empty) for _ in range(3)))
    titles = [f"Page {i}" for i in range(120)] + ["Page 3"]  # a repeated title is asked once
    got = client(server).resolve(titles)
    assert len(got) == 120 and all(v is None for v in got.values())
    assert [len(r.params["titles"].split("|")) for r in server.requests] == [50, 50, 20]


def test_wikitext_follows_continuation_and_reads_both_shapes(replay_server):
    server = replay_server()
    server.script(
        Scripted(body={"continue": {"rvcontinue": "200|1", "continue": "||"}, "query": {
            "redirects": [{"from": "Guido", "to": "Guido van Rossum"}],
            "pages": [
                {"pageid": 100, "ns": 0, "title": "Alpha", "revisions": [
                    {"revid": 7, "parentid": 6, "slots": {"main": {"contentmodel": "wikitext",
                                                                   "content": "'''Alpha''' is [[Beta]]."}}}]},
                {"pageid": 200, "ns": 0, "title": "Guido van Rossum"},
                {"ns": 0, "title": "Gone", "missing": True},
            ]}}),
        Scripted(body={"batchcomplete": "", "query": {"pages": {
            "100": {"pageid": 100, "ns": 0, "title": "Alpha"},
            "200": {"pageid": 200, "ns": 0, "title": "Guido van Rossum", "revisions": [
                {"revid": 9, "parentid": 8, "slots": {"main": {"contentmodel": "wikitext", "*": "Guido text"}}}]},
            "-1": {"ns": 0, "title": "Gone", "missing": ""}}}}),
    )
    api = client(server)
    pages = list(api.wikitext(["Alpha", "Guido", "Gone"]))
    assert [(p.page_id, p.title, p.rev_id, p.text) for p in pages] == [
        (100, "Alpha", 7, "'''Alpha''' is [[Beta]]."), (200, "Guido van Rossum", 9, "Guido text")]
    assert api.dropped["wikitext: no such page"] == 1
    first = server.requests[0].params
    assert first["prop"] == "revisions" and first["rvprop"] == "ids|content" and first["rvslots"] == "main"
    assert server.requests[1].params["rvcontinue"] == "200|1"


def test_wikitext_falls_back_to_one_title_per_request(replay_server):
    server = replay_server()
    page = lambda i: {"batchcomplete": True, "query": {"pages": [  # noqa: E731
        {"pageid": i, "ns": 0, "title": f"T{i}", "revisions": [{"revid": i, "slots": {"main": {"content": f"x{i}"}}}]}]}}
    server.script(Scripted.api_error("toomanyvalues", "Too many values supplied for parameter \"titles\"."),
                  Scripted(body=page(1)), Scripted(body=page(2)))
    pages = list(client(server).wikitext(["T1", "T2"]))
    assert [p.text for p in pages] == ["x1", "x2"]
    assert [r.params["titles"] for r in server.requests] == ["T1|T2", "T1", "T2"]


# --- politeness and faults ------------------------------------------------------------------------
def search_titles() -> list[str]:
    return [e["title"] for e in cassette_bodies("search.json")[0]["query"]["search"]]


def test_retry_after_is_honoured(replay_server):
    server = replay_server("search.json")
    server.script(Scripted.rate_limited(retry_after=1))
    hits = client(server, backoff_s=0.01).search("Python programming")
    assert [h.title for h in hits] == search_titles()
    limited, ok = server.requests
    assert limited.status == 429 and ok.answered_by == "replay:search.json"
    assert ok.started - limited.finished >= 0.95  # waited Retry-After, not the 0.01 s back-off


@pytest.mark.parametrize("fault", [
    Scripted.unavailable(503),
    Scripted.maxlag(retry_after=0),
    Scripted.slow(1.5),
    Scripted.truncated(),
    Scripted.invalid_json(),
], ids=["503", "maxlag", "slow", "truncated", "invalid-json"])
def test_fault_then_success(replay_server, fault):
    server = replay_server("search.json")
    server.script(fault)
    hits = client(server, timeout_s=0.5).search("Python programming")
    assert [h.title for h in hits] == search_titles()
    assert len(server.requests) == 2 and server.requests[-1].answered_by == "replay:search.json"


@pytest.mark.parametrize("fault, last", [
    (Scripted.rate_limited(retry_after=0), "HTTP 429"),
    (Scripted.unavailable(503), "HTTP 503"),
    (Scripted.maxlag(retry_after=0), "'maxlag'"),
    (Scripted.slow(1.0), "no answer within 0.3 s"),
    (Scripted.truncated(), "body cut off"),
    (Scripted.invalid_json(), "not JSON"),
], ids=["429", "503", "maxlag", "slow", "truncated", "invalid-json"])
def test_fault_past_retry_budget_is_a_clear_error(replay_server, fault, last):
    server = replay_server("search.json")
    server.script(fault, fault, fault)
    api = client(server, max_retries=2, timeout_s=0.3)
    with pytest.raises(WikiError) as info:
        api.search("Python programming")
    message = str(info.value)
    assert message.startswith(server.endpoint + "?") and "srsearch=Python+programming" in message
    assert "gave up after 3 attempts" in message and last in message
    assert "expected HTTP 200 with a JSON MediaWiki API response" in message
    assert len(server.requests) == 3


def test_backoff_grows_exponentially(replay_server):
    server = replay_server("search.json")
    server.script(*(Scripted.unavailable(503) for _ in range(3)))
    client(server, backoff_s=0.2).search("Python programming")
    starts = [r.started for r in server.requests]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(gaps) == 3
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39 and gaps[2] >= 0.79


def test_other_api_errors_fail_at_once_with_their_code(replay_server):
    server = replay_server("search.json")
    server.script(Scripted.api_error("badvalue", "Unrecognized value for parameter \"list\": nosuch."))
    with pytest.raises(APIError) as info:
        client(server).search("Python programming")
    assert info.value.code == "badvalue" and "badvalue" in str(info.value)
    assert len(server.requests) == 1


def test_unrecorded_request_is_not_retried(replay_server):
    server = replay_server("search.json")
    with pytest.raises(WikiError, match="HTTP 404"):
        client(server).search("something never recorded")
    assert len(server.requests) == 1


@pytest.mark.parametrize("user_agent", ["", "mesed-build/0.1", "python-requests/2.32", "bot (contact me)"])
def test_user_agent_without_contact_is_refused_before_any_request(replay_server, user_agent):
    server = replay_server("search.json")
    with pytest.raises(WikiConfigError, match="User-Agent"):
        MediaWikiAPI(server.endpoint, user_agent)
    with pytest.raises(ValueError, match="User-Agent"):
        MediaWikiAPI.from_config({"source": "api", "api": {"endpoint": server.endpoint, "user_agent": user_agent}})
    assert server.requests == []


def test_from_config(replay_server):
    server = replay_server("search.json")
    api = MediaWikiAPI.from_config({"source": "api", "wiki_id": "enwiki", "api": {
        "endpoint": server.endpoint, "user_agent": UA, "timeout_s": 3, "max_retries": 1, "maxlag": 5,
        "backoff_s": 0.5}})
    assert (api.timeout_s, api.max_retries, api.maxlag, api.backoff_s, api.wiki) == (3.0, 1, 5, 0.5, "enwiki")
    with pytest.raises(WikiConfigError, match="wiki.api"):
        MediaWikiAPI.from_config({"source": "dump", "dump": {"paths": ["x.xml.bz2"]}})


def test_requests_to_one_host_are_serial(replay_server):
    server = replay_server("search.json", "categorymembers.json")
    # each answer takes 0.1 s, so overlapping requests would show in the server's log
    server.script(*(Scripted(delay_s=0.1, replay_after_delay=True) for _ in range(6)))
    api_a, api_b = client(server), client(server)
    errors: list[BaseException] = []

    def work(api, call):
        try:
            call(api)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(api, call)) for api, call in [
        (api_a, lambda a: a.search("Python programming")), (api_b, lambda a: a.category_members("Physics")),
        (api_a, lambda a: a.search("Python programming")), (api_b, lambda a: a.category_members("Physics")),
        (api_a, lambda a: a.search("Python programming")), (api_b, lambda a: a.category_members("Physics")),
    ]]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    log = sorted(server.requests, key=lambda r: r.started)
    assert len(log) == 6
    for prev, nxt in zip(log, log[1:]):
        assert nxt.started >= prev.finished
    assert time.monotonic() - t0 >= 0.6


def test_long_title_batches_go_as_post(replay_server):
    server = replay_server()
    server.script(Scripted(body={"batchcomplete": True, "query": {"pages": []}}))
    titles = [f"List of {i} things that have a rather long title for a Wikipedia article, {'x' * 80}"
              for i in range(50)]
    got = client(server).resolve(titles)
    assert list(got) == titles
    (req,) = server.requests
    assert req.method == "POST" and req.params["titles"].split("|") == titles and req.params["maxlag"] == "5"


def test_connection_refused_is_retried_then_a_clear_error():
    import socket

    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/w/api.php"
    api = MediaWikiAPI(endpoint, UA, max_retries=1, backoff_s=0.01, timeout_s=1)
    with pytest.raises(WikiError, match=r"gave up after 2 attempts; last: connection failed") as info:
        api.search("Python programming")
    assert str(info.value).startswith(endpoint + "?")
    assert api.requests_made == 2


def test_maxlag_without_retry_after_waits_the_reported_lag(replay_server):
    server = replay_server("search.json")
    server.script(Scripted.maxlag(lag=0.5, retry_after=None))
    assert [h.title for h in client(server, backoff_s=0.01).search("Python programming")] == search_titles()
    lagged, ok = server.requests
    assert ok.started - lagged.finished >= 0.45


def test_retry_after_http_date_is_understood():
    from email.utils import formatdate

    from mesed_build.http import parse_retry_after as _parse_retry_after

    assert _parse_retry_after("7") == 7.0
    assert 8 <= _parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None


def test_false_boolean_parameters_are_left_out(replay_server):
    # MediaWiki treats a present boolean parameter as true even when empty, so False must not be sent
    server = replay_server("search.json")
    client(server).request({"list": "search", "srsearch": "Python programming", "srnamespace": 0,
                            "srsort": "relevance", "redirects": True, "srenablerewrites": False})
    (req,) = server.requests
    assert req.params["redirects"] == "1" and "srenablerewrites" not in req.params


def test_an_unrecorded_continuation_is_not_answered_with_the_first_page(replay_server):
    # search.json holds one page whose `continue` hands out sroffset=10; asking for more must not loop
    server = replay_server("search.json")
    with pytest.raises(WikiError, match="HTTP 404"):
        client(server).search("Python programming", limit=15)
    assert [r.params.get("sroffset") for r in server.requests] == [None, "10"]


# --- redirects_to (scripted: prop=redirects in MediaWiki's formatversion-2 shape) ---------------
def test_redirects_to_follows_continuation_per_batch(replay_server):
    server = replay_server()
    server.script(
        Scripted(body={"continue": {"rdcontinue": "23862|45", "continue": "||"}, "query": {"pages": [
            {"pageid": 23862, "ns": 0, "title": PYTHON,
             "redirects": [{"pageid": 11, "ns": 0, "title": "Python language"}]},
            {"pageid": 12657, "ns": 0, "title": "Guido van Rossum"},
        ]}}),
        Scripted(body={"batchcomplete": True, "query": {"pages": [
            {"pageid": 23862, "ns": 0, "title": PYTHON,
             "redirects": [{"pageid": 12, "ns": 0, "title": "Python (language)"}]},
            {"pageid": 12657, "ns": 0, "title": "Guido van Rossum",
             "redirects": [{"pageid": 13, "ns": 0, "title": "Guido"}]},
        ]}}),
    )
    got = client(server).redirects_to([PYTHON, "Guido van Rossum"])
    assert got == {PYTHON: ["Python (language)", "Python language"], "Guido van Rossum": ["Guido"]}
    first, second = (r.params for r in server.requests)
    assert first["prop"] == "redirects" and first["rdnamespace"] == "0"
    assert first["titles"].split("|") == [PYTHON, "Guido van Rossum"]
    assert second["rdcontinue"] == "23862|45"
