"""The PNG plots of `mesed-build stats --plots DIR` (matplotlib, Agg backend).

class_sizes.png, sentences_per_entity.png, image_scores.png (where candidates were scored) and
relevance_by_strategy.png (where annotators labelled images). A plot without data is not written;
`write_plots` says why instead.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesed_build import store as st


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    # no Software/date metadata: the same store gives the same bytes
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _pyplot().close(fig)


def plot_class_sizes(store: st.Store, path: Path, wiki: str = "enwiki") -> bool:
    with store.engine.connect() as c:
        classes = [r[0] for r in c.execute(
            sa.select(st.classes.c.name).where(st.classes.c.level == "fine").order_by(st.classes.c.position))]
        members = dict(c.execute(
            sa.select(st.class_members.c.class_name, sa.func.count())
            .where(st.class_members.c.wiki == wiki).group_by(st.class_members.c.class_name)).all())
        with_sentences = dict(c.execute(
            sa.select(st.class_members.c.class_name, sa.func.count(sa.distinct(st.class_members.c.page_id)))
            .where(st.class_members.c.wiki == wiki)
            .where(sa.exists().where(st.entity_sentences.c.wiki == st.class_members.c.wiki,
                                     st.entity_sentences.c.page_id == st.class_members.c.page_id))
            .group_by(st.class_members.c.class_name)).all())
    if not classes:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(classes)))
    y = range(len(classes))
    ax.barh([i + 0.2 for i in y], [members.get(n, 0) for n in classes], height=0.4, label="members")
    ax.barh([i - 0.2 for i in y], [with_sentences.get(n, 0) for n in classes], height=0.4, label="with sentences")
    ax.set_yticks(list(y), classes)
    ax.invert_yaxis()
    ax.set_xlabel("entities")
    ax.set_title("Entities per fine class")
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_sentences_per_entity(store: st.Store, path: Path, wiki: str = "enwiki") -> bool:
    with store.engine.connect() as c:
        counts = [int(n) for _, n in c.execute(
            sa.select(st.entity_sentences.c.page_id, sa.func.count())
            .where(st.entity_sentences.c.wiki == wiki).group_by(st.entity_sentences.c.page_id))]
    if not counts:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(counts, bins=range(1, max(counts) + 2), align="left", rwidth=0.9)
    ax.set_xlabel("sentences per entity")
    ax.set_ylabel("entities")
    ax.set_title(f"Sentences per entity ({len(counts)} entities with sentences)")
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_image_scores(store: st.Store, path: Path, wiki: str = "enwiki") -> bool:
    t = st.image_scores
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.c.score, t.c.chosen).where(t.c.wiki == wiki)).all()
    if not rows:
        return False
    import numpy

    every = [float(s) for s, _ in rows]
    chosen = [float(s) for s, ch in rows if ch]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = numpy.histogram_bin_edges(every, bins=30)  # shared, so the chosen bars line up with all
    ax.hist(every, bins=bins, alpha=0.6, label=f"all candidates ({len(every)})")
    if chosen:
        ax.hist(chosen, bins=bins, alpha=0.8, label=f"chosen ({len(chosen)})")
    ax.set_xlabel("eq. 1 score")
    ax.set_ylabel("images")
    ax.set_title("Scores of candidate images")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_relevance(store: st.Store, path: Path) -> bool:
    from mesed_build.export.card import relevance_table

    table = relevance_table(store)
    if table is None:
        return False
    rows = {name: row for name, row in table["rows"].items() if row.get("n")}
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = (("ES", "R/T E&S"), ("S", "R/T S"), ("IR", "IR"))
    width = 0.8 / len(labels)
    for j, (key, text) in enumerate(labels):
        ax.bar([i + (j - 1) * width for i in range(len(rows))], [100 * (r[key] or 0) for r in rows.values()],
               width=width, label=text)
    ax.set_xticks(range(len(rows)), [f"{name}\n(n={r['n']})" for name, r in rows.items()])
    ax.set_ylabel("% of judged images")
    ax.set_ylim(0, 100)
    ax.set_title("Image relevance by strategy (Table 1)")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return True


PLOTS = {
    "class_sizes.png": (plot_class_sizes, "no fine classes"),
    "sentences_per_entity.png": (plot_sentences_per_entity, "no entity has sentences"),
    "image_scores.png": (plot_image_scores, "no candidate image has been scored (rerank stage)"),
    "relevance_by_strategy.png": (plot_relevance, "no image has been labelled (annotation)"),
}


def write_plots(store: st.Store, directory: str | Path, wiki: str = "enwiki") -> dict[str, str]:
    """Write every plot that has data into `directory`. Returns file name -> 'written' or why not."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (plot, reason) in PLOTS.items():
        args = (store, directory / name) if plot is plot_relevance else (store, directory / name, wiki)
        out[name] = "written" if plot(*args) else f"skipped: {reason}"
    return out
