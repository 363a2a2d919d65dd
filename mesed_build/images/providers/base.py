"""The one interface every image search provider implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass


class ProviderError(RuntimeError):
    """A provider cannot work (unknown name, missing credentials, unreadable pool, failed API call)."""


@dataclass(frozen=True)
class Candidate:
    url: str
    source_page: str | None = None
    title: str | None = None
    licence: str | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None


class ImageSearchProvider(abc.ABC):
    name: str = "?"

    @abc.abstractmethod
    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        """Up to `limit` image candidates for `query`, best first."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass
