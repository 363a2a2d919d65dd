"""Scores exactly as the reference computes them (MULTIEXPAN.md section 6), plus textbook P@k.

The reference "P@k" is hits / min(|G|, k), which is recall when the gold set is smaller than k; we
report it under its reference name so numbers stay comparable with the paper, and report the
textbook precision hits / k separately as `textbook_P@k`. The two are never mixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesed_build.bench.loader import MesedData

KS = (10, 20, 50, 100)
QUIRK_MIN_LENGTH = 50  # the reference divides by len(P) too, but only for lists longer than this


def _hits_at(gold: set[int], ranked: Sequence[int], k: int) -> tuple[list[int], list[int]]:
    """Truncated list, and the 1-based positions of new gold hits (a repeat never counts twice)."""
    predicted = list(ranked[:k])
    seen: set[int] = set()
    positions = []
    for i, eid in enumerate(predicted, 1):
        if eid in gold and eid not in seen:
            positions.append(i)
        seen.add(eid)
    return predicted, positions


def _reference_denominator(gold: set[int], predicted: list[int], k: int) -> int:
    if len(predicted) > QUIRK_MIN_LENGTH:
        return min(len(gold), len(predicted), k)
    return min(len(gold), k)


def reference_ap(gold: set[int], ranked: Sequence[int], k: int) -> float:
    """Reference AP@k: sum of hits/i over new hits, over min(|G|, k) (or min(|G|, len(P), k) if len(P) > 50)."""
    if not gold:
        raise ValueError("AP@k is undefined for an empty gold set")
    predicted, positions = _hits_at(gold, ranked, k)
    score = sum(n / i for n, i in enumerate(positions, 1))
    return score / _reference_denominator(gold, predicted, k)


def reference_p(gold: set[int], ranked: Sequence[int], k: int) -> float:
    """The reference's "P@k": hits / min(|G|, k), with the same len(P) > 50 quirk."""
    if not gold:
        raise ValueError("P@k is undefined for an empty gold set")
    predicted, positions = _hits_at(gold, ranked, k)
    return len(positions) / _reference_denominator(gold, predicted, k)


def textbook_p(gold: set[int], ranked: Sequence[int], k: int) -> float:
    """Textbook precision at k: distinct gold hits in the first k, over k."""
    _, positions = _hits_at(gold, ranked, k)
    return len(positions) / k


def query_scores(gold: set[int], ranked: Sequence[int], ks: Iterable[int] = KS) -> dict[str, float]:
    scores: dict[str, float] = {}
    for k in ks:
        scores[f"MAP@{k}"] = reference_ap(gold, ranked, k)
    for k in ks:
        scores[f"P@{k}"] = reference_p(gold, ranked, k)
    for k in ks:
        scores[f"textbook_P@{k}"] = textbook_p(gold, ranked, k)
    return scores


def reference_keys(ks: Iterable[int] = KS) -> list[str]:
    ks = list(ks)
    return [f"MAP@{k}" for k in ks] + [f"P@{k}" for k in ks]


def average_scores(per_query: dict[tuple[str, int], dict[str, float]], ks: Iterable[int] = KS) -> dict[str, float]:
    """Macro mean over classes for each query index, then the mean over query indices.

    `Avg` is the mean of the reference MAP@k and P@k columns (as in the paper's Table 3);
    textbook P@k never enters it.
    """
    if not per_query:
        raise ValueError("no queries to average")
    by_index: dict[int, list[dict[str, float]]] = {}
    for (_, index), scores in per_query.items():
        by_index.setdefault(index, []).append(scores)
    keys = list(next(iter(per_query.values())))
    per_index = [{key: sum(s[key] for s in rows) / len(rows) for key in keys} for rows in by_index.values()]
    result = {key: sum(s[key] for s in per_index) / len(per_index) for key in keys}
    ref = reference_keys(ks)
    result["Avg"] = sum(result[key] for key in ref) / len(ref)
    ordered = {key: result[key] for key in ref}
    ordered["Avg"] = result["Avg"]
    ordered.update({key: result[key] for key in keys if key not in ordered})
    return ordered


@dataclass(frozen=True)
class RankedRecord:
    class_name: str
    seeds: tuple[int, ...]
    ranked: tuple[int, ...]
    line: int = 0


class RankedFileError(ValueError):
    """A ranked.jsonl line does not match the documented format or the dataset's queries."""


def read_ranked(path: str | Path) -> list[RankedRecord]:
    """Read ranked.jsonl: one `{"class": NAME, "seeds": [eid...], "ranked": [eid...]}` per line."""
    path = Path(path)
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                name, seeds, ranked = obj["class"], obj["seeds"], obj["ranked"]
                record = RankedRecord(str(name), tuple(int(s) for s in seeds), tuple(int(e) for e in ranked), lineno)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise RankedFileError(
                    f'{path}:{lineno}: expected {{"class": NAME, "seeds": [eid...], "ranked": [eid...]}} ({exc})'
                ) from exc
            records.append(record)
    return records


