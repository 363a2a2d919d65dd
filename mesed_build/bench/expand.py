"""ProbExpan window search and re-ranking (MULTIEXPAN.md section 5), for any number of seeds.

Entities are rows 0..V-1 (sorted eids). Each entity e has l_e, the mean log-probability vector, and
q_e, the mean probability vector, over all its sentences. All classes expand jointly: each round,
every class (in a fixed order) takes one entity that no class holds yet.

`expand_joint` caches the z-normalised l_e, keeps each class's score vector as a running sum, and
computes the KL divergences in closed form from cached row sums of log q (O(|set|) per candidate
instead of O(V)). `expand_joint_naive` is the straightforward transcription, kept as the reference
the fast version is tested and benchmarked against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

TARGET_SIZE = 105
TARGET_SIZE_MODE0 = 203
MU = 9.0
# set-position weights of the target distribution: (positions up to, weight)
WINDOW_WEIGHTS = ((41, 1000.0), (75, 500.0), (None, 300.0))
RERANK_WEIGHTS = ((20, 1600.0), (35, 900.0), (70, 600.0), (None, 150.0))
EPS = 1e-30


def window_size(rounds: int, init: int = 1, grow_step: int = 20, grow_rate: float = 2.5) -> int:
    """Candidates searched in round `rounds` (0-based count of entities added so far)."""
    if rounds >= 100:
        return 1
    if rounds < grow_step:
        return init
    if rounds < 50:
        return int(init + rounds / grow_step * grow_rate)
    return int(init + rounds / grow_step * grow_rate * 1.25)


def standardize_rows(log_probs: np.ndarray) -> np.ndarray:
    mean = log_probs.mean(axis=1, keepdims=True)
    std = log_probs.std(axis=1, keepdims=True)
    return ((log_probs - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _position_weights(length: int, table) -> np.ndarray:
    weights = np.empty(length, dtype=np.float64)
    start = 0
    for end, w in table:
        stop = length if end is None else min(end, length)
        weights[start:stop] = w
        start = stop
        if start >= length:
            break
    return weights


def _kl_dense(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.stats.entropy(p, q): both normalised, sum p log(p / q)."""
    p = p / p.sum()
    q = np.maximum(q, EPS)
    q = q / q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


class _KLCache:
    """KL(target || q_c) where the target is m everywhere except a few positions, in O(#special)."""

    def __init__(self, probs: np.ndarray):
        # float32 storage ([V, V] twice is ~1.7 GB at MESED scale); the row sums are taken in float64
        self.q = np.maximum(probs, np.float32(1e-30)).astype(np.float32, copy=False)
        self.q_sum = self.q.sum(axis=1, dtype=np.float64)
        self.log_q = np.log(self.q)
        self.log_q_sum = self.log_q.sum(axis=1, dtype=np.float64)
        self.mean = self.q_sum / self.q.shape[1]
        self.vocab = probs.shape[1]

    def kl(self, c: int, positions: np.ndarray, values: np.ndarray) -> float:
        """Target: mean(q_c) everywhere, `values` at `positions` (distinct). Normalised like scipy."""
        m = self.mean[c]
        n_rest = self.vocab - len(positions)
        total = n_rest * m + values.sum()
        sum_plogp = n_rest * m * np.log(m) + np.sum(values * np.log(values))
        log_qc = self.log_q[c, positions].astype(np.float64)
        sum_plogq = m * (self.log_q_sum[c] - log_qc.sum()) + np.sum(values * log_qc)
        return float((sum_plogp - sum_plogq) / total - np.log(total) + np.log(self.q_sum[c]))


def _top_available(scores: np.ndarray, available: np.ndarray, w: int) -> np.ndarray:
    """Indices of the w best available scores, best first; ties go to the lower index."""
    masked = np.where(available, scores, -np.inf)
    n_avail = int(available.sum())
    w = min(w, n_avail)
    if w <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-masked, w - 1)[:w] if w < len(masked) else np.arange(len(masked))
    # argpartition may cut a tie arbitrarily; widen to every index tied with the w-th score
    cut = masked[part].min()
    tied = np.flatnonzero(masked >= cut)
    order = tied[np.lexsort((tied, -masked[tied]))]
    return order[:w]


