"""Build config: YAML validated against schemas/build-config.schema.json before any work."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

LIMIT_DEFAULTS = {
    "max_sentences_per_entity": 64,
    "min_sentence_tokens": 5,
    "max_sentence_tokens": 150,
    "max_backlinks_per_entity": 500,
    "min_entities_per_class": 1,
}


class ConfigError(ValueError):
    """The build config is unreadable or does not match its schema."""


def load_schema(name: str) -> dict:
    path = SCHEMA_DIR / name
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class ClassSource:
    list_page: str | None = None
    category: str | None = None
    sections: tuple[str, ...] = ()
    exclude_sections: tuple[str, ...] = ()
    table_column: str | int | None = None

    def describe(self) -> str:
        return self.list_page or self.category or "?"


@dataclass(frozen=True)
class ClassNode:
    name: str
    level: str  # "top" | "coarse" | "fine"
    parent: str | None
    sources: tuple[ClassSource, ...] = ()


@dataclass
class BuildConfig:
    path: Path | None
    raw: dict[str, Any]
    name: str
    build_dir: Path
    database_url: str
    seed: int
    wiki: dict[str, Any]
    limits: dict[str, int]
    classes: list[ClassNode] = field(default_factory=list)

    @property
    def fine_classes(self) -> list[ClassNode]:
        return [c for c in self.classes if c.level == "fine"]

    @property
    def config_hash(self) -> str:
        # where a build lives is not what it builds
        content = {k: v for k, v in self.raw.items() if k not in ("build_dir", "database_url")}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def section(self, key: str) -> dict[str, Any]:
        """Options of a later stage (vocabulary, images, ...), {} when absent."""
        return dict(self.raw.get(key) or {})

    def dump_paths(self) -> list[Path]:
        return [resolve_data_path(p, self.path) for p in self.wiki["dump"]["paths"]]


def resolve_data_path(spec: str, config_path: Path | None = None) -> Path:
    """A plain path (relative to the config file), or 'pkg:DIST/path' inside an installed package."""
    if spec.startswith("pkg:"):
        package, _, rel = spec[4:].partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{spec}: package {package!r} is not installed (pip install {package})") from exc
        path = Path(str(root / rel))
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and config_path is not None and not path.exists():
            path = (config_path.parent / path).resolve()
    if not path.exists():
        raise ConfigError(f"{spec}: file not found ({path})")
    return path


def _yaml_line(text: str, path: list[Any]) -> int | None:
    """1-based line of the YAML node at `path`, or of its nearest existing ancestor."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            # a mapping entry is reported where its key is written, not where its value starts
            key_node, match = pair if pair else (None, None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            key_node, match = None, node.value[key]
        else:
            match = None
        if match is None:
            break
        node = match
        line = (key_node or node).start_mark.line + 1
    return line


def _format_path(path: list[Any]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def _describe_error(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.context:
        # a class source: report the branch that came closest instead of "is not valid under any"
        best = jsonschema.exceptions.best_match(error.context)
        return f"{best.message} (expected one of: {{list_page: ...}} or {{category: 'Category:...'}})"
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        return f"{error.message}; allowed keys: {', '.join(allowed)}"
    return error.message


def _unexpected_key(error: jsonschema.ValidationError) -> str | None:
    """The first key of the instance that no allowed shape of this object accepts (a misspelling, mostly)."""
    if not isinstance(error.instance, dict):
        return None
    if error.validator == "additionalProperties":
        shapes = [error.schema]
    elif error.validator == "oneOf":
        shapes = error.schema.get("oneOf", [])
        if not shapes or any(s.get("additionalProperties") is not False for s in shapes):
            return None
    else:
        return None
    allowed = {name for shape in shapes for name in (shape.get("properties") or {})}
    return next((key for key in error.instance if key not in allowed), None)


def validate_config_dict(raw: Any, text: str = "", origin: str = "<config>") -> None:
    schema = load_schema("build-config.schema.json")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    lines = []
    for error in errors[:10]:
        path = list(error.absolute_path)
        unexpected = _unexpected_key(error)
        if unexpected is not None:
            path.append(unexpected)
        line = _yaml_line(text, path) if text else None
        where = f"{origin}:{line}" if line else origin
        lines.append(f"{where}: {_format_path(path)}: {_describe_error(error)}")
    more = f"\n(and {len(errors) - 10} more)" if len(errors) > 10 else ""
    raise ConfigError("invalid build config:\n  " + "\n  ".join(lines) + more)


def _walk_classes(raw_classes: list[dict]) -> list[ClassNode]:
    nodes: list[ClassNode] = []
    seen: dict[str, str] = {}

    def add(node: ClassNode) -> None:
        if node.name in seen:
            raise ConfigError(f"class name {node.name!r} is used twice (as {seen[node.name]} and {node.level} class)")
        seen[node.name] = node.level
        nodes.append(node)

    for top in raw_classes:
        add(ClassNode(top["name"], "top", None))
        for coarse in top["children"]:
            add(ClassNode(coarse["name"], "coarse", top["name"]))
            for fine in coarse["children"]:
                sources = tuple(
                    ClassSource(
                        list_page=s.get("list_page"),
                        category=s.get("category"),
                        sections=tuple(s.get("sections", ())),
                        exclude_sections=tuple(s.get("exclude_sections", ())),
                        table_column=s.get("table_column"),
                    )
                    for s in fine["sources"]
                )
                add(ClassNode(fine["name"], "fine", coarse["name"], sources))
    return nodes


def config_from_dict(raw: dict, *, path: Path | None = None, text: str = "") -> BuildConfig:
    validate_config_dict(raw, text, str(path) if path else "<config>")
    build_dir = Path(raw.get("build_dir") or Path("builds") / raw["name"])
    database_url = raw.get("database_url") or f"sqlite:///{(build_dir / 'store.sqlite').as_posix()}"
    return BuildConfig(
        path=path,
        raw=raw,
        name=raw["name"],
        build_dir=build_dir,
        database_url=database_url,
        seed=int(raw["seed"]),
        wiki=raw["wiki"],
        limits={**LIMIT_DEFAULTS, **(raw.get("limits") or {})},
        classes=_walk_classes(raw["classes"]),
    )


def load_config(path: str | Path, *, build_dir: str | Path | None = None, database_url: str | None = None) -> BuildConfig:
    """Read and validate a build config; command-line overrides win over the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(raw).__name__}")
    if build_dir is not None:
        raw = {**raw, "build_dir": str(build_dir)}
    if database_url is not None:
        raw = {**raw, "database_url": database_url}
    return config_from_dict(raw, path=path, text=text)
