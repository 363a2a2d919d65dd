"""`mesed-build annotate add-user|sync` and the annotation numbers in `mesed-build stats`."""

from __future__ import annotations

import json

from click.testing import CliRunner
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from annotation import auth, queue
from mesed_build.cli import main
from tests.annotation.conftest import PASSWORD


def test_add_user_sync_and_stats(demo_factory, tmp_path):
    demo = demo_factory({"overlap_share": 1.0, "overlap_k": 2, "calibration_share": 0.0})
    build_dir = str(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["annotate", "add-user", "ann", "--role", "admin", "--password-stdin",
                                  "--build-dir", build_dir], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "user ann (admin) created" in result.output
    again = runner.invoke(main, ["annotate", "add-user", "ann", "--password-stdin", "--build-dir", build_dir],
                          input=PASSWORD + "\n")
    assert again.exit_code != 0 and "exists already" in again.output
    short = runner.invoke(main, ["annotate", "add-user", "ben", "--password-stdin", "--build-dir", build_dir],
                          input="short\n")
    assert short.exit_code != 0 and "too short" in short.output
    runner.invoke(main, ["annotate", "add-user", "ben", "--password-stdin", "--build-dir", build_dir],
                  input=PASSWORD + "\n")
    ann = auth.authenticate(demo.store, "ann", PASSWORD)
    ben = auth.authenticate(demo.store, "ben", PASSWORD)
    assert ann.role == "admin" and ben.role == "annotator"
    assert auth.authenticate(demo.store, "ann", PASSWORD + "x") is None

    synced = runner.invoke(main, ["annotate", "sync", "--build-dir", build_dir])
    assert synced.exit_code == 0 and "rerank_items=48" in synced.output and "overlap_items=48" in synced.output

    options = demo.options()
    for user, labels in ((ann, ["ES", "ES", "S"]), (ben, ["ES", "S", "S"])):
        for label in labels:
            item = queue.next_item(demo.store, user.user_id, options)
            queue.submit_label(demo.store, user.user_id, item["item_id"], label)
    stats = runner.invoke(main, ["stats", "--build-dir", build_dir, "--json"])
    assert stats.exit_code == 0, stats.output
    summary = json.loads(stats.output)["annotation"]
    assert summary["progress"]["complete"] == 3 and summary["progress"]["labels"] == 6
    # both annotators took the same first three items (queue order): ES/ES, ES/S, S/S
    rows = summary["table1"]["rows"]
    assert (rows["Re-ranking"]["n"], rows["Re-ranking"]["ES"], rows["Re-ranking"]["S"]) == (3, 0.3333, 0.6667)
    assert summary["agreement"]["items"] == 3
    assert summary["agreement"]["kappa"] == round(statsmodels_fleiss([[2, 0, 0], [1, 1, 0], [0, 2, 0]]), 4)
    text = runner.invoke(main, ["stats", "--build-dir", build_dir])
    assert "annotation: 3/48 items complete" in text.output and "Table 1" in text.output
    assert "Fleiss' kappa" in text.output