def _rerank(cache: _KLCache, full_set: list[int], n_seeds: int, mu: float) -> list[int]:
    expanded = full_set[n_seeds:]
    if not expanded:
        return []
    positions = np.asarray(full_set, dtype=np.int64)
    weights = _position_weights(len(full_set), RERANK_WEIGHTS)
    kls = []
    for e in expanded:
        # the reference first sets target[e] = q_e[e], then the set positions (which include e) override it
        kls.append(cache.kl(e, positions, cache.mean[e] * weights))
    scores = np.array([mu / r for r in range(1, len(expanded) + 1)])
    for j, r in enumerate(np.argsort(np.asarray(kls), kind="stable")):
        scores[r] += 1.0 / (j + 1)
    order = np.argsort(-scores, kind="stable")
    return [expanded[i] for i in order]


def expand_joint(
    log_probs: np.ndarray | None,
    probs: np.ndarray,
    seed_sets: Sequence[Sequence[int]],
    target_size: int | Sequence[int],
    mu: float = MU,
    rerank: bool = True,
    standardized: np.ndarray | None = None,
    kl_cache: _KLCache | None = None,
) -> list[list[int]]:
    """Expand every class jointly to `target_size` (seeds included); return each class's new rows.

    Each returned list has target_size - len(seeds) rows (fewer only if the vocabulary runs out),
    never contains a seed, and no row appears in two classes. `target_size` may be one size per class.
    """
    z = standardized if standardized is not None else standardize_rows(log_probs)
    cache = kl_cache if kl_cache is not None else _KLCache(probs)
    targets = [target_size] * len(seed_sets) if isinstance(target_size, int) else list(target_size)
    vocab = z.shape[0]
    available = np.ones(vocab, dtype=bool)
    sets = [list(s) for s in seed_sets]
    for s in sets:
        available[s] = False
    sums = [z[s].sum(axis=0, dtype=np.float64) if len(s) else np.zeros(vocab) for s in sets]
    rounds = 0
    while available.any() and any(len(s) < t for s, t in zip(sets, targets)):
        w = window_size(rounds)
        rounds += 1
        for i, current in enumerate(sets):
            if len(current) >= targets[i] or not available.any():
                continue
            candidates = _top_available(sums[i], available, w)
            set_positions = np.asarray(current, dtype=np.int64)
            set_weights = _position_weights(len(current), WINDOW_WEIGHTS)
            best, best_kl = -1, np.inf
            for c in candidates:
                positions = np.append(set_positions, c)
                values = np.append(cache.mean[c] * set_weights, float(cache.q[c, c]))
                kl = cache.kl(c, positions, values)
                if kl < best_kl or best < 0:
                    best, best_kl = int(c), kl
            current.append(best)
            available[best] = False
            sums[i] += z[best]
    n_seeds = [len(s) for s in seed_sets]
    if not rerank:
        return [s[n:] for s, n in zip(sets, n_seeds)]
    return [_rerank(cache, s, n, mu) for s, n in zip(sets, n_seeds)]


def expand_joint_naive(
    log_probs: np.ndarray,
    probs: np.ndarray,
    seed_sets: Sequence[Sequence[int]],
    target_size: int,
    mu: float = MU,
    rerank: bool = True,
) -> list[list[int]]:
    """Straightforward section 5: re-standardise and re-sum every round, dense KL over all V entries."""
    vocab = log_probs.shape[0]
    sets = [list(s) for s in seed_sets]
    n_seeds = [len(s) for s in seed_sets]
    taken = {e for s in sets for e in s}
    rounds = 0
    while len(taken) < vocab and any(len(s) < target_size for s in sets):
        w = window_size(rounds)
        rounds += 1
        for current in sets:
            if len(current) >= target_size or len(taken) >= vocab:
                continue
            scores = np.zeros(vocab)
            for e in current:
                row = log_probs[e]
                scores += (row - row.mean()) / (row.std() or 1.0)
            best, best_kl, seen = -1, np.inf, 0
            for c in np.argsort(-scores, kind="stable"):
                if seen >= w:
                    break
                if c in taken:
                    continue
                seen += 1
                q = probs[c].astype(np.float64)
                target = np.full(vocab, q.mean())
                target[c] = q[c]
                target[current] = q.mean() * _position_weights(len(current), WINDOW_WEIGHTS)
                kl = _kl_dense(target, q)
                if kl < best_kl or best < 0:
                    best, best_kl = int(c), kl
            current.append(best)
            taken.add(best)
    if not rerank:
        return [s[n:] for s, n in zip(sets, n_seeds)]
    out = []
    for current, n in zip(sets, n_seeds):
        expanded = current[n:]
        kls = []
        for e in expanded:
            q = probs[e].astype(np.float64)
            target = np.full(vocab, q.mean())
            target[e] = q[e]
            target[current] = q.mean() * _position_weights(len(current), RERANK_WEIGHTS)
            kls.append(_kl_dense(target, q))
        scores = np.array([mu / r for r in range(1, len(expanded) + 1)])
        for j, r in enumerate(np.argsort(np.asarray(kls), kind="stable")):
            scores[r] += 1.0 / (j + 1)
        out.append([expanded[i] for i in np.argsort(-scores, kind="stable")])
    return out


