"""The store's idempotent upserts, drops and manifest on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mesed_build import store as st


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("pg_url")
    s = st.Store(url)
    yield s
    s.close()


def test_sqlite_store_uses_wal(tmp_path):
    s = st.Store(f"sqlite:///{tmp_path}/store.sqlite")
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


def test_upsert_is_idempotent_and_updates_on_natural_key(store):
    rows = [{"wiki": "enwiki", "page_id": i, "title": f"Page {i}", "rev_id": 1, "qid": None} for i in range(5000)]
    store.upsert(st.entities, rows)
    store.upsert(st.entities, rows)
    assert store.count(st.entities) == 5000
    store.upsert(st.entities, [{"wiki": "enwiki", "page_id": 7, "title": "Renamed", "rev_id": 2, "qid": "Q7"}])
    with store.engine.connect() as c:
        row = c.execute(sa.select(st.entities).where(st.entities.c.page_id == 7)).mappings().one()
    assert (row["title"], row["rev_id"], row["qid"]) == ("Renamed", 2, "Q7")
    assert store.count(st.entities) == 5000


def test_upsert_with_no_update_keeps_first_row(store):
    store.upsert(st.links, [{"wiki": "enwiki", "source_page_id": 1, "target_title": "A"}], update=[])
    store.upsert(st.links, [{"wiki": "enwiki", "source_page_id": 1, "target_title": "A"}], update=[])
    assert store.count(st.links) == 1


def test_drops_count_by_reason_without_double_counting(store):
    store.record_drops([("sentences", "too_short", "h1", None), ("sentences", "too_short", "h2", None)])
    store.record_drops([("sentences", "too_short", "h1", None), ("classes", "red_link", "X: Y", "List of X", 1)])
    store.record_drops([("sentences", "malformed_template", "page 5", "Some page", 3)])
    assert store.drops_by_reason() == {
        "classes/red_link": 1,
        "sentences/malformed_template": 3,
        "sentences/too_short": 2,
    }


def test_build_manifest_records_stages(store):
    build_id = store.start_build("demo", "abc", {"name": "demo"}, ["classes"], st.package_versions())
    store.start_stage(build_id, "classes")
    store.finish_stage(build_id, "classes", {"entities": 3})
    store.finish_build(build_id, "completed")
    build = store.latest_build()
    assert build["status"] == "completed" and build["finished_at"] is not None
    assert build["stage_runs"]["classes"]["counts"] == {"entities": 3}


def test_a_store_with_another_table_layout_is_refused_by_name_and_kept(request, tmp_path):
    """A store from a version whose `pages` lacked a column: opening it names the table and column
    and neither creates nor drops anything."""
    for url in (f"sqlite:///{tmp_path}/old.sqlite", request.getfixturevalue("pg_url")):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE pages (wiki VARCHAR(32), page_id BIGINT, title VARCHAR(512), "
                                 "legacy_flag INTEGER, PRIMARY KEY (wiki, page_id))")
            conn.exec_driver_sql("INSERT INTO pages VALUES ('enwiki', 1, 'Ada Lovelace', 0)")
        with pytest.raises(st.StoreLayoutError) as caught:
            st.Store(url)
        message = str(caught.value)
        assert "table 'pages' lacks is_disambiguation, namespace, redirect_target, rev_id" in message
        assert "has unknown legacy_flag" in message
        assert "no migrations" in message
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["pages"]  # nothing created
            assert conn.exec_driver_sql("SELECT title FROM pages").scalar() == "Ada Lovelace"
        engine.dispose()


def test_a_store_of_this_version_reopens(store):
    store.upsert(st.pages, [{"wiki": "enwiki", "page_id": 1, "title": "Ada Lovelace"}])
    assert st.layout_differences(store.engine) == []
    again = st.Store(store.url)
    assert again.count(st.pages) == 1
    again.close()
