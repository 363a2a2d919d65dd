"""The build store: SQLAlchemy Core tables on SQLite (WAL, default) or PostgreSQL.

Every write is an idempotent upsert on a natural key, so a stage that is killed and
rerun skips what it finished and never duplicates a row.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

metadata = sa.MetaData()

# --- classes and pages -------------------------------------------------------------

classes = sa.Table(
    "classes",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("level", sa.String(10), nullable=False),  # top | coarse | fine
    sa.Column("parent", sa.String(200), nullable=True),
    sa.Column("position", sa.Integer, nullable=False),  # order in the config
    sa.Column("sources", sa.Text, nullable=False, default="[]"),  # JSON list of the config's sources
)

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("namespace", sa.Integer, nullable=False, default=0),
    sa.Column("rev_id", sa.BigInteger, nullable=True),
    sa.Column("redirect_target", sa.String(512), nullable=True),
    sa.Column("is_disambiguation", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_pages_title", "wiki", "title"),
)

# outgoing namespace-0 wikilinks (source page -> normalised target title); the backlink index
links = sa.Table(
    "links",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("source_page_id", sa.BigInteger, primary_key=True),
    sa.Column("target_title", sa.String(512), primary_key=True),
    sa.Index("ix_links_target", "wiki", "target_title"),
)

# which dump files / API sweeps have been indexed completely
source_indexes = sa.Table(
    "source_indexes",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("source_key", sa.String(512), primary_key=True),  # e.g. dump file name + size
    sa.Column("pages", sa.Integer, nullable=False),
    sa.Column("links", sa.Integer, nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
)

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("title", sa.String(512), nullable=False),  # canonical title after redirects
    sa.Column("rev_id", sa.BigInteger, nullable=True),
    sa.Column("qid", sa.String(32), nullable=True),
    sa.Index("ix_entities_title", "wiki", "title"),
)

class_members = sa.Table(
    "class_members",
    metadata,
    sa.Column("class_name", sa.String(200), primary_key=True),
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.String(512), nullable=False),  # list page or category it came from
    sa.Column("anchor", sa.String(512), nullable=True),  # the link as written on the list page
)

# the candidate vocabulary: every entity the dataset holds, and why (target, random, bm25, polysemous, ...)
vocabulary = sa.Table(
    "vocabulary",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("source", sa.String(512), nullable=True),  # class, query title or page it was found from
)

# --- sentences and mentions --------------------------------------------------------

sentences = sa.Table(
    "sentences",
    metadata,
    sa.Column("sentence_hash", sa.String(64), primary_key=True),  # sha256 of text (natural key)
    sa.Column("wiki", sa.String(32), nullable=False),
    sa.Column("article_page_id", sa.BigInteger, nullable=False),
    sa.Column("article_rev_id", sa.BigInteger, nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("tokens", sa.Text, nullable=False),  # JSON list of str
    sa.Column("token_offsets", sa.Text, nullable=False),  # JSON list of [char_start, char_end)
    sa.Index("ix_sentences_article", "wiki", "article_page_id"),
)

mentions = sa.Table(
    "mentions",
    metadata,
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("token_start", sa.Integer, primary_key=True),
    sa.Column("token_end", sa.Integer, nullable=False),  # inclusive
    sa.Column("wiki", sa.String(32), nullable=False),
    sa.Column("page_id", sa.BigInteger, nullable=False),  # the mentioned entity
    sa.Column("anchor_text", sa.String(1024), nullable=False),
    sa.Column("char_start", sa.Integer, nullable=False),
    sa.Column("char_end", sa.Integer, nullable=False),  # exclusive
    sa.Index("ix_mentions_entity", "wiki", "page_id"),
)

# entity -> sentences chosen for it under the per-entity cap (deterministic from the seed)
entity_sentences = sa.Table(
    "entity_sentences",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("rank", sa.Integer, nullable=False),
)

# --- bookkeeping ---------------------------------------------------------------------

builds = sa.Table(
    "builds",
    metadata,
    sa.Column("build_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # JSON of the validated config
    sa.Column("versions", sa.Text, nullable=False),  # JSON: python, packages, models
    sa.Column("stages", sa.Text, nullable=False, default="[]"),
    sa.Column("status", sa.String(20), nullable=False),  # running | completed | failed
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

stage_runs = sa.Table(
    "stage_runs",
    metadata,
    sa.Column("build_id", sa.Integer, primary_key=True),
    sa.Column("stage", sa.String(40), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("counts", sa.Text, nullable=False, default="{}"),  # JSON name -> int
)

# every dropped item, by stage and reason; natural key keeps reruns from double counting
drops = sa.Table(
    "drops",
    metadata,
    sa.Column("stage", sa.String(40), primary_key=True),
    sa.Column("reason", sa.String(80), primary_key=True),
    sa.Column("item", sa.String(700), primary_key=True),
    sa.Column("detail", sa.Text, nullable=True),
    # >1 where one row stands for several items of one place (e.g. all malformed links of a page)
    sa.Column("count", sa.Integer, nullable=False, default=1),
)


# --- images and rerank (issue 6: mesed_build/images, mesed_build/rerank) ----------------

# the search query built for one (entity, sentence): KeyBERT keywords + entity name + class name
image_queries = sa.Table(
    "image_queries",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("keywords", sa.Text, nullable=False),  # JSON list of [keyword, score]
    sa.Column("class_name", sa.String(200), nullable=True),
    sa.Column("model", sa.String(300), nullable=False),  # the KeyBERT sentence model it came from
)

# up to N search results per (entity, sentence), in provider rank order
image_candidates = sa.Table(
    "image_candidates",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("source_page", sa.Text, nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("licence", sa.String(200), nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("image_sha256", sa.String(64), nullable=True),  # set once downloaded and accepted
    sa.Column("status", sa.String(40), nullable=False, default="pending"),  # pending | ok | rejected reason
)

# one row per fetched URL: where it led (an image) or why it was refused; reruns skip these
image_fetches = sa.Table(
    "image_fetches",
    metadata,
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("image_sha256", sa.String(64), nullable=True),
    sa.Column("status", sa.String(40), nullable=False),  # ok | a rejection reason
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# image bytes live on disk (content_store), named by sha256 of the re-encoded bytes
images = sa.Table(
    "images",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),  # relative to the content store root
    sa.Column("source_url", sa.Text, nullable=False),  # the first URL it was fetched from
    sa.Column("source_page", sa.Text, nullable=True),
    sa.Column("licence", sa.String(200), nullable=True),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("mime", sa.String(40), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# the entity's infobox (page) image: Img(e) in eq. 1; status says why there is none
infobox_images = sa.Table(
    "infobox_images",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("file_title", sa.String(512), nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("image_sha256", sa.String(64), nullable=True),
    sa.Column("status", sa.String(40), nullable=False),  # ok | no_infobox_image | not_in_pool | rejected reason
)

# eq. 1 scores, both terms kept; the entity is part of the key because one sentence can serve two entities
image_scores = sa.Table(
    "image_scores",
    metadata,
    sa.Column("image_sha256", sa.String(64), primary_key=True),
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("model_id", sa.String(300), primary_key=True),
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("clip_term", sa.Float, nullable=False),  # cos(CLIP_img(v), CLIP_text(t))
    sa.Column("object_term", sa.Float, nullable=True),  # max_j cos(o_j, Img(e)); None without an infobox image
    sa.Column("alpha", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("n_objects", sa.Integer, nullable=False),
    sa.Column("chosen", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_image_scores_sentence", "wiki", "page_id", "sentence_hash"),
)

# --- synonyms, queries and gt (issue 3: mesed_build/vocab, mesed_build/queries) ----------

# Wikidata label + aliases per item and language: the SPARQL cache (a rebuild asks only for new items)
wikidata_names = sa.Table(
    "wikidata_names",
    metadata,
    sa.Column("qid", sa.String(32), primary_key=True),
    sa.Column("language", sa.String(16), primary_key=True),
    sa.Column("label", sa.String(1024), nullable=True),
    sa.Column("aliases", sa.Text, nullable=False),  # JSON list of str (skos:altLabel)
    sa.Column("endpoint", sa.String(512), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# article title -> Wikidata item, for sources that carry no wikibase_item (dumps); qid None: no item
wikidata_sitelinks = sa.Table(
    "wikidata_sitelinks",
    metadata,
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("title", sa.String(512), primary_key=True),
    sa.Column("qid", sa.String(32), nullable=True),
    sa.Column("endpoint", sa.String(512), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# a sentence as the sentences stage wrote it, before any of its mentions was replaced by a synonym
synonym_sentences = sa.Table(
    "synonym_sentences",
    metadata,
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("original_text", sa.Text, nullable=False),
    sa.Column("original_tokens", sa.Text, nullable=False),  # JSON list of str
    sa.Column("original_offsets", sa.Text, nullable=False),  # JSON list of [char_start, char_end)
    sa.Column("original_mentions", sa.Text, nullable=False),  # JSON list of the mention rows
)

# hard positives: one mention replaced by a Wikidata synonym (edit distance > 5), with provenance
synonym_replacements = sa.Table(
    "synonym_replacements",
    metadata,
    sa.Column("sentence_hash", sa.String(64), primary_key=True),
    sa.Column("original_token_start", sa.Integer, primary_key=True),
    sa.Column("original_token_end", sa.Integer, nullable=False),  # inclusive
    sa.Column("token_start", sa.Integer, nullable=False),  # span of the synonym in the updated tokens
    sa.Column("token_end", sa.Integer, nullable=False),  # inclusive
    sa.Column("wiki", sa.String(32), nullable=False),
    sa.Column("page_id", sa.BigInteger, nullable=False),
    sa.Column("qid", sa.String(32), nullable=False),
    sa.Column("original", sa.String(1024), nullable=False),  # the mention's text as written
    sa.Column("synonym", sa.String(1024), nullable=False),
    sa.Column("distance", sa.Integer, nullable=False),  # Levenshtein(entity name, synonym)
    sa.Column("provenance", sa.Text, nullable=False),  # JSON: property, qid, endpoint, fetched_at
    sa.Index("ix_synonym_replacements_entity", "wiki", "page_id"),
)

# per fine class: 5 queries of 3 seeds and 5 of 5 seeds (seeds: JSON list of page ids, in order)
queries = sa.Table(
    "queries",
    metadata,
    sa.Column("class_name", sa.String(200), primary_key=True),
    sa.Column("seed_count", sa.Integer, primary_key=True),
    sa.Column("query_index", sa.Integer, primary_key=True),
    sa.Column("wiki", sa.String(32), nullable=False),
    sa.Column("seeds", sa.Text, nullable=False),
)

# the gold set of each fine class (label 1); an entity of two classes is in both classes' gt
gt = sa.Table(
    "gt",
    metadata,
    sa.Column("class_name", sa.String(200), primary_key=True),
    sa.Column("wiki", sa.String(32), primary_key=True),
    sa.Column("page_id", sa.BigInteger, primary_key=True),
    sa.Column("label", sa.Integer, nullable=False),
)

# --- annotation review queue (issue 7: annotation/) ------------------------------------

annotation_users = sa.Table(
    "annotation_users",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),  # annotator | admin
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# server-side sessions: the signed cookie only carries the id, so logout really ends a session
annotation_sessions = sa.Table(
    "annotation_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# failed logins, per user name and client address, for rate limiting across server workers
annotation_login_failures = sa.Table(
    "annotation_login_failures",
    metadata,
    sa.Column("failure_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_annotation_login_failures_at", "at"),
)

# settings shared by every server worker (the cookie signing key)
annotation_settings = sa.Table(
    "annotation_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# one row whose UPDATE serialises queue changes (leases, labels) on SQLite and PostgreSQL alike
annotation_queue_lock = sa.Table(
    "annotation_queue_lock",
    metadata,
    sa.Column("name", sa.String(20), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False, default=0),
)

# what annotators judge: the re-ranked choice of an (entity, sentence), or (calibration) the
# search engine's top-1 where it differs; item_id is a hash of the natural key
annotation_items = sa.Table(
    "annotation_items",
    metadata,
    sa.Column("item_id", sa.String(24), primary_key=True),
    sa.Column("wiki", sa.String(32), nullable=False),
    sa.Column("page_id", sa.BigInteger, nullable=False),
    sa.Column("sentence_hash", sa.String(64), nullable=False),
    sa.Column("strategy", sa.String(10), nullable=False),  # rerank | top1
    sa.Column("image_sha256", sa.String(64), nullable=False),  # the image asked about
    sa.Column("class_name", sa.String(200), nullable=True),
    sa.Column("required", sa.Integer, nullable=False),  # annotators wanted: 1, or k for the overlap share
    sa.Column("calibration", sa.Boolean, nullable=False, default=False),  # in the Table 1 sample
    sa.Column("position", sa.String(64), nullable=False),  # queue order, a seeded hash
    sa.UniqueConstraint("wiki", "page_id", "sentence_hash", "strategy", name="uq_annotation_items_key"),
    sa.Index("ix_annotation_items_position", "position"),
)

annotation_leases = sa.Table(
    "annotation_leases",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),  # one open item per annotator
    sa.Column("item_id", sa.String(24), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_annotation_leases_item", "item_id"),
)

# label: ES (relevant to entity and sentence), S (sentence only), IR (irrelevant); for IR on a
# re-ranked item, the replacement candidate and what it fits, or none_fits
annotation_labels = sa.Table(
    "annotation_labels",
    metadata,
    sa.Column("label_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(24), nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("label", sa.String(4), nullable=False),
    sa.Column("image_sha256", sa.String(64), nullable=False),  # the image judged (a rebuild may change it)
    sa.Column("replacement_sha256", sa.String(64), nullable=True),
    sa.Column("replacement_label", sa.String(4), nullable=True),  # ES | S
    sa.Column("none_fits", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("item_id", "user_id", name="uq_annotation_labels_item_user"),
    sa.Index("ix_annotation_labels_user", "user_id"),
)

annotation_skips = sa.Table(
    "annotation_skips",
    metadata,
    sa.Column("item_id", sa.String(24), primary_key=True),
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(rows: Sequence[Mapping[str, Any]], size: int) -> Iterable[Sequence[Mapping[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class StoreLayoutError(RuntimeError):
    """The store's tables were written by a mesed-build with another table layout."""


