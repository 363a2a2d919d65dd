"""Four annotators label 200+ items in parallel over HTTP against the live app on SQLite (WAL);
afterwards the store holds exactly the labels they submitted."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import sqlalchemy as sa

from annotation.app import AppSettings, create_app
from mesed_build import store as st
from tests.annotation.conftest import PASSWORD, add_user, csrf_of, item_of
from tests.annotation.live import LiveServer


def annotate_until_done(base_url: str, name: str, submitted: list, errors: list, lock: threading.Lock,
                        start: threading.Barrier) -> None:
    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            page = client.get("/login")
            client.post("/login", data={"username": name, "password": PASSWORD, "csrf": csrf_of(page.text)})
            start.wait()
            n = 0
            while True:
                page = client.get("/queue")
                assert page.status_code == 200, page.text
                item_id = item_of(page.text)
                if item_id is None:
                    assert "Nothing left for you" in page.text
                    return
                label = ("ES", "S", "IR")[n % 3]
                data = {"csrf": csrf_of(page.text), "item_id": item_id, "label": label}
                if label == "IR" and 'value="none"' in page.text:  # re-ranked item: IR needs a choice
                    data["replacement"] = "none"
                response = client.post("/label", data=data, follow_redirects=False)
                assert response.status_code == 303, (response.status_code, response.text[:300])
                with lock:
                    submitted.append((item_id, name, label))
                n += 1
    except Exception as exc:  # noqa: BLE001 - the test asserts there were none
        errors.append(f"{name}: {exc!r}")


def test_four_annotators_in_parallel_over_http(demo_factory, record_property):
    demo = demo_factory({"overlap_share": 0.6, "overlap_k": 4, "calibration_share": 1.0, "lease_seconds": 300})
    names = [f"annotator{i}" for i in range(4)]
    for name in names:
        add_user(demo, name)
    with demo.store.engine.connect() as conn:
        wanted = conn.execute(sa.select(sa.func.sum(st.annotation_items.c.required))).scalar_one()
    assert wanted >= 200
    app = create_app(demo.store, AppSettings(content_root=demo.root, options=demo.options()))
    submitted, errors, lock = [], [], threading.Lock()
    start = threading.Barrier(len(names) + 1)
    with LiveServer(app) as server:
        threads = [threading.Thread(target=annotate_until_done, args=(server.url, n, submitted, errors, lock, start))
                   for n in names]
        for t in threads:
            t.start()
        start.wait(timeout=60)
        began = time.perf_counter()
        for t in threads:
            t.join(timeout=300)
        seconds = time.perf_counter() - began
    assert not errors, errors
    with demo.store.engine.connect() as conn:
        stored = conn.execute(
            sa.select(st.annotation_labels.c.item_id, st.annotation_users.c.name, st.annotation_labels.c.label)
            .select_from(st.annotation_labels.join(st.annotation_users,
                                                   st.annotation_users.c.user_id == st.annotation_labels.c.user_id))
        ).all()
        required = dict(conn.execute(sa.select(st.annotation_items.c.item_id, st.annotation_items.c.required)).all())
    stored = [tuple(r) for r in stored]
    assert sorted(stored) == sorted(submitted)
    assert len(stored) == wanted
    assert Counter(item_id for item_id, _, _ in stored) == Counter(required)
    rate = len(stored) / seconds
    record_property("labels_per_second", round(rate, 1))
    print(f"\n{len(stored)} labels by {len(names)} annotators in {seconds:.1f} s: {rate:.1f} labels/s (SQLite WAL)")


def failed_logins_until_limited(base_url: str, forwarded_for: str, name: str, tries: int = 12) -> list[int]:
    with httpx.Client(base_url=base_url, timeout=30, headers={"X-Forwarded-For": forwarded_for}) as client:
        codes = []
        for i in range(tries):
            page = client.get("/login")
            codes.append(client.post("/login", data={"username": name, "password": f"wrong {i}",
                                                     "csrf": csrf_of(page.text)}).status_code)
        return codes


def test_rate_limits_follow_forwarded_for_only_from_a_trusted_proxy(demo_factory):
    from annotation.app import server_options

    demo = demo_factory()
    add_user(demo, "alice")
    # the limit holds per user name and per client address, so each check below uses a fresh name
    # trusted proxy (this test's client is the proxy on 127.0.0.1): each forwarded client has its own budget
    trusted = server_options("127.0.0.1", 0, "127.0.0.1")
    del trusted["host"], trusted["port"]
    app = create_app(demo.store, AppSettings(content_root=demo.root, options=demo.options()))
    with LiveServer(app, **trusted) as server:
        assert failed_logins_until_limited(server.url, "203.0.113.7", "alice")[-2:] == [429, 429]
        assert failed_logins_until_limited(server.url, "198.51.100.9", "bob", tries=1) == [401]
    # by default X-Forwarded-For is anyone's to forge, so it is ignored: one budget for the one real address
    untrusted = server_options("127.0.0.1", 0, None)
    del untrusted["host"], untrusted["port"]
    app = create_app(demo.store, AppSettings(content_root=demo.root, options=demo.options()))
    with LiveServer(app, **untrusted) as server:
        assert failed_logins_until_limited(server.url, "203.0.113.7", "carol")[-2:] == [429, 429]
        assert failed_logins_until_limited(server.url, "198.51.100.9", "dave", tries=1) == [429]
