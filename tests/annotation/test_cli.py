"""`mesed-build annotate add-user|sync` and the annotation numbers in `mesed-build stats`."""

from __future__ import annotations

import json

import pytest
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


@pytest.mark.slow
def test_table1_diversity_with_the_rerank_clip(demo_factory, tmp_path):
    """`annotate table1 --diversity` embeds the images with the build's rerank CLIP (random weights here,
    seeded as the rerank stage seeds them) and reports 1 / mean pairwise cosine."""
    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    demo = demo_factory({"overlap_share": 0.0, "calibration_share": 0.0})
    clip = {"name": "ViT-S-32", "pretrained": None}
    demo.store.start_build("demo", "1" * 64, {"seed": 13, "annotation": {"overlap_share": 0.0, "calibration_share": 0.0},
                                              "rerank": {"clip": clip}}, ["annotation"], {})
    alice = auth.add_user(demo.store, "alice", PASSWORD)
    options = demo.options()
    judged = []
    for label in ("ES", "S", "ES", "ES"):
        item = queue.next_item(demo.store, alice.user_id, options)
        queue.submit_label(demo.store, alice.user_id, item["item_id"], label)
        judged.append(item["image_sha256"])
    result = CliRunner().invoke(main, ["annotate", "table1", "--diversity", "--json", "--build-dir", str(tmp_path),
                                       "--image-dir", str(demo.root)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("{"):])["rows"]
    assert rows["Re-ranking"]["n"] == 4 and rows["Top 1"]["diversity"] is None

    torch.manual_seed(13)
    model, _, preprocess = open_clip.create_model_and_transforms(clip["name"], pretrained=None)
    model.eval()
    paths = {sha: demo.root / sha[:2] / f"{sha}.jpg" for sha in judged}
    with torch.inference_mode():
        batch = torch.stack([preprocess(Image.open(paths[sha]).convert("RGB")) for sha in sorted(set(judged))])
        emb = dict(zip(sorted(set(judged)), model.encode_image(batch).float().numpy()))
    vectors = np.stack([emb[sha] / np.linalg.norm(emb[sha]) for sha in judged])
    sims = [float(vectors[i] @ vectors[j]) for i in range(4) for j in range(4) if i != j]
    assert rows["Re-ranking"]["diversity"] == pytest.approx(1 / (sum(sims) / len(sims)), rel=1e-3)
    assert rows["Annotation"]["diversity"] == rows["Re-ranking"]["diversity"]  # nothing was replaced
