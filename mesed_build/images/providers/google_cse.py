"""Google Programmable Search (Custom Search JSON API) with `searchType=image`.

The API key and engine id come from the environment (GOOGLE_CSE_KEY, GOOGLE_CSE_CX by default; the
variable names are configurable), never from the build config, so configs can be shared.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import requests

from mesed_build.images.providers.base import Candidate, ImageSearchProvider, ProviderError

ENDPOINT = "https://customsearch.googleapis.com/customsearch/v1"


class GoogleCSEProvider(ImageSearchProvider):
    name = "google-cse"

    def __init__(self, key: str, cx: str, *, endpoint: str = ENDPOINT, user_agent: str = "mesed-build",
                 timeout_s: float = 30.0):
        self.key, self.cx, self.endpoint, self.timeout_s = key, cx, endpoint, timeout_s
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
                   timeout_s=float(options.get("timeout_s", 30)))

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        params = {"key": self.key, "cx": self.cx, "q": query, "searchType": "image", "num": min(10, limit)}
        try:
            response = self.session.get(self.endpoint, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ProviderError(f"{self.endpoint}: {exc}") from exc
        if response.status_code != 200:
            raise ProviderError(f"{self.endpoint}: HTTP {response.status_code} for q={query!r}: {response.text[:200]}")
        out = []
        for item in response.json().get("items") or []:
            image = item.get("image") or {}
            out.append(Candidate(
                url=item["link"], source_page=image.get("contextLink"), title=item.get("title"),
                licence=None,  # the API does not report licences; rights filtering is the `rights` parameter
                width=image.get("width"), height=image.get("height"), mime=item.get("mime"),
            ))
        return out[:limit]
