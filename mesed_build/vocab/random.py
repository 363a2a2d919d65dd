"""Random negatives: main-namespace articles drawn at random, never a target, a list or a disambiguation page.

Dump builds draw a uniform sample seeded by the build seed (DumpSource.random_pages); live builds use
the API's list=random, which cannot be seeded, so the stage keeps what it drew and does not draw again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from mesed_build.wiki.source import PageRef, WikiSource

LIST_PREFIXES = ("List of ", "Lists of ", "Index of ", "Outline of ", "Timeline of ")


def is_list_title(title: str) -> bool:
    return title.startswith(LIST_PREFIXES)


def random_negatives(source: WikiSource, n: int, seed: int, exclude: Collection[int],
                     counts: Counter | None = None) -> list[PageRef]:
    """Up to n random articles that are not in `exclude` (page ids), in the order drawn."""
    counts = counts if counts is not None else Counter()
    if n <= 0:
        return []
    # ask for more than n: some draws are targets or lists and are passed over
    drawn = source.random_pages(n + min(len(exclude), 10 * n) + 10, seed)
    out: list[PageRef] = []
    seen: set[int] = set()
    for ref in drawn:
        if ref.page_id in seen:
            continue
        seen.add(ref.page_id)
        if ref.page_id in exclude:
            counts["random_draw_is_target"] += 1
        elif ref.namespace != 0 or ref.is_disambiguation or is_list_title(ref.title):
            counts["random_draw_not_an_entity"] += 1
        else:
            out.append(ref)
            if len(out) == n:
                break
    return out
