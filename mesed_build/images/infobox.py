"""The entity's infobox image, Img(e) in eq. 1.

On either source it is the image parameter of the page's first Infobox template (mwparserfromhell),
so a dump build and an API build of the same pages pick the same file. On the live API a page whose
wikitext names none falls back to `prop=pageimages` (the image MediaWiki picked for the page, from
infoboxes with other parameter names or from the lead). The file name is then resolved to a URL
through `imageinfo` (or the local pool).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import mwparserfromhell

_FILE_PREFIX = re.compile(r"^\s*(?:file|image)\s*:\s*", re.IGNORECASE)
_LINK = re.compile(r"\[\[\s*(?:file|image)\s*:\s*([^|\]]+)", re.IGNORECASE)
IMAGE_PARAMS = ("image", "image_name", "img", "photo", "logo", "image1")


def clean_file_name(value: str) -> str | None:
    """'[[File:Foo bar.jpg|200px]]', 'File:Foo_bar.jpg' or 'Foo bar.jpg' -> 'Foo bar.jpg'."""
    value = value.strip()
    match = _LINK.search(value)
    if match:
        value = match.group(1)
    value = _FILE_PREFIX.sub("", value).split("|", 1)[0].strip().replace("_", " ")
    value = re.sub(r"<!--.*?-->", "", value, flags=re.S).strip()
    if not value or "{" in value or "." not in value:
        return None  # empty, a template, or not a file name
    return value[:1].upper() + value[1:]


def infobox_image_from_wikitext(text: str) -> str | None:
    """The file name in the first Infobox's image parameter, or None."""
    code = mwparserfromhell.parse(text)
    for template in code.filter_templates(recursive=True):
        name = str(template.name).strip().lower()
        if not name.startswith("infobox"):
            continue
        for param in IMAGE_PARAMS:
            if template.has(param):
                found = clean_file_name(str(template.get(param).value))
                if found:
                    return found
        return None
    return None


def page_images(client, titles: Iterable[str]) -> dict[str, str | None]:
    """title -> page image file name via `prop=pageimages` (client: commons.MediaWikiClient on the wiki)."""
    titles = list(dict.fromkeys(titles))
    out: dict[str, str | None] = {t: None for t in titles}
    for i in range(0, len(titles), 50):
        data = client.get({"action": "query", "prop": "pageimages", "piprop": "name",
                           "titles": "|".join(titles[i : i + 50]), "redirects": "1"})
        query = data.get("query") or {}
        back = {n["to"]: n["from"] for n in query.get("normalized") or []}
        for r in query.get("redirects") or []:
            back[r["to"]] = back.get(r["from"], r["from"])  # a redirect's source may itself be normalised
        pages = query.get("pages") or []
        for page in pages.values() if isinstance(pages, dict) else pages:
            name = page.get("pageimage")
            title = page.get("title", "")
            out[back.get(title, title)] = name.replace("_", " ") if name else None
    return out


def infobox_file_names(source, titles: Iterable[str], page_image_client=None) -> dict[str, str | None]:
    """title -> infobox image file name (None: the page names none) for pages of `source` (a WikiSource).

    page_image_client: a MediaWiki client on the same wiki; pages without an infobox image then get
    their `prop=pageimages` image instead.
    """
    names: dict[str, str | None] = dict.fromkeys(titles)
    for page in source.wikitext(sorted(names)):
        if page.title in names:
            names[page.title] = infobox_image_from_wikitext(page.text)
    missing = [t for t, name in names.items() if name is None]
    if page_image_client is not None and missing:
        names.update({t: name for t, name in page_images(page_image_client, missing).items() if name})
    return names
