"""Determinism, atomicity, --force, schema validation, class file names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mesed_build import store as st
from mesed_build.cli import main
from mesed_build.export.data import class_file_name
from mesed_build.export.mesed import ExportError
from mesed_build.export.run import export
from mesed_build.export.validate import SchemaViolation, validate_mesed_dir
from tests.export.conftest import copy_store

REPO = Path(__file__).resolve().parents[2]


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_exports_are_byte_identical(export_all, export_build, tmp_path):
    result = CliRunner().invoke(main, ["export", "--build-dir", str(export_build["build_dir"]), "--format", "all",
                                       "--shard-size", "200KB", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    first, second = files_of(export_all["out"]), files_of(tmp_path / "again")
    assert len(first) > 20
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    # the checksums file covers every other file
    sums = (tmp_path / "again" / "mesed" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == sum(1 for name in second if name.startswith("mesed/") and name != "mesed/SHA256SUMS")


def test_refuses_a_non_empty_out_without_force(export_build, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    runner = CliRunner()
    args = ["export", "--build-dir", str(export_build["build_dir"]), "--format", "mesed", "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert "not empty" in result.output and "--force" in result.output
    assert (out / "keep.txt").read_text() == "mine"
    result = runner.invoke(main, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "entity2id.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dir left beside it


KILLER = """
import sys, time, pathlib
import mesed_build.export.run as run
signal_file = pathlib.Path(sys.argv[1])
real = run.write_attribution
def slow(data, directory):
    real(data, directory)
    signal_file.write_text(str(directory))  # the sentences and images are written: now kill me
    time.sleep(120)
