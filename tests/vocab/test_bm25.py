"""The inverted-index BM25 returns exactly brute-force rank-bm25's top k, on real Wikipedia titles."""

from __future__ import annotations

import importlib.resources
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from mesed_build.vocab.bm25 import TitleIndex, brute_force_top_k, tokenize_title
from mesed_build.wiki.dump import iter_dump_pages, outgoing_links

DUMP = importlib.resources.files("gensim") / "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@pytest.fixture(scope="module")
def real_titles() -> list[str]:
    """Every article title of the real dump excerpt and every title its articles link to (~21k)."""
    titles: dict[str, None] = {}
    for page in iter_dump_pages(str(DUMP)):
        if page.namespace == 0:
            titles[page.title] = None
            titles.update(dict.fromkeys(sorted(outgoing_links(page.text)[0])))
    return list(titles)


@pytest.fixture(scope="module")
def indexes(real_titles):
    return TitleIndex(real_titles), BM25Okapi([tokenize_title(t) for t in real_titles])


def test_tokenizer():
    assert tokenize_title("W. H. R. Rivers (anthropologist)") == ["rivers", "anthropologist"]
    assert tokenize_title("Søren Kierkegaard") == ["søren", "kierkegaard"]


def test_same_idf_and_weights_as_rank_bm25(indexes):
    index, brute = indexes
    assert index.avgdl == brute.avgdl
    assert index.average_idf == brute.average_idf
    for token in ("of", "river", "aristotle", "the"):
        assert index.idf[index.vocab[token]] == brute.idf[token]


def test_top_k_equals_brute_force_on_real_titles(indexes, real_titles):
    index, brute = indexes
    rng = random.Random(7)
    queries = rng.sample(real_titles, 100) + ["List of the Kings of the United States of America",
                                               "of the", "river river river", "Nonexistentword Aristotle"]
    checked_ties = 0
    for query in queries:
        exclude = [rng.randrange(len(real_titles)) for _ in range(rng.randrange(4))]
        if query in index.keys:
            exclude.append(index.doc_of(query))  # a target never retrieves itself
        want = brute_force_top_k(brute, tokenize_title(query), 20, exclude)
        for k in (1, 5, 20):  # brute force's top k is a prefix of its top 20
            assert index.top_k_docs(query, k, exclude) == want[:k], (query, k)
        scores = [s for _, s in want]
        checked_ties += len(scores) != len(set(scores))
    assert checked_ties > 10  # tied scores occur and are ordered the same way


def test_common_tokens_are_pruned_without_changing_the_answer(indexes):
    index, brute = indexes
    query = "History of the United States"
    of = index.vocab["of"]
    assert index.offsets[of + 1] - index.offsets[of] > 1000  # a long posting list that MaxScore can skip
    assert index.top_k_docs(query, 5) == brute_force_top_k(brute, tokenize_title(query), 5)


def test_blocked_documents_are_never_returned_but_still_counted(indexes, real_titles):
    index, brute = indexes
    query = "Aristotle"
    first = index.top_k(query, 3)
    blocked = TitleIndex(real_titles)
    blocked.block([first[0].key])
    again = blocked.top_k(query, 3)
    assert first[0].key not in [h.key for h in again]
    assert [h.key for h in again] == [h.key for h in first[1:]] + [index.top_k(query, 4)[3].key]
    # blocking changes no statistics: the scores are the unblocked ones
    assert again[0].score == first[1].score


def test_queries_without_known_tokens_and_small_corpora():
    index = TitleIndex(["Austin, Texas", "Austin College", "Aberdeen"], ["a", "b", "c"])
    assert index.top_k("Zzyzx", 5) == []
    hits = index.top_k("Austin", 5, exclude_keys=["a"])
    assert [h.key for h in hits] == ["b"]
    brute = BM25Okapi([tokenize_title(t) for t in index.titles])
    # 2 of 3 titles hold 'austin': its idf is negative and floored at epsilon * average idf, like rank-bm25
    assert index.idf[index.vocab["austin"]] == brute.idf["austin"]
    assert index.top_k_docs("Austin", 5) == brute_force_top_k(brute, ["austin"], 5)
    with pytest.raises(ValueError, match="no titles"):
        TitleIndex([])
    assert np.all(index.max_contrib > 0)
