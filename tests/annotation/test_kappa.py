"""Fleiss' kappa against the worked example and an independent implementation (statsmodels)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from annotation.kappa import fleiss_kappa

# The worked example of Fleiss' kappa (Wikipedia, "Fleiss' kappa"): 14 raters put 10 subjects
# into 5 categories; its published result is kappa = 0.210.
TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_worked_example_by_hand():
    # worked out by hand: column totals 20, 28, 39, 21, 32 of N*n = 140 ratings
    p_e = Fraction(20**2 + 28**2 + 39**2 + 21**2 + 32**2, 140**2)  # 4170 / 19600
    # per subject sum(n_ij^2) - n: 196-14, 60-14, 70-14, 94-14, 74-14, 98-14, 58-14, 46-14, 66-14, 66-14
    agreeing_pairs = 182 + 46 + 56 + 80 + 60 + 84 + 44 + 32 + 52 + 52  # 688
    p_bar = Fraction(agreeing_pairs, 10 * 14 * 13)  # 688 / 1820
    expected = (p_bar - p_e) / (1 - p_e)
    assert float(p_bar) == pytest.approx(0.378, abs=5e-4)
    assert float(p_e) == pytest.approx(0.213, abs=5e-4)
    assert fleiss_kappa(TABLE) == pytest.approx(float(expected), abs=1e-12)
    assert fleiss_kappa(TABLE) == pytest.approx(0.210, abs=5e-4)  # the published value


def test_agrees_with_statsmodels_on_three_label_tables():
    tables = [
        [[3, 0, 0], [0, 3, 0], [2, 1, 0], [0, 0, 3], [1, 1, 1], [3, 0, 0]],
        [[2, 0, 0], [1, 1, 0], [0, 2, 0], [0, 0, 2], [2, 0, 0]],
        [[4, 0, 1], [0, 5, 0], [1, 1, 3], [5, 0, 0]],
    ]
    for table in tables:
        assert fleiss_kappa(table) == pytest.approx(statsmodels_fleiss(table, method="fleiss"), abs=1e-12)


def test_perfect_agreement_is_one_and_undefined_cases_are_none():
    assert fleiss_kappa([[3, 0, 0], [0, 3, 0], [0, 0, 3]]) == pytest.approx(1.0)
    assert fleiss_kappa([[3, 0, 0], [3, 0, 0]]) is None  # all in one category: chance agreement is total
    assert fleiss_kappa([]) is None


def test_rejects_rows_with_different_rater_counts():
    with pytest.raises(ValueError, match="row 1 has 2"):
        fleiss_kappa([[3, 0, 0], [1, 1, 0]])
    with pytest.raises(ValueError, match="at least 2"):
        fleiss_kappa([[1, 0, 0]])
