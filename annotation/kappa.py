"""Fleiss' kappa (Fleiss 1971) for items that each got the same number of raters."""

from __future__ import annotations

from collections.abc import Sequence


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """kappa = (P_bar - P_e) / (1 - P_e) for an items x categories table of rating counts.

    Every row must sum to the same number of raters n >= 2. Returns None for an empty table or
    when chance agreement is total (P_e == 1: every rating in one category), where kappa is undefined.
    """
    rows = [list(map(int, r)) for r in table]
    if not rows:
        return None
    n = sum(rows[0])
    if n < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 ratings per item (row 0 has {n})")
    for i, r in enumerate(rows):
        if sum(r) != n:
            raise ValueError(f"Fleiss' kappa needs the same number of ratings per item: row {i} has {sum(r)}, row 0 has {n}")
        if any(x < 0 for x in r):
            raise ValueError(f"row {i}: negative count")
    items = len(rows)
    categories = len(rows[0])
    p_j = [sum(r[j] for r in rows) / (items * n) for j in range(categories)]
    p_i = [(sum(x * x for x in r) - n) / (n * (n - 1)) for r in rows]
    p_bar = sum(p_i) / items
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)
