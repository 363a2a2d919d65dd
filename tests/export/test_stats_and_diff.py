"""`stats --plots` and `diff` on the demo build."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from mesed_build import store as st
from annotation.queue import options_for_store, sync_items
from mesed_build.cli import main
from mesed_build.diff import snapshot
from mesed_build.export.mesed import ExportError
from tests.export.conftest import copy_store


def test_stats_plots(export_build, tmp_path):
    plots = tmp_path / "plots"
    result = CliRunner().invoke(main, ["stats", "--build-dir", str(export_build["build_dir"]), "--plots", str(plots),
                                       "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["plots"] == {name: "written" for name in ("class_sizes.png", "sentences_per_entity.png",
                                                           "image_scores.png", "relevance_by_strategy.png")}
    for name in stats["plots"]:
        with Image.open(plots / name) as image:
            assert image.format == "PNG" and image.size[0] >= 500 and image.size[1] >= 300
            # a real plot, not a blank canvas
            assert len(image.convert("L").getcolors(maxcolors=4096) or range(4097)) > 10


def test_stats_plots_without_images_say_why(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        with store.engine.begin() as c:
            for table in (st.image_scores, st.annotation_labels, st.annotation_items):
                c.execute(table.delete())
    finally:
        store.close()
    result = CliRunner().invoke(main, ["stats", "--build-dir", str(tmp_path / "build"), "--plots", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "image_scores.png: skipped: no candidate image has been scored" in result.output
    assert "relevance_by_strategy.png: skipped" in result.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["class_sizes.png", "sentences_per_entity.png"]


def test_diff_between_two_builds(export_build, tmp_path):
    """A rebuild where a class lost a member, an entity lost a sentence and a sentence's image changed."""
    store = copy_store(export_build, tmp_path)
    try:
        with store.engine.begin() as c:
            member = c.execute(sa.select(st.class_members.c.class_name, st.class_members.c.page_id)
                               .where(st.class_members.c.class_name == "Countries In Europe")
                               .order_by(st.class_members.c.page_id).limit(1)).one()
            c.execute(st.class_members.delete().where(st.class_members.c.class_name == member[0],
                                                      st.class_members.c.page_id == member[1]))
            name = c.execute(sa.select(st.entities.c.title).where(st.entities.c.page_id == member[1])).scalar_one()
            loser = c.execute(sa.select(st.entity_sentences.c.page_id, st.entity_sentences.c.sentence_hash)
                              .where(st.entity_sentences.c.rank == 1).order_by(st.entity_sentences.c.page_id)
                              .limit(1)).one()
            before = c.execute(sa.select(sa.func.count()).select_from(st.entity_sentences)
                               .where(st.entity_sentences.c.page_id == loser[0])).scalar_one()
            c.execute(st.entity_sentences.delete().where(st.entity_sentences.c.page_id == loser[0],
                                                         st.entity_sentences.c.sentence_hash == loser[1]))
            # the re-ranker now prefers the other candidate of one illustrated sentence
            relevant = export_build["annotated"]["relevant"]
            changed = next(h for h in sorted(export_build["images"]) if h != relevant)
            rows = c.execute(sa.select(st.image_scores).where(st.image_scores.c.sentence_hash == changed)).mappings().all()
            for row in rows:
                c.execute(st.image_scores.update().where(
                    st.image_scores.c.sentence_hash == changed, st.image_scores.c.page_id == row["page_id"],
                    st.image_scores.c.image_sha256 == row["image_sha256"]).values(chosen=not row["chosen"]))
            new_image = next(r["image_sha256"] for r in rows if not r["chosen"]
                             and r["page_id"] == min(x["page_id"] for x in rows))
        with pytest.raises(ExportError, match="annotation queue is out of date: .* run `mesed-build annotate sync`"):
            snapshot(store)
        sync_items(store, options_for_store(store))  # what a rebuild does after rerank
    finally:
        store.close()
    runner = CliRunner()
    result = runner.invoke(main, ["diff", str(export_build["build_dir"]), str(tmp_path / "build"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    europe = report["classes"]["Countries In Europe"]
    assert europe["removed"] == [{"eid": int(member[1]), "name": name}] and europe["added"] == []
    assert europe["new_size"] == europe["old_size"] - 1
    assert all(not c["added"] and not c["removed"] for n, c in report["classes"].items() if n != "Countries In Europe")
    assert report["sentence_counts_changed"] == [
        {"eid": int(loser[0]), "name": report["sentence_counts_changed"][0]["name"], "old": before, "new": before - 1}]
    assert report["images"]["changed"] == 1 and report["images"]["gained"] == 0 and report["images"]["lost"] == 0
    assert report["images"]["sentences"] == [
        {"sentence_id": changed, "old": export_build["images"][changed], "new": new_image}]
    text = runner.invoke(main, ["diff", str(export_build["build_dir"]), str(tmp_path / "build")])
    assert text.exit_code == 0, text.output
    assert f"- {name} ({member[1]})" in text.output
    assert "1 changed image" in text.output
    # a build compared with itself: nothing changed
    same = json.loads(runner.invoke(main, ["diff", str(export_build["build_dir"]), str(export_build["build_dir"]),
                                           "--json"]).output)
    assert same["sentence_counts_changed"] == [] and same["images"]["sentences"] == []


def test_diff_names_a_missing_build(tmp_path):
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code != 0
    assert "no build store here" in result.output and "Traceback" not in result.output
