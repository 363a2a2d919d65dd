"""Fixtures: a demo-like store (SQLite WAL or an isolated PostgreSQL schema), the app and logins."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from annotation import auth, queue
from mesed_build.store import Store
from tests.annotation.demo import populate

PG_URL = os.environ.get("MESED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_argon2():
    """Real argon2id, with small parameters: the default ones take ~0.5 s per hash on a busy 2-core machine."""
    from argon2 import PasswordHasher

    previous = auth.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
    yield
    auth.use_password_hasher(previous)


@dataclass
class Demo:
    store: Store
    root: Path
    photos: list[str]
    pairs: list[tuple]

    def options(self) -> queue.QueueOptions:
        return queue.options_for_store(self.store)


def make_demo(url: str, root: Path, annotation: dict | None = None) -> Demo:
    store = Store(url)
    info = populate(store, root, annotation=annotation)
    queue.sync_items(store, queue.options_for_store(store))
    return Demo(store, root, info["photos"], info["pairs"])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """The demo store populated once per session; each test works on a copy of its files."""
    directory = tmp_path_factory.mktemp("annotation-template")
    store = Store(f"sqlite:///{(directory / 'store.sqlite').as_posix()}")
    info = populate(store, directory / "images")
    store.close()
    return directory, info


@pytest.fixture
def demo_factory(tmp_path, sqlite_template):
    made: list[Store] = []

    def make(annotation: dict | None = None, url: str | None = None) -> Demo:
        if url is not None:
            demo = make_demo(url, tmp_path / "images", annotation)
        else:
            template, info = sqlite_template
            for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
                if (template / name).exists():
                    shutil.copy(template / name, tmp_path / name)
            shutil.copytree(template / "images", tmp_path / "images")
            store = Store(f"sqlite:///{(tmp_path / 'store.sqlite').as_posix()}")
            # the latest build's config carries the annotation options, as a real build's does
            build_id = store.start_build("demo", "0" * 64, {"seed": 13, "annotation": annotation or {}}, ["annotation"], {})
            store.finish_build(build_id, "completed")
            queue.sync_items(store, queue.options_for_store(store))
            demo = Demo(store, tmp_path / "images", info["photos"], info["pairs"])
        made.append(demo.store)
        return demo

    yield make
    for store in made:
        store.close()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema for one test (other helpers share the database), dropped afterwards."""
    engine = sa.create_engine(PG_URL)
    schema = f"annot_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} (set MESED_TEST_PG_URL): {exc.orig}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def app_factory():
    from fastapi.testclient import TestClient

    from annotation.app import AppSettings, create_app

    clients = []

    def make(demo: Demo, **settings):
        app = create_app(demo.store, AppSettings(content_root=demo.root, options=demo.options(), **settings))
        client = TestClient(app, base_url="http://testserver")
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ITEM = re.compile(r'name="item_id" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def item_of(html: str) -> str | None:
    match = ITEM.search(html)
    return match.group(1) if match else None


def login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": name, "password": password, "csrf": csrf_of(page.text)},
                       follow_redirects=False)


def add_user(demo: Demo, name: str, role: str = "annotator") -> auth.User:
    return auth.add_user(demo.store, name, PASSWORD, role)
