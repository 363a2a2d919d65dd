"""The one interface every Wikipedia source implements (MediaWiki Action API, XML dump)."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Namespaces and interwiki prefixes whose links are not article links.
NON_ARTICLE_PREFIXES = frozenset(
    p.lower()
    for p in (
        "File", "Image", "Category", "Template", "Wikipedia", "WP", "Help", "Portal", "Talk", "User",
        "User talk", "Draft", "Module", "MediaWiki", "Special", "Media", "Wikt", "Wiktionary", "Commons",
        "Wikisource", "Wikiquote", "Wikibooks", "Wikinews", "Wikiversity", "Wikivoyage", "Wikispecies",
        "Meta", "m", "mw", "s", "q", "b", "n", "v", "d", "w", "wikidata", "Species", "TimedText", "Book",
        "Topic", "Gadget", "Education Program", "Project", "File talk", "Category talk", "Template talk",
    )
)
_LANG_PREFIX = re.compile(r"^[a-z]{2,3}(-[a-z]{2,8})?$")
_WS = re.compile(r"[\s_]+")


class WikiError(RuntimeError):
    """A Wikipedia source failed in a way the build cannot recover from; the message says where."""


@dataclass(frozen=True)
class PageRef:
    """A resolved page: the canonical page that a title leads to after redirects."""

    page_id: int
    title: str
    rev_id: int | None = None
    namespace: int = 0
    wikibase_item: str | None = None
    is_disambiguation: bool = False
    # True when a partial dump (an excerpt) lacks the page: the id is derived from the title
    synthetic: bool = False


@dataclass(frozen=True)
class PageText:
    page_id: int
    title: str
    rev_id: int | None
    text: str
    namespace: int = 0


def normalize_title(title: str) -> str:
    """MediaWiki title normalisation for namespace-0 links: underscores, spacing, first letter upper."""
    title = _WS.sub(" ", title.replace("\u200e", "").replace("\u200f", "")).strip()
    if title.startswith(":"):
        title = title[1:].lstrip()
    return title[:1].upper() + title[1:] if title else title


def link_target(raw: str) -> str | None:
    """The normalised namespace-0 target of a wikilink's target text, or None if it is not an article link.

    Drops the #fragment; returns None for same-page section links, namespaced and interwiki links.
    """
    target = raw.split("#", 1)[0]
    if not target.strip():
        return None  # [[#Section]]: a link within the same page
    target = target.strip()
    if target.startswith(":"):
        target = target[1:]
    if ":" in target:
        prefix = target.split(":", 1)[0].strip().lower()
        if prefix in NON_ARTICLE_PREFIXES or _LANG_PREFIX.match(prefix):
            return None
    title = normalize_title(target)
    if not title or any(ch in title for ch in "<>[]{}|"):
        return None
    return title


class WikiSource(abc.ABC):
    """What the stages need from Wikipedia. Implementations: api.MediaWikiAPI, dump.DumpSource."""

    wiki: str = "enwiki"

    @abc.abstractmethod
    def resolve(self, titles: Iterable[str]) -> dict[str, PageRef | None]:
        """Map each title to its canonical page after normalisation and redirects (None: no such page)."""

    @abc.abstractmethod
    def wikitext(self, titles: Iterable[str]) -> Iterator[PageText]:
        """Current wikitext of the given pages (redirects followed), in any order; missing pages are skipped."""

    @abc.abstractmethod
    def backlinks(self, title: str, limit: int | None = None) -> list[PageRef]:
        """Namespace-0 articles that link to `title`, directly or through a redirect to it."""

    @abc.abstractmethod
    def redirects_to(self, titles: Iterable[str]) -> dict[str, list[str]]:
        """Canonical title -> the namespace-0 redirect titles that lead to it (links are often written so)."""

    @abc.abstractmethod
    def category_members(self, category: str) -> list[PageRef]:
        """Namespace-0 members of a category ('Category:...')."""

    @abc.abstractmethod
    def random_pages(self, n: int, seed: int) -> list[PageRef]:
        """n random namespace-0 articles (seeded where the source allows it)."""

    @abc.abstractmethod
    def search(self, query: str, limit: int = 10, namespace: int = 0) -> list[PageRef]:
        """Full-text search over titles/articles."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass
