"""BM25 over Wikipedia titles with an inverted index: rank-bm25's BM25Okapi scores, without scanning every title.

`rank_bm25.BM25Okapi.get_scores` scores all N documents for every query (about 0.2 s per
query at a million titles). Here each query only touches the documents that share a token
with it, and a MaxScore bound skips the postings of common tokens ("of", "the") whenever
they cannot lift a document into the top k. The arithmetic is the same, operation for
operation, as rank-bm25's (same idf with the epsilon floor, same term-weight expression,
same accumulation order over the query's tokens), so scores are bit-identical and the top k,
ties broken by document order, equals brute force. tests/vocab/test_bm25.py proves it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)

# bound sums are compared with a margin so that float rounding can never prune a true top-k doc
_BOUND_MARGIN = 1e-9


def tokenize_title(title: str) -> list[str]:
    """Lower-cased word tokens of a title: 'W. H. R. Rivers (anthropologist)' -> ['rivers', 'anthropologist'].

    Single characters (initials, 'C' of 'C++') are left out: sharing one makes no hard negative.
    """
    return [t for t in _TOKEN.findall(title.lower()) if len(t) > 1]


@dataclass(frozen=True)
class Hit:
    key: Hashable  # the caller's id for the title (a page id)
    title: str
    score: float
    doc: int  # position in the index (the tie-breaker)


class TitleIndex:
    """An inverted index over titles, scored with rank-bm25's BM25Okapi (k1=1.5, b=0.75, epsilon=0.25)."""

    def __init__(
        self,
        titles: Sequence[str],
        keys: Sequence[Hashable] | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        tokenizer=tokenize_title,
    ):
        if keys is not None and len(keys) != len(titles):
            raise ValueError(f"TitleIndex: {len(titles)} titles but {len(keys)} keys")
        if not titles:
            raise ValueError("TitleIndex: no titles to index")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.tokenizer = tokenizer
        self.titles = list(titles)
        self.keys = list(keys) if keys is not None else list(range(len(titles)))
        self._doc_of_key: dict[Hashable, int] | None = None
        # documents never returned by any query (e.g. every target entity); still part of the corpus statistics
        self.blocked = np.zeros(len(self.titles), dtype=bool)

        # term ids in order of first appearance: the insertion order of rank-bm25's `nd` dict,
        # which fixes the summation order of its average idf
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        doc_len = np.empty(len(titles), dtype=np.int64)
        for d, title in enumerate(self.titles):
            tokens = tokenizer(title)
            doc_len[d] = len(tokens)
            for tok in tokens:
                tid = vocab.get(tok)
                if tid is None:
                    tid = vocab[tok] = len(vocab)
                term_ids.append(tid)
        self.vocab = vocab
        n_docs = len(titles)
        self.corpus_size = n_docs
        self.doc_len = doc_len
        self.avgdl = int(doc_len.sum()) / n_docs  # rank-bm25: num_doc / corpus_size

        terms = np.asarray(term_ids, dtype=np.int64)
        docs = np.repeat(np.arange(n_docs, dtype=np.int64), doc_len)
        # one posting per (term, doc) with its frequency, sorted by term then doc
        pair, tf = np.unique(terms * n_docs + docs, return_counts=True)
        post_term = pair // n_docs
        self.post_doc = (pair % n_docs).astype(np.int64)
        self.offsets = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(post_term, minlength=len(vocab)), out=self.offsets[1:])

        # idf exactly as BM25Okapi._calc_idf: math.log, summed in first-appearance order
        df = np.diff(self.offsets).tolist()
        idf = [0.0] * len(vocab)
        idf_sum = 0.0
        negative = []
        for tid, freq in enumerate(df):
            value = math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
            idf[tid] = value
            idf_sum += value
            if value < 0:
                negative.append(tid)
        self.average_idf = idf_sum / len(idf) if idf else 0.0
        eps = epsilon * self.average_idf
        for tid in negative:
            idf[tid] = eps
        self.idf = np.asarray(idf, dtype=np.float64)

        # each posting's contribution idf * weight, with the term weight computed by the same expression, in the
        # same operation order, as BM25Okapi.get_scores (so the float results are identical)
        q_freq = tf.astype(np.int64)
        dl = doc_len[self.post_doc]
        weight = (q_freq * (k1 + 1)) / (q_freq + k1 * (1 - b + b * dl / self.avgdl))
        self.post_contrib = self.idf[post_term] * weight
        del weight, dl, q_freq, post_term, pair, tf, terms, docs
        # per-term largest contribution: the MaxScore bound
        nonempty = self.offsets[:-1] < self.offsets[1:]
        self.max_contrib = np.zeros(len(vocab), dtype=np.float64)
        self.max_contrib[nonempty] = np.maximum.reduceat(self.post_contrib, self.offsets[:-1][nonempty])
        # scratch score accumulator, zero between queries (so an index serves one query at a time)
        self._acc = np.zeros(n_docs, dtype=np.float64)

    def __len__(self) -> int:
        return self.corpus_size

    def doc_of(self, key: Hashable) -> int | None:
        if self._doc_of_key is None:
            self._doc_of_key = {k: d for d, k in enumerate(self.keys)}
        return self._doc_of_key.get(key)

    def block(self, keys: Iterable[Hashable]) -> int:
        """Never return these keys' documents (they keep counting for idf and avgdl); returns how many were found."""
        docs = [d for d in (self.doc_of(k) for k in keys) if d is not None]
        self.blocked[docs] = True
        return len(docs)

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[tid], self.offsets[tid + 1]
        return self.post_doc[lo:hi], self.post_contrib[lo:hi]

    def _score(self, query_tids: list[int], candidates: np.ndarray) -> np.ndarray:
        """Exact BM25Okapi scores of sorted candidate docs, accumulated in query-token order like rank-bm25."""
        score = np.zeros(len(candidates), dtype=np.float64)
        for tid in query_tids:
            docs, contrib = self._postings(tid)
            pos = np.minimum(np.searchsorted(docs, candidates), len(docs) - 1)
            present = docs[pos] == candidates
            # an absent token adds idf * 0.0 in rank-bm25, which leaves the sum unchanged
            score[present] += contrib[pos[present]]
        return score

    def _allowed(self, docs: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        mask = ~self.blocked[docs]
        if len(excluded) > 16:
            mask &= ~np.isin(docs, excluded)
        else:
            for doc in excluded:  # a few per query: cheaper than np.isin's sort
                mask &= docs != doc
        return mask

    def top_k_docs(self, query: str | Sequence[str], k: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The k best (doc, score) pairs with score > 0, best first, ties by doc position; `exclude` docs never returned."""
        tokens = self.tokenizer(query) if isinstance(query, str) else list(query)
        query_tids = [self.vocab[t] for t in tokens if t in self.vocab]
        if not query_tids or k <= 0:
            return []
        excluded = np.unique(np.fromiter(exclude, dtype=np.int64))
        offsets = self.offsets
        unique_tids = sorted(set(query_tids), key=lambda t: (offsets[t + 1] - offsets[t], t))
        bound = {t: max(0.0, query_tids.count(t) * float(self.max_contrib[t])) for t in unique_tids}

        # phase 1: a threshold, the k-th best exact score among the documents of the rarest token(s)
        threshold = 0.0
        seed_docs: list[np.ndarray] = []
        seen = 0
        for tid in unique_tids[:-1]:
            docs, _ = self._postings(tid)
            seed_docs.append(docs)
            seen += len(docs)
            if seen >= k + len(excluded) + 8:
                break
        if seen >= k:
            sample = np.unique(np.concatenate(seed_docs)) if len(seed_docs) > 1 else seed_docs[0]
            scores = self._score(query_tids, sample)
            keep = (scores > 0) & self._allowed(sample, excluded)
            if keep.sum() >= k:
                threshold = float(np.partition(scores[keep], -k)[-k])

        # phase 2 (MaxScore): tokens whose bounds together stay below the threshold cannot lift a document
        # into the top k on their own; only documents holding an essential token are candidates
        essential = set(unique_tids)
        if threshold > 0:
            total = 0.0
            for tid in sorted(unique_tids, key=lambda t: (bound[t], -t)):
                if (total + bound[tid]) * (1 + _BOUND_MARGIN) >= threshold:
                    break
                total += bound[tid]
                essential.discard(tid)
        parts = [self._postings(t)[0] for t in unique_tids if t in essential]
        candidates = np.concatenate(parts) if len(parts) > 1 else parts[0]  # a doc may appear once per token

        # exact scores: add every token's contribution in query order, like rank-bm25 (essential tokens over
        # their whole posting list, the others only where they meet a candidate)
        acc = self._acc
        try:
            for tid in query_tids:
                docs, contrib = self._postings(tid)
                if tid in essential:
                    acc[docs] += contrib  # a posting list holds each doc once
                else:
                    pos = np.minimum(np.searchsorted(docs, candidates), len(docs) - 1)
                    present = docs[pos] == candidates
                    # a candidate listed twice gets the same value written twice: added once
                    acc[candidates[present]] += contrib[pos[present]]
            scores = acc[candidates]
        finally:
            acc[candidates] = 0.0
        keep = (scores > 0) & self._allowed(candidates, excluded)
        candidates, scores = candidates[keep], scores[keep]
        # the top k distinct docs lie among the k * (essential tokens) best entries (and their ties)
        n = k * len(parts)
        if len(candidates) > n:
            kth = np.partition(scores, -n)[-n]
            keep = scores >= kth
            candidates, scores = candidates[keep], scores[keep]
        order = np.lexsort((candidates, -scores))
        candidates, scores = candidates[order], scores[order]
        first = np.ones(len(candidates), dtype=bool)
        first[1:] = candidates[1:] != candidates[:-1]
        candidates, scores = candidates[first][:k], scores[first][:k]
        return [(int(d), float(x)) for d, x in zip(candidates, scores)]

    def top_k(self, query: str | Sequence[str], k: int, exclude_keys: Iterable[Hashable] = ()) -> list[Hit]:
        """The k best titles for a query (a title or its tokens), never one whose key is in exclude_keys."""
        exclude = [d for d in (self.doc_of(key) for key in exclude_keys) if d is not None]
        return [
            Hit(self.keys[d], self.titles[d], score, d) for d, score in self.top_k_docs(query, k, exclude)
        ]


def brute_force_top_k(bm25, query_tokens: Sequence[str], k: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
    """Reference top-k from a rank_bm25.BM25Okapi over the same titles: score every doc, same ordering rules."""
    scores = np.asarray(bm25.get_scores(list(query_tokens)), dtype=np.float64)
    docs = np.arange(len(scores))
    keep = scores > 0
    excluded = np.fromiter(exclude, dtype=np.int64)
    if len(excluded):
        keep &= ~np.isin(docs, excluded)
    docs, scores = docs[keep], scores[keep]
    order = np.lexsort((docs, -scores))[:k]
    return [(int(docs[i]), float(scores[i])) for i in order]
