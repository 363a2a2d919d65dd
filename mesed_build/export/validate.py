"""Validate exported records against schemas/*.schema.json.

Every record the export writes passes through `RecordValidator.check`; a violation fails the export
with the file, the line (or row / sample) and the schema path, e.g.

    sentences.json:12: $.entityMentions[0].end: -1 is less than the minimum of 0
        (schema sentence.schema.json#/properties/entityMentions/items/properties/end/minimum)

`validate_mesed_dir` checks an existing MESED-layout directory the same way, reporting every problem.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from mesed_build.config import load_schema
from mesed_build.export.mesed import ExportError

SCHEMAS = {
    "sentence": "sentence.schema.json",
    "entity": "entity.schema.json",
    "class": "class.schema.json",
    "query": "query.schema.json",
    "gt": "gt.schema.json",
    "annotation": "annotation.schema.json",
}


class SchemaViolation(ExportError):
    """A record does not match its schema (or a rule the schema cannot state)."""

    def __init__(self, where: str, message: str, schema_location: str):
        self.where = where
        self.schema_location = schema_location
        super().__init__(f"{where}: {message} (schema {schema_location})")


@lru_cache(maxsize=None)
def validator(kind: str) -> jsonschema.protocols.Validator:
    schema = load_schema(SCHEMAS[kind])
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _instance_path(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_pointer(path: Iterable[Any]) -> str:
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def violations(kind: str, record: Any) -> list[tuple[str, str]]:
    """(message, schema location) of every violation, most specific first, in a stable order."""
    errors = sorted(validator(kind).iter_errors(record), key=lambda e: (list(map(str, e.absolute_path)), str(e.schema_path)))
    return [
        (f"{_instance_path(e.absolute_path)}: {e.message}", f"{SCHEMAS[kind]}{_schema_pointer(e.absolute_schema_path)}")
        for e in errors
    ]


@lru_cache(maxsize=None)
def fast_validator(kind: str):
    """The schema compiled to Python by fastjsonschema (~30x faster than jsonschema per record), or
    None without the package; it only says yes or no, jsonschema then explains a no."""
    try:
        import fastjsonschema
    except ImportError:
        return None
    return fastjsonschema.compile(load_schema(SCHEMAS[kind]))


def check(kind: str, record: Any, where: str) -> None:
    """Raise SchemaViolation for the first violation of `record` (`where`: 'file:line')."""
    fast = fast_validator(kind)
    fast_error = None
    if fast is not None:
        try:
            fast(record)
            return
        except Exception as exc:  # fastjsonschema.JsonSchemaValueException
            fast_error = exc
    found = violations(kind, record)
    if found:
        message, location = found[0]
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise SchemaViolation(where, message + more, location)
    if fast_error is not None:
        # only fastjsonschema objects (e.g. a format jsonschema has no checker for here)
        path = _instance_path(int(p) if p.isdigit() else p for p in getattr(fast_error, "path", ["data"])[1:])
        raise SchemaViolation(where, f"{path}: {getattr(fast_error, 'message', fast_error)}",
                              f"{SCHEMAS[kind]} (rule {getattr(fast_error, 'rule', '?')})")


def check_sentence(record: dict, where: str, eids: set[int] | None = None) -> None:
    """The sentence schema, plus what a schema cannot say: spans inside the tokens, known entities."""
    check("sentence", record, where)
    n = len(record["tokens"])
    for i, mention in enumerate(record["entityMentions"]):
        if not mention["start"] <= mention["end"] < n:
            raise SchemaViolation(
                where, f"$.entityMentions[{i}]: span {mention['start']}..{mention['end']} (end inclusive) is "
                f"outside the {n} tokens", f"{SCHEMAS['sentence']}#/properties/entityMentions (span rule)")
        if eids is not None and mention["entityId"] not in eids:
            raise SchemaViolation(
                where, f"$.entityMentions[{i}].entityId: {mention['entityId']} is not in entity2id.txt",
                f"{SCHEMAS['sentence']}#/properties/entityMentions/items/properties/entityId (entity rule)")


def validate_mesed_dir(root: str | Path) -> list[str]:
    """Every schema problem of a MESED-layout directory, as 'file:line: message (schema ...)'; [] if none."""
    root = Path(root)
    problems: list[str] = []

    def record(kind: str, value: Any, where: str) -> bool:
        found = violations(kind, value)
        problems.extend(f"{where}: {message} (schema {location})" for message, location in found)
        return not found

    eids: set[int] = set()
    entity_file = root / "entity2id.txt"
    for lineno, line in enumerate(entity_file.read_text(encoding="utf-8").split("\n")[:-1], 1):
        name, _, raw = line.rpartition("\t")
        try:
            eid = int(raw)
        except ValueError:
            problems.append(f"{entity_file}:{lineno}: expected 'name<TAB>eid', got {line!r}")
            continue
        if record("entity", {"eid": eid, "name": name}, f"{entity_file}:{lineno}"):
            eids.add(eid)
    sentences = root / "sentences.json"
    with open(sentences, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{sentences}:{lineno}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not JSON ({exc.msg})")
                continue
            try:
                check_sentence(value, where, eids)
            except SchemaViolation as exc:
                problems.append(str(exc))
                continue
            if value["image"] is not None and not (root / value["image"]).is_file():
                problems.append(f"{where}: $.image: {value['image']} does not exist in the export")
    for folder, seed_count in (("query", 3), ("query_seed=5", 5)):
        for path in sorted((root / folder).glob("*.txt")):
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]
            if seed_count == 3:
                if not lines or lines[-1] != "EXIT":
                    problems.append(f"{path}: the last line must be 'EXIT'")
                lines = lines[:-1] if lines and lines[-1] == "EXIT" else lines
            for index, line in enumerate(lines):
                try:
                    seeds = [int(s) for s in line.split(" ")]
                except ValueError:
                    problems.append(f"{path}:{index + 1}: expected space-separated integer eids, got {line!r}")
                    continue
                query = {"class_name": path.stem, "seed_count": seed_count, "query_index": index, "seeds": seeds}
                if record("query", query, f"{path}:{index + 1}"):
                    problems.extend(f"{path}:{index + 1}: seed {s} is not in entity2id.txt" for s in seeds if s not in eids)
    for path in sorted((root / "gt").glob("*.txt")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").split("\n")[:-1], 1):
            parts = line.split("\t")
            try:
                row = {"class_name": path.stem, "eid": int(parts[0]), "name": parts[1], "label": int(parts[2])}
            except (ValueError, IndexError):
                problems.append(f"{path}:{lineno}: expected 'eid<TAB>name<TAB>label', got {line!r}")
                continue
            if len(parts) != 3:
                problems.append(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(parts)}")
            elif record("gt", row, f"{path}:{lineno}") and row["eid"] not in eids:
                problems.append(f"{path}:{lineno}: eid {row['eid']} is not in entity2id.txt")
    classes = root / "classes.json"
    if classes.exists():
        for index, value in enumerate(json.loads(classes.read_text(encoding="utf-8"))):
            record("class", value, f"{classes}:[{index}]")
    eid2cls_file = root / "eid2cls.pkl"
    with open(eid2cls_file, "rb") as fh:
        eid2cls = pickle.load(fh)  # our own export; pickle is the layout's format
    missing = sorted(eids - set(eid2cls))
    if missing:
        problems.append(f"{eid2cls_file}: {len(missing)} entities have no entry, e.g. {missing[:5]}")
    return problems
