"""`mesed-build evaluate`, `bench run` and `bench synth` through the real command line group."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mesed_build.bench.loader import load_mesed
from mesed_build.bench.synth import FILLERS
from mesed_build.cli import main


def test_evaluate_json_scores_a_hand_made_ranking(enwiki_mini, tmp_path):
    data = load_mesed(enwiki_mini)
    seeds = data.queries3["Country"][0]
    gold_rest = sorted(data.gold["Country"] - set(seeds))
    non_gold = next(e for e in data.eid2name if not any(e in g for g in data.gold.values()))
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(json.dumps({"class": "Country", "seeds": seeds, "ranked": [gold_rest[0], non_gold, gold_rest[1]]})
                      + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", "--data", str(enwiki_mini), "--ranked", str(ranked), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["seed5"] is None  # no 5-seed query was ranked
    s3 = scores["seed3"]
    # Country has |G| = 14. Hits at 1 and 3: AP@10 = (1/1 + 2/3) / min(14, 10) = 1/6.
    # Only query 1 of Country is ranked; the other 3 classes and 4 queries score 0:
    # macro over the 4 classes (1/6 / 4), then the mean over 5 queries (/ 5).
    assert s3["MAP@10"] == pytest.approx((1 + 2 / 3) / 10 / 4 / 5)
    assert s3["MAP@20"] == pytest.approx((1 + 2 / 3) / 14 / 4 / 5)
    assert s3["P@10"] == pytest.approx(2 / 10 / 4 / 5)
    assert s3["P@100"] == pytest.approx(2 / 14 / 4 / 5)
    assert s3["textbook_P@10"] == pytest.approx(2 / 10 / 4 / 5)
    assert s3["textbook_P@100"] == pytest.approx(2 / 100 / 4 / 5)
    assert "19 seed3 queries have no ranked list" in result.stderr


def test_evaluate_names_the_bad_line(enwiki_mini, tmp_path):
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text('{"class": "Country", "seeds": [1, 2, 3], "ranked": []}\n{"class": "Country"}\n')
    result = CliRunner().invoke(main, ["evaluate", "--data", str(enwiki_mini), "--ranked", str(ranked)])
    assert result.exit_code != 0
    assert "ranked.jsonl:2: expected" in result.output


def test_bench_run_random_writes_the_three_files(enwiki_mini, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", "run", "--data", str(enwiki_mini), "--method", "random",
                                       "--out", str(out), "--target-size", "20"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "ranked.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and all(len(x["ranked"]) == 20 - len(x["seeds"]) for x in lines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "random" and metrics["synthetic"] is False
    assert "| random | 3 |" in (out / "metrics.md").read_text()
    # the written ranking scores the same through `evaluate`
    again = CliRunner().invoke(main, ["evaluate", "--data", str(enwiki_mini), "--ranked", str(out / "ranked.jsonl"),
                                      "--json"])
    assert json.loads(again.stdout)["seed3"] == pytest.approx(metrics["seed3"])


def test_bench_run_reports_a_broken_layout(tmp_path):
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(main, ["bench", "run", "--data", str(tmp_path / "data"), "--method", "random",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "entity2id.txt: missing" in result.output


def test_bench_synth_writes_a_labelled_synthetic_layout(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(main, ["bench", "synth", "--out", str(out), "--entities-per-class", "7",
                                       "--distractors", "3", "--sentences-per-entity", "2"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "SYNTHETIC" in (out / "SYNTHETIC.md").read_text()
    data = load_mesed(out)
    assert len(data.class_names) == 8 and len(data.eid2name) == 8 * 7 + 3
    info = json.loads((out / "synthetic.json").read_text())
    assert info["synthetic"] is True and len(info["image_disambiguated_classes"]) == 4
    # image-disambiguated siblings share their sentence templates (filler words are noise for every class)
    red, blue = "Synthetic red river", "Synthetic blue river"

    def context_words(name):
        return {t for s in data.sentences if data.eid2cls[s.mentions[0][0]] == [name]
                for i, t in enumerate(s.tokens) if not s.mentions[0][1] <= i <= s.mentions[0][2]} - set(FILLERS)

    assert context_words(red) == context_words(blue)
    assert context_words("Synthetic baroque composer") != context_words("Synthetic jazz composer")
    def images(name):
        return {s.image for s in data.sentences if data.eid2cls[s.mentions[0][0]] == [name]}

    assert images(red).isdisjoint(images(blue))
    # text-disambiguated siblings share the very same image files: images cannot separate them
    assert images("Synthetic baroque composer") == images("Synthetic jazz composer")