def layout_differences(engine: sa.Engine) -> list[str]:
    """How the existing tables differ from this version's: one line per table, none for a fresh store.

    Tables this version adds are not differences (they are created); a column added, removed or
    renamed in a table the store already has is, because the store has no migrations.
    """
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    differences = []
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        found = {column["name"] for column in inspector.get_columns(table.name)}
        expected = {column.name for column in table.columns}
        parts = []
        if expected - found:
            parts.append("lacks " + ", ".join(sorted(expected - found)))
        if found - expected:
            parts.append("has unknown " + ", ".join(sorted(found - expected)))
        if parts:
            differences.append(f"table {table.name!r} " + "; ".join(parts))
    return differences


class Store:
    """A connection to one build's store, with idempotent upserts."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        differences = layout_differences(self.engine)
        if differences:
            self.engine.dispose()
            where = self.engine.url.render_as_string(hide_password=True)
            raise StoreLayoutError(
                f"{where}: this store was written by a mesed-build with another table layout ("
                + "; ".join(differences) + "). The store has no migrations: build into a new --build-dir "
                "or database (or delete this one) and rerun `mesed-build build`.")
        if create:
            metadata.create_all(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self):
        with self.engine.begin() as conn:
            yield conn

    # -- writes --------------------------------------------------------------------

    def upsert(
        self,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        update: Sequence[str] | None = None,
        conn: sa.Connection | None = None,
    ) -> None:
        """Insert rows; on a primary-key conflict update the `update` columns (None: all non-key, []: skip)."""
        rows = list(rows)
        if not rows:
            return
        keys = [c.name for c in table.primary_key.columns]
        if update is None:
            update = [c for c in rows[0].keys() if c not in keys]
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        # keep each statement under SQLite's bound-parameter limit
        batch = max(1, 30000 // max(1, len(rows[0])))
        with self._conn(conn) as c:
            for chunk in _chunks(rows, batch):
                stmt = insert(table).values(list(chunk))
                if update:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=keys, set_={col: stmt.excluded[col] for col in update}
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=keys)
                c.execute(stmt)

    @contextmanager
    def _conn(self, conn: sa.Connection | None):
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as c:
                yield c

    def record_drop(self, stage: str, reason: str, item: str, detail: str | None = None, *, conn=None) -> None:
        self.record_drops([(stage, reason, item, detail)], conn=conn)

    def record_drops(self, items: Iterable[tuple], *, conn=None) -> None:
        """Record (stage, reason, item, detail[, count]) tuples; a rerun overwrites, never double counts."""
        rows = [
            {"stage": t[0], "reason": t[1], "item": t[2][:700], "detail": t[3], "count": t[4] if len(t) > 4 else 1}
            for t in items
        ]
        self.upsert(drops, rows, update=["detail", "count"], conn=conn)

    # -- reads ---------------------------------------------------------------------

    def count(self, table: sa.Table, *where) -> int:
        with self.engine.connect() as c:
            stmt = sa.select(sa.func.count()).select_from(table)
            for clause in where:
                stmt = stmt.where(clause)
            return int(c.execute(stmt).scalar_one())

    def drops_by_reason(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(drops.c.stage, drops.c.reason, sa.func.sum(drops.c.count)).group_by(drops.c.stage, drops.c.reason)
            ).all()
        return {f"{stage}/{reason}": int(n) for stage, reason, n in sorted(rows)}

    # -- build manifest ------------------------------------------------------------

    def start_build(self, name: str, config_hash: str, config: dict, stages: Sequence[str], versions: dict) -> int:
        with self.engine.begin() as c:
            result = c.execute(
                builds.insert().values(
                    name=name,
                    config_hash=config_hash,
                    config=json.dumps(config, sort_keys=True),
                    versions=json.dumps(versions, sort_keys=True),
                    stages=json.dumps(list(stages)),
                    status="running",
                    started_at=utcnow(),
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_build(self, build_id: int, status: str, error: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(
                builds.update()
                .where(builds.c.build_id == build_id)
                .values(status=status, finished_at=utcnow(), error=error)
            )

    def start_stage(self, build_id: int, stage: str) -> None:
        self.upsert(
            stage_runs,
            [{"build_id": build_id, "stage": stage, "started_at": utcnow(), "finished_at": None, "counts": "{}"}],
        )

    def finish_stage(self, build_id: int, stage: str, counts: Mapping[str, int]) -> None:
        with self.engine.begin() as c:
            c.execute(
                stage_runs.update()
                .where(stage_runs.c.build_id == build_id, stage_runs.c.stage == stage)
                .values(finished_at=utcnow(), counts=json.dumps(dict(counts), sort_keys=True))
            )

    def latest_build(self) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(builds).order_by(builds.c.build_id.desc()).limit(1)).mappings().first()
            if row is None:
                return None
            build = dict(row)
            runs = c.execute(
                sa.select(stage_runs)
                .where(stage_runs.c.build_id == build["build_id"])
                .order_by(stage_runs.c.started_at, stage_runs.c.stage)
            ).mappings().all()
        build["stage_runs"] = {r["stage"]: {**dict(r), "counts": json.loads(r["counts"])} for r in runs}
        return build


def package_versions(names: Iterable[str] = ("mesed-build", "mwparserfromhell", "sqlalchemy", "prefect", "requests", "syntok")) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
