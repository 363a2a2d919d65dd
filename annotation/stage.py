"""The annotation stage of a build: fill (or refresh) the review queue from the rerank choices.

The labelling itself is people's work in the web app (`mesed-build annotate serve`); this stage
only makes sure the queue matches the latest re-ranking, keeping every label.
"""

from __future__ import annotations

from mesed_build.context import BuildContext

from annotation.queue import QueueOptions, sync_items


def run(ctx: BuildContext) -> dict[str, int]:
    options = QueueOptions.from_options(ctx.config.section("annotation"), seed=ctx.config.seed)
    return sync_items(ctx.store, options)
