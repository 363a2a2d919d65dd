"""The google-cse provider against a local Custom Search JSON API.

No recorded Custom Search answers exist here, so the server answers in the API's documented shapes:
a `customsearch#search` object whose `items` carry link, title, mime and image.{contextLink,width,height},
and Google's error object (`error.errors[].reason`) for refusals.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from mesed_build.images.providers import ProviderError
from mesed_build.images.providers.google_cse import GoogleCSEProvider

KEY = "AIzaSy-test-key-never-in-errors"
PHOTOS = ["eagle.jpg", "dog.jpg", "grace-hopper.jpg"]


def error_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message,
                                 "errors": [{"message": message, "domain": "usageLimits", "reason": reason}]}}).encode()


class CustomSearchServer:
    """Answers every query with `total` results, paged by `start`/`num`; `script` queues faults first."""

    def __init__(self, total: int = 25):
        self.total = total
        self.requests: list[dict[str, str]] = []
        self.faults: deque[tuple[int, dict[str, str], bytes]] = deque()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                params["user-agent"] = self.headers.get("User-Agent", "")
                outer.requests.append(params)
                status, headers, body = outer.faults.popleft() if outer.faults else (200, {}, outer.results(params))
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}/customsearch/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def results(self, params: dict[str, str]) -> bytes:
        start, num = int(params["start"]), int(params["num"])
        items = [{
            "kind": "customsearch#result", "title": f"{params['q']} photo {i}",
            "link": f"https://images.example.org/{i}/{PHOTOS[i % len(PHOTOS)]}",  # offline-ok: data, never fetched
            "mime": "image/jpeg",
            "image": {"contextLink": f"https://pages.example.org/{i}", "width": 640 + i, "height": 480},  # offline-ok
        } for i in range(start, min(start + num, self.total + 1))]
        return json.dumps({"kind": "customsearch#search", "items": items} if items else
                          {"kind": "customsearch#search"}).encode()

    def script(self, *faults: tuple[int, dict[str, str], bytes]) -> None:
        self.faults.extend(faults)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = CustomSearchServer()
    yield s
    s.close()


def provider(server, **kw):
    sleeps: list[float] = []
    options = {"backoff_s": 0.5, "max_retries": 2, "sleep": sleeps.append, **kw}
    return GoogleCSEProvider(KEY, "engine-1", endpoint=server.endpoint,
                             user_agent="mesed-build-tests/0.1 (tests@example.org)", **options), sleeps


def test_image_search_pages_and_maps_items(server):
    cse, sleeps = provider(server)
    found = cse.search("Ada Lovelace portrait", limit=13)
    assert [c.title for c in found] == [f"Ada Lovelace portrait photo {i}" for i in range(1, 14)]
    assert found[0].url.endswith("/1/dog.jpg") and found[0].source_page == "https://pages.example.org/1"  # offline-ok
    assert (found[0].width, found[0].height, found[0].mime, found[0].licence) == (641, 480, "image/jpeg", None)
    assert [(r["start"], r["num"]) for r in server.requests] == [("1", "10"), ("11", "3")]
    for request in server.requests:
        assert request["key"] == KEY and request["cx"] == "engine-1" and request["searchType"] == "image"
        assert request["user-agent"] == "mesed-build-tests/0.1 (tests@example.org)"
    assert sleeps == []


def test_a_short_last_page_ends_the_search(server):
    server.total = 4
    cse, _ = provider(server)
    assert len(cse.search("eagle", limit=10)) == 4
    server.total = 0
    assert cse.search("nothing at all", limit=10) == []  # no `items` key: no results
    assert len(server.requests) == 2


def test_429_waits_for_retry_after_then_succeeds(server):
    server.script((429, {"Retry-After": "7"}, error_body(429, "rateLimitExceeded", "Quota exceeded for 'Queries'")))
    cse, sleeps = provider(server)
    assert len(cse.search("eagle", limit=3)) == 3
    assert sleeps == [7.0] and len(server.requests) == 2


def test_5xx_backs_off_then_gives_up_without_leaking_the_key(server):
    server.script(*[(503, {}, b"Service Unavailable")] * 3)
    cse, sleeps = provider(server)
    with pytest.raises(ProviderError) as caught:
        cse.search("eagle", limit=3)
    message = str(caught.value)
    assert "gave up after 3 tries" in message and "HTTP 503" in message and "q='eagle'" in message
    assert server.endpoint in message and KEY not in message
    assert sleeps == [0.5, 1.0]


def test_spent_daily_quota_stops_at_once(server):
    server.script((403, {}, error_body(403, "dailyLimitExceeded", "This API requires billing to be enabled")))
    cse, sleeps = provider(server)
    with pytest.raises(ProviderError, match="HTTP 403: dailyLimitExceeded: This API requires billing") as caught:
        cse.search("eagle", limit=3)
    assert KEY not in str(caught.value)
    assert sleeps == [] and len(server.requests) == 1


def test_retry_after_beyond_the_limit_is_not_waited_for(server):
    server.script((429, {"Retry-After": "86400"}, error_body(429, "rateLimitExceeded", "Quota exceeded")))
    cse, sleeps = provider(server, max_retry_after_s=60)
    with pytest.raises(ProviderError, match="asked to wait 86400 s"):
        cse.search("eagle", limit=3)
    assert sleeps == []


@pytest.mark.parametrize("body, expected", [
    (b'{"kind": "customsearch#search", "items": [{"link": ', "not JSON"),
    (b'{"kind": "customsearch#search", "items": {"link": "x"}}', "an `items` list"),
])
def test_malformed_answers_are_clear_errors(server, body, expected):
    server.script((200, {}, body))
    cse, sleeps = provider(server)
    with pytest.raises(ProviderError, match=expected) as caught:
        cse.search("eagle", limit=3)
    assert server.endpoint in str(caught.value) and sleeps == []


def test_unreachable_endpoint_is_retried_then_reported_without_the_key(server):
    server.close()
    cse, sleeps = provider(server, max_retries=1)
    with pytest.raises(ProviderError, match="gave up after 2 tries: ConnectionError") as caught:
        cse.search("eagle", limit=3)
    assert KEY not in str(caught.value) and sleeps == [0.5]
