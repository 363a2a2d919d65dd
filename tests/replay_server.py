"""A local HTTP server that replays recorded MediaWiki API responses (VCR cassettes), for tests.

It listens on 127.0.0.1 on a random port and answers from the cassettes' `interactions[]`
(`request.uri`/`request.method`, `response.status`/`headers`/`body.string`).

Matching, by query parameters (GET query string, plus the form body of a POST):
- a recorded interaction matches when every parameter it recorded equals the request's, except
  `format`, `formatversion` and the `*limit` parameters, which are ignored so that a client asking
  for formatversion 2 or another page size still gets the recorded page;
- title parameters (`titles`, `*title`) compare with `_` and ` ` as equal, and `titles` as a set,
  as MediaWiki does;
- extra request parameters (maxlag, blnamespace, ...) are ignored, except continuation ones
  (`xxcontinue`, and any name a recorded response hands out in its `continue` object, e.g.
  `sroffset`): a request carrying one only matches a recording with that same continuation, so a
  continuation the cassette does not hold is a 404, never the first page again;
- among several matches, the one with the most recorded parameters wins.
A request that matches nothing gets 404 with a JSON body saying so.

Fault injection: `server.script(...)` queues `Scripted` responses that are served, in order, to the
next requests before the replay resumes (429 + Retry-After, 503, a MediaWiki maxlag error, a slow
answer, a truncated body, or any hand-written body). Every request is logged in `server.requests`
(method, params, headers, start/end times, what answered), so tests can check User-Agent, maxlag,
Accept-Encoding and that requests were serial.

Usage:
    with ReplayServer(["tests/fixtures/mediawiki/search.json"]) as server:
        requests.get(server.endpoint, params={...})
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "mediawiki"
IGNORED_PARAMS = frozenset({"format", "formatversion"})


def _is_ignored(name: str) -> bool:
    return name in IGNORED_PARAMS or name.endswith("limit")


def _is_title_param(name: str) -> bool:
    return name == "titles" or name.endswith("title")


def _is_continuation(name: str, recorded_tokens: frozenset[str] | set[str] = frozenset()) -> bool:
    # the generic `continue` token only echoes the module state; the module's own token identifies the page
    return name != "continue" and (name.endswith("continue") or name in recorded_tokens)


def _norm_value(name: str, value: str):
    if name == "titles":
        return frozenset(v.replace("_", " ").strip() for v in value.split("|"))
    if _is_title_param(name):
        return value.replace("_", " ").strip()
    return value


@dataclass
class Interaction:
    method: str
    uri: str
    params: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes
    cassette: str

    def matches(self, method: str, params: dict[str, str], tokens: set[str] | frozenset[str] = frozenset()) -> bool:
        if method != self.method:
            return False
        for name, value in self.params.items():
            if _is_ignored(name):
                continue
            if name not in params or _norm_value(name, params[name]) != _norm_value(name, value):
                return False
        return all(name in self.params for name in params if _is_continuation(name, tokens))

    @property
    def specificity(self) -> int:
        return sum(1 for name in self.params if not _is_ignored(name))


@dataclass
class Scripted:
    """One scripted answer served before the replay. `delay_s` sleeps before answering; a
    `content_length` larger than the body makes a truncated response (the connection then closes)."""

    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_length: int | None = None
    replay_after_delay: bool = False  # after the delay, answer from the cassettes instead of `body`

    @classmethod
    def rate_limited(cls, retry_after: float | int = 1) -> Scripted:
        return cls(429, {"error": "Too many requests"}, {"Retry-After": str(retry_after)})

    @classmethod
    def unavailable(cls, status: int = 503, retry_after: float | int | None = None) -> Scripted:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status, b"<html><body>Service Temporarily Unavailable</body></html>",
                   {"Content-Type": "text/html", **headers})

    @classmethod
    def maxlag(cls, lag: float = 7.0, retry_after: int | None = 1) -> Scripted:
        # the shape Wikimedia's API answers with when replication lag exceeds the client's maxlag
        body = {
            "error": {
                "code": "maxlag",
                "info": f"Waiting for 10.64.48.35: {lag} seconds lagged.",
                "host": "10.64.48.35",
                "lag": lag,
                "type": "db",
                "docref": "See https://en.wikipedia.org/w/api.php for API usage.",
            },
            "servedby": "mw-api-ext.eqiad.main",
        }
        headers = {"X-Database-Lag": str(int(lag))}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return cls(200, body, headers)

    @classmethod
    def api_error(cls, code: str, info: str = "") -> Scripted:
        return cls(200, {"error": {"code": code, "info": info or code}})

    @classmethod
    def slow(cls, delay_s: float) -> Scripted:
        """Answer (from the cassettes) only after `delay_s`: set it past the client's timeout."""
        return cls(delay_s=delay_s, replay_after_delay=True)

    @classmethod
    def truncated(cls, body: bytes = b'{"batchcomplete":"","query":{"backl', missing: int = 4096) -> Scripted:
        """A body cut off mid-stream: Content-Length promises `missing` more bytes than are sent."""
        return cls(200, body, {}, content_length=len(body) + missing)

    @classmethod
    def invalid_json(cls) -> Scripted:
        return cls(200, b"<!DOCTYPE html><html><body>Wikimedia Error</body></html>", {"Content-Type": "text/html"})

    def encoded_body(self) -> bytes:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode("utf-8")
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body


