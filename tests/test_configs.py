"""The shipped build configs: configs/mesed.yaml reproduces the MESED class schema."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from mesed_build.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
MESED_CONFIG = REPO_ROOT / "configs" / "mesed.yaml"
# the design notes live beside the checkout, not inside it
SCHEMA_DOC = REPO_ROOT.parent / "shared" / "design" / "MESED-SCHEMA.md"


@pytest.fixture(scope="module")
def mesed():
    return load_config(MESED_CONFIG)


def _by_level(config, level):
    return [c for c in config.classes if c.level == level]


def _schema_table_rows() -> list[tuple[str, str, list[str], bool]]:
    """(top, coarse, visible fine names, has unreadable siblings) for each row of the schema table."""
    if not SCHEMA_DOC.exists():
        pytest.skip(f"{SCHEMA_DOC} is not present (the design notes are not checked out beside the repo)")
    rows = []
    for line in SCHEMA_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) != 3:
            continue
        top, coarse, fine = cells
        if top == "top" or set(top) <= {"-", ":"}:
            continue  # header and separator rows
        names = []
        for part in fine.split(";"):
            name = part.replace("(+)", "").strip()
            # "Mathematical Topics In ..." is a pattern, not a readable name
            if name and "..." not in name:
                names.append(name)
        rows.append((top, coarse, names, "(+)" in fine))
    if not rows:
        pytest.fail(f"{SCHEMA_DOC}: found no rows of the form | top | coarse | fine-grained |")
    return rows


def test_mesed_config_has_the_published_layer_sizes(mesed):
    assert len(_by_level(mesed, "top")) == 8
    assert len(_by_level(mesed, "coarse")) == 26
    assert len(_by_level(mesed, "fine")) == 70
    tops = {c.name for c in _by_level(mesed, "top")}
    coarse = {c.name for c in _by_level(mesed, "coarse")}
    assert all(c.parent in tops for c in _by_level(mesed, "coarse"))
    assert all(c.parent in coarse for c in _by_level(mesed, "fine"))


def test_mesed_class_names_are_unique_even_as_file_names(mesed):
    # names become export file names, and some file systems ignore case
    folded = Counter(c.name.casefold() for c in mesed.classes)
    assert [name for name, n in folded.items() if n > 1] == []
    assert all(c.name == c.name.strip() and "  " not in c.name for c in mesed.classes)


def test_every_mesed_fine_class_has_a_well_formed_source(mesed):
    for fine in _by_level(mesed, "fine"):
        assert len(fine.sources) >= 1, fine.name
        for source in fine.sources:
            assert (source.list_page is None) != (source.category is None), (fine.name, source)
            if source.list_page is not None:
                # a category written as a list page would be fetched as an (empty) article
                assert not source.list_page.startswith("Category:"), (fine.name, source.list_page)
                assert source.list_page == source.list_page.strip()
            else:
                assert re.fullmatch(r"Category:\S.*\S", source.category), (fine.name, source.category)


def test_no_mesed_source_feeds_two_fine_classes(mesed):
    # sibling classes must be disjoint to work as hard negatives
    owners: dict[str, list[str]] = {}
    for fine in _by_level(mesed, "fine"):
        for source in fine.sources:
            owners.setdefault(source.describe(), []).append(fine.name)
    assert {title: names for title, names in owners.items() if len(names) > 1} == {}


def test_mesed_keeps_every_visible_name_of_the_schema_figure(mesed):
    parent = {c.name: (c.level, c.parent) for c in mesed.classes}
    missing = []
    for top, coarse, fines, _ in _schema_table_rows():
        expected = [(top, ("top", None)), (coarse, ("coarse", top))] + [(f, ("fine", coarse)) for f in fines]
        missing += [(name, where) for name, where in expected if parent.get(name) != where]
    assert missing == []


def test_mesed_fills_every_gap_of_the_schema_figure(mesed):
    children = Counter(c.parent for c in _by_level(mesed, "fine"))
    for _, coarse, fines, has_hidden_siblings in _schema_table_rows():
        if has_hidden_siblings:
            # a parent whose siblings were unreadable gets more than the visible ones, and at least two
            assert children[coarse] > len(fines) and children[coarse] >= 2, coarse


def _misspell(tmp_path: Path, original: str, misspelled: str) -> tuple[Path, int]:
    """A copy of mesed.yaml with the first `original` line fragment replaced; returns it and that line's number."""
    lines = MESED_CONFIG.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, start=1) if original in line)
    lines[number - 1] = lines[number - 1].replace(original, misspelled, 1)
    copy = tmp_path / "mesed-misspelled.yaml"
    copy.write_text("".join(lines), encoding="utf-8")
    return copy, number


@pytest.mark.parametrize(
    ("original", "misspelled", "key_path"),
    [
        ("max_sentences_per_entity:", "max_sentence_per_entity:", "limits.max_sentence_per_entity"),
        ("user_agent:", "user_agnet:", "wiki.api.user_agnet"),
        ("list_page: List of jazz vocalists", "list_pgae: List of jazz vocalists", ".sources[0].list_pgae"),
        ("table_column: Stadium", "table_colum: Stadium", ".sources[0].table_colum"),
    ],
)
def test_a_misspelled_key_is_reported_with_its_path_and_line(tmp_path, original, misspelled, key_path):
    copy, line = _misspell(tmp_path, original, misspelled)
    with pytest.raises(ConfigError) as raised:
        load_config(copy)
    message = str(raised.value)
    offending = [entry for entry in message.splitlines() if misspelled.split(":")[0] in entry and key_path in entry]
    assert offending, message
    assert any(entry.strip().startswith(f"{copy}:{line}: ") for entry in offending), message
