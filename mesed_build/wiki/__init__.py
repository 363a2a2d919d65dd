"""Wikipedia sources: the MediaWiki Action API and the XML dump, behind one interface."""

from mesed_build.wiki.source import PageRef, PageText, WikiError, WikiSource, link_target, normalize_title

__all__ = ["PageRef", "PageText", "WikiError", "WikiSource", "link_target", "normalize_title"]
