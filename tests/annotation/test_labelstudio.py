"""Label Studio interop: tasks + labeling config out, Label Studio's JSON export back in."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import sqlalchemy as sa
from click.testing import CliRunner

from annotation import results
from mesed_build import store as st
from mesed_build.cli import main


def region(from_name: str, choice: str, n: int) -> dict:
    # a `choices` region as Label Studio's JSON export writes it (https://labelstud.io/guide/task_format)
    return {"id": f"r{n}", "from_name": from_name, "to_name": "image", "type": "choices", "origin": "manual",
            "value": {"choices": [choice]}}


def test_export_tasks_and_import_annotations(demo_factory, tmp_path):
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    runner = CliRunner()
    out = tmp_path / "ls"
    result = runner.invoke(main, ["annotate", "export-labelstudio", "--build-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == 48
    config = ET.fromstring((out / "labeling-config.xml").read_text())
    relevance = config.find(".//Choices[@name='relevance']")
    assert [c.get("value") for c in relevance.findall("Choice")] == ["R/T E&S", "R/T S", "IR"]
    assert config.find(".//Choices[@name='replacement']").get("value") == "$candidates"
    first = tasks[0]["data"]
    assert first["image"] == f"/data/local-files/?d={first['image_sha256'][:2]}/{first['image_sha256']}.jpg"
    assert "[" in first["sentence"] and first["entity"] in first["sentence"].split("[", 1)[1]
    assert [c["value"] for c in first["candidates"]][-1] == "none fits" and len(first["candidates"]) == 5

    # what Label Studio exports after annotators worked on the first four tasks
    keep, replaced, none, skipped = (t["data"] for t in tasks[:4])
    export = [
        {"id": 1, "data": keep, "annotations": [
            {"id": 11, "completed_by": 7, "was_cancelled": False, "result": [region("relevance", "R/T E&S", 1)]}]},
        {"id": 2, "data": replaced, "annotations": [
            {"id": 21, "completed_by": {"id": 8, "email": "ann@example.org"}, "was_cancelled": False,
             "result": [region("relevance", "IR", 2), region("replacement", replaced["candidates"][1]["value"], 3),
                        region("replacement_fit", "replacement fits the sentence only", 4)]}]},
        {"id": 3, "data": none, "annotations": [
            {"id": 31, "completed_by": 7, "was_cancelled": False,
             "result": [region("relevance", "IR", 5), region("replacement", "none fits", 6)]},
            {"id": 32, "completed_by": 9, "was_cancelled": True, "result": []}]},
        {"id": 4, "data": skipped, "annotations": [{"id": 41, "completed_by": 7, "was_cancelled": False, "result": []}]},
        {"id": 5, "data": {"image": "x"}, "annotations": []},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    result = runner.invoke(main, ["annotate", "import-labelstudio", str(path), "--build-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "labels=3" in result.output
    lab, users = st.annotation_labels, st.annotation_users
    with demo.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(lab.c.item_id, users.c.name, lab.c.label, lab.c.replacement_sha256, lab.c.replacement_label,
                      lab.c.none_fits).select_from(lab.join(users, users.c.user_id == lab.c.user_id))
            .order_by(lab.c.label_id)).all()
        active = conn.execute(sa.select(users.c.active).where(users.c.name == "ls-7")).scalar_one()
    assert [tuple(r) for r in rows] == [
        (keep["item_id"], "ls-7", "ES", None, None, False),
        (replaced["item_id"], "ls-ann_example.org", "IR", replaced["candidates"][1]["value"], "S", False),
        (none["item_id"], "ls-7", "IR", None, None, True),
    ]
    assert active is False  # imported annotators cannot log in
    drops = demo.store.drops_by_reason()
    assert drops["annotation/labelstudio_cancelled"] == 1
    assert drops["annotation/labelstudio_no_relevance"] == 1
    assert drops["annotation/labelstudio_task_without_item_id"] == 1
    final = results.final_images(demo.store)
    assert final[_hash(demo, keep)] == keep["image_sha256"]
    assert final[_hash(demo, replaced)] == replaced["candidates"][1]["value"]
    assert final[_hash(demo, none)] is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(main, ["annotate", "import-labelstudio", str(bad), "--build-dir", str(tmp_path)])
    assert result.exit_code != 0 and "bad.json: not a readable Label Studio JSON export" in result.output


def _hash(demo, data) -> str:
    with demo.store.engine.connect() as conn:
        return conn.execute(sa.select(st.annotation_items.c.sentence_hash)
                            .where(st.annotation_items.c.item_id == data["item_id"])).scalar_one()
