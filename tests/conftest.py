"""Shared pytest fixtures."""

from __future__ import annotations

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
