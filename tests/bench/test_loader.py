"""The MESED-layout loader on real text, and its error reports on broken layouts."""

from __future__ import annotations

import json
import pickle

import pytest

from mesed_build.bench.loader import LayoutError, load_mesed


def test_loads_the_real_text_fixture(enwiki_mini):
    data = load_mesed(enwiki_mini)
    assert data.class_names == ["Chemical compound", "Country", "Language", "Philosopher"]
    assert data.eid2name[1] == "China"
    assert len(data.queries3["Country"]) == 5 and all(len(q) == 3 for q in data.queries3["Country"])
    assert len(data.queries5["Country"]) == 5 and all(len(q) == 5 for q in data.queries5["Country"])
    # Socrates is a gold philosopher although the excerpt has no sentence about him
    socrates = next(e for e, n in data.eid2name.items() if n == "Socrates")
    assert socrates in data.gold["Philosopher"]
    first = data.sentences[0]
    eid, start, end = first.mentions[0]
    # end is inclusive: the span covers both tokens of the anchor "Pierre-Joseph Proudhon"
    assert data.eid2name[eid] == "Pierre-Joseph Proudhon"
    assert first.tokens[start : end + 1] == ("Pierre-Joseph", "Proudhon")
    assert data.image_path(first.image).is_file()


def test_reports_every_problem_with_file_and_line(enwiki_mini):
    lines = (enwiki_mini / "sentences.json").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[2])
    record["entityMentions"][0]["end"] = len(record["tokens"])  # one past the end (end is inclusive)
    lines[2] = json.dumps(record)
    lines[4] = "{not json"
    (enwiki_mini / "sentences.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    q5 = enwiki_mini / "query_seed=5" / "Country.txt"
    q5.write_text("1 2 3\n" + q5.read_text(encoding="utf-8"), encoding="utf-8")
    (enwiki_mini / "entity2id.txt").write_text(
        (enwiki_mini / "entity2id.txt").read_text(encoding="utf-8") + "Nowhere\tabc\n", encoding="utf-8"
    )
    with pytest.raises(LayoutError) as info:
        load_mesed(enwiki_mini)
    problems = info.value.problems
    assert any(p.endswith("sentences.json:3: mention span 2..24 (end inclusive) is outside the 24 tokens")
               for p in problems)
    assert any("sentences.json:5: not JSON" in p for p in problems)
    assert any("Country.txt:1: expected 5 seeds, got 3" in p for p in problems)
    assert any("entity2id.txt:53: eid 'abc' is not an integer" in p for p in problems)


def test_missing_parts_are_named(enwiki_mini):
    (enwiki_mini / "gt" / "Language.txt").unlink()
    q3 = enwiki_mini / "query" / "Philosopher.txt"
    q3.write_text(q3.read_text(encoding="utf-8").replace("EXIT\n", ""), encoding="utf-8")
    with open(enwiki_mini / "eid2cls.pkl", "wb") as fh:
        pickle.dump({0: ["Country"]}, fh)
    with pytest.raises(LayoutError) as info:
        load_mesed(enwiki_mini)
    text = str(info.value)
    assert "gt/Language.txt: missing (class 'Language' has queries)" in text
    assert "Philosopher.txt: the query lines must end with a line 'EXIT'" in text
    assert "eid2cls.pkl: 51 entities have no entry" in text


def test_not_a_directory(tmp_path):
    with pytest.raises(LayoutError, match="not a directory"):
        load_mesed(tmp_path / "nope")
