"""Every route of the web app through FastAPI's TestClient: sessions, CSRF, roles, rate limiting,
the image route, and the label / skip / undo flow."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mesed_build import store as st
from tests.annotation.conftest import PASSWORD, add_user, csrf_of, item_of, login


def logged_in(app_factory, demo, name, role="annotator"):
    add_user(demo, name, role)
    client = app_factory(demo)
    response = login(client, name)
    assert response.status_code == 303, response.text
    return client


def test_without_a_session_pages_redirect_to_login_and_posts_get_401(demo_factory, app_factory):
    demo = demo_factory()
    client = app_factory(demo)
    for path in ("/", "/queue", "/admin", "/admin/summary.json", f"/image/{demo.photos[0]}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
    for path in ("/label", "/skip", "/undo", "/logout"):
        assert client.post(path, data={"csrf": "x", "item_id": "x", "label": "ES"}).status_code == 401, path
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    assert client.get("/healthz").json() == {"ok": True}


def test_login_sets_a_signed_httponly_samesite_cookie_and_logout_ends_the_session(demo_factory, app_factory):
    demo = demo_factory()
    add_user(demo, "alice")
    client = app_factory(demo)
    response = login(client, "alice")
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("mesed_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    with demo.store.engine.connect() as conn:
        stored = conn.execute(sa.select(st.annotation_sessions.c.session_id)).scalars().all()
    assert len(stored) == 1 and stored[0] not in value  # the store keeps a digest, not the token

    tampered = app_factory(demo)
    tampered.cookies.set("mesed_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert tampered.get("/queue", follow_redirects=False).status_code == 303  # bad signature: no session

    page = client.get("/queue")
    assert page.status_code == 200 and "alice" in page.text
    assert page.headers["x-frame-options"] == "DENY" and "default-src 'self'" in page.headers["content-security-policy"]
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    replay = app_factory(demo)
    replay.cookies.set("mesed_session", value)  # the old cookie no longer opens a session
    assert replay.get("/queue", follow_redirects=False).status_code == 303


def test_login_needs_its_csrf_token_and_a_right_password(demo_factory, app_factory):
    demo = demo_factory()
    add_user(demo, "alice")
    client = app_factory(demo)
    client.get("/login")
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 403
    assert client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf": "forged"}).status_code == 403
    assert login(client, "alice", "wrong password!").status_code == 401
    assert login(client, "nobody", PASSWORD).status_code == 401
    assert login(client, "alice").status_code == 303


def test_twenty_wrong_passwords_are_rate_limited(demo_factory, app_factory):
    demo = demo_factory()
    add_user(demo, "alice")
    client = app_factory(demo)
    codes = [login(client, "alice", f"wrong password {i}").status_code for i in range(20)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429] * 10
    assert login(client, "alice").status_code == 429  # even the right password waits out the window
    assert "Too many failed logins" in login(client, "alice").text


def test_posts_without_csrf_are_refused(demo_factory, app_factory):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    client = logged_in(app_factory, demo, "alice")
    page = client.get("/queue")
    item_id = item_of(page.text)
    for path, data in [("/label", {"item_id": item_id, "label": "ES"}), ("/skip", {"item_id": item_id}),
                       ("/undo", {}), ("/logout", {})]:
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf": "not-the-token"}).status_code == 403, path
    with demo.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(st.annotation_labels)).scalar_one() == 0


def test_annotators_cannot_reach_admin_pages(demo_factory, app_factory):
    demo = demo_factory()
    client = logged_in(app_factory, demo, "alice")
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/summary.json").status_code == 403
    admin = logged_in(app_factory, demo, "root", "admin")
    page = admin.get("/admin")
    assert page.status_code == 200 and "Table 1" in page.text and "Fleiss" in page.text
    with demo.store.engine.connect() as conn:
        items = conn.execute(sa.select(sa.func.count()).select_from(st.annotation_items)).scalar_one()
    assert items >= 48 and admin.get("/admin/summary.json").json()["progress"]["items"] == items
    assert f"<strong>0</strong> of {items} items complete" in page.text


def test_images_are_served_only_by_a_known_sha256(demo_factory, app_factory, tmp_path):
    demo = demo_factory()
    client = logged_in(app_factory, demo, "alice")
    photo = tmp_path / "images" / demo.photos[0][:2] / f"{demo.photos[0]}.jpg"
    response = client.get(f"/image/{demo.photos[0]}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == photo.read_bytes()
    (tmp_path / "secret.txt").write_text("do not serve")
    for path in (
        "/image/..%2Fstore.sqlite",
        "/image/..%2F..%2Fsecret.txt",
        "/image/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/image/../secret.txt",
        f"/image/{demo.photos[0].upper()}",
        f"/image/{demo.photos[0]}.jpg",
        f"/image/{demo.photos[0][:-1]}",
        "/image/" + "0" * 64,  # well-formed but unknown
    ):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert b"do not serve" not in response.content and b"SQLite" not in response.content
    # a tampered path column must not lead outside the content store either
    with demo.store.begin() as conn:
        conn.execute(st.images.update().where(st.images.c.sha256 == demo.photos[1]).values(path="../secret.txt"))
    assert client.get(f"/image/{demo.photos[1]}").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_label_skip_undo_through_the_pages(backend, demo_factory, app_factory, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0}, url=url)
    assert demo.store.dialect == backend
    client = logged_in(app_factory, demo, "alice")
    page = client.get("/queue")
    first = item_of(page.text)
    assert "items in the queue: 48" in page.text
    assert "<mark>" in page.text and "Labelled by you: <strong id=\"labelled\">0</strong>" in page.text
    # the page shows the chosen image, the infobox image and the other candidates (by sha256 only)
    assert page.text.count('src="/image/') >= 1 + 1 + 4
    response = client.post("/label", data={"csrf": csrf_of(page.text), "item_id": first, "label": "ES"},
                           follow_redirects=False)
    assert response.status_code == 303
    page = client.get("/queue")
    second = item_of(page.text)
    assert second != first and '<strong id="labelled">1</strong>' in page.text

    bad = client.post("/label", data={"csrf": csrf_of(page.text), "item_id": second, "label": "IR"})
    assert bad.status_code == 422 and "none fits" in bad.text
    replacement = next(sha for sha in demo.photos if f'value="{sha}"' in page.text)
    client.post("/label", data={"csrf": csrf_of(page.text), "item_id": second, "label": "IR",
                                "replacement": replacement, "replacement_label": "S"})
    page = client.get("/queue")
    third = item_of(page.text)
    client.post("/skip", data={"csrf": csrf_of(page.text), "item_id": third})
    page = client.get("/queue")
    assert item_of(page.text) not in (first, second, third)
    client.post("/undo", data={"csrf": csrf_of(page.text)})
    page = client.get("/queue")
    assert item_of(page.text) == second and '<strong id="labelled">1</strong>' in page.text
    with demo.store.engine.connect() as conn:
        rows = conn.execute(sa.select(st.annotation_labels.c.item_id, st.annotation_labels.c.label)).all()
        skips = conn.execute(sa.select(st.annotation_skips.c.item_id)).scalars().all()
    assert [tuple(r) for r in rows] == [(first, "ES")] and skips == [third]
    assert client.post("/label", data={"csrf": csrf_of(page.text), "item_id": "nope", "label": "ES"}).status_code == 422
    admin = logged_in(app_factory, demo, "root", "admin")
    summary = admin.get("/admin/summary.json").json()
    assert summary["progress"]["labels"] == 1 and summary["throughput"][0]["name"] == "alice"
    assert "<strong>1</strong> of 48 items complete" in admin.get("/admin").text


def test_passwords_are_stored_as_argon2id_and_upgraded_at_login(demo_factory):
    from argon2 import PasswordHasher

    from annotation import auth

    demo = demo_factory()
    add_user(demo, "alice")  # made with the tests' cheap parameters
    with demo.store.engine.connect() as conn:
        cheap = conn.execute(sa.select(st.annotation_users.c.password_hash)).scalar_one()
    assert cheap.startswith("$argon2id$") and PASSWORD not in cheap
    default = PasswordHasher()
    previous = auth.use_password_hasher(default)
    try:
        assert default.check_needs_rehash(cheap)
        assert auth.authenticate(demo.store, "alice", PASSWORD).name == "alice"
        with demo.store.engine.connect() as conn:
            upgraded = conn.execute(sa.select(st.annotation_users.c.password_hash)).scalar_one()
        assert upgraded != cheap and not default.check_needs_rehash(upgraded)
        assert auth.authenticate(demo.store, "alice", "not the password") is None
    finally:
        auth.use_password_hasher(previous)
