"""The MediaWiki Action API as a WikiSource, on `requests`, polite by construction.

Politeness (https://www.mediawiki.org/wiki/API:Etiquette, https://meta.wikimedia.org/wiki/User-Agent_policy):
- a descriptive User-Agent with contact is required before any request is made;
- every request sends `maxlag` (default 5), asks for gzip, and goes through one Session;
- requests to one host are serial (one lock per host, shared by every client in the process, held
  across retry waits so that a back-off also holds back the other threads);
- 429, 5xx, `maxlag` errors, timeouts, dropped connections and truncated or non-JSON bodies are
  retried with exponential back-off (tenacity), waiting at least the server's `Retry-After`;
- titles go 50 per request, and every list follows `continue` to the end.

Both JSON shapes are parsed: formatversion 2 (what this client asks for: `pages` is a list, flags
are booleans) and formatversion 1 (`pages` keyed by page id, flags are empty strings), which is what
the recorded test cassettes hold.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity

from mesed_build import __version__
from mesed_build.http import parse_retry_after
from mesed_build.wiki.source import PageRef, PageText, WikiError, WikiSource, normalize_title

log = logging.getLogger(__name__)

TITLES_PER_REQUEST = 50  # the API's limit for clients without the apihighlimits right
MAX_WAIT_S = 300.0  # cap on a single wait, whatever Retry-After or the back-off says
MAX_REDIRECT_HOPS = 8
POST_ABOVE_CHARS = 6000  # longer query strings go as a form body, which MediaWiki accepts too
RETRYABLE_API_CODES = frozenset({"maxlag"})
_CONTACT = re.compile(r"[^@\s()<>;,]+@[^@\s()<>;,]+\.[A-Za-z]{2,}|https?://[^\s()<>;,]+")
_EXPECTED = "expected HTTP 200 with a JSON MediaWiki API response"


class WikiConfigError(WikiError, ValueError):
    """The API client was configured in a way it must not run with (no User-Agent contact, bad endpoint)."""


class APIError(WikiError):
    """MediaWiki answered with an `error` object."""

    def __init__(self, url: str, code: str, info: str):
        super().__init__(f"{url}: MediaWiki API error {code!r}: {info}")
        self.url, self.code, self.info = url, code, info


class _Retryable(Exception):
    """One failed attempt that is worth repeating; `what` says what went wrong, for the final error."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


_HOST_LOCKS: dict[str, threading.Lock] = {}
_HOST_LOCKS_GUARD = threading.Lock()


def _host_lock(url: str) -> threading.Lock:
    host = urlsplit(url).netloc.lower()
    with _HOST_LOCKS_GUARD:
        return _HOST_LOCKS.setdefault(host, threading.Lock())





def _params(params: Mapping[str, Any]) -> dict[str, str]:
    # MediaWiki reads a boolean parameter as true whenever it is present, even empty: omit false ones
    return {k: _param(v) for k, v in params.items() if v is not None and v is not False}


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "|".join(str(v) for v in value)
    return str(value)


def _flag(obj: Mapping[str, Any], name: str) -> bool:
    """A MediaWiki boolean: formatversion 2 gives true/false (omitted when false), version 1 gives ""."""
    value = obj.get(name, False)
    return value is not False and value is not None


def _pages(query: Mapping[str, Any]) -> list[dict]:
    """`query.pages` as a list, whether formatversion 1 (object keyed by page id) or 2 (list)."""
    pages = query.get("pages") or []
    return list(pages.values()) if isinstance(pages, dict) else list(pages)


def _slot_content(revision: Mapping[str, Any]) -> str | None:
    slots = revision.get("slots")
    main = slots.get("main", {}) if isinstance(slots, dict) else revision
    if _flag(main, "texthidden") or _flag(main, "textmissing"):
        return None
    content = main.get("content", main.get("*"))
    return content if isinstance(content, str) else None


def _short(url: str, limit: int = 400) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


