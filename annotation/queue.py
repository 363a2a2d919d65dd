"""The review queue: items, leases, labels, skips and undo on the build store.

Every change to leases and labels runs in one transaction that first UPDATEs the single
`annotation_queue_lock` row. On SQLite that takes the database's write lock before anything is
read; on PostgreSQL the row lock makes concurrent transactions wait, and READ COMMITTED then
lets the waiting one see what the first committed. So two annotators can never both take the
last free place of an item, and a double-submitted label is stored once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mesed_build import store as st

LABELS = ("ES", "S", "IR")  # relevant to entity and sentence / to the sentence only / irrelevant
LABEL_NAMES = {"ES": "R/T E&S", "S": "R/T S", "IR": "IR"}
STRATEGIES = ("rerank", "top1")


class QueueError(ValueError):
    """A request the queue refuses; the message says why (shown to the annotator)."""


class QueueConflict(QueueError):
    """The item is no longer open to this annotator (its places were taken after a lease expired)."""


@dataclass(frozen=True)
class QueueOptions:
    overlap_share: float = 0.1  # share of items given to `overlap_k` annotators (for Fleiss' kappa)
    overlap_k: int = 3
    calibration_share: float = 0.1  # share of items whose search-engine top-1 is judged too (Table 1)
    lease_seconds: int = 900
    seed: int = 0
    model_id: str | None = None  # the rerank model whose choice is reviewed (None: the only one)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, *, seed: int = 0) -> QueueOptions:
        options = dict(options or {})
        known = {"overlap_share", "overlap_k", "calibration_share", "lease_seconds", "model_id"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise QueueError(f"annotation options: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        result = cls(seed=seed, **options)
        if not 0.0 <= result.overlap_share <= 1.0 or not 0.0 <= result.calibration_share <= 1.0:
            raise QueueError("annotation options: overlap_share and calibration_share must lie in [0, 1]")
        if result.overlap_k < 2:
            raise QueueError(f"annotation options: overlap_k must be at least 2 (got {result.overlap_k})")
        if result.lease_seconds < 10:
            raise QueueError(f"annotation options: lease_seconds must be at least 10 (got {result.lease_seconds})")
        return result


def options_for_store(store: st.Store, overrides: Mapping[str, Any] | None = None) -> QueueOptions:
    """The latest build's `annotation:` section and seed, with `overrides` (CLI flags) on top."""
    import json

    build = store.latest_build()
    config = json.loads(build["config"]) if build else {}
    options = dict(config.get("annotation") or {})
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return QueueOptions.from_options(options, seed=int(config.get("seed", 0)))


def item_id_for(wiki: str, page_id: int, sentence_hash: str, strategy: str) -> str:
    return hashlib.sha256(f"{wiki}|{page_id}|{sentence_hash}|{strategy}".encode()).hexdigest()[:24]


