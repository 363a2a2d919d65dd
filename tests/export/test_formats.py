"""The demo build exported in all three formats, read back with independent readers."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from mesed_build import store as st


def read_mesed(root: Path) -> dict:
    """The MESED layout parsed straight from MULTIEXPAN.md §1 (not with the exporter's code)."""
    eid2name = {}
    for line in (root / "entity2id.txt").read_text(encoding="utf-8").splitlines():
        name, eid = line.split("\t")  # name first, integer id second
        assert int(eid) not in eid2name
        eid2name[int(eid)] = name
    sentences = [json.loads(line) for line in (root / "sentences.json").read_text(encoding="utf-8").splitlines()]
    queries3, queries5, gt = {}, {}, {}
    for path in sorted((root / "query").iterdir()):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[-1] == "EXIT"
        queries3[path.name.split(".")[0]] = [[int(x) for x in line.split(" ")] for line in lines[:-1]]
    for path in sorted((root / "query_seed=5").iterdir()):
        queries5[path.name.split(".")[0]] = [[int(x) for x in line.split(" ")]
                                             for line in path.read_text(encoding="utf-8").splitlines()]
    for path in sorted((root / "gt").iterdir()):
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        gt[path.name.split(".")[0]] = [(int(eid), name, int(label)) for eid, name, label in rows]
    with open(root / "eid2cls.pkl", "rb") as fh:
        eid2cls = pickle.load(fh)
    return {"eid2name": eid2name, "sentences": sentences, "queries3": queries3, "queries5": queries5, "gt": gt,
            "eid2cls": eid2cls}


@pytest.fixture(scope="module")
def mesed(export_all):
    return read_mesed(export_all["out"] / "mesed")


def store_of(export_build) -> st.Store:
    return st.Store(export_build["url"], create=False)


def test_mesed_entities_and_sentences_match_the_store(mesed, export_build):
    store = store_of(export_build)
    try:
        with store.engine.connect() as c:
            n_sentences = c.execute(sa.select(sa.func.count()).select_from(st.sentences)).scalar_one()
            mentioned = {int(r[0]) for r in c.execute(sa.select(st.mentions.c.page_id).distinct())}
            titles = dict(c.execute(sa.select(st.entities.c.page_id, st.entities.c.title)).all())
            stored_tokens = {h: json.loads(t) for h, t in c.execute(sa.select(st.sentences.c.sentence_hash,
                                                                              st.sentences.c.tokens))}
            stored_mentions = {(h, s, e, int(p)) for h, s, e, p in c.execute(
                sa.select(st.mentions.c.sentence_hash, st.mentions.c.token_start, st.mentions.c.token_end,
                          st.mentions.c.page_id))}
    finally:
        store.close()
    assert n_sentences > 100
    assert len(mesed["sentences"]) == n_sentences
    # eids are page ids: stable across rebuilds
    assert set(mesed["eid2name"]) == mentioned
    assert all(mesed["eid2name"][eid] == titles[eid] for eid in mesed["eid2name"])
    exported_mentions = set()
    for s in mesed["sentences"]:
        assert s["tokens"] == stored_tokens[s["sentence_id"]]
        assert s["entityMentions"]
        for m in s["entityMentions"]:
            assert m["entityId"] in mesed["eid2name"]
            assert 0 <= m["start"] <= m["end"] < len(s["tokens"])  # end inclusive
            exported_mentions.add((s["sentence_id"], m["start"], m["end"], m["entityId"]))
    assert exported_mentions == stored_mentions


def test_mesed_images_are_written_once_and_match_the_choice(mesed, export_all, export_build):
    root = export_all["out"] / "mesed"
    by_id = {s["sentence_id"]: s["image"] for s in mesed["sentences"]}
    expected = export_build["images"]
    assert {h for h, image in by_id.items() if image} == set(expected)
    # the sentence annotators judged "none fits" has no image
    assert by_id[export_build["annotated"]["none_fits"]] is None
    for sentence_id, image in by_id.items():
        if image is None:
            continue
        assert image.startswith("image/")
        data = (root / image).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected[sentence_id]
        assert Path(image).stem == expected[sentence_id]
    files = sorted(p.name for p in (root / "image").iterdir())
    used = sorted({Path(i).name for i in by_id.values() if i})
    assert files == used  # each chosen image exactly once
    assert len(used) < sum(1 for i in by_id.values() if i)  # shared by several sentences, still one file


def test_mesed_queries_gt_and_eid2cls(mesed, export_build):
    store = store_of(export_build)
    try:
        with store.engine.connect() as c:
            stored_queries = c.execute(sa.select(sa.func.count()).select_from(st.queries)).scalar_one()
            members = {}
            for name, pid in c.execute(sa.select(st.class_members.c.class_name, st.class_members.c.page_id)):
                members.setdefault(name, set()).add(int(pid))
    finally:
        store.close()
    assert mesed["queries3"], "the demo's queries stage gives queries"
    assert stored_queries == sum(map(len, mesed["queries3"].values())) + sum(map(len, mesed["queries5"].values()))
    for name, queries in mesed["queries3"].items():
        assert "." not in name
        assert len(queries) == 5 and all(len(q) == 3 and len(set(q)) == 3 for q in queries)
        gold = {eid for eid, _, label in mesed["gt"][name] if label >= 1}
        assert all(set(q) <= gold and set(q) <= set(mesed["eid2name"]) for q in queries)
    for name, queries in mesed["queries5"].items():
        assert len(queries) == 5 and all(len(q) == 5 and len(set(q)) == 5 for q in queries)
    for name, rows in mesed["gt"].items():
        for eid, gt_name, label in rows:
            assert mesed["eid2name"][eid] == gt_name
            assert eid in members[name]
            if label >= 1:
                assert name in mesed["eid2cls"][eid]
    # eid2cls covers every entity (an empty list for the negatives)
    assert set(mesed["eid2cls"]) == set(mesed["eid2name"])
    assert any(classes == [] for classes in mesed["eid2cls"].values())
    assert all(isinstance(v, list) for v in mesed["eid2cls"].values())


def test_the_benchmark_loader_reads_the_export(export_all):
    from mesed_build.bench.loader import load_mesed

    data = load_mesed(export_all["out"] / "mesed")
    assert data.sentences and data.queries3 and data.gold


def test_parquet_loads_with_datasets(export_all, mesed, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    root = export_all["out"] / "parquet"

    def load(pattern):
        return datasets.load_dataset("parquet", data_files={"train": str(root / pattern)},
                                     cache_dir=str(tmp_path / "hf"))["train"]

    sentences = load("data/sentences.parquet")
    assert sentences.num_rows == len(mesed["sentences"])
    by_id = {s["sentence_id"]: s for s in mesed["sentences"]}
    for row in sentences:
        line = by_id[row["sentence_id"]]
        assert row["tokens"] == line["tokens"]
        assert [(m["entity_id"], m["start"], m["end"]) for m in row["mentions"]] == \
            [(m["entityId"], m["start"], m["end"]) for m in line["entityMentions"]]
        assert row["image_path"] == line["image"]
    entities = load("data/entities.parquet")
    assert sorted(entities["eid"]) == sorted(mesed["eid2name"])
    images = load("data/images/*.parquet")
    with_image = {Path(s["image"]).stem for s in mesed["sentences"] if s["image"]}
    assert sorted(images["sha256"]) == sorted(with_image)
    for row in images:
        picture = row["image"]  # decoded by the Image feature
        assert picture.size == (row["width"], row["height"])
        assert row["licence"] and row["source_url"].startswith("https://")
    queries = load("data/queries.parquet")
    assert queries.num_rows == sum(map(len, mesed["queries3"].values())) + sum(map(len, mesed["queries5"].values()))
    gt = load("data/gt.parquet")
    assert gt.num_rows == sum(map(len, mesed["gt"].values()))
    # the card's configs name every non-empty table
    front = yaml.safe_load((root / "README.md").read_text(encoding="utf-8").split("---")[1])
    configs = {c["config_name"] for c in front["configs"]}
    assert {"sentences", "entities", "images", "classes", "queries", "gt", "annotations"} == configs
    classes = datasets.load_dataset(str(root), "classes", cache_dir=str(tmp_path / "hf"))["train"]
    assert {"top", "coarse", "fine"} == set(classes["level"])


def test_webdataset_reads_the_shards(export_all, mesed):
    wds = pytest.importorskip("webdataset")
    root = export_all["out"] / "webdataset"
    manifest = json.loads((root / "shards.json").read_text())
    shards = sorted(root.glob("shard-*.tar"))
    assert [p.name for p in shards] == [s["name"] for s in manifest["shards"]]
    assert len(shards) > 1  # 200KB shards
    for entry in manifest["shards"]:
        assert (root / entry["name"]).stat().st_size == entry["bytes"]
        if entry["samples"] > 1:
            # no shard passes the size (plus tar's end blocks) unless one sample alone does
            assert entry["bytes"] <= 200_000 + 10_240
    # the brace pattern of shards.json, as webdataset expands it
    pattern = str(root / manifest["pattern"])
    samples = list(wds.WebDataset(pattern, shardshuffle=False).decode("pil"))
    assert len(samples) == len(mesed["sentences"])
    by_id = {s["sentence_id"]: s for s in mesed["sentences"]}
    for sample in samples:
        line = by_id[sample["__key__"]]
        record = sample["json"]
        assert record["tokens"] == line["tokens"]
        assert [(m["entity_id"], m["start"], m["end"]) for m in record["mentions"]] == \
            [(m["entityId"], m["start"], m["end"]) for m in line["entityMentions"]]
        if line["image"]:
            assert sample["jpg"].size[0] > 0 and record["image_sha256"] == Path(line["image"]).stem
            assert record["image_licence"]
        else:
            assert "jpg" not in sample and record["image_sha256"] is None


def test_dataset_card(export_all, export_build):
    card = (export_all["out"] / "mesed" / "README.md").read_text(encoding="utf-8")
    store = store_of(export_build)
    try:
        n_fine = store.count(st.classes, st.classes.c.level == "fine")
        n_sentences = store.count(st.sentences)
        n_entities = len({int(r[0]) for r in store.engine.connect().execute(sa.select(st.mentions.c.page_id))})
    finally:
        store.close()
    table2 = next(line for line in card.splitlines() if line.startswith("| demo |"))
    cells = [c.strip() for c in table2.strip("|").split("|")]
    assert cells[1] == str(n_fine)
    assert cells[3] == "3 / 5"
    assert cells[4] == str(n_entities) and cells[5] == str(n_sentences)
    assert cells[6].startswith("yes")
    for heading in ("## Class hierarchy", "## Entities per fine class", "## Vocabulary by kind",
                    "## Image relevance (the paper's Table 1)", "## Dropped items by reason", "## Build manifest",
                    "## Licences and attribution"):
        assert heading in card
    assert "- **Location**" in card and "    - Countries In Europe" in card
    assert "| Re-ranking |" in card  # annotations exist
    assert "export/image_none_fits | 1" in card
    assert "CC BY-SA" in card
    articles = (export_all["out"] / "mesed" / "attribution" / "articles.tsv").read_text().splitlines()
    assert len(articles) - 1 == len({s["article_page_id"] for s in read_mesed(export_all["out"] / "mesed")["sentences"]})
    images = (export_all["out"] / "mesed" / "attribution" / "images.tsv").read_text().splitlines()
    assert all(len(line.split("\t")) == 6 for line in images)
