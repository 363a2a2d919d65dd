"""What every stage gets: the config, the store, the Wikipedia source and the current build."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesed_build.config import BuildConfig
from mesed_build.store import Store
from mesed_build.wiki.source import WikiSource


@dataclass
class BuildContext:
    config: BuildConfig
    store: Store
    build_id: int | None = None
    progress: bool = False
    _source: WikiSource | None = field(default=None, repr=False)

    @property
    def wiki(self) -> str:
        return self.config.wiki.get("wiki_id", "enwiki")

    @property
    def source(self) -> WikiSource:
        if self._source is None:
            self._source = open_source(self.config, self.store, progress=self.progress)
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self.store.close()


def open_source(config: BuildConfig, store: Store, *, progress: bool = False) -> WikiSource:
    """The Wikipedia source the config names (the API client is imported only when used)."""
    wiki = config.wiki.get("wiki_id", "enwiki")
    if config.wiki["source"] == "dump":
        from mesed_build.wiki.dump import DumpSource

        return DumpSource(config.dump_paths(), store, wiki=wiki, partial=bool(config.wiki["dump"].get("partial")),
                          progress=progress)
    from mesed_build.wiki.api import MediaWikiAPI

    return MediaWikiAPI.from_config(config.wiki)


def open_context(config: BuildConfig, *, progress: bool = False) -> BuildContext:
    config.build_dir.mkdir(parents=True, exist_ok=True)
    return BuildContext(config=config, store=Store(config.database_url), progress=progress)