def _unit(seed: int, purpose: str, key: str) -> float:
    """A number in [0, 1) fixed by the seed: the same build makes the same overlap and calibration samples."""
    digest = hashlib.sha256(f"{seed}|{purpose}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- filling the queue -----------------------------------------------------------------


def sync_items(store: st.Store, options: QueueOptions) -> dict[str, int]:
    """Create or refresh the queue from the rerank choices; returns counts.

    A rerun keeps every label: items are keyed by (entity, sentence, strategy), and a label only
    counts while the item still shows the image it was given for.
    """
    s, c, q = st.image_scores, st.image_candidates, st.image_queries
    with store.engine.connect() as conn:
        model_ids = sorted(conn.execute(sa.select(s.c.model_id).where(s.c.chosen).distinct()).scalars())
        if not model_ids:
            return {"items": 0, "rerank_items": 0, "top1_items": 0, "overlap_items": 0, "calibration_items": 0}
        model_id = options.model_id
        if model_id is None:
            if len(model_ids) > 1:
                raise QueueError(f"the store holds choices of several rerank models ({', '.join(model_ids)}); "
                                 "set annotation.model_id in the build config or pass --model-id")
            model_id = model_ids[0]
        elif model_id not in model_ids:
            raise QueueError(f"annotation.model_id {model_id!r}: no rerank choices for it (have: {', '.join(model_ids)})")
        chosen = conn.execute(
            sa.select(s.c.wiki, s.c.page_id, s.c.sentence_hash, s.c.image_sha256)
            .where(s.c.chosen, s.c.model_id == model_id)
            .order_by(s.c.wiki, s.c.page_id, s.c.sentence_hash)
        ).all()
        top1 = {}
        ranked = conn.execute(
            sa.select(c.c.wiki, c.c.page_id, c.c.sentence_hash, c.c.rank, c.c.image_sha256)
            .where(c.c.image_sha256.is_not(None), c.c.status == "ok")
            .order_by(c.c.wiki, c.c.page_id, c.c.sentence_hash, c.c.rank)
        ).all()
        for wiki, page_id, sentence_hash, _rank, sha in ranked:
            top1.setdefault((wiki, int(page_id), sentence_hash), sha)
        class_of = {
            (wiki, int(pid), sh): cls
            for wiki, pid, sh, cls in conn.execute(sa.select(q.c.wiki, q.c.page_id, q.c.sentence_hash, q.c.class_name))
        }
    rows = []
    counts = {"rerank_items": 0, "top1_items": 0, "overlap_items": 0, "calibration_items": 0}
    for wiki, page_id, sentence_hash, sha in chosen:
        key = (wiki, int(page_id), sentence_hash)
        natural = f"{wiki}|{page_id}|{sentence_hash}"
        overlap = _unit(options.seed, "overlap", natural) < options.overlap_share
        calibration = _unit(options.seed, "calibration", natural) < options.calibration_share
        required = options.overlap_k if overlap else 1
        base = {"wiki": wiki, "page_id": int(page_id), "sentence_hash": sentence_hash,
                "class_name": class_of.get(key), "required": required, "calibration": calibration}
        item_id = item_id_for(wiki, int(page_id), sentence_hash, "rerank")
        rows.append({**base, "item_id": item_id, "strategy": "rerank", "image_sha256": sha,
                     "position": hashlib.sha256(f"{options.seed}|{item_id}".encode()).hexdigest()})
        counts["rerank_items"] += 1
        counts["overlap_items"] += overlap
        counts["calibration_items"] += calibration
        first = top1.get(key)
        if calibration and first is not None and first != sha:
            item_id = item_id_for(wiki, int(page_id), sentence_hash, "top1")
            rows.append({**base, "item_id": item_id, "strategy": "top1", "image_sha256": first,
                         "position": hashlib.sha256(f"{options.seed}|{item_id}".encode()).hexdigest()})
            counts["top1_items"] += 1
    with store.begin() as conn:
        _ensure_lock_row(store, conn)
        store.upsert(st.annotation_items, rows, conn=conn)
    counts["items"] = len(rows)
    return counts


def _ensure_lock_row(store: st.Store, conn: sa.Connection) -> None:
    store.upsert(st.annotation_queue_lock, [{"name": "queue", "version": 0}], update=[], conn=conn)


def ensure_queue(store: st.Store) -> None:
    with store.begin() as conn:
        _ensure_lock_row(store, conn)


def _lock(conn: sa.Connection) -> None:
    lock = st.annotation_queue_lock
    updated = conn.execute(
        lock.update().where(lock.c.name == "queue").values(version=lock.c.version + 1)
    ).rowcount
    if updated != 1:
        raise RuntimeError("annotation queue lock row is missing (call ensure_queue(store) first)")


# --- the queue for one annotator ---------------------------------------------------------


def _current_labels(item):
    """Labels of an item that judged the image it shows now (a rebuild may change the image)."""
    lab = st.annotation_labels
    return sa.and_(lab.c.item_id == item.c.item_id, lab.c.image_sha256 == item.c.image_sha256)


def _taken_by_others(item, user_id: int, now: datetime):
    """Places of the item taken by labels or live leases of other annotators (a scalar subquery)."""
    lab, lease = st.annotation_labels, st.annotation_leases
    labels = sa.select(sa.func.count()).select_from(lab).where(_current_labels(item), lab.c.user_id != user_id)
    leases = sa.select(sa.func.count()).select_from(lease).where(
        lease.c.item_id == item.c.item_id, lease.c.user_id != user_id, lease.c.expires_at > now
    )
    return labels.scalar_subquery() + leases.scalar_subquery()


def _open_to(user_id: int, now: datetime):
    item, lab, skip = st.annotation_items, st.annotation_labels, st.annotation_skips
    return sa.and_(
        ~sa.exists().where(_current_labels(item), lab.c.user_id == user_id),
        ~sa.exists().where(skip.c.item_id == item.c.item_id, skip.c.user_id == user_id),
        _taken_by_others(item, user_id, now) < item.c.required,
    )


def next_item(store: st.Store, user_id: int, options: QueueOptions, *, now: datetime | None = None) -> dict | None:
    """Lease the annotator an item they have not labelled (their current lease first); None when done."""
    now = now or st.utcnow()
    item, lease = st.annotation_items, st.annotation_leases
    expires = now + timedelta(seconds=options.lease_seconds)
    with store.begin() as conn:
        _lock(conn)
        held = conn.execute(sa.select(lease.c.item_id).where(lease.c.user_id == user_id)).scalar_one_or_none()
        row = None
        if held is not None:
            # an annotator keeps their item while it is still open to them (even past the expiry,
            # as long as nobody else took its place meanwhile)
            row = conn.execute(
                sa.select(item).where(item.c.item_id == held, _open_to(user_id, now))
            ).mappings().first()
        if row is None:
            row = conn.execute(
                sa.select(item).where(_open_to(user_id, now)).order_by(item.c.position).limit(1)
            ).mappings().first()
        if row is None:
            conn.execute(lease.delete().where(lease.c.user_id == user_id))
            return None
        store.upsert(lease, [{"user_id": user_id, "item_id": row["item_id"], "expires_at": expires}], conn=conn)
        return dict(row)


def submit_label(store: st.Store, user_id: int, item_id: str, label: str, *, replacement_sha256: str | None = None,
                 replacement_label: str | None = None, none_fits: bool = False,
                 now: datetime | None = None, force: bool = False) -> int:
    """Store the annotator's label for an item (replacing theirs if they resubmit); returns its label id.

    `force` stores it even where the item's places are taken (labels imported from elsewhere)."""
    now = now or st.utcnow()
    item, lab, lease = st.annotation_items, st.annotation_labels, st.annotation_leases
    if label not in LABELS:
        raise QueueError(f"label must be one of {', '.join(LABELS)} (got {label!r})")
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(item).where(item.c.item_id == item_id)).mappings().first()
    if row is None:
        raise QueueError(f"no such item: {item_id!r}")
    if label != "IR" or row["strategy"] == "top1":
        # only an irrelevant re-ranked image is replaced; a calibration item is a judgment only
        if replacement_sha256 or none_fits:
            raise QueueError("a replacement is only picked for an irrelevant re-ranked image")
        replacement_sha256, replacement_label, none_fits = None, None, False
    elif none_fits:
        if replacement_sha256:
            raise QueueError("pick a replacement or 'none fits', not both")
        replacement_label = None
    else:
        if not replacement_sha256:
            raise QueueError("an irrelevant image needs a replacement candidate or 'none fits'")
        if replacement_sha256 not in {c["image_sha256"] for c in candidates(store, row)} - {row["image_sha256"]}:
            raise QueueError("the replacement must be another candidate image of this sentence")
        replacement_label = replacement_label or "ES"
        if replacement_label not in ("ES", "S"):
            raise QueueError(f"replacement_label must be ES or S (got {replacement_label!r})")
    values = {"label": label, "replacement_sha256": replacement_sha256, "replacement_label": replacement_label,
              "none_fits": bool(none_fits), "image_sha256": row["image_sha256"], "created_at": now}
    with store.begin() as conn:
        _lock(conn)
        mine = conn.execute(
            sa.select(lab.c.label_id).where(lab.c.item_id == item_id, lab.c.user_id == user_id)
        ).scalar_one_or_none()
        if mine is not None:
            conn.execute(lab.update().where(lab.c.label_id == mine).values(**values))
            label_id = mine
        else:
            open_item = conn.execute(
                sa.select(item.c.item_id).where(item.c.item_id == item_id, _open_to(user_id, now))
            ).first()
            if open_item is None and not force:
                raise QueueConflict("this item was given to another annotator after your lease expired; "
                                    "take the next one")
            label_id = int(conn.execute(lab.insert().values(item_id=item_id, user_id=user_id, **values))
                           .inserted_primary_key[0])
        conn.execute(lease.delete().where(lease.c.user_id == user_id, lease.c.item_id == item_id))
        return label_id


