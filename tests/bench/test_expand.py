"""ProbExpan window search and re-ranking (MULTIEXPAN.md section 5)."""

from __future__ import annotations

import numpy as np
import pytest

from mesed_build.bench.expand import (
    expand_joint,
    expand_joint_naive,
    expand_queries,
    standardize_rows,
    window_size,
)


def _distributions(vocab: int, seed: int = 0, classes: int = 4):
    """Entity distributions with class structure: entity e puts extra mass on its class's block."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (vocab, vocab))
    block = vocab // classes
    for e in range(classes * block):
        c = e // block
        logits[e, c * block : (c + 1) * block] += 3.0
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return log_probs.astype(np.float32), np.exp(log_probs).astype(np.float32)


def test_window_schedule():
    # 1 for 20 rounds, int(1 + r/20*2.5) below 50, int(1 + r/20*3.125) below 100, then 1 again
    assert [window_size(r) for r in (0, 19)] == [1, 1]
    assert window_size(20) == 3  # 1 + 2.5
    assert window_size(49) == 7  # int(1 + 6.125)
    assert window_size(50) == 8  # int(1 + 7.8125)
    assert window_size(99) == 16  # int(1 + 15.46875)
    assert window_size(100) == 1


def test_standardize_rows():
    rows = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = standardize_rows(rows)
    sd = np.sqrt(2 / 3)  # population std of 1, 2, 3
    assert z[0] == pytest.approx([-1 / sd, 0, 1 / sd], rel=1e-6)
    assert z[1] == pytest.approx([0, 0, 0])  # a constant row stays finite


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_expansion_sizes_no_seeds_no_duplicates_one_class_each(n_seeds):
    log_probs, probs = _distributions(200)
    seeds = [[c * 50 + i for i in range(n_seeds)] for c in range(4)]
    target = 40
    out = expand_joint(log_probs, probs, seeds, target)
    assert [len(o) for o in out] == [target - n_seeds] * 4
    everything = [e for o in out for e in o]
    assert len(everything) == len(set(everything))  # no duplicates, each entity in at most one class
    assert not set(everything) & {s for ss in seeds for s in ss}
    # with this much class structure, most of each expansion is the seeds' block
    for c, o in enumerate(out):
        assert sum(c * 50 <= e < (c + 1) * 50 for e in o) >= 0.8 * len(o)


def test_cached_expansion_equals_the_straightforward_one():
    log_probs, probs = _distributions(160, seed=3)
    seeds = [[0, 1, 2], [40, 41, 42], [80, 81, 82], [120, 121, 122]]
    # target 35 reaches round 32, where the window is int(1 + 32/20*2.5) = 5 candidates
    fast = expand_joint(log_probs, probs, seeds, 35)
    slow = expand_joint_naive(log_probs, probs, seeds, 35)
    assert fast == slow
    assert expand_joint(log_probs, probs, seeds, 35, rerank=False) == expand_joint_naive(
        log_probs, probs, seeds, 35, rerank=False
    )


def test_rerank_by_mu_over_r_plus_inverse_kl_rank():
    # seeds 0, 1 prefer entity 2, then 3 (window 1 in early rounds): the search order is [2, 3]
    q_seed = [0.3, 0.3, 0.2, 0.1, 0.05, 0.05]
    probs = np.array(
        [q_seed, q_seed, [0.1, 0.1, 0.3, 0.1, 0.2, 0.2], [0.24, 0.24, 0.24, 0.24, 0.02, 0.02],
         [1 / 6] * 6, [1 / 6] * 6],
        dtype=np.float64,
    )
    log_probs = np.log(probs)
    assert expand_joint(log_probs, probs, [[0, 1]], 4, rerank=False)[0] == [2, 3]
    # re-rank target: 1600 m on the set {0, 1, 2, 3}, m elsewhere. The cross-entropy part of KL is
    # dominated by the set: q_3 has 0.24 on each member (4 ln 0.24 = -5.71), q_2 only 0.1, 0.1, 0.3, 0.1
    # (-8.11), so KL ranks 3 first (1/rho = 1) and 2 second (1/2).
    # mu = 0: scores 2 -> 1/2, 3 -> 1;  mu = 9: 2 -> 9/1 + 1/2 = 9.5, 3 -> 9/2 + 1 = 5.5
    assert expand_joint(log_probs, probs, [[0, 1]], 4, mu=0.0)[0] == [3, 2]
    assert expand_joint(log_probs, probs, [[0, 1]], 4, mu=9.0)[0] == [2, 3]


def test_expand_queries_maps_eids_and_handles_unrepresented_seeds():
    log_probs, probs = _distributions(40, classes=2)
    eids = [1000 + i for i in range(40)]
    queries = {"A": [[1000, 1001, 1002]], "B": [[1020, 1021, 99999]]}  # 99999 has no sentences
    warnings: list[str] = []
    out = expand_queries(log_probs, probs, eids, queries, target_size=8, warnings=warnings)
    by_class = {name: (seeds, ranked) for name, seeds, ranked in out}
    assert by_class["B"][0] == [1020, 1021, 99999]
    assert len(by_class["A"][1]) == 5 and len(by_class["B"][1]) == 5  # target 8 minus 3 seeds for both
    assert all(e in eids for _, (_, r) in by_class.items() for e in r)
    assert any("no usable sentences" in w for w in warnings)
