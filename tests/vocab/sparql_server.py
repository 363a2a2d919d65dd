"""A local SPARQL endpoint on 127.0.0.1 that answers from real Wikidata data (tests/fixtures/wikidata/).

- names queries (`VALUES ?item { wd:Q.. }` with skos:altLabel): for items in the recorded label-service
  answer (sparql-results-with-aliases.json) it returns their recorded rows unchanged; for Q42 and Q140
  it returns one `?item ?label ?alt` row per English alias of the real entity JSON;
- sitelink queries (`schema:about`): titles -> items from the entity JSON's `sitelinks.enwiki`, plus
  any extra mapping a test passes;
- `script(...)` queues faults served, in order, before normal answers resume: any status with headers
  (429 + Retry-After, 500, 503), a delay (timeouts), or a raw body (malformed JSON).
Every request is logged (method, headers, query, start/end) so tests can check User-Agent, POST, batching
and that queries were sent one at a time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wikidata"
ENTITY = "http://www.wikidata.org/entity/"  # offline-ok: an IRI in replayed results, never fetched
JSON_TYPE = "application/sparql-results+json"


@dataclass
class Fault:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # None: a normal answer after the delay
    delay_s: float = 0.0


def _entity(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if "entities" in data:
        return next(iter(data["entities"].values()))
    return data


def load_real_data() -> tuple[dict[str, list[dict]], dict[str, str]]:
    """(QID -> result rows, enwiki title -> QID) from the fixture files."""
    rows: dict[str, list[dict]] = {}
    recorded = json.loads((FIXTURES / "sparql-results-with-aliases.json").read_text(encoding="utf-8"))
    for binding in recorded["results"]["bindings"]:
        qid = binding["item"]["value"][len(ENTITY):]
        rows.setdefault(qid, []).append(binding)
    titles: dict[str, str] = {}
    for name in ("Q42.json", "Q140.json"):
        entity = _entity(FIXTURES / name)
        qid = entity["id"]
        label = entity["labels"]["en"]["value"]
        item = {"type": "uri", "value": ENTITY + qid}
        lab = {"xml:lang": "en", "type": "literal", "value": label}
        rows[qid] = [
            {"item": item, "label": lab, "alt": {"xml:lang": "en", "type": "literal", "value": a["value"]}}
            for a in entity.get("aliases", {}).get("en", [])
        ] or [{"item": item, "label": lab}]
        enwiki = entity.get("sitelinks", {}).get("enwiki")
        if enwiki:
            titles[enwiki["title"]] = qid
    return rows, titles


class SparqlServer:
    def __init__(self, extra_titles: dict[str, str] | None = None):
        self.rows, self.titles = load_real_data()
        self.titles.update(extra_titles or {})
        self.faults: deque[Fault] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                query = parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "").get("query", [""])[0]
                server._answer(self, "GET", query)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("ascii"))
                server._answer(self, "POST", form.get("query", [""])[0])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/sparql"

    def start(self) -> "SparqlServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def _result(self, query: str) -> dict:
        if "schema:about" in query:
            titles = [re.sub(r'\\(.)', r"\1", t) for t in re.findall(r'"((?:[^"\\]|\\.)*)"@en', query)]
            bindings = [
                {"title": {"xml:lang": "en", "type": "literal", "value": t},
                 "item": {"type": "uri", "value": ENTITY + self.titles[t]}}
                for t in titles if t in self.titles
            ]
            return {"head": {"vars": ["title", "item"]}, "results": {"bindings": bindings}}
        qids = re.findall(r"wd:(Q[0-9]+)", query)
        bindings = [row for qid in qids for row in self.rows.get(qid, [])]
        return {"head": {"vars": ["item", "label", "alt"]}, "results": {"bindings": bindings}}

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, query: str) -> None:
        # Logged on arrival and stamped "end" before the body goes out: the client can send its next
        # query as soon as it has the body, before this handler thread would otherwise get to log.
        entry = {"method": method, "headers": dict(handler.headers), "query": query, "start": time.monotonic()}
        with self._lock:
            self.requests.append(entry)
            fault = self.faults.popleft() if self.faults else None
        try:
            if fault is not None and fault.delay_s:
                time.sleep(fault.delay_s)
            if fault is not None and fault.body is not None:
                body, status, headers = fault.body, fault.status, fault.headers
            elif fault is not None and fault.status != 200:
                body, status, headers = b"error", fault.status, fault.headers
            else:
                body, status, headers = json.dumps(self._result(query)).encode("utf-8"), 200, ()
            entry["status"] = status
            handler.send_response(status)
            handler.send_header("Content-Type", JSON_TYPE if status == 200 else "text/plain")
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                handler.send_header(name, value)
            handler.end_headers()
            entry["end"] = time.monotonic()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            entry["status"] = "client gone"
            entry.setdefault("end", time.monotonic())
