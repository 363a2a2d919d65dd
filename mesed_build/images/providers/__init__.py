"""Image search providers behind one interface, chosen by name from the build config.

`commons` (Wikimedia Commons file search, the free default), `google-cse` (Custom Search JSON API;
key and cx from the environment) and `local` (a folder of images + JSONL of captions, BM25).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mesed_build.images.providers.base import Candidate, ImageSearchProvider, ProviderError


def _commons(options: Mapping[str, Any]) -> ImageSearchProvider:
    from mesed_build.images.providers.commons import CommonsProvider

    return CommonsProvider.from_options(options)


def _google(options: Mapping[str, Any]) -> ImageSearchProvider:
    from mesed_build.images.providers.google_cse import GoogleCSEProvider

    return GoogleCSEProvider.from_options(options)


def _local(options: Mapping[str, Any]) -> ImageSearchProvider:
    from mesed_build.images.providers.local import LocalProvider

    return LocalProvider.from_options(options)


PROVIDERS: dict[str, Callable[[Mapping[str, Any]], ImageSearchProvider]] = {
    "commons": _commons,
    "google-cse": _google,
    "local": _local,
}


def get_provider(name: str, options: Mapping[str, Any] | None = None) -> ImageSearchProvider:
    """Build the named provider; fails before any work on an unknown name or missing credentials."""
    factory = PROVIDERS.get(name)
    if factory is None:
        raise ProviderError(f"images.provider: unknown provider {name!r}; expected one of: {', '.join(sorted(PROVIDERS))}")
    return factory(options or {})


__all__ = ["Candidate", "ImageSearchProvider", "ProviderError", "PROVIDERS", "get_provider"]
