"""The README's main job through the real CLI and the Prefect flow, and errors before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import DEMO_CONFIG

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def cli(*args, cwd=None, timeout=600, prefect_home=None):
    # each Prefect user gets its own PREFECT_HOME: the ephemeral server's SQLite must not be shared
    env = {**ENV, "PREFECT_HOME": str(prefect_home)} if prefect_home else ENV
    return subprocess.run(
        [sys.executable, "-m", "mesed_build", *args], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.slow
def test_build_stats_export_through_prefect(tmp_path):
    build_dir = tmp_path / "demo"
    run = cli("build", "--config", str(DEMO_CONFIG), "--build-dir", str(build_dir), prefect_home=tmp_path / "prefect")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Finished in state Completed" in run.stderr + run.stdout

    stats = cli("stats", "--build-dir", str(build_dir), "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    for key in ("classes", "entities", "sentences", "mentions"):
        assert isinstance(data[key], int) and data[key] > 0
    assert isinstance(data["dropped"], dict) and data["dropped"]
    assert data["build"]["status"] == "completed"
    assert set(data["build"]["stages"]) >= {"classes", "sentences"}

    text = cli("stats", "--build-dir", str(build_dir))
    assert "Anthropologists" in text.stdout and "dropped (stage/reason)" in text.stdout

    out = tmp_path / "export"
    exported = cli("export", "--build-dir", str(build_dir), "--format", "mesed", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert sum(1 for _ in open(out / "sentences.json", encoding="utf-8")) == data["sentences"]
    again = cli("export", "--build-dir", str(build_dir), "--format", "mesed", "--out", str(out))
    assert again.returncode != 0 and "not empty" in again.stderr


def test_misspelled_config_key_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = DEMO_CONFIG.read_text(encoding="utf-8").replace("max_sentences_per_entity", "max_sentence_per_entity")
    bad.write_text(text, encoding="utf-8")
    build_dir = tmp_path / "never"
    run = cli("build", "--config", str(bad), "--build-dir", str(build_dir), timeout=120)
    assert run.returncode != 0
    assert "limits" in run.stderr and "max_sentence_per_entity" in run.stderr
    assert "Traceback" not in run.stderr
    assert not build_dir.exists()


def test_unknown_stage_and_missing_store_are_clear_errors(tmp_path):
    run = cli("build", "--config", str(DEMO_CONFIG), "--build-dir", str(tmp_path / "b"), "--stages", "clases",
              timeout=120)
    assert run.returncode != 0 and "clases" in run.stderr and "Traceback" not in run.stderr
    stats = cli("stats", "--build-dir", str(tmp_path / "nothing"), timeout=120)
    assert stats.returncode != 0 and "no build store" in stats.stderr


def test_help_explains_commands():
    run = cli("--help", timeout=120)
    assert run.returncode == 0
    for command in ("build", "serve", "stats", "export"):
        assert command in run.stdout


def test_a_store_with_another_layout_is_a_clear_error(tmp_path):
    import sqlite3

    build_dir = tmp_path / "old"
    build_dir.mkdir()
    with sqlite3.connect(build_dir / "store.sqlite") as conn:
        conn.execute("CREATE TABLE classes (name TEXT PRIMARY KEY, level TEXT)")
    run = cli("stats", "--build-dir", str(build_dir), timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "store.sqlite" in run.stderr and "table 'classes' lacks parent, position, sources" in run.stderr