def undo_last(store: st.Store, user_id: int, options: QueueOptions, *, now: datetime | None = None) -> str | None:
    """Remove the annotator's latest label and hand its item back to them; returns the item id."""
    now = now or st.utcnow()
    lab, lease = st.annotation_labels, st.annotation_leases
    with store.begin() as conn:
        _lock(conn)
        last = conn.execute(
            sa.select(lab.c.label_id, lab.c.item_id).where(lab.c.user_id == user_id)
            .order_by(lab.c.label_id.desc()).limit(1)
        ).first()
        if last is None:
            return None
        conn.execute(lab.delete().where(lab.c.label_id == last.label_id))
        store.upsert(lease, [{"user_id": user_id, "item_id": last.item_id,
                              "expires_at": now + timedelta(seconds=options.lease_seconds)}], conn=conn)
        return last.item_id


def skip_item(store: st.Store, user_id: int, item_id: str, *, now: datetime | None = None) -> None:
    """The annotator passes on an item: it is not offered to them again and its place is freed."""
    now = now or st.utcnow()
    with store.begin() as conn:
        _lock(conn)
        if conn.execute(sa.select(st.annotation_items.c.item_id).where(st.annotation_items.c.item_id == item_id)).first() is None:
            raise QueueError(f"no such item: {item_id!r}")
        store.upsert(st.annotation_skips, [{"item_id": item_id, "user_id": user_id, "created_at": now}],
                     update=[], conn=conn)
        conn.execute(st.annotation_leases.delete().where(st.annotation_leases.c.user_id == user_id))


