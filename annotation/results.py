"""What the labels add up to: consensus per item, the final image of each sentence (for the
export), progress, throughput, Fleiss' kappa and the paper's Table 1.

Consensus rule (majority vote, written once here and used everywhere): an image is irrelevant
only when a strict majority of its labels says IR; otherwise it is kept, as R/T E&S when E&S
votes outnumber S votes, else as R/T S. A rejected image is replaced by the replacement most
of its IR voters picked ("none fits" is a choice too; on a tie the candidate the search engine
ranked higher wins, and "none fits" loses every tie).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from annotation.kappa import fleiss_kappa
from annotation.queue import LABELS
from mesed_build import store as st

NONE_FITS = "none"


@dataclass
class ItemVotes:
    item_id: str
    wiki: str
    page_id: int
    sentence_hash: str
    strategy: str
    image_sha256: str
    class_name: str | None
    required: int
    calibration: bool
    labels: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(lab["label"] for lab in self.labels)
        return {k: c.get(k, 0) for k in LABELS}

    @property
    def complete(self) -> bool:
        return len(self.labels) >= self.required


def consensus(counts: dict[str, int]) -> str | None:
    es, s, ir = counts.get("ES", 0), counts.get("S", 0), counts.get("IR", 0)
    if es + s + ir == 0:
        return None
    if ir > es + s:
        return "IR"
    return "ES" if es > s else "S"


def load_votes(store: st.Store) -> list[ItemVotes]:
    """Every queue item with the labels that judged its current image, in queue order."""
    item, lab = st.annotation_items, st.annotation_labels
    with store.engine.connect() as conn:
        items = conn.execute(sa.select(item).order_by(item.c.position)).mappings().all()
        labels = conn.execute(
            sa.select(lab).select_from(lab.join(item, sa.and_(item.c.item_id == lab.c.item_id,
                                                              item.c.image_sha256 == lab.c.image_sha256)))
            .order_by(lab.c.label_id)
        ).mappings().all()
    by_item = defaultdict(list)
    for row in labels:
        by_item[row["item_id"]].append(dict(row))
    return [
        ItemVotes(item_id=r["item_id"], wiki=r["wiki"], page_id=int(r["page_id"]), sentence_hash=r["sentence_hash"],
                  strategy=r["strategy"], image_sha256=r["image_sha256"], class_name=r["class_name"],
                  required=int(r["required"]), calibration=bool(r["calibration"]), labels=by_item.get(r["item_id"], []))
        for r in items
    ]


def _candidate_ranks(store: st.Store) -> dict[tuple, dict[str, int]]:
    c = st.image_candidates
    ranks: dict[tuple, dict[str, int]] = defaultdict(dict)
    with store.engine.connect() as conn:
        for wiki, pid, sh, rank, sha in conn.execute(
            sa.select(c.c.wiki, c.c.page_id, c.c.sentence_hash, c.c.rank, c.c.image_sha256)
            .where(c.c.image_sha256.is_not(None)).order_by(c.c.rank)
        ):
            ranks[(wiki, int(pid), sh)].setdefault(sha, int(rank))
    return ranks


@dataclass
class Decision:
    """The annotated outcome of a re-ranked item."""

    label: str  # consensus label of the re-ranked image
    image_sha256: str | None  # the final image (None: none fits)
    final_label: str  # ES | S for the final image, IR when none fits
    replaced: bool


def decide(votes: ItemVotes, ranks: dict[str, int] | None = None) -> Decision | None:
    label = consensus(votes.counts())
    if label is None:
        return None
    if label != "IR":
        return Decision(label, votes.image_sha256, label, replaced=False)
    ranks = ranks or {}
    picks = Counter(lab["replacement_sha256"] or NONE_FITS for lab in votes.labels if lab["label"] == "IR")
    best = min(picks, key=lambda sha: (-picks[sha], sha == NONE_FITS, ranks.get(sha, 10**9), sha))
    if best == NONE_FITS:
        return Decision("IR", None, "IR", replaced=True)
    fits = Counter(lab["replacement_label"] or "ES" for lab in votes.labels if lab["replacement_sha256"] == best)
    return Decision("IR", best, "ES" if fits["ES"] > fits["S"] else "S", replaced=True)


def rerank_choices(store: st.Store) -> dict[tuple, str]:
    """(wiki, page_id, sentence_hash) -> the re-ranked image, as the queue holds it (or the scores table)."""
    item = st.annotation_items
    s = st.image_scores
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(item.c.wiki, item.c.page_id, item.c.sentence_hash, item.c.image_sha256)
            .where(item.c.strategy == "rerank")
        ).all()
        if not rows:
            rows = conn.execute(
                sa.select(s.c.wiki, s.c.page_id, s.c.sentence_hash, s.c.image_sha256).where(s.c.chosen)
                .order_by(s.c.model_id)
            ).all()
    return {(w, int(p), h): sha for w, p, h, sha in rows}


def final_images(store: st.Store, counts: dict[str, int] | None = None) -> dict[str, str | None]:
    """sentence_hash -> its image for the export: the annotators' choice where one exists (majority
    vote), else the re-ranked choice; None where the annotators found that no candidate fits.

    A sentence that serves several entities takes the first entity (by page id) that has an annotated
    decision, else the first that has a re-ranked choice. Pass a dict as `counts` to get how many
    sentences are automatic, kept, replaced and left without an image ("none_fits").
    """
    ranks = _candidate_ranks(store)
    decisions = {}
    for votes in load_votes(store):
        if votes.strategy == "rerank":
            d = decide(votes, ranks.get((votes.wiki, votes.page_id, votes.sentence_hash)))
            if d is not None:
                decisions[(votes.wiki, votes.page_id, votes.sentence_hash)] = d
    by_sentence: dict[str, list[tuple]] = defaultdict(list)
    for key, sha in rerank_choices(store).items():
        by_sentence[key[2]].append((key, sha))
    tally = Counter({"automatic": 0, "kept": 0, "replaced": 0, "none_fits": 0})
    out: dict[str, str | None] = {}
    for sentence_hash in sorted(by_sentence):
        options = sorted(by_sentence[sentence_hash], key=lambda ks: (ks[0][0], ks[0][1]))
        annotated = next(((k, decisions[k]) for k, _ in options if k in decisions), None)
        if annotated is None:
            out[sentence_hash] = options[0][1]
            tally["automatic"] += 1
            continue
        decision = annotated[1]
        out[sentence_hash] = decision.image_sha256
        tally["none_fits" if decision.image_sha256 is None else "replaced" if decision.replaced else "kept"] += 1
    if counts is not None:
        counts.update(tally)
    return out


# --- agreement, progress, Table 1 ----------------------------------------------------------


def kappa_tables(votes: Sequence[ItemVotes]) -> dict[str | None, list[list[int]]]:
    """Count rows of the multiply-labelled items that got all their k labels, overall (None) and per class."""
    tables: dict[str | None, list[list[int]]] = defaultdict(list)
    for v in votes:
        if v.required > 1 and len(v.labels) == v.required:
            row = [v.counts()[k] for k in LABELS]
            tables[None].append(row)
            tables[v.class_name or "(no class)"].append(row)
    return tables


def agreement(votes: Sequence[ItemVotes]) -> dict:
    tables = kappa_tables(votes)
    overall = tables.pop(None, [])
    # items of different k cannot share one Fleiss table; use the most common k
    def kappa(rows):
        if not rows:
            return None
        n = Counter(sum(r) for r in rows).most_common(1)[0][0]
        value = fleiss_kappa([r for r in rows if sum(r) == n])
        return None if value is None else round(value, 4)

    return {"kappa": kappa(overall), "items": len(overall),
            "per_class": {name: {"kappa": kappa(rows), "items": len(rows)} for name, rows in sorted(tables.items())}}


def progress(votes: Sequence[ItemVotes]) -> dict:
    def summary(vs):
        total = len(vs)
        complete = sum(v.complete for v in vs)
        return {"items": total, "complete": complete, "labels": sum(len(v.labels) for v in vs),
                "labels_wanted": sum(v.required for v in vs),
                "share": round(complete / total, 4) if total else 0.0}

    per_class = defaultdict(list)
    for v in votes:
        per_class[v.class_name or "(no class)"].append(v)
    return {**summary(votes), "per_class": {name: summary(vs) for name, vs in sorted(per_class.items())}}


def throughput(store: st.Store) -> list[dict]:
    """Per annotator: labels, first and last label time, labels per hour over their active span."""
    lab, users = st.annotation_labels, st.annotation_users
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(users.c.name, users.c.role, sa.func.count(lab.c.label_id),
                      sa.func.min(lab.c.created_at), sa.func.max(lab.c.created_at))
            .select_from(users.outerjoin(lab, lab.c.user_id == users.c.user_id))
            .group_by(users.c.user_id, users.c.name, users.c.role).order_by(users.c.name)
        ).all()
    out = []
    for name, role, n, first, last in rows:
        hours = (last - first).total_seconds() / 3600 if first and last else 0.0
        out.append({"name": name, "role": role, "labels": int(n),
                    "first": first.strftime("%Y-%m-%d %H:%M") if first else None,
                    "last": last.strftime("%Y-%m-%d %H:%M") if last else None,
                    "labels_per_hour": round(n / hours, 1) if hours > 0 else None})
    return out


def _shares(labels: Sequence[str]) -> dict:
    n = len(labels)
    c = Counter(labels)
    return {"n": n, **{k: round(c[k] / n, 4) if n else None for k in LABELS}}


def table1(store: st.Store, votes: Sequence[ItemVotes] | None = None,
           embed: Callable[[Sequence[str]], Sequence[Sequence[float]]] | None = None) -> dict:
    """The paper's Table 1: relevance shares of Top 1, Re-ranking and Annotation, with kappa and diversity.

    Re-ranking: the consensus on every labelled re-ranked image. Top 1: on the calibration sample,
    the search engine's first image (judged separately where it differs from the re-ranked choice).
    Annotation: the final image after review (a replacement counts as its annotators said; none
    fits counts as IR). Diversity (1 / mean pairwise cosine of the images' embeddings) needs `embed`,
    which maps image sha256s to embeddings (e.g. the rerank stage's CLIP); it is None without one.
    """
    votes = list(votes) if votes is not None else load_votes(store)
    ranks = _candidate_ranks(store)
    by_key = {(v.strategy, v.wiki, v.page_id, v.sentence_hash): v for v in votes}
    rerank_labels, rerank_images, final_labels, final_imgs, top1_labels, top1_images = [], [], [], [], [], []
    for v in votes:
        if v.strategy != "rerank":
            continue
        label = consensus(v.counts())
        if label is None:
            continue
        rerank_labels.append(label)
        rerank_images.append(v.image_sha256)
        d = decide(v, ranks.get((v.wiki, v.page_id, v.sentence_hash)))
        final_labels.append(d.final_label)
        if d.image_sha256:
            final_imgs.append(d.image_sha256)
        if v.calibration:
            key = (v.wiki, v.page_id, v.sentence_hash)
            first = by_key.get(("top1", *key))
            if first is None:  # sync_items makes a top-1 item wherever the top-1 differs: here it is the same image
                top1_labels.append(label)
                top1_images.append(v.image_sha256)
            else:
                first_label = consensus(first.counts())
                if first_label is not None:
                    top1_labels.append(first_label)
                    top1_images.append(first.image_sha256)

    def diversity(shas):
        if embed is None or len(shas) < 2:
            return None
        import numpy as np

        emb = np.asarray(embed(list(shas)), dtype=np.float64)
        emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        sims = emb @ emb.T
        mean = (sims.sum() - np.trace(sims)) / (len(emb) * (len(emb) - 1))
        return round(float(1.0 / mean), 4) if mean > 0 else None

    return {
        "rows": {
            "Top 1": {**_shares(top1_labels), "diversity": diversity(top1_images)},
            "Re-ranking": {**_shares(rerank_labels), "diversity": diversity(rerank_images)},
            "Annotation": {**_shares(final_labels), "diversity": diversity(final_imgs)},
        },
        "kappa": agreement(votes)["kappa"],
    }


def annotation_summary(store: st.Store) -> dict | None:
    """The numbers the dashboard and `mesed-build stats` show; None when the queue is empty."""
    if not sa.inspect(store.engine).has_table(st.annotation_items.name):
        return None  # a store opened without creating tables, from before the annotation stage existed
    votes = load_votes(store)
    if not votes:
        return None
    counts: dict[str, int] = {}
    final_images(store, counts)
    return {
        "progress": progress(votes),
        "agreement": agreement(votes),
        "table1": table1(store, votes),
        "throughput": throughput(store),
        "final_images": counts,
    }


def format_summary(summary: dict | None) -> list[str]:
    if not summary:
        return ["annotation: no queue yet (mesed-build annotate sync)"]
    p, a = summary["progress"], summary["agreement"]
    lines = [f"annotation: {p['complete']}/{p['items']} items complete ({p['share']:.1%}), "
             f"{p['labels']}/{p['labels_wanted']} labels",
             f"  Fleiss' kappa: {_fmt(a['kappa'])} over {a['items']} multiply-labelled items"]
    for name, c in p["per_class"].items():
        k = a["per_class"].get(name, {})
        lines.append(f"  {name:<40} {c['complete']:>6}/{c['items']:<6} kappa {_fmt(k.get('kappa'))}")
    lines.append("  Table 1            n   R/T E&S   R/T S      IR  diversity")
    for name, row in summary["table1"]["rows"].items():
        lines.append(f"  {name:<12} {row['n']:>7}  " + "  ".join(f"{_fmt(row[k], pct=True):>7}" for k in LABELS)
                     + f"  {_fmt(row['diversity']):>9}")
    f = summary["final_images"]
    lines.append(f"  final images: {f.get('automatic', 0)} automatic, {f.get('kept', 0)} kept, "
                 f"{f.get('replaced', 0)} replaced, {f.get('none_fits', 0)} none fits (no image)")
    for t in summary["throughput"]:
        rate = f"{t['labels_per_hour']:.1f}/h" if t["labels_per_hour"] is not None else "n/a"
        lines.append(f"  {t['name']} ({t['role']}): {t['labels']} labels, {rate}")
    return lines


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.3f}" if isinstance(value, float) else str(value)
