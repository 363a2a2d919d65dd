"""The dataset card (README.md of an export) and the attribution files beside it.

Everything on the card comes from the store, never from the clock, so the card is as
deterministic as the data it describes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from mesed_build import __version__
from mesed_build import store as st
from mesed_build.export.data import ExportData, article_url, as_utc

RELEVANCE_LABELS = ("R/T E&S", "R/T S", "IR")
FORMAT_FILES = {
    "mesed": [
        ("entity2id.txt", "one entity per line: `name<TAB>eid` (eid = Wikipedia page id)"),
        ("sentences.json", "JSON Lines: `tokens`, `entityMentions` (`entityId`, `start`, `end` inclusive), "
                           "`image` (path under `image/` or null), plus provenance keys"),
        ("query/<Class>.txt", "5 lines of 3 seed eids, then `EXIT`"),
        ("query_seed=5/<Class>.txt", "5 lines of 5 seed eids"),
        ("gt/<Class>.txt", "`eid<TAB>name<TAB>label`; label >= 1 is the gold set"),
        ("eid2cls.pkl", "pickle (protocol 4): eid -> list of class file names, for every entity"),
        ("image/", "each chosen image once, named by its sha256"),
        ("classes.json", "the class hierarchy and each fine class's file name"),
    ],
    "parquet": [
        ("data/sentences.parquet", "sentences with nested mentions and their image's sha256"),
        ("data/entities.parquet", "entities with classes, vocabulary kinds and sentence counts"),
        ("data/images/part-*.parquet", "image bytes (Hugging Face `Image` feature), licence and source"),
        ("data/classes.parquet", "the class hierarchy"),
        ("data/queries.parquet", "queries: class, seed count, index, seed eids"),
        ("data/gt.parquet", "ground truth: class, eid, name, label"),
        ("data/annotations.parquet", "image relevance labels of the review queue (annotators by number)"),
    ],
    "webdataset": [
        ("shard-NNNNNN.tar", "one sample per sentence: `<sentence_id>.json` (+ `<sentence_id>.jpg` when it has "
                             "an image)"),
        ("shards.json", "the shards, their sample counts and a brace pattern for `webdataset.WebDataset`"),
    ],
}
COMMON_FILES = [
    ("README.md", "this card"),
    ("attribution/articles.tsv", "every Wikipedia article a sentence comes from, with its revision"),
    ("attribution/images.tsv", "every image with its licence and source"),
    ("SHA256SUMS", "checksums of every file (`sha256sum -c SHA256SUMS`)"),
]


def relevance_table(store: st.Store) -> dict | None:
    """The paper's Table 1 (relevance shares by strategy, kappa) from the annotation results, or None
    when nothing has been labelled (or the annotation package is not installed)."""
    try:
        from annotation.results import load_votes, table1
    except ImportError:
        return None
    votes = load_votes(store)
    if not any(v.labels for v in votes):
        return None
    return table1(store, votes)


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines


def table2_row(data: ExportData, counts: dict[str, int]) -> dict:
    fine = data.fine_classes
    per_class: Counter = Counter((q["class_name"], q["seed_count"]) for q in data.queries)
    with_queries = {name for name, _ in per_class}
    queries_per_class = (
        " + ".join(
            f"{sum(per_class[(c, k)] for c in with_queries) / len(with_queries):g}"
            for k in sorted({k for _, k in per_class})
        ) if with_queries else "0"
    )
    seeds = " / ".join(str(k) for k in sorted({q["seed_count"] for q in data.queries})) or "-"
    n_with_image = len(data.chosen_image)
    return {
        "classes": len(fine),
        "queries_per_class": queries_per_class,
        "seeds_per_query": seeds,
        "entities": len(data.entities),
        "sentences": counts.get("sentences", data.n_sentences),
        "multi_modal": (f"yes ({n_with_image} of {data.n_sentences} sentences have an image)" if n_with_image
                        else "no (no sentence has an image yet)"),
    }


def _hierarchy(data: ExportData) -> list[str]:
    children: dict[str | None, list[dict]] = {}
    for cls in data.classes:
        children.setdefault(cls["parent"], []).append(cls)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for cls in children.get(parent, []):
            text = f"{'  ' * depth}- **{cls['name']}**" if cls["level"] != "fine" else f"{'  ' * depth}- {cls['name']}"
            if cls["level"] == "fine":
                text += f": {cls['n_exported_entities']} entities with sentences (of {cls['n_entities']})"
                if cls["file_name"] != cls["name"]:
                    text += f"; file name `{cls['file_name']}`"
            lines.append(text)
            walk(cls["name"], depth + 1)

    walk(None, 0)
    return lines


def render_card(data: ExportData, store: st.Store, formats: list[str], counts: dict[str, int]) -> str:
    build = data.build or {}
    name = build.get("name", "mesed-build export")
    row = table2_row(data, counts)
    lines = [
        "---",
        "license: cc-by-sa-4.0",
        "language:",
        "- en" if data.wiki == "enwiki" else f"- {data.wiki.removesuffix('wiki')}",
        f"pretty_name: {json.dumps(name + ' (MESED-style multi-modal entity set expansion)')}",
        "tags:",
        "- entity-set-expansion",
        "- multimodal",
        "- wikipedia",
    ]
    if formats == ["parquet"]:
        from mesed_build.export.parquet import CONFIGS

        lines.append("configs:")
        loadable = [(config, pattern) for config, pattern in CONFIGS.items() if counts.get(f"rows_{config}", 1)]
        for index, (config, pattern) in enumerate(loadable):
            lines += [f"- config_name: {config}", "  data_files:", "  - split: train", f"    path: {pattern}"]
            if index == 0:
                lines.append("  default: true")
    lines += ["---", "", f"# {name}: a MESED-style multi-modal Entity Set Expansion dataset", ""]
    lines.append(
        f"Exported by mesed-build {__version__} from build #{build.get('build_id', '?')} "
        f"(config `{str(build.get('config_hash', ''))[:12]}`, status {build.get('status', 'unknown')}). "
        "Fine-grained classes come from Wikipedia list pages and categories; each entity's sentences come from "
        "the articles that link to it; each sentence's image is the re-ranked (and, where annotated, "
        "human-checked) image search result."
    )
    lines += ["", "## Files", ""]
    for fmt in formats:
        if len(formats) > 1:
            lines += [f"### `{fmt}/`", ""]
        for path, what in FORMAT_FILES[fmt] + COMMON_FILES:
            lines.append(f"- `{path}`: {what}")
        lines.append("")
    if "parquet" in formats:
        lines += ["Load a table with `datasets.load_dataset(\"parquet\", data_files=\"data/sentences.parquet\")`, or "
                  "the whole export with `datasets.load_dataset(EXPORT_DIR, \"sentences\")` (configs: "
                  "sentences, entities, images, classes, queries, gt, annotations; a table without rows has no config, as "
                  "`datasets` cannot load it: read it with pyarrow).", ""]
    if "webdataset" in formats:
        lines += ["Read the shards with `webdataset.WebDataset(urls).decode(\"pil\")` (see `shards.json`).", ""]

    lines += ["## Summary (the paper's Table 2)", ""]
    lines += _md_table(["Dataset", "#Classes", "#Queries per class", "#Seeds per query", "#Entities", "#Sentences",
                        "Multi-modal"],
                       [[name, row["classes"], row["queries_per_class"], row["seeds_per_query"], row["entities"],
                         row["sentences"], row["multi_modal"]]])
    if not data.queries:
        lines += ["", "No queries: the queries stage has not run on this build, so `query/`, `query_seed=5/` and "
                  "`gt/` are empty."]
    else:
        with_queries = len({q["class_name"] for q in data.queries})
        lines += ["", f"Queries per class: 3-seed + 5-seed queries, over the {with_queries} of {row['classes']} fine "
                      "classes that have queries (see the queries stage's drops for the others). Entities and "
                      "sentences: those exported (an entity needs a sentence)."]

    lines += ["", "## Class hierarchy", ""] + _hierarchy(data)

    sizes = [c["n_exported_entities"] for c in data.fine_classes]
    all_sizes = [c["n_entities"] for c in data.fine_classes]
    lines += ["", "## Entities per fine class", ""]
    if sizes:
        lines += _md_table(["", "min", "mean", "max"], [
            ["with sentences (exported)", min(sizes), f"{sum(sizes) / len(sizes):.1f}", max(sizes)],
            ["all members", min(all_sizes), f"{sum(all_sizes) / len(all_sizes):.1f}", max(all_sizes)],
        ])
    else:
        lines.append("No fine class.")

    lines += ["", "## Vocabulary by kind", ""]
    if data.vocabulary_by_kind:
        exported_kinds = Counter(k for e in data.entities for k in e["kinds"])
        lines += _md_table(["kind", "entities", "with sentences (exported)"],
                           [[k, n, exported_kinds.get(k, 0)] for k, n in data.vocabulary_by_kind.items()])
    else:
        lines.append("The vocabulary table is empty.")

    lines += ["", "## Image relevance (the paper's Table 1)", ""]
    relevance = relevance_table(store)
    if relevance is None:
        lines.append("No annotations yet: image relevance has not been judged for this build.")
    else:
        rows = []
        for strategy, row in relevance["rows"].items():
            rows.append([strategy] + [f"{100 * row[k]:.1f}%" if row.get(k) is not None else "n/a"
                                      for k in ("ES", "S", "IR")]
                        + [row["n"], f"{row['diversity']:.3f}" if row.get("diversity") is not None else "n/a"])
        lines += _md_table(["Strategy", *RELEVANCE_LABELS, "judged", "diversity"], rows)
        kappa = relevance.get("kappa")
        lines += ["", f"Fleiss' kappa over the multiply-labelled items: "
                      f"{f'{kappa:.3f}' if kappa is not None else 'n/a (no item has several labels)'}."]

    lines += ["", "## Dropped items by reason", ""]
    dropped = dict(data.drops)
    dropped.update({f"export/{reason}": n for reason, n in sorted(data.export_drops.items())})
    if dropped:
        lines += _md_table(["stage/reason", "count"], [[reason, n] for reason, n in dropped.items()])
    else:
        lines.append("Nothing was dropped.")

    lines += ["", "## Build manifest", ""]
    if build:
        lines += [
            f"- build: #{build['build_id']} `{build['name']}`, {build['status']}",
            f"- config sha256: `{build['config_hash']}`",
            f"- started: {as_utc(build['started_at']).isoformat() if build.get('started_at') else '-'}; "
            f"finished: {as_utc(build['finished_at']).isoformat() if build.get('finished_at') else '-'}",
            f"- image re-rank model: {data.image_model or '-'}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(json.loads(build["versions"]).items())),
            "",
            "Stages:",
            "",
        ]
        # pipeline order (the store returns the runs in no particular order)
        order = {name: i for i, name in enumerate(json.loads(build.get("stages") or "[]"))}
        for stage, run in sorted(build["stage_runs"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
            lines.append(f"- {stage}: " + (", ".join(f"{k}={v}" for k, v in run["counts"].items()) or "-"))
        # where a build lives is not what it builds (nor part of its config hash)
        config = {k: v for k, v in json.loads(build["config"]).items() if k not in ("build_dir", "database_url")}
        lines += ["", "Config:", "", "```yaml",
                  yaml.safe_dump(config, sort_keys=True, allow_unicode=True, default_flow_style=False).rstrip(), "```"]
    else:
        lines.append("The store records no build.")

    licences = Counter(image.licence or "unknown" for image in data.images.values())
    lines += [
        "", "## Licences and attribution", "",
        f"- **Text**: the sentences are excerpts of Wikipedia articles ({len(data.articles)} articles), licensed under "
        "[CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/) (revisions before 2023-06-29: CC BY-SA 3.0) "
        "and the GFDL. The authors of each article are listed in its history; `attribution/articles.tsv` gives every "
        "article's title, page id, revision id and URL. Share derived work under the same licence.",
        f"- **Images**: {len(data.images)} images; each keeps its own licence and source, listed in "
        "`attribution/images.tsv` (and in the images table / each WebDataset sample). By licence: "
        + (", ".join(f"{lic} {n}" for lic, n in sorted(licences.items())) if licences else "none") + ".",
        "- **Entity names and classes**: Wikipedia titles and list pages (CC BY-SA); Wikidata ids and synonyms "
        "are CC0.",
        "- **The exporting code**: mesed-build, Apache-2.0.",
        "",
    ]
    return "\n".join(lines)


def write_attribution(data: ExportData, directory: Path) -> None:
    folder = directory / "attribution"
    folder.mkdir()
    with open(folder / "articles.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("page_id\trev_id\ttitle\turl\tsentences\n")
        for page_id, article in sorted(data.articles.items()):
            url = article_url(data.wiki, article.get("title"), page_id, article.get("rev_id"))
            fh.write(f"{page_id}\t{article.get('rev_id') or ''}\t{article.get('title') or ''}\t{url or ''}\t"
                     f"{article['n_sentences']}\n")
    uses = data.image_uses
    with open(folder / "images.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("sha256\tfile\tlicence\tsource_url\tsource_page\tsentences\n")
        for sha, image in sorted(data.images.items()):
            fields = [sha, image.export_path, image.licence or "", image.source_url, image.source_page or "",
                      str(uses.get(sha, 0))]
            fh.write("\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields) + "\n")
