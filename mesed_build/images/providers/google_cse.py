"""Google Programmable Search (Custom Search JSON API) with `searchType=image`.

The API key and engine id come from the environment (GOOGLE_CSE_KEY, GOOGLE_CSE_CX by default; the
variable names are configurable), never from the build config, so configs can be shared. 429 and 5xx
answers are retried with exponential backoff that honours `Retry-After`; a spent daily quota (403)
and any other refusal stop at once, since retrying cannot help. The key never appears in an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from mesed_build.http import Retryable, call_with_retries, parse_retry_after
from mesed_build.images.providers.base import Candidate, ImageSearchProvider, ProviderError

ENDPOINT = "https://customsearch.googleapis.com/customsearch/v1"
PAGE_SIZE = 10  # the API's most results per request (`num`)


def _api_error(response: requests.Response) -> str:
    """The API's own reason ("dailyLimitExceeded: Quota exceeded ...") or the start of the body."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return response.text[:200]
    reasons = [e.get("reason") for e in error.get("errors") or [] if e.get("reason")]
    return ": ".join(filter(None, [", ".join(reasons), error.get("message")])) or response.text[:200]


class GoogleCSEProvider(ImageSearchProvider):
    name = "google-cse"

    def __init__(self, key: str, cx: str, *, endpoint: str = ENDPOINT, user_agent: str = "mesed-build",
                 timeout_s: float = 30.0, max_retries: int = 4, backoff_s: float = 1.0,
                 max_retry_after_s: float = 300.0, sleep: Callable[[float], None] = time.sleep):
        self.key, self.cx, self.endpoint, self.timeout_s = key, cx, endpoint, timeout_s
        self.max_retries, self.backoff_s, self.max_retry_after_s = max_retries, backoff_s, max_retry_after_s
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GoogleCSEProvider:
        key_var = options.get("key_env", "GOOGLE_CSE_KEY")
        cx_var = options.get("cx_env", "GOOGLE_CSE_CX")
        missing = [v for v in (key_var, cx_var) if not os.environ.get(v)]
        if missing:
            raise ProviderError(
                f"images.provider google-cse needs the environment variable(s) {', '.join(missing)} "
                "(an API key and a Programmable Search Engine id)"
            )
        return cls(os.environ[key_var], os.environ[cx_var], endpoint=options.get("endpoint") or ENDPOINT,
                   user_agent=options.get("user_agent") or "mesed-build",
                   timeout_s=float(options.get("timeout_s", 30)), max_retries=int(options.get("max_retries", 4)),
                   backoff_s=float(options.get("backoff_s", 1.0)))

    def close(self) -> None:
        self.session.close()

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        out: list[Candidate] = []
        start = 1
        while len(out) < limit:
            items = self._page(query, start, min(PAGE_SIZE, limit - len(out)))
            out.extend(self._candidate(item) for item in items if item.get("link"))
            if len(items) < PAGE_SIZE:
                break
            start += len(items)
        return out[:limit]

    @staticmethod
    def _candidate(item: Mapping[str, Any]) -> Candidate:
        image = item.get("image") or {}
        return Candidate(
            url=item["link"], source_page=image.get("contextLink"), title=item.get("title"),
            licence=None,  # the API does not report licences; rights filtering is the engine's `rights` setting
            width=image.get("width"), height=image.get("height"), mime=item.get("mime"),
        )

    def _page(self, query: str, start: int, num: int) -> list[dict]:
        params = {"key": self.key, "cx": self.cx, "q": query, "searchType": "image", "num": num, "start": start}
        where = f"{self.endpoint} (q={query!r}, start={start})"
        try:
            return call_with_retries(lambda: self._get_once(params, where), max_retries=self.max_retries,
                                     backoff_s=self.backoff_s, sleep=self._sleep)
        except Retryable as exc:
            raise ProviderError(f"{where}: gave up after {self.max_retries + 1} tries: {exc}") from exc

    def _get_once(self, params: dict, where: str) -> list[dict]:
        try:
            response = self.session.get(self.endpoint, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            # the exception's text holds the request URL, and with it the key
            raise Retryable(type(exc).__name__) from None
        if response.status_code in (429, 500, 502, 503, 504):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.max_retry_after_s:
                raise ProviderError(f"{where}: HTTP {response.status_code}, asked to wait {retry_after:.0f} s "
                                    f"(over max {self.max_retry_after_s:.0f} s): {_api_error(response)}")
            raise Retryable(f"HTTP {response.status_code}: {_api_error(response)}", retry_after)
        if response.status_code != 200:
            raise ProviderError(f"{where}: HTTP {response.status_code}: {_api_error(response)}")
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(f"{where}: the answer is not JSON (expected a customsearch#search object): "
                                f"{response.text[:120]!r}") from None
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(items, (list, type(None))):
            raise ProviderError(f"{where}: expected a customsearch#search object with an `items` list")
        return items or []
