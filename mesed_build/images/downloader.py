"""A concurrent, polite and safe image downloader.

Politeness: a descriptive User-Agent with contact, per-host concurrency limits (at most 2 at a time
to upload.wikimedia.org by default), retries of 429/5xx with exponential backoff that honours
`Retry-After`, and no use of images whose server says `X-Robots-Tag: noai` / `noimageai`.
Safety: the SSRF guard (net_guard) on every redirect hop and at connect time, a byte limit enforced
while streaming, a total time limit per body (a server that stalls or drips is cut off), and
content sniffing (sniff) before anything is stored. Every refusal comes back with a reason slug.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from mesed_build.http import parse_retry_after
from mesed_build.images.content_store import ContentStore
from mesed_build.images.net_guard import AddressGuard, BlockedAddress
from mesed_build.images.sniff import DEFAULT_LONGEST_SIDE, DEFAULT_MAX_PIXELS, Rejected, normalise

DEFAULT_HOST_LIMITS = {"upload.wikimedia.org": 2}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NOAI_TOKENS = ("noai", "noimageai")


@dataclass
class DownloaderConfig:
    user_agent: str
    max_bytes: int = 20 * 1024 * 1024
    longest_side: int = DEFAULT_LONGEST_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = 90
    workers: int = 8
    per_host_limit: int = 4
    host_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_HOST_LIMITS))
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    total_timeout_s: float = 60.0  # whole body, so a slow drip cannot hold a worker forever
    max_retries: int = 3
    backoff_s: float = 1.0
    max_retry_after_s: float = 120.0
    max_redirects: int = 5
    allow_private_hosts: Sequence[str] = ()  # IPs/CIDRs exempt from the SSRF guard (tests only)
    local_roots: Sequence[str | Path] = ()  # folders file:// URLs may read from (the local provider)

    def __post_init__(self) -> None:
        if not self.user_agent or not any(mark in self.user_agent for mark in ("@", "http://", "https://")):
            raise ValueError(
                f"images.user_agent {self.user_agent!r} must be descriptive and carry a contact "
                "(an e-mail address or URL), e.g. 'mesed-build/0.1 (https://example.org; you@example.org)'"
            )

    @classmethod
    def from_options(cls, options: Mapping, **overrides) -> DownloaderConfig:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in options.items() if k in known}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: str  # "ok" or a rejection reason
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    mime: str | None = None
    final_url: str | None = None
    detail: str = ""
    fetched_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after





def robots_forbids_ai(header: str | None) -> bool:
    if not header:
        return False
    # "X-Robots-Tag: otherbot: noindex, noai" - any directive list naming noai/noimageai counts
    tokens = {t.strip().lower() for part in header.split(",") for t in part.split(":")}
    return any(tok in tokens for tok in NOAI_TOKENS)


class Downloader:
    """`fetch(url)` / `fetch_many(urls)` -> FetchResult; accepted images land in the ContentStore."""

    def __init__(self, config: DownloaderConfig, store: ContentStore, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.store = store
        self.guard = AddressGuard(config.allow_private_hosts)
        self._sleep = sleep
        self._host_sems: dict[str, threading.BoundedSemaphore] = {}
        self._sems_lock = threading.Lock()
        self._local = threading.local()
        self._local_roots = [Path(r).resolve() for r in config.local_roots]

    # -- sessions and limits ------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy: the guard must see the real peer
            session.headers.update({"User-Agent": self.config.user_agent, "Accept": "image/*"})
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            adapter.poolmanager.pool_classes_by_scheme = self.guard.pool_classes()
            self._local.session = session
        return session

    def host_semaphore(self, host: str) -> threading.BoundedSemaphore:
        with self._sems_lock:
            sem = self._host_sems.get(host)
            if sem is None:
                limit = int(self.config.host_limits.get(host, self.config.per_host_limit))
                sem = self._host_sems[host] = threading.BoundedSemaphore(max(1, limit))
            return sem

    # -- fetching -----------------------------------------------------------------------------

    def fetch_many(self, urls: Iterable[str], *, progress: bool | None = None) -> list[FetchResult]:
        urls = list(urls)
        disable = progress is False or (progress is None and not _isatty())
        with ThreadPoolExecutor(max_workers=max(1, self.config.workers), thread_name_prefix="fetch") as pool:
            results = list(tqdm(pool.map(self.fetch, urls), total=len(urls), desc="images", unit="img",
                                disable=disable))
        return results

    def fetch(self, url: str) -> FetchResult:
        started = time.time()
        try:
            data, final_url = self._get_bytes(url)
            image = normalise(data, max_pixels=self.config.max_pixels, longest_side=self.config.longest_side,
                              jpeg_quality=self.config.jpeg_quality)
            sha, _ = self.store.put(image.data)
        except Rejected as exc:
            return FetchResult(url, exc.reason, detail=exc.detail, fetched_at=started)
        except BlockedAddress as exc:
            return FetchResult(url, "ssrf_blocked", detail=str(exc), fetched_at=started)
        except _Retryable as exc:
            return FetchResult(url, exc.reason, detail=exc.detail, fetched_at=started)
        return FetchResult(url, "ok", sha, image.width, image.height, len(image.data), image.mime,
                           final_url, fetched_at=started)

    def _get_bytes(self, url: str) -> tuple[bytes, str]:
        if urlsplit(url).scheme == "file":
            return self._read_local(url), url
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._attempt, url)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = self.config.backoff_s * (2 ** (state.attempt_number - 1))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > self.config.max_retry_after_s:
            # the server asks for a longer pause than we are willing to hold a worker for
            raise exc
        return max(backoff, retry_after or 0.0)

    def _attempt(self, url: str) -> tuple[bytes, str]:
        current = url
        for _ in range(self.config.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Rejected("bad_url", f"{current}: only http(s) URLs are fetched")
            try:
                self.guard.check_url(current)
            except OSError as exc:
                raise _Retryable("network_error", str(exc)) from exc
            with self.host_semaphore(parts.hostname.lower()):
                result = self._request(current)
            if isinstance(result, str):
                current = result  # a redirect: check the next hop from the top
                continue
            return result, current
        raise Rejected("too_many_redirects", f"more than {self.config.max_redirects} redirects from {url}")

    def _request(self, url: str) -> bytes | str:
        cfg = self.config
        try:
            response = self._session().get(url, stream=True, allow_redirects=False,
                                           timeout=(cfg.connect_timeout_s, cfg.read_timeout_s))
        except requests.Timeout as exc:
            raise _Retryable("timeout", f"{url}: {exc}") from exc
        except requests.RequestException as exc:
            raise _Retryable("network_error", f"{url}: {exc}") from exc
        with response:
            status = response.status_code
            if status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise Rejected("bad_redirect", f"{url}: {status} without Location")
                return urljoin(url, location)
            if status in RETRY_STATUSES:
                reason = "rate_limited" if status == 429 else f"http_{status}"
                raise _Retryable(reason, f"{url}: HTTP {status}",
                                 parse_retry_after(response.headers.get("Retry-After")))
            if status != 200:
                raise Rejected(f"http_{status}", url)
            if robots_forbids_ai(response.headers.get("X-Robots-Tag")):
                raise Rejected("robots_noai", f"{url}: X-Robots-Tag: {response.headers.get('X-Robots-Tag')}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                raise Rejected("too_large", f"{url}: Content-Length {declared} > {cfg.max_bytes}")
            return self._read_body(response, url)

    def _read_body(self, response: requests.Response, url: str) -> bytes:
        cfg = self.config
        deadline = time.monotonic() + cfg.total_timeout_s
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > cfg.max_bytes:
                    raise Rejected("too_large", f"{url}: body passed {cfg.max_bytes} bytes while streaming")
                if time.monotonic() > deadline:
                    raise Rejected("timeout", f"{url}: body not complete after {cfg.total_timeout_s}s")
                chunks.append(chunk)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # urllib3 enforces Content-Length: a body that ends early is refused here
            if "Read timed out" in str(exc):
                raise Rejected("timeout", f"{url}: stalled mid-body") from exc
            raise Rejected("truncated_body", f"{url}: {exc}") from exc
        except requests.Timeout as exc:
            raise Rejected("timeout", f"{url}: stalled mid-body") from exc
        return b"".join(chunks)

    def _read_local(self, url: str) -> bytes:
        path = Path(unquote(urlsplit(url).path)).resolve()
        if not any(path.is_relative_to(root) for root in self._local_roots):
            raise Rejected("bad_url", f"{url}: file URLs are only read from the local image pool")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise Rejected("missing_file", f"{url}: {exc.strerror}") from exc
        if size > self.config.max_bytes:
            raise Rejected("too_large", f"{url}: {size} bytes > {self.config.max_bytes}")
        return path.read_bytes()


def count_rejections(results: Iterable[FetchResult]) -> Counter:
    return Counter(r.status for r in results if not r.ok)


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()
