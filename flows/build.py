"""The Prefect build flow: runs the pipeline's stages in order on one build store.

Stage code lives in mesed_build and knows nothing of Prefect; this module gives each stage a
task with retries, holds a global concurrency slot for Wikimedia hosts around the stages that talk
to them, and records the run in the store's `builds` manifest.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the local ephemeral server can take a while to start on a busy 2-core machine
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.concurrency.sync import concurrency  # noqa: E402

from mesed_build.config import load_config  # noqa: E402
from mesed_build.context import BuildContext, open_context  # noqa: E402
from mesed_build.store import package_versions  # noqa: E402

# stage name -> (module with `run(ctx) -> dict[str, int]`, talks to Wikimedia hosts)
STAGES: dict[str, tuple[str, bool]] = {
    "classes": ("mesed_build.classes", True),
    "vocabulary": ("mesed_build.vocab.stage", True),  # negatives; before sentences, which gives them contexts
    "sentences": ("mesed_build.sentences.stage", True),
    "synonyms": ("mesed_build.vocab.synonyms", False),  # Wikidata (its own endpoint), after the sentences it edits
    # images talk to the image provider and image hosts under their own per-host limits, not the wiki slot
    "images": ("mesed_build.images.stage", False),
    "rerank": ("mesed_build.rerank.stage", False),
    "annotation": ("annotation.stage", False),  # fills the review queue; people label in `annotate serve`
    "queries": ("mesed_build.queries", False),
}
WIKIMEDIA_LIMIT = "wikimedia"
# one request stream to Wikimedia hosts across all flow runs on this Prefect server
WIKIMEDIA_SLOTS = 1


def stage_names() -> list[str]:
    return list(STAGES)


def run_stage(ctx: BuildContext, name: str) -> dict[str, int]:
    """Run one stage outside Prefect too (tests, debugging), recording it in the manifest."""
    module_name, _ = STAGES[name]
    module = importlib.import_module(module_name)
    if ctx.build_id is not None:
        ctx.store.start_stage(ctx.build_id, name)
    counts = module.run(ctx)
    if ctx.build_id is not None:
        ctx.store.finish_stage(ctx.build_id, name, counts)
    return counts


def _worth_retrying(task, task_run, state) -> bool:
    """Retry network trouble; bad input (config, a cut-off dump, malformed data) fails at once."""
    from mesed_build.config import ConfigError
    from mesed_build.wiki.dump import DumpError

    try:
        state.result()
    except (ConfigError, DumpError, ValueError, KeyError):
        return False
    except Exception:
        return True
    return True


# the store is the cache: stages skip finished work themselves
@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_worth_retrying, task_run_name="{name}",
      cache_policy=NO_CACHE)
def stage_task(ctx: BuildContext, name: str) -> dict[str, int]:
    _, uses_wikimedia = STAGES[name]
    # The dump source never leaves the machine; the API client talks to Wikimedia and must
    # share one slot with every other flow run on this Prefect server.
    if uses_wikimedia and ctx.config.wiki["source"] == "api":
        with concurrency(WIKIMEDIA_LIMIT, occupy=1, strict=False):
            counts = run_stage(ctx, name)
    else:
        counts = run_stage(ctx, name)
    get_run_logger().info("stage %s: %s", name, counts)
    return counts


@flow(name="mesed-build", log_prints=True)
def build_flow(
    config_path: str,
    build_dir: str | None = None,
    database_url: str | None = None,
    stages: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, dict[str, int]]:
    config = load_config(config_path, build_dir=build_dir, database_url=database_url)
    selected = list(stages) if stages else stage_names()
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known stages: {', '.join(STAGES)}")
    if config.wiki["source"] == "api":
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(WIKIMEDIA_LIMIT, WIKIMEDIA_SLOTS)
    ctx = open_context(config, progress=progress)
    # stages that can check their options, credentials and model weights do so before any stage runs
    try:
        for name in [s for s in STAGES if s in selected]:
            check = getattr(importlib.import_module(STAGES[name][0]), "preflight", None)
            if check is not None:
                check(ctx)
    except BaseException:
        ctx.close()
        raise
    ctx.build_id = ctx.store.start_build(config.name, config.config_hash, config.raw, selected, package_versions())
    results: dict[str, dict[str, int]] = {}
    try:
        for name in [s for s in STAGES if s in selected]:
            results[name] = stage_task(ctx, name)
    except BaseException as exc:
        ctx.store.finish_build(ctx.build_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        ctx.store.finish_build(ctx.build_id, "completed")
    finally:
        ctx.close()
    return results

