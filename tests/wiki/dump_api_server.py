"""A local MediaWiki Action API that answers from a real dump excerpt (for end-to-end API builds).

No recorded API answers exist for list-page wikitext, pageprops or backlinks through redirects, so
this server serves the real excerpt's pages in the API's documented formatversion-2 shapes. It
implements only what the build's stages ask: prop=info|pageprops, prop=revisions, prop=redirects,
list=backlinks (blredirect), list=categorymembers, list=random (a new draw on every request, as
MediaWiki's is unseeded) and list=search (titles holding every query word: the excerpt has no
CirrusSearch behind it, so hits are plausible, not the ranking enwiki would give).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from mesed_build import store as st
from mesed_build.wiki.dump import CATEGORY_PREFIX, DumpSource, iter_dump_pages
from mesed_build.wiki.source import normalize_title


class DumpBackedAPI:
    def __init__(self, paths, store: st.Store):
        self.source = DumpSource(paths, store)
        self.source.ensure_index()
        self.store = store
        self.texts = {}
        for path in paths:
            for page in iter_dump_pages(path):
                self.texts[page.page_id] = page
        with store.engine.connect() as c:
            rows = c.execute(sa.select(st.pages)).mappings().all()
        self.by_title = {r["title"]: dict(r) for r in rows}
        self.requests: list[dict] = []

    def _follow(self, titles, q):
        out = []
        for raw in titles:
            title = normalize_title(raw)
            if title != raw:
                q.setdefault("normalized", []).append({"from": raw, "to": title})
            row = self.by_title.get(title)
            if row is not None and row["redirect_target"]:
                q.setdefault("redirects", []).append({"from": title, "to": row["redirect_target"]})
                title = row["redirect_target"]
            out.append(title)
        return out

    def _page(self, title):
        row = self.by_title.get(title)
        if row is None or row["redirect_target"]:
            return {"ns": 0, "title": title, "missing": True}
        return {"pageid": row["page_id"], "ns": row["namespace"], "title": title, "lastrevid": row["rev_id"]}

    def answer(self, params: dict[str, str]) -> dict:
        self.requests.append(params)
        q: dict = {}
        titles = params["titles"].split("|") if params.get("titles") else []
        prop, lst = params.get("prop"), params.get("list")
        if prop == "info|pageprops":
            pages = []
            for title in dict.fromkeys(self._follow(titles, q)):
                page = self._page(title)
                if self.by_title.get(title, {}).get("is_disambiguation"):
                    page["pageprops"] = {"disambiguation": ""}
                pages.append(page)
            q["pages"] = pages
        elif prop == "revisions":
            pages = []
            for title in dict.fromkeys(self._follow(titles, q)):
                page = self._page(title)
                if "pageid" in page:
                    dump_page = self.texts[page["pageid"]]
                    page["revisions"] = [{"revid": dump_page.rev_id, "slots": {"main": {
                        "contentmodel": "wikitext", "content": dump_page.text}}}]
                pages.append(page)
            q["pages"] = pages
        elif prop == "redirects":
            redirects = self.source.redirects_to(titles)
            q["pages"] = [
                {**self._page(normalize_title(t)),
                 "redirects": [{"ns": 0, "title": r} for r in redirects[normalize_title(t)]]}
                for t in titles
            ]
        elif lst == "backlinks":
            title = normalize_title(params["bltitle"])
            entries = [{"pageid": r.page_id, "ns": 0, "title": r.title}
                       for r in self.source._linking_pages([title], None)]
            for redirect in self.source.redirects_to([title])[title]:
                entries.append({"pageid": self.by_title[redirect]["page_id"], "ns": 0, "title": redirect,
                                "redirect": True,
                                "redirlinks": [{"pageid": r.page_id, "ns": 0, "title": r.title}
                                               for r in self.source._linking_pages([redirect], None)]})
            q["backlinks"] = entries
        elif lst == "categorymembers":
            name = normalize_title(params["cmtitle"].split(":", 1)[1])
            q["categorymembers"] = [{"pageid": r.page_id, "ns": 0, "title": r.title}
                                    for r in self.source._linking_pages([CATEGORY_PREFIX + name], None)]
        elif lst == "random":
            drawn = self.source.random_pages(int(params["rnlimit"]), seed=len(self.requests))
            q["random"] = [{"id": r.page_id, "ns": 0, "title": r.title} for r in drawn]
        elif lst == "search":
            hits = self.source.search(params["srsearch"], limit=int(params["srlimit"]))
            q["search"] = [{"ns": 0, "title": r.title, "pageid": r.page_id} for r in hits]
        else:
            return {"error": {"code": "badvalue", "info": f"not served by this test server: {params}"}}
        return {"batchcomplete": True, "query": q}


class DumpAPIServer:
    def __init__(self, api: DumpBackedAPI):
        self.api = api
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, params):
                body = json.dumps(outer.api.answer({k: v[-1] for k, v in params.items()})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._reply(parse_qs(urlsplit(self.path).query))

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                self._reply(parse_qs(self.rfile.read(length).decode()))

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w/api.php"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
