"""Shared pytest fixtures."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.replay_server import ReplayServer


@pytest.fixture
def replay_server():
    """Factory: `replay_server("search.json", ...)` starts a ReplayServer on 127.0.0.1 (names are
    looked up in tests/fixtures/mediawiki/); every server started is stopped after the test."""
    servers: list[ReplayServer] = []

    def start(*cassettes) -> ReplayServer:
        server = ReplayServer(cassettes).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --- the demo build, shared by every test that needs a populated store ------------------

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
PG_URL = os.environ.get("MESED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def build_demo(build_dir: Path, stages=("classes", "sentences"), database_url: str | None = None):
    """Run the demo config's stages directly (without Prefect) into build_dir; returns the open context."""
    from flows.build import run_stage
    from mesed_build.config import load_config
    from mesed_build.context import open_context

    config = load_config(DEMO_CONFIG, build_dir=build_dir, database_url=database_url)
    ctx = open_context(config)
    for stage in stages:
        run_stage(ctx, stage)
    return ctx


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """A demo build (classes + sentences) in a session temp dir: (BuildContext, build_dir). Read-only for tests."""
    build_dir = tmp_path_factory.mktemp("demo-build")
    ctx = build_demo(build_dir)
    yield ctx, build_dir
    ctx.close()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema on the local server (trust auth), dropped afterwards."""
    sa = pytest.importorskip("sqlalchemy")
    schema = f"mesed_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable ({exc.orig}); start it or set MESED_TEST_PG_URL")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()