@dataclass
class LoggedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    started: float
    finished: float | None = None  # when the answer began to be sent (the client cannot have it before)
    status: int | None = None
    answered_by: str = ""  # "scripted", "replay:<cassette>" or "no-match"


def load_cassette(path: str | Path) -> list[Interaction]:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = FIXTURE_DIR / path
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    out = []
    for i, item in enumerate(data.get("interactions", [])):
        try:
            req, resp = item["request"], item["response"]
            uri = req["uri"]
            body = resp["body"]
            raw = body.get("string", "") if isinstance(body, dict) else body
            raw_bytes = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            status = resp["status"]["code"] if isinstance(resp["status"], dict) else int(resp["status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: interactions[{i}] is not a VCR interaction ({exc!r})") from exc
        headers = {}
        for name, value in (resp.get("headers") or {}).items():
            # the recorded transfer framing and encoding do not describe the bytes we serve
            if name.lower() in ("content-length", "transfer-encoding", "content-encoding", "set-cookie"):
                continue
            headers[name] = value[0] if isinstance(value, list) else str(value)
        out.append(Interaction(
            method=req.get("method", "GET").upper(), uri=uri,
            params=dict(parse_qsl(urlsplit(uri).query, keep_blank_values=True)),
            status=int(status), headers=headers, body=raw_bytes, cassette=path.name,
        ))
    return out


class ReplayServer:
    """Threaded replay server on 127.0.0.1:<random port>. Start with `start()` or `with`."""

    def __init__(self, cassettes: Iterable[str | Path] = (), *, path: str = "/w/api.php"):
        self.path = path
        self.interactions: list[Interaction] = []
        self.continuation_tokens: set[str] = set()  # names the recorded responses use in `continue`
        for cassette in cassettes:
            self.add_cassette(cassette)
        self.requests: list[LoggedRequest] = []
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- set-up -------------------------------------------------------------------------------
    def add_cassette(self, cassette: str | Path) -> None:
        interactions = load_cassette(cassette)
        for it in interactions:
            try:
                cont = json.loads(it.body).get("continue")
            except (ValueError, AttributeError):
                cont = None
            if isinstance(cont, dict):
                self.continuation_tokens.update(k for k in cont if k != "continue")
        self.interactions.extend(interactions)

    def script(self, *responses: Scripted) -> None:
        with self._lock:
            self._queue.extend(responses)

    @property
    def pending_scripted(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ReplayServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> ReplayServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

            def do_GET(self):
                server._handle(self, "GET", b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server._handle(self, "POST", self.rfile.read(length) if length else b"")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="replay-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a slow response
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- serving ------------------------------------------------------------------------------
    def find(self, method: str, params: dict[str, str]) -> Interaction | None:
        candidates = [it for it in self.interactions if it.matches(method, params, self.continuation_tokens)]
        return max(candidates, key=lambda it: it.specificity) if candidates else None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str, form: bytes) -> None:
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        if form:
            params.update(parse_qsl(form.decode("utf-8", "replace"), keep_blank_values=True))
        entry = LoggedRequest(method, split.path, params, {k.lower(): v for k, v in handler.headers.items()},
                              started=time.monotonic())
        with self._lock:
            self.requests.append(entry)
            scripted = self._queue.popleft() if self._queue else None
        try:
            if scripted is not None and scripted.delay_s:
                if self._stopping.wait(scripted.delay_s):
                    return
            if scripted is not None and not scripted.replay_after_delay:
                entry.answered_by = "scripted"
                self._send(handler, entry, scripted.status, scripted.headers, scripted.encoded_body(),
                           content_length=scripted.content_length)
                return
            found = self.find(method, params) if split.path == self.path else None
            if found is None:
                entry.answered_by = "no-match"
                body = json.dumps({"error": {"code": "replay-no-match",
                                             "info": f"no recorded interaction matches {method} {handler.path}"}})
                self._send(handler, entry, 404, {"Content-Type": "application/json"}, body.encode())
                return
            entry.answered_by = f"replay:{found.cassette}"
            self._send(handler, entry, found.status, found.headers, found.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer
        finally:
            if entry.finished is None:
                entry.finished = time.monotonic()

    @staticmethod
    def _send(handler, entry: LoggedRequest, status: int, headers: dict[str, str], body: bytes,
              content_length: int | None = None) -> None:
        truncated = content_length is not None
        if not truncated and "gzip" in handler.headers.get("Accept-Encoding", "").lower():
            body = gzip.compress(body, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip"}
        entry.status = status
        entry.finished = time.monotonic()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if not any(name.lower() == "content-type" for name in headers):
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(content_length if truncated else len(body)))
        if truncated:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