class MediaWikiAPI(WikiSource):
    """WikiSource on a MediaWiki Action API endpoint, e.g. https://en.wikipedia.org/w/api.php.

    `max_retries` is the number of retries after the first attempt; `backoff_s` is the first back-off
    wait, doubled on each retry (capped at MAX_WAIT_S) and never shorter than the server's Retry-After.
    `dropped` counts what the source skipped, by reason (missing pages, hidden revisions, ...).
    """

    def __init__(
        self,
        endpoint: str,
        user_agent: str,
        *,
        wiki: str = "enwiki",
        timeout_s: float = 30,
        max_retries: int = 6,
        maxlag: int = 5,
        backoff_s: float = 1.0,
    ):
        if not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint):
            raise WikiConfigError(f"MediaWiki API endpoint {endpoint!r}: expected an http(s) URL such as "
                                  "https://en.wikipedia.org/w/api.php")
        user_agent = (user_agent or "").strip()
        if not _CONTACT.search(user_agent):
            raise WikiConfigError(
                f"MediaWiki API User-Agent {user_agent!r} has no contact: Wikimedia's User-Agent policy asks for "
                "a descriptive User-Agent with an e-mail address or URL, e.g. "
                "'my-dataset-build/1.0 (https://example.org/me; me@example.org)' (config key wiki.api.user_agent)"
            )
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise WikiConfigError(f"MediaWiki API: expected max_retries >= 0, timeout_s > 0, backoff_s >= 0; got "
                                  f"{max_retries}, {timeout_s}, {backoff_s}")
        self.endpoint = endpoint
        self.wiki = wiki
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.maxlag = int(maxlag)
        self.backoff_s = float(backoff_s)
        if "mesed-build" not in user_agent:
            # the policy also asks to name the library; keep the operator's text first
            user_agent = f"{user_agent} mesed-build/{__version__} python-requests/{requests.__version__}"
        self.user_agent = user_agent
        self.session = requests.Session()
        self.session.headers.update({
            "User-Agent": user_agent,
            "Accept-Encoding": "gzip",
            "Accept": "application/json",
        })
        self.dropped: collections.Counter[str] = collections.Counter()
        self.requests_made = 0

    @classmethod
    def from_config(cls, wiki_cfg: Mapping[str, Any]) -> MediaWikiAPI:
        """From BuildConfig.wiki (its `api` section: endpoint, user_agent, timeout_s, max_retries, ...)."""
        api = wiki_cfg.get("api")
        if not isinstance(api, Mapping) or "endpoint" not in api or "user_agent" not in api:
            raise WikiConfigError("wiki.api: expected a mapping with 'endpoint' and 'user_agent' for the MediaWiki "
                                  f"API source, got {api!r}")
        return cls(
            api["endpoint"],
            api["user_agent"],
            wiki=wiki_cfg.get("wiki_id", "enwiki"),
            timeout_s=api.get("timeout_s", 30),
            max_retries=api.get("max_retries", 6),
            maxlag=api.get("maxlag", 5),
            backoff_s=api.get("backoff_s", 1.0),
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> MediaWikiAPI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------
    def _wait_s(self, state: tenacity.RetryCallState) -> float:
        backoff = min(self.backoff_s * 2 ** (state.attempt_number - 1), MAX_WAIT_S)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return backoff if retry_after is None else min(max(backoff, retry_after), MAX_WAIT_S)

    def request(self, params: Mapping[str, Any]) -> dict:
        """One action=query call (retried as needed); the decoded JSON response."""
        full = {"action": "query", "format": "json", "formatversion": "2", "maxlag": str(self.maxlag)}
        full.update(_params(params))
        prepared = requests.Request("GET", self.endpoint, params=full).prepare()
        url = prepared.url
        use_post = len(url) > POST_ABOVE_CHARS

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception()
            log.warning("%s: %s; retry %d/%d in %.1f s", _short(url, 200), exc, state.attempt_number,
                        self.max_retries, state.next_action.sleep if state.next_action else 0.0)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait_s,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=before_sleep,
            reraise=False,
        )
        with _host_lock(self.endpoint):
            try:
                return retrying(self._attempt, url, full, use_post)
            except tenacity.RetryError as exc:
                last = exc.last_attempt.exception()
                raise WikiError(
                    f"{_short(url)}: gave up after {exc.last_attempt.attempt_number} attempts; last: {last}; "
                    f"{_EXPECTED}"
                ) from last

    def _attempt(self, url: str, params: dict[str, str], use_post: bool) -> dict:
        self.requests_made += 1
        try:
            if use_post:
                resp = self.session.post(self.endpoint, data=params, timeout=self.timeout_s)
            else:
                resp = self.session.get(self.endpoint, params=params, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise _Retryable(f"no answer within {self.timeout_s:g} s ({type(exc).__name__})") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise _Retryable(f"connection failed or body cut off ({type(exc).__name__}: {exc})") from exc
        except requests.RequestException as exc:
            raise WikiError(f"{_short(url)}: request failed ({type(exc).__name__}: {exc}); {_EXPECTED}") from exc

        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}", retry_after)
        if resp.status_code != 200:
            raise WikiError(f"{_short(url)}: HTTP {resp.status_code} ({resp.text[:200]!r}); {_EXPECTED}")
        try:
            data = json.loads(resp.content)
        except (ValueError, UnicodeDecodeError) as exc:
            snippet = resp.content[:80]
            raise _Retryable(f"HTTP 200 but the body is not JSON ({len(resp.content)} bytes, {snippet!r}...)") \
                from exc
        if not isinstance(data, dict):
            raise _Retryable(f"HTTP 200 but the JSON is a {type(data).__name__}, not an object")
        error = data.get("error")
        if error:
            code = str(error.get("code", "?")) if isinstance(error, dict) else "?"
            info = str(error.get("info", error.get("*", ""))) if isinstance(error, dict) else str(error)
            if code in RETRYABLE_API_CODES:
                # Wikimedia sends Retry-After with maxlag errors; fall back to the reported lag
                lag = error.get("lag") if isinstance(error, dict) else None
                wait = retry_after if retry_after is not None else (float(lag) if lag is not None else None)
                raise _Retryable(f"MediaWiki error {code!r}: {info}", wait)
            raise APIError(_short(url), code, info)
        if data.get("warnings"):
            log.debug("%s: API warnings %s", _short(url, 200), data["warnings"])
        return data

    def query(self, params: Mapping[str, Any]) -> Iterator[dict]:
        """Every response of an action=query call, following `continue` to the end."""
        base = _params(params)
        cont: dict[str, str] = {}
        seen: set[tuple] = set()
        while True:
            data = self.request({**base, **cont})
            yield data
            nxt = data.get("continue")
            if not nxt:
                return
            key = tuple(sorted(nxt.items()))
            if key in seen:
                raise WikiError(f"{self.endpoint}: the API sent the same continuation twice ({dict(nxt)}) for "
                                f"{base}; expected each `continue` to advance")
            seen.add(key)
            cont = {k: _param(v) for k, v in nxt.items()}

    # --- WikiSource ---------------------------------------------------------------------------
    def resolve(self, titles: Iterable[str]) -> dict[str, PageRef | None]:
        wanted = list(dict.fromkeys(titles))
        result: dict[str, PageRef | None] = {}
        askable = []
        for title in wanted:
            if not isinstance(title, str) or not title.strip() or "|" in title:
                result[title] = None  # not a title; "|" would split the batch
                self.dropped["resolve: not a title"] += 1
            else:
                askable.append(title)
        for start in range(0, len(askable), TITLES_PER_REQUEST):
            batch = askable[start:start + TITLES_PER_REQUEST]
            result.update(self._resolve_batch(batch))
        return {title: result[title] for title in wanted}

    def _resolve_batch(self, batch: list[str]) -> dict[str, PageRef | None]:
        renamed: dict[str, str] = {}  # normalized / converted / redirected: from -> to
        pages: dict[str, dict] = {}
        for data in self.query({
            "titles": batch, "prop": "info|pageprops", "ppprop": "wikibase_item|disambiguation", "redirects": 1,
        }):
            q = data.get("query") or {}
            for key in ("normalized", "converted", "redirects"):
                for item in q.get(key) or []:
                    renamed[item["from"]] = item["to"]
            for page in _pages(q):
                if "title" not in page:
                    continue
                merged = pages.setdefault(page["title"], {})
                props = {**merged.get("pageprops", {}), **page.get("pageprops", {})}
                merged.update(page)
                merged["pageprops"] = props
        out: dict[str, PageRef | None] = {}
        for title in batch:
            current, hops = title, 0
            if current not in renamed and current not in pages:
                current = normalize_title(current)  # the API echoes `from` exactly; be lenient on spacing
            while current in renamed and hops <= MAX_REDIRECT_HOPS:
                current, hops = renamed[current], hops + 1
            page = pages.get(current)
            if page is None or _flag(page, "missing") or _flag(page, "invalid") or "pageid" not in page:
                self.dropped["resolve: no such page"] += 1
                out[title] = None
                continue
            props = page.get("pageprops") or {}
            out[title] = PageRef(
                page_id=int(page["pageid"]),
                title=page["title"],
                rev_id=page.get("lastrevid"),
                namespace=int(page.get("ns", 0)),
                wikibase_item=props.get("wikibase_item"),
                is_disambiguation="disambiguation" in props,
            )
        return out

    def wikitext(self, titles: Iterable[str]) -> Iterator[PageText]:
        wanted = [t for t in dict.fromkeys(titles) if isinstance(t, str) and t.strip() and "|" not in t]
        yielded: set[int] = set()
        for start in range(0, len(wanted), TITLES_PER_REQUEST):
            batch = wanted[start:start + TITLES_PER_REQUEST]
            try:
                yield from self._wikitext_batch(batch, yielded)
            except APIError as exc:
                if len(batch) == 1:
                    self.dropped[f"wikitext: API error {exc.code}"] += 1
                    log.warning("%s", exc)
                    continue
                log.warning("%s; asking for these %d pages one at a time", exc, len(batch))
                for title in batch:
                    try:
                        yield from self._wikitext_batch([title], yielded)
                    except APIError as one:
                        self.dropped[f"wikitext: API error {one.code}"] += 1
                        log.warning("%s", one)

    def _wikitext_batch(self, batch: list[str], yielded: set[int]) -> Iterator[PageText]:
        missing: set[str] = set()
        for data in self.query({
            "titles": batch, "prop": "revisions", "rvprop": "ids|content", "rvslots": "main", "redirects": 1,
        }):
            for page in _pages(data.get("query") or {}):
                if _flag(page, "missing") or _flag(page, "invalid") or "pageid" not in page:
                    missing.add(page.get("title", "?"))
                    continue
                page_id = int(page["pageid"])
                revisions = page.get("revisions")
                if page_id in yielded or not revisions:
                    continue  # already given, or its content comes in a later continued response
                yielded.add(page_id)
                content = _slot_content(revisions[0])
                if content is None:
                    self.dropped["wikitext: revision text hidden or missing"] += 1
                    continue
                yield PageText(page_id, page["title"], revisions[0].get("revid"), content, int(page.get("ns", 0)))
        self.dropped["wikitext: no such page"] += len(missing)

    def backlinks(self, title: str, limit: int | None = None) -> list[PageRef]:
        """Namespace-0 pages linking to `title`, directly or through a redirect (blredirect's `redirlinks`).

        The redirect pages themselves are not returned: they are not articles with text.
        """
        found: dict[int, PageRef] = {}

        def add(entry: Mapping[str, Any]) -> None:
            if int(entry.get("ns", 0)) == 0 and "pageid" in entry:
                found.setdefault(int(entry["pageid"]), PageRef(int(entry["pageid"]), entry["title"]))

        for data in self.query({
            "list": "backlinks", "bltitle": title, "blnamespace": 0, "blredirect": 1, "bllimit": "max",
            "redirects": 1,
        }):
            for entry in (data.get("query") or {}).get("backlinks") or []:
                if _flag(entry, "redirect"):
                    for linked in entry.get("redirlinks") or []:
                        add(linked)
                else:
                    add(entry)
            if limit is not None and len(found) >= limit:
                break
        refs = list(found.values())
        return refs if limit is None else refs[:limit]

    def redirects_to(self, titles: Iterable[str]) -> dict[str, list[str]]:
        """prop=redirects, 50 titles a request, every continuation followed."""
        wanted = list(dict.fromkeys(normalize_title(t) for t in titles))
        out: dict[str, list[str]] = {t: [] for t in wanted}
        for start in range(0, len(wanted), TITLES_PER_REQUEST):
            batch = wanted[start:start + TITLES_PER_REQUEST]
            for data in self.query({
                "prop": "redirects", "titles": "|".join(batch), "rdnamespace": 0, "rdprop": "title",
                "rdlimit": "max",
            }):
                for page in _pages(data.get("query") or {}):
                    redirects = out.setdefault(page.get("title", ""), [])
                    redirects.extend(r["title"] for r in page.get("redirects") or [] if r.get("title"))
        return {title: sorted(set(found)) for title, found in out.items()}

    def category_members(self, category: str) -> list[PageRef]:
        if not category.lower().startswith("category:"):
            category = f"Category:{category}"
        found: dict[int, PageRef] = {}
        for data in self.query({
            "list": "categorymembers", "cmtitle": category, "cmnamespace": 0, "cmtype": "page", "cmlimit": "max",
            "redirects": 1,
        }):
            for entry in (data.get("query") or {}).get("categorymembers") or []:
                # the API filters by namespace already; keep the check for responses that were not filtered
                if int(entry.get("ns", 0)) == 0:
                    found.setdefault(int(entry["pageid"]), PageRef(int(entry["pageid"]), entry["title"]))
        return list(found.values())

    def random_pages(self, n: int, seed: int, *, namespace: int = 0) -> list[PageRef]:
        """n random non-redirect pages of `namespace`.

        list=random takes no seed, so the result is NOT reproducible from `seed`: callers that need a
        deterministic build store the pages they drew (or use the dump source, which is seeded).
        """
        del seed  # the API has no seed parameter; see the docstring
        found: dict[int, PageRef] = {}
        if n <= 0:
            return []
        rounds = 0
        for data in self.query({
            "list": "random", "rnnamespace": namespace, "rnfilterredir": "nonredirects", "rnlimit": min(n, 500),
            "redirects": 1,
        }):
            rounds += 1
            for entry in (data.get("query") or {}).get("random") or []:
                page_id = int(entry.get("id", entry.get("pageid", 0)))
                found.setdefault(page_id, PageRef(page_id, entry["title"], namespace=int(entry.get("ns", 0))))
            # each round draws up to 500 new pages; the bound only matters if the wiki has fewer than n
            if len(found) >= n or rounds > n // 500 + 10:
                break
        return list(found.values())[:n]

    def search(self, query: str, limit: int = 10, namespace: int = 0) -> list[PageRef]:
        found: dict[tuple[int, str], PageRef] = {}
        for data in self.query({
            "list": "search", "srsearch": query, "srnamespace": namespace, "srlimit": min(max(limit, 1), 500),
            "srsort": "relevance", "redirects": 1,
        }):
            for entry in (data.get("query") or {}).get("search") or []:
                # files shared from Commons come back with pageid 0, so the title is part of the key
                key = (int(entry.get("pageid", 0)), entry["title"])
                found.setdefault(key, PageRef(key[0], entry["title"], namespace=int(entry.get("ns", namespace))))
            if len(found) >= limit:
                break
        return list(found.values())[:limit]