def write_ranked(path: str | Path, records: Iterable[RankedRecord]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps({"class": r.class_name, "seeds": list(r.seeds), "ranked": list(r.ranked)}) + "\n")


@dataclass
class Evaluation:
    seed3: dict[str, float] | None
    seed5: dict[str, float] | None
    per_query: dict[str, dict[tuple[str, int], dict[str, float]]]
    missing: dict[str, list[tuple[str, int]]]

    def as_json(self) -> dict:
        return {"seed3": self.seed3, "seed5": self.seed5}


def evaluate_records(data: MesedData, records: Iterable[RankedRecord], ks: Iterable[int] = KS) -> Evaluation:
    """Score ranked lists against the gold sets; seeds decide which query (3- or 5-seed, which line) each is.

    Queries without a record score as an empty list (0 everywhere) and are listed in `missing`.
    Seeds inside a ranked list are an error: the reference never returns them.
    """
    ks = list(ks)
    # a seed set that appears on two lines of one class file matches them in file order
    lookup: dict[tuple[str, frozenset[int]], list[tuple[str, int]]] = {}
    for group, queries in (("seed3", data.queries3), ("seed5", data.queries5)):
        for name, rows in queries.items():
            for index, seeds in enumerate(rows):
                lookup.setdefault((name, frozenset(seeds)), []).append((group, index))
    per_query: dict[str, dict[tuple[str, int], dict[str, float]]] = {"seed3": {}, "seed5": {}}
    for r in records:
        if r.class_name not in data.gold:
            raise RankedFileError(f"line {r.line}: class {r.class_name!r} is not in the dataset's query/ folder")
        keys = lookup.get((r.class_name, frozenset(r.seeds)))
        if keys is None:
            raise RankedFileError(
                f"line {r.line}: seeds {list(r.seeds)} are not a query of class {r.class_name!r} "
                f"in query/ or query_seed=5/"
            )
        leaked = set(r.seeds) & set(r.ranked)
        if leaked:
            raise RankedFileError(f"line {r.line}: the ranked list contains seed(s) {sorted(leaked)}")
        free = [(g, i) for g, i in keys if (r.class_name, i) not in per_query[g]]
        if not free:
            raise RankedFileError(f"line {r.line}: query {keys[0][1] + 1} of class {r.class_name!r} is ranked twice")
        group, index = free[0]
        per_query[group][(r.class_name, index)] = query_scores(data.gold[r.class_name], r.ranked, ks)
    missing: dict[str, list[tuple[str, int]]] = {"seed3": [], "seed5": []}
    for group, queries in (("seed3", data.queries3), ("seed5", data.queries5)):
        if not per_query[group]:
            continue  # this seed count was not run at all
        for name, rows in queries.items():
            for index in range(len(rows)):
                if (name, index) not in per_query[group]:
                    missing[group].append((name, index))
                    per_query[group][(name, index)] = query_scores(data.gold[name], (), ks)
    seed3 = average_scores(per_query["seed3"], ks) if per_query["seed3"] else None
    seed5 = average_scores(per_query["seed5"], ks) if per_query["seed5"] else None
    return Evaluation(seed3, seed5, per_query, missing)


def metrics_markdown(rows: dict[str, Evaluation | dict], title: str, note: str = "", ks: Iterable[int] = KS) -> str:
    """A Table 3-style table (percentages), one row per method and seed count, then textbook P@k."""
    ks = list(ks)
    ref = reference_keys(ks) + ["Avg"]
    textbook = [f"textbook_P@{k}" for k in ks]
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += [
        "Reference metrics (MAP@k and the reference's \"P@k\" = hits / min(|G|, k)), in %:",
        "",
        "| method | seeds | " + " | ".join(ref) + " |",
        "|---|---|" + "---|" * len(ref),
    ]
    table2 = [
        "",
        "Textbook precision (hits / k), in %, reported separately:",
        "",
        "| method | seeds | " + " | ".join(textbook) + " |",
        "|---|---|" + "---|" * len(textbook),
    ]
    for method, ev in rows.items():
        result = ev.as_json() if isinstance(ev, Evaluation) else ev
        for group, label in (("seed3", "3"), ("seed5", "5")):
            scores = result.get(group)
            if not scores:
                continue
            lines.append(f"| {method} | {label} | " + " | ".join(f"{100 * scores[k]:.2f}" for k in ref) + " |")
            table2.append(f"| {method} | {label} | " + " | ".join(f"{100 * scores[k]:.2f}" for k in textbook) + " |")
    return "\n".join(lines + table2) + "\n"