# --- what an item shows ------------------------------------------------------------------


def candidates(store: st.Store, item: Mapping[str, Any], model_id: str | None = None) -> list[dict]:
    """The downloaded candidates of the item's (entity, sentence), best eq. 1 score first."""
    c, s = st.image_candidates, st.image_scores
    score_join = sa.and_(s.c.image_sha256 == c.c.image_sha256, s.c.sentence_hash == c.c.sentence_hash,
                         s.c.wiki == c.c.wiki, s.c.page_id == c.c.page_id)
    if model_id is not None:
        score_join = sa.and_(score_join, s.c.model_id == model_id)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.c.rank, c.c.image_sha256, c.c.title, c.c.licence, c.c.source_page,
                      s.c.score, s.c.clip_term, s.c.object_term, s.c.chosen)
            .select_from(c.outerjoin(s, score_join))
            .where(c.c.wiki == item["wiki"], c.c.page_id == item["page_id"],
                   c.c.sentence_hash == item["sentence_hash"], c.c.image_sha256.is_not(None), c.c.status == "ok")
            .order_by(c.c.rank)
        ).mappings().all()
    seen: dict[str, dict] = {}
    for r in rows:
        seen.setdefault(r["image_sha256"], dict(r))  # the same image found twice is one candidate
    return sorted(seen.values(), key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["rank"]))


def item_view(store: st.Store, item: Mapping[str, Any]) -> dict:
    """Everything the review page shows for an item; the sentence is split around the entity's mention."""
    with store.engine.connect() as conn:
        sentence = conn.execute(
            sa.select(st.sentences.c.text).where(st.sentences.c.sentence_hash == item["sentence_hash"])
        ).scalar_one_or_none() or ""
        mention = conn.execute(
            sa.select(st.mentions.c.char_start, st.mentions.c.char_end)
            .where(st.mentions.c.sentence_hash == item["sentence_hash"], st.mentions.c.wiki == item["wiki"],
                   st.mentions.c.page_id == item["page_id"])
            .order_by(st.mentions.c.char_start).limit(1)
        ).first()
        title = conn.execute(
            sa.select(st.entities.c.title).where(st.entities.c.wiki == item["wiki"],
                                                 st.entities.c.page_id == item["page_id"])
        ).scalar_one_or_none()
        infobox = conn.execute(
            sa.select(st.infobox_images.c.image_sha256).where(
                st.infobox_images.c.wiki == item["wiki"], st.infobox_images.c.page_id == item["page_id"])
        ).scalar_one_or_none()
    if mention is not None:
        parts = (sentence[: mention.char_start], sentence[mention.char_start : mention.char_end],
                 sentence[mention.char_end :])
    else:
        parts = (sentence, "", "")
    everything = candidates(store, item)
    shown = next((c for c in everything if c["image_sha256"] == item["image_sha256"]), None)
    others = [c for c in everything if c["image_sha256"] != item["image_sha256"]]
    return {"item": dict(item), "sentence": parts, "entity": title or f"page {item['page_id']}",
            "infobox_sha256": infobox, "shown": shown, "candidates": others}