def entity_distributions(model, prepared, image_store=None, device: str = "cpu", batch_size: int = 64,
                         progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean log-probability and mean probability vectors over all of each entity's sentences, eval mode."""
    import torch
    from tqdm import tqdm

    from mesed_build.bench.samples import collate

    vocab = prepared.num_entities
    sum_log = torch.zeros(vocab, vocab, dtype=torch.float32, device=device)
    sum_prob = torch.zeros(vocab, vocab, dtype=torch.float32, device=device)
    counts = torch.zeros(vocab, dtype=torch.float32, device=device)
    order = sorted(range(len(prepared.samples)), key=lambda i: len(prepared.samples[i].input_ids))
    use_images = model.cfg.use_images
    was_training = model.training
    model.eval()
    show = progress if progress is not None else os.isatty(2)
    with torch.inference_mode(), torch.autocast(
        device_type="cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda")
    ):
        for start in tqdm(range(0, len(order), batch_size), desc="entity distributions", disable=not show):
            chunk = [prepared.samples[i] for i in order[start : start + batch_size]]
            batch = collate(chunk, prepared.pad_id, image_store if use_images else None, device)
            log_probs = model.mep_log_probs(batch).float()
            rows = batch["entities"]
            sum_log.index_add_(0, rows, log_probs)
            sum_prob.index_add_(0, rows, log_probs.exp())
            counts.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float32))
    model.train(was_training)
    counts = counts.clamp_min(1).unsqueeze(1)
    return (sum_log / counts).cpu().numpy(), (sum_prob / counts).cpu().numpy()


def expand_queries(
    log_probs: np.ndarray,
    probs: np.ndarray,
    eids: list[int],
    queries: dict[str, list[list[int]]],
    target_size: int,
    mu: float = MU,
    warnings: list[str] | None = None,
) -> list[tuple[str, list[int], list[int]]]:
    """Run the joint expansion once per query index; return (class, seed eids, ranked eids) per query.

    Seeds the model has no row for (entities dropped for too few sentences) cannot steer the
    expansion; they are still reported as seeds and never returned.
    """
    eid2row = {eid: i for i, eid in enumerate(eids)}
    names = sorted(queries)
    z = standardize_rows(log_probs)
    cache = _KLCache(probs)
    n_queries = max((len(queries[n]) for n in names), default=0)
    results = []
    for index in range(n_queries):
        active = [n for n in names if index < len(queries[n])]
        seed_rows = []
        for n in active:
            rows = [eid2row[e] for e in queries[n][index] if e in eid2row]
            if warnings is not None and len(rows) < len(queries[n][index]):
                warnings.append(f"query {index + 1} of {n!r}: {len(queries[n][index]) - len(rows)} seed(s) have no usable sentences")
            seed_rows.append(rows)
        # a class keeps target_size - (its seed count) outputs even when a seed has no row
        targets = [target_size - len(queries[n][index]) + len(r) for n, r in zip(active, seed_rows)]
        out = expand_joint(None, probs, seed_rows, targets, mu, standardized=z, kl_cache=cache)
        for n, ranked in zip(active, out):
            results.append((n, list(queries[n][index]), [eids[r] for r in ranked]))
    return results
