"""Reference AP@k / "P@k" and textbook P@k against hand-worked examples (MULTIEXPAN.md section 6)."""

from __future__ import annotations

import pytest

from mesed_build.bench.loader import MesedData
from mesed_build.bench.metrics import (
    RankedRecord,
    RankedFileError,
    evaluate_records,
    reference_ap,
    reference_p,
    textbook_p,
)


def test_short_list_hand_worked():
    gold = {1, 2, 3, 4}
    ranked = [1, 9, 2, 8, 3]
    # hits at positions 1, 3, 5: AP sum = 1/1 + 2/3 + 3/5; len(P) = 5 <= 50 so divide by min(|G|=4, k=10) = 4
    assert reference_ap(gold, ranked, 10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)  # 0.5667
    assert reference_p(gold, ranked, 10) == pytest.approx(3 / 4)  # hits / min(|G|, k): recall-like
    assert textbook_p(gold, ranked, 10) == pytest.approx(3 / 10)
    # k = 2: P = [1, 9], one hit at position 1, divide by min(4, 2) = 2
    assert reference_ap(gold, ranked, 2) == pytest.approx(1 / 2)
    assert reference_p(gold, ranked, 2) == pytest.approx(1 / 2)
    assert textbook_p(gold, ranked, 2) == pytest.approx(1 / 2)


def test_len_over_50_quirk_changes_the_number():
    gold = set(range(100))
    ranked = list(range(30)) + list(range(1000, 1030))  # 60 items: 30 hits first, then 30 misses
    # k = 100: len(P) = 60 > 50, so the denominator is min(|G|=100, len(P)=60, k=100) = 60
    # AP sum = 1/1 + 2/2 + ... + 30/30 = 30
    assert reference_ap(gold, ranked, 100) == pytest.approx(30 / 60)  # 0.5; without the quirk 30/100 = 0.3
    assert reference_p(gold, ranked, 100) == pytest.approx(30 / 60)
    assert textbook_p(gold, ranked, 100) == pytest.approx(30 / 100)
    # k = 50: truncated P has exactly 50 items, not > 50: the quirk does not fire
    assert reference_ap(gold, ranked, 50) == pytest.approx(30 / 50)
    assert reference_p(gold, ranked, 50) == pytest.approx(30 / 50)
    # 51 items at k = 100: the quirk fires with len(P) = 51
    ranked51 = list(range(30)) + list(range(1000, 1021))
    assert reference_ap(gold, ranked51, 100) == pytest.approx(30 / 51)


def test_quirk_does_not_fire_when_list_reaches_k():
    gold = set(range(200))
    ranked = list(range(0, 100))  # 100 hits at k = 100: len(P) = 100 = k, denominator min(200, 100, 100) = 100
    assert reference_ap(gold, ranked, 100) == pytest.approx(1.0)
    assert reference_p(gold, ranked, 100) == pytest.approx(1.0)


def test_repeated_entity_counts_once():
    gold = {1, 2}
    # hits at positions 1 and 3 (the repeat at 2 is not a new hit): (1/1 + 2/3) / min(2, 10)
    assert reference_ap(gold, [1, 1, 2], 10) == pytest.approx((1 + 2 / 3) / 2)
    assert textbook_p(gold, [1, 1, 2], 10) == pytest.approx(2 / 10)


def _data(queries3, queries5, gold) -> MesedData:
    names = {e: f"e{e}" for e in range(100)}
    return MesedData(root=None, eid2name=names, sentences=[], queries3=queries3, queries5=queries5, gold=gold,
                     eid2cls={e: [] for e in names})


def test_macro_average_over_classes_then_queries():
    gold = {"A": {1, 2, 3, 4, 5}, "B": {10, 11, 12, 13, 14}}
    q3 = {"A": [[1, 2, 3], [3, 4, 5]], "B": [[10, 11, 12], [12, 13, 14]]}
    records = [
        RankedRecord("A", (1, 2, 3), (4, 5)),  # AP@10 = (1 + 1) / min(5, 10) = 0.4; P@10 = 2/5
        RankedRecord("B", (10, 11, 12), (50, 13)),  # hit at 2: (1/2) / 5 = 0.1; P@10 = 1/5
        RankedRecord("A", (3, 4, 5), (60, 61)),  # 0
        RankedRecord("B", (12, 13, 14), (10, 11)),  # 0.4; P = 0.4
    ]
    result = evaluate_records(_data(q3, {}, gold), records)
    # query 1: (0.4 + 0.1) / 2 = 0.25; query 2: (0 + 0.4) / 2 = 0.2; mean = 0.225
    assert result.seed3["MAP@10"] == pytest.approx(0.225)
    # P@10: query 1 (0.4 + 0.2) / 2 = 0.3; query 2 (0 + 0.4) / 2 = 0.2; mean 0.25
    assert result.seed3["P@10"] == pytest.approx(0.25)
    # textbook: query 1 (2/10 + 1/10) / 2 = 0.15; query 2 (0 + 2/10) / 2 = 0.1; mean 0.125
    assert result.seed3["textbook_P@10"] == pytest.approx(0.125)
    assert result.seed5 is None
    # Avg: lists are short, so MAP@k and P@k do not change with k: (4 * 0.225 + 4 * 0.25) / 8
    assert result.seed3["Avg"] == pytest.approx((0.225 + 0.25) / 2)


def test_seed_count_decides_the_group_and_missing_queries_score_zero():
    gold = {"A": {1, 2, 3, 4, 5, 6}}
    q3 = {"A": [[1, 2, 3]]}
    q5 = {"A": [[1, 2, 3, 4, 5], [2, 3, 4, 5, 6]]}
    records = [RankedRecord("A", (5, 4, 3, 2, 1), (6,))]  # seed order does not matter
    result = evaluate_records(_data(q3, q5, gold), records)
    assert result.seed3 is None
    # the 5-seed query 1 scores 1 / min(6, 10); query 2 is missing and scores 0
    assert result.seed5["MAP@10"] == pytest.approx((1 / 6 + 0) / 2)
    assert result.missing["seed5"] == [("A", 1)]


def test_bad_records_are_rejected_with_their_line():
    gold = {"A": {1, 2, 3, 4}}
    data = _data({"A": [[1, 2, 3]]}, {}, gold)
    with pytest.raises(RankedFileError, match="line 7: seeds"):
        evaluate_records(data, [RankedRecord("A", (1, 2, 9), (4,), line=7)])
    with pytest.raises(RankedFileError, match="contains seed"):
        evaluate_records(data, [RankedRecord("A", (1, 2, 3), (3, 4), line=2)])
    with pytest.raises(RankedFileError, match="class 'Z'"):
        evaluate_records(data, [RankedRecord("Z", (1, 2, 3), (4,), line=1)])
