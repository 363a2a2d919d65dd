"""Wikimedia Commons file search: `list=search` in namespace 6 (File:), then `prop=imageinfo`
(url, size, mime, and extmetadata for the licence), 50 titles per call.

Requests are serial, carry a descriptive User-Agent and `maxlag=5`, ask for gzip, and retry 429/5xx
and maxlag errors with backoff that honours `Retry-After`.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests

from mesed_build.http import Retryable, call_with_retries, parse_retry_after
from mesed_build.images.providers.base import Candidate, ImageSearchProvider, ProviderError

COMMONS_ENDPOINT = "https://commons.wikimedia.org/w/api.php"
RASTER_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp"})
IIPROP = "url|size|mime|extmetadata"
EXTMETADATA_FILTER = "LicenseShortName|UsageTerms|License"


class MediaWikiClient:
    """A small, polite GET client for one MediaWiki Action API endpoint."""

    def __init__(self, endpoint: str, user_agent: str, *, timeout_s: float = 30.0, max_retries: int = 6,
                 backoff_s: float = 1.0, maxlag: int = 5, sleep: Callable[[float], None] = time.sleep):
        if not user_agent or not any(m in user_agent for m in ("@", "http://", "https://")):
            raise ProviderError(f"a MediaWiki client needs a descriptive User-Agent with contact, got {user_agent!r}")
        self.endpoint = endpoint
        self.timeout_s, self.max_retries, self.backoff_s, self.maxlag = timeout_s, max_retries, backoff_s, maxlag
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "gzip"})

    def get(self, params: Mapping[str, Any]) -> dict:
        query = {"format": "json", "formatversion": "2", "maxlag": str(self.maxlag), **params}

        try:
            return call_with_retries(lambda: self._get_once(query), max_retries=self.max_retries,
                                     backoff_s=self.backoff_s, sleep=self._sleep)
        except Retryable as exc:
            raise ProviderError(f"{self.endpoint}: gave up after {self.max_retries + 1} tries: {exc}") from exc

    def _get_once(self, query: dict) -> dict:
        try:
            response = self.session.get(self.endpoint, params=query, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise Retryable(f"{exc}") from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code in (429, 500, 502, 503, 504):
            raise Retryable(f"HTTP {response.status_code}", retry_after)
        if response.status_code != 200:
            raise ProviderError(f"{response.url}: HTTP {response.status_code}, expected 200 with a JSON body")
        try:
            data = response.json()
        except ValueError as exc:
            raise Retryable(f"{response.url}: body is not JSON") from exc
        error = data.get("error") if isinstance(data, dict) else None
        if error:
            if error.get("code") == "maxlag":
                raise Retryable(f"maxlag: {error.get('info')}", retry_after or 5.0)
            raise ProviderError(f"{response.url}: API error {error.get('code')}: {error.get('info')}")
        return data


def _mime(candidate: Candidate) -> str | None:
    # imageinfo without iiprop=mime: fall back to the file name's extension
    return candidate.mime or mimetypes.guess_type(candidate.url)[0]


def _pages(data: dict) -> list[dict]:
    pages = (data.get("query") or {}).get("pages") or []
    return list(pages.values()) if isinstance(pages, dict) else list(pages)


def _licence(info: dict) -> str | None:
    meta = info.get("extmetadata") or {}
    for key in ("LicenseShortName", "UsageTerms", "License"):
        value = (meta.get(key) or {}).get("value")
        if value:
            return str(value).strip()
    return None


def parse_imageinfo(data: dict) -> dict[str, Candidate]:
    """title -> Candidate for every file that exists and has an imageinfo entry."""
    out: dict[str, Candidate] = {}
    for page in _pages(data):
        infos = page.get("imageinfo") or []
        if not infos or not infos[0].get("url"):
            continue  # a missing file (or a deleted revision): no candidate
        info = infos[0]
        out[page["title"]] = Candidate(
            url=info["url"],
            source_page=info.get("descriptionurl"),
            title=page["title"],
            licence=_licence(info),
            width=info.get("width"),
            height=info.get("height"),
            mime=info.get("mime"),
        )
    return out


class CommonsProvider(ImageSearchProvider):
    name = "commons"

    def __init__(self, client: MediaWikiClient, *, raster_only: bool = True, batch_size: int = 50):
        self.client = client
        self.raster_only = raster_only
        self.batch_size = batch_size

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CommonsProvider:
        user_agent = options.get("user_agent")
        if not user_agent:
            raise ProviderError("images.user_agent is required for the commons provider (Wikimedia User-Agent policy)")
        client = MediaWikiClient(
            options.get("endpoint") or COMMONS_ENDPOINT, user_agent,
            timeout_s=float(options.get("timeout_s", 30)), max_retries=int(options.get("max_retries", 6)),
            backoff_s=float(options.get("backoff_s", 1.0)),
        )
        return cls(client)

    def search_titles(self, query: str, limit: int = 10) -> list[str]:
        data = self.client.get({
            "action": "query", "list": "search", "srsearch": query, "srnamespace": "6",
            "srlimit": str(limit), "srsort": "relevance", "redirects": "1",
        })
        return [hit["title"] for hit in (data.get("query") or {}).get("search") or []]

    def imageinfo(self, titles: Iterable[str]) -> dict[str, Candidate]:
        titles = list(dict.fromkeys(titles))
        out: dict[str, Candidate] = {}
        for i in range(0, len(titles), self.batch_size):
            batch = titles[i : i + self.batch_size]
            data = self.client.get({
                "action": "query", "prop": "imageinfo", "titles": "|".join(batch), "iiprop": IIPROP,
                "iiextmetadatafilter": EXTMETADATA_FILTER, "iilimit": "1", "redirects": "1",
            })
            found = parse_imageinfo(data)
            # the API answers with normalised titles and redirect targets; map them back to what we asked for
            query = data.get("query") or {}
            asked = {n["to"]: n["from"] for n in query.get("normalized") or []}
            for r in query.get("redirects") or []:
                asked[r["to"]] = asked.get(r["from"], r["from"])
            for title, candidate in found.items():
                out[asked.get(title, title)] = candidate
        return out

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        # ask for more hits than needed: PDFs, SVGs and videos are dropped below
        titles = self.search_titles(query, limit * 2)
        infos = self.imageinfo(titles)
        out = []
        for title in titles:
            candidate = infos.get(title)
            if candidate is None or (self.raster_only and _mime(candidate) not in RASTER_MIMES):
                continue
            out.append(candidate)
        return out[:limit]
