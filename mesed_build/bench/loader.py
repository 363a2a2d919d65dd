"""Read and validate a directory in the MESED layout (MULTIEXPAN.md section 1).

Every problem is reported with its file and line; the loader collects all of them before failing,
so one run shows everything that is wrong with an export.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

QUERY3_DIR = "query"
QUERY5_DIR = "query_seed=5"
MAX_REPORTED_PROBLEMS = 50


class LayoutError(ValueError):
    """The directory is not a valid MESED layout; `problems` lists each one as 'file:line: what'."""

    def __init__(self, root: Path, problems: list[str]):
        self.root = root
        self.problems = problems
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        text = f"{root} is not a valid MESED layout ({len(problems)} problem(s)):\n  " + "\n  ".join(shown)
        if more:
            text += f"\n  ... and {more} more"
        super().__init__(text)


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    mentions: tuple[tuple[int, int, int], ...]  # (entity id, start, end inclusive)
    image: str | None  # path as written in sentences.json
    line: int  # 1-based line in sentences.json


@dataclass
class MesedData:
    root: Path
    eid2name: dict[int, str]
    sentences: list[Sentence]
    queries3: dict[str, list[list[int]]]
    queries5: dict[str, list[list[int]]]
    gold: dict[str, set[int]]
    eid2cls: dict[int, list[str]]
    warnings: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return sorted(self.queries3)

    def image_path(self, image: str) -> Path:
        path = Path(image)
        return path if path.is_absolute() else self.root / path


def class_name_of(path: Path) -> str:
    # the reference takes the file name up to the first dot
    return path.name.split(".")[0]


def _read_lines(path: Path, problems: list[str]) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        problems.append(f"{path}: missing")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 ({exc})")
    return None


def _parse_entity2id(path: Path, problems: list[str]) -> dict[int, str]:
    eid2name: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path, problems) or [], 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            problems.append(f"{path}:{lineno}: expected 'name<TAB>eid', got {len(parts)} field(s)")
            continue
        name, raw_eid = parts
        try:
            eid = int(raw_eid)
        except ValueError:
            problems.append(f"{path}:{lineno}: eid {raw_eid!r} is not an integer")
            continue
        if eid in eid2name:
            problems.append(f"{path}:{lineno}: eid {eid} is listed twice")
            continue
        eid2name[eid] = name
    if not eid2name and path.exists():
        problems.append(f"{path}: no entities")
    return eid2name


def _parse_sentences(path: Path, eid2name: dict[int, str], problems: list[str]) -> list[Sentence]:
    sentences: list[Sentence] = []
    for lineno, line in enumerate(_read_lines(path, problems) or [], 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: expected a JSON object")
            continue
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            problems.append(f"{where}: 'tokens' must be a list of strings")
            continue
        raw_mentions = record.get("entityMentions")
        if not isinstance(raw_mentions, list):
            problems.append(f"{where}: 'entityMentions' must be a list")
            continue
        image = record.get("image")
        if image is not None and not isinstance(image, str):
            problems.append(f"{where}: 'image' must be a path string")
            continue
        mentions = []
        ok = True
        for m in raw_mentions:
            try:
                eid, start, end = int(m["entityId"]), int(m["start"]), int(m["end"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}: a mention needs integer entityId, start, end; got {m!r}")
                ok = False
                break
            if eid not in eid2name:
                problems.append(f"{where}: mention of eid {eid}, which is not in entity2id.txt")
                ok = False
                break
            if not 0 <= start <= end < len(tokens):
                problems.append(
                    f"{where}: mention span {start}..{end} (end inclusive) is outside the {len(tokens)} tokens"
                )
                ok = False
                break
            mentions.append((eid, start, end))
        if ok:
            sentences.append(Sentence(tuple(tokens), tuple(mentions), image, lineno))
    return sentences


def _parse_queries(
    folder: Path, n_seeds: int, needs_exit: bool, eid2name: dict[int, str], problems: list[str]
) -> dict[str, list[list[int]]]:
    queries: dict[str, list[list[int]]] = {}
    for path in sorted(folder.glob("*.txt")):
        name = class_name_of(path)
        rows: list[list[int]] = []
        saw_exit = False
        for lineno, line in enumerate(_read_lines(path, problems) or [], 1):
            text = line.strip()
            if not text:
                continue
            if text == "EXIT":
                saw_exit = True
                break
            try:
                seeds = [int(x) for x in text.split()]
            except ValueError:
                problems.append(f"{path}:{lineno}: expected space-separated integer eids, got {text!r}")
                continue
            if len(seeds) != n_seeds:
                problems.append(f"{path}:{lineno}: expected {n_seeds} seeds, got {len(seeds)}")
                continue
            unknown = [s for s in seeds if s not in eid2name]
            if unknown:
                problems.append(f"{path}:{lineno}: seed eid(s) {unknown} not in entity2id.txt")
                continue
            if len(set(seeds)) != len(seeds):
                problems.append(f"{path}:{lineno}: a seed is repeated")
                continue
            rows.append(seeds)
        if needs_exit and not saw_exit:
            problems.append(f"{path}: the query lines must end with a line 'EXIT'")
        if not rows:
            problems.append(f"{path}: no queries")
        queries[name] = rows
    return queries


def _parse_gt(path: Path, eid2name: dict[int, str], problems: list[str]) -> set[int]:
    gold: set[int] = set()
    for lineno, line in enumerate(_read_lines(path, problems) or [], 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            problems.append(f"{path}:{lineno}: expected 'eid<TAB>name<TAB>label', got {len(parts)} field(s)")
            continue
        try:
            eid, label = int(parts[0]), int(parts[2])
        except ValueError:
            problems.append(f"{path}:{lineno}: eid and label must be integers, got {parts[0]!r}, {parts[2]!r}")
            continue
        if eid not in eid2name:
            problems.append(f"{path}:{lineno}: eid {eid} not in entity2id.txt")
            continue
        if label >= 1:
            gold.add(eid)
    return gold


def _parse_eid2cls(path: Path, eid2name: dict[int, str], problems: list[str]) -> dict[int, list[str]]:
    # eid2cls.pkl is part of the published layout; only load exports you trust (pickle runs code)
    try:
        with open(path, "rb") as fh:
            raw = pickle.load(fh)
    except FileNotFoundError:
        problems.append(f"{path}: missing")
        return {}
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is bad
        problems.append(f"{path}: cannot be unpickled ({type(exc).__name__}: {exc})")
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a dict from eid to a list of class names, got {type(raw).__name__}")
        return {}
    eid2cls: dict[int, list[str]] = {}
    for key, value in raw.items():
        try:
            eid = int(key)
        except (TypeError, ValueError):
            problems.append(f"{path}: key {key!r} is not an eid")
            continue
        if not isinstance(value, (list, tuple, set)):
            problems.append(f"{path}: eid {eid}: expected a list of class names, got {type(value).__name__}")
            continue
        eid2cls[eid] = [str(v) for v in value]
    missing = sorted(set(eid2name) - set(eid2cls))
    if missing:
        problems.append(f"{path}: {len(missing)} entities have no entry, e.g. eids {missing[:5]}")
    return eid2cls


def load_mesed(root: str | Path) -> MesedData:
    """Load a MESED-layout directory, or raise LayoutError listing every problem found."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(root, [f"{root}: not a directory"])
    problems: list[str] = []
    warnings: list[str] = []
    eid2name = _parse_entity2id(root / "entity2id.txt", problems)
    sentences = _parse_sentences(root / "sentences.json", eid2name, problems)
    q3_dir, q5_dir = root / QUERY3_DIR, root / QUERY5_DIR
    if not q3_dir.is_dir():
        problems.append(f"{q3_dir}: missing folder of 3-seed queries")
        queries3 = {}
    else:
        queries3 = _parse_queries(q3_dir, 3, True, eid2name, problems)
        if not queries3:
            problems.append(f"{q3_dir}: no <Class Name>.txt files")
    queries5: dict[str, list[list[int]]] = {}
    if q5_dir.is_dir():
        queries5 = _parse_queries(q5_dir, 5, False, eid2name, problems)
        for name in sorted(set(queries5) - set(queries3)):
            problems.append(f"{q5_dir / (name + '.txt')}: class {name!r} has no 3-seed query file in {q3_dir}")
    else:
        warnings.append(f"{q5_dir}: missing, so there are no 5-seed queries")
    gold: dict[str, set[int]] = {}
    for name in sorted(queries3):
        gt_dir = root / "gt"
        candidates = sorted(p for p in gt_dir.glob("*.txt") if class_name_of(p) == name) if gt_dir.is_dir() else []
        if not candidates:
            problems.append(f"{root / 'gt' / (name + '.txt')}: missing (class {name!r} has queries)")
            continue
        gold[name] = _parse_gt(candidates[0], eid2name, problems)
        if not gold[name]:
            problems.append(f"{candidates[0]}: no row with label >= 1")
    eid2cls = _parse_eid2cls(root / "eid2cls.pkl", eid2name, problems)
    if problems:
        raise LayoutError(root, problems)
    return MesedData(root, eid2name, sentences, queries3, queries5, gold, eid2cls, warnings)