run.write_attribution = slow
from mesed_build.cli import main
main(sys.argv[2:])
"""


def test_a_killed_export_leaves_nothing_at_out(export_build, tmp_path):
    out = tmp_path / "exports" / "demo"
    signal_file = tmp_path / "signal"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(signal_file), "export", "--build-dir", str(export_build["build_dir"]),
         "--format", "all", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not signal_file.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the export never reached its first format's attribution"
            time.sleep(0.05)
        half_written = Path(signal_file.read_text())
        assert (half_written / "sentences.json").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".demo.")  # a hidden temp dir only
    # the next export to the same place succeeds and clears the dead one's temp dir
    result = CliRunner().invoke(main, ["export", "--build-dir", str(export_build["build_dir"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.parent.iterdir()] == ["demo"]


def test_validation_fails_on_a_broken_record_with_file_line_and_schema_path(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        with store.engine.begin() as c:
            victim = c.execute(sa.select(st.mentions.c.sentence_hash, st.mentions.c.token_start)
                               .order_by(st.mentions.c.sentence_hash, st.mentions.c.token_start).limit(1)).one()
            # a mention span past the end of its sentence
            c.execute(st.mentions.update().where(st.mentions.c.sentence_hash == victim[0],
                                                 st.mentions.c.token_start == victim[1]).values(token_end=10_000))
        out = tmp_path / "out"
        with pytest.raises(SchemaViolation) as info:
            export(store, out, formats=["mesed"], image_root=tmp_path / "build" / "images")
    finally:
        store.close()
    message = str(info.value)
    assert message.startswith("sentences.json:1: $.entityMentions[0]: span")
    assert "sentence.schema.json#/properties/entityMentions" in message
    assert not out.exists()


def test_validator_reports_a_hand_broken_export(export_all, tmp_path):
    import shutil

    root = tmp_path / "mesed"
    shutil.copytree(export_all["out"] / "mesed", root)
    lines = (root / "sentences.json").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[2])
    record["entityMentions"][0]["end"] = -1
    lines[2] = json.dumps(record)
    (root / "sentences.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    query = next((root / "query").iterdir())
    query_lines = query.read_text().splitlines()
    query_lines[0] += " 12345"  # a 4-seed query
    query.write_text("\n".join(query_lines) + "\n")
    assert validate_mesed_dir(export_all["out"] / "mesed") == []
    problems = validate_mesed_dir(root)
    assert len(problems) == 2
    assert problems[0].startswith(f"{root / 'sentences.json'}:3: $.entityMentions[0].end: -1 is less than the minimum")
    assert problems[0].endswith(
        "(schema sentence.schema.json#/properties/entityMentions/items/properties/end/minimum)")
    assert problems[1].startswith(f"{query}:1: $.seeds: ")
    assert "query.schema.json#/allOf/0/then/properties/seeds/maxItems" in problems[1]


def test_class_names_become_safe_file_names():
    assert class_file_name("Countries In Europe") == "Countries In Europe"
    assert class_file_name("Light novels / manga") == "Light novels _ manga"
    assert class_file_name("U.S. states") == "U_S_ states"  # the reference cuts the name at its first dot
    assert class_file_name("Pokémon species") == "Pokémon species"
    assert class_file_name("nul") == "nul_"
    with pytest.raises(ExportError, match="no usable characters"):
        class_file_name("..")


def test_a_class_name_with_a_dot_is_mapped_and_recorded(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        with store.engine.begin() as c:
            old = "Countries In Europe"
            new = "Countries in Europe (U.N. members)"
            for table in (st.class_members, st.queries, st.gt):
                c.execute(table.update().where(table.c.class_name == old).values(class_name=new))
            c.execute(st.classes.update().where(st.classes.c.name == old).values(name=new))
        out = tmp_path / "out"
        export(store, out, formats=["mesed"], image_root=tmp_path / "build" / "images")
    finally:
        store.close()
    assert (out / "gt" / "Countries in Europe (U_N_ members).txt").exists()
    classes = {c["name"]: c for c in json.loads((out / "classes.json").read_text())}
    assert classes[new]["file_name"] == "Countries in Europe (U_N_ members)"
    card = (out / "README.md").read_text()
    assert "file name `Countries in Europe (U_N_ members)`" in card


def test_two_classes_mapping_to_one_file_name_are_refused(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        with store.engine.begin() as c:
            c.execute(st.classes.update().where(st.classes.c.name == "Countries In Europe")
                      .values(name="Landlocked.Countries"))
            c.execute(st.classes.update().where(st.classes.c.name == "Landlocked Countries")
                      .values(name="Landlocked/Countries"))
        with pytest.raises(ExportError, match="both map to the file name 'Landlocked_Countries'"):
            export(store, tmp_path / "out", formats=["mesed"], image_root=tmp_path / "build" / "images")
    finally:
        store.close()
    assert not (tmp_path / "out").exists()


def test_missing_image_bytes_name_the_file(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        image = next((tmp_path / "build" / "images").rglob("*.jpg"))
        image.unlink()
        with pytest.raises(ExportError, match=f"{image}: image .* bytes are missing"):
            export(store, tmp_path / "out", formats=["webdataset"], image_root=tmp_path / "build" / "images")
    finally:
        store.close()


def test_corrupt_image_bytes_are_refused(export_build, tmp_path):
    store = copy_store(export_build, tmp_path)
    try:
        image = sorted((tmp_path / "build" / "images").rglob("*.jpg"))[0]
        image.write_bytes(image.read_bytes()[:-100])  # truncated on disk
        with pytest.raises(ExportError, match=f"{image}: content does not match its sha256"):
            export(store, tmp_path / "out", formats=["parquet"], image_root=tmp_path / "build" / "images")
    finally:
        store.close()
    assert not (tmp_path / "out").exists()


def test_parse_size_and_unknown_format(export_build, tmp_path):
    from mesed_build.export.run import parse_size

    assert parse_size("1GB") == 10**9 and parse_size("64MiB") == 64 * 2**20 and parse_size("1500") == 1500
    with pytest.raises(ExportError, match="expected a number"):
        parse_size("big")
    result = CliRunner().invoke(main, ["export", "--build-dir", str(export_build["build_dir"]), "--out",
                                       str(tmp_path / "o"), "--format", "webdataset", "--shard-size", "lots"])
    assert result.exit_code != 0 and "size 'lots'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
    assert os.listdir(tmp_path) == []


# the tables an export reads (links, the backlink index, is not one of them)
EXPORTED_TABLES = ("classes", "pages", "entities", "class_members", "vocabulary", "sentences", "mentions",
                   "entity_sentences", "builds", "stage_runs", "drops", "queries", "gt", "images", "image_scores",
                   "annotation_users", "annotation_items", "annotation_labels")


@pytest.mark.postgres
def test_an_export_from_postgresql_equals_the_sqlite_one(export_build, export_all, pg_url, tmp_path):
    source = st.Store(export_build["url"], create=False)
    target = st.Store(pg_url)
    try:
        for name in EXPORTED_TABLES:
            table = st.metadata.tables[name]
            with source.engine.connect() as c:
                rows = [dict(r) for r in c.execute(sa.select(table)).mappings()]
            target.upsert(table, rows)
        out = tmp_path / "pg"
        export(target, out, formats="all", shard_bytes="200KB", image_root=export_build["build_dir"] / "images")
    finally:
        source.close()
        target.close()
    sqlite_files, pg_files = files_of(export_all["out"]), files_of(out)
    assert sqlite_files.keys() == pg_files.keys()
    assert [name for name in sqlite_files if sqlite_files[name] != pg_files[name]] == []


def test_a_second_export_to_the_same_out_is_refused_while_the_first_runs(export_build, tmp_path):
    from mesed_build.export.mesed import ExportError, atomic_directory

    out = tmp_path / "out"
    args = ["export", "--build-dir", str(export_build["build_dir"]), "--format", "mesed", "--out", str(out)]
    with atomic_directory(out) as first:
        (first / "marker.txt").write_text("the first export")
        result = CliRunner().invoke(main, args)
        assert result.exit_code != 0 and "another export to this directory is running" in result.output
        with pytest.raises(ExportError, match="another export"):
            with atomic_directory(out, force=True):
                pass
    assert [p.name for p in out.iterdir()] == ["marker.txt"]  # the first one landed, untouched
    # once it is done, the usual rule holds: --force is needed to replace it
    assert "not empty" in CliRunner().invoke(main, args).output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    assert (out / "entity2id.txt").exists()
