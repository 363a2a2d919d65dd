"""The real loaders at random weights: the detector on real multi-object photos, batched and
single scoring agree, and missing weights offline fail with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from mesed_build.rerank.detector import ObjectDetector  # noqa: E402
from mesed_build.rerank.models import ModelNotAvailable, UnknownModel, load_clip, load_detector  # noqa: E402
from mesed_build.rerank.scorer import Eq1Scorer, ScoreRequest  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "images"
NAMES = ["dog.jpg", "horses.jpg", "person.jpg", "giraffe.jpg"]


@pytest.fixture(scope="module")
def photos():
    return {n: Image.open(PHOTOS / n).convert("RGB") for n in NAMES}


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return load_clip("ViT-S-32", None)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return load_detector("fasterrcnn_mobilenet_v3_large_320_fpn", None, score_threshold=0.0, max_objects=5,
                         min_size=320, max_size=320)


def test_default_detector_architecture_finds_boxes_inside_the_photos(photos):
    torch.manual_seed(0)
    model = load_detector("fasterrcnn_resnet50_fpn_v2", None, score_threshold=0.0, max_objects=4,
                          min_size=160, max_size=240)
    images = [photos["dog.jpg"]]
    boxes = ObjectDetector(model, batch_size=2, score_threshold=0.0, max_objects=4, min_box_px=4).boxes(images)
    assert len(boxes) == 1
    for image, image_boxes in zip(images, boxes):
        assert 1 <= len(image_boxes) <= 4
        for left, top, right, bottom in image_boxes:
            assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height


def test_no_detection_falls_back_to_the_whole_image(photos, detector):
    # no score reaches 1.01: every photo becomes its own single object
    nothing = ObjectDetector(detector, score_threshold=1.01, max_objects=5)
    boxes = nothing.boxes([photos[n] for n in NAMES])
    assert boxes == [[(0, 0, photos[n].width, photos[n].height)] for n in NAMES]


def test_embeddings_are_unit_vectors(clip, photos):
    scorer = Eq1Scorer(clip, None)
    emb = scorer.embed_images([photos["dog.jpg"], photos["eagle.jpg"] if "eagle.jpg" in photos else photos["horses.jpg"]])
    assert emb.shape == (2, clip.model.visual.output_dim)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    text = scorer.embed_texts(["a dog in front of a bicycle"])
    assert text.shape == (1, emb.shape[1])


def test_tensor_preprocessing_matches_open_clips_transform(clip, photos):
    # the scorer resizes/crops on tensors (on the GPU when there is one); open_clip's PIL transform
    # is the reference. They differ only by PIL's uint8 rounding (about 1/255 per pixel).
    scorer = Eq1Scorer(clip, None)
    for image in (photos["dog.jpg"], photos["giraffe.jpg"].crop((40, 10, 200, 420))):
        ours = scorer._clip_input(scorer._upload(image))
        reference = clip.preprocess(image)
        assert ours.shape == reference.shape == (3, 224, 224)
        assert float((ours - reference).abs().mean()) < 0.01


def test_batched_and_single_scoring_agree(clip, detector, photos):
    photos = {**photos, "dog-copy.jpg": photos["dog.jpg"].copy()}  # two same-size images share a detector batch
    det = ObjectDetector(detector, batch_size=4, score_threshold=0.0, max_objects=3)
    requests = [
        ScoreRequest("a", "A dog sits on a porch beside a bicycle.", [(n, photos[n]) for n in [*NAMES, "dog-copy.jpg"]],
                     ("inf", photos["person.jpg"])),
        ScoreRequest("b", "Horses walk across a dry field.", [(n, photos[n]) for n in NAMES[:2]], None),
    ]
    batched = Eq1Scorer(clip, det, alpha=0.4, batch_size=8).score(requests)
    single = {}
    for req in requests:
        single.update(Eq1Scorer(clip, ObjectDetector(detector, batch_size=1, score_threshold=0.0, max_objects=3),
                                alpha=0.4, batch_size=1).score([req]))
    for key in ("a", "b"):
        for s_batch, s_single in zip(batched[key], single[key], strict=True):
            assert s_batch.clip_term == pytest.approx(s_single.clip_term, abs=1e-4)
            assert s_batch.score == pytest.approx(s_single.score, abs=1e-4)
            assert s_batch.n_objects == s_single.n_objects
            if s_batch.object_term is not None:
                assert s_batch.object_term == pytest.approx(s_single.object_term, abs=1e-4)
    assert all(s.object_term is not None and 1 <= s.n_objects <= 3 for s in batched["a"])
    assert all(s.object_term is None for s in batched["b"])
    # eq. 1 holds on the stored terms
    for s in batched["a"]:
        assert s.score == pytest.approx(0.4 * s.clip_term + 0.6 * s.object_term)


def test_offline_without_cached_weights_fails_with_one_line(tmp_path):
    with pytest.raises(ModelNotAvailable) as clip_error:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path, offline=True)
    message = str(clip_error.value)
    assert "\n" not in message and "ViT-B-32/laion2b_s34b_b79k" in message and "mesed-build models fetch" in message
    with pytest.raises(ModelNotAvailable) as det_error:
        load_detector("fasterrcnn_resnet50_fpn_v2", "DEFAULT", cache_dir=tmp_path, offline=True)
    message = str(det_error.value)
    assert "\n" not in message and "fasterrcnn_resnet50_fpn_v2/COCO_V1" in message and "mesed-build models fetch" in message


def test_unknown_names_are_refused():
    with pytest.raises(UnknownModel, match="no pretrained tag 'nope'"):
        load_clip("ViT-S-32", "nope")
    with pytest.raises(UnknownModel, match="unknown detector"):
        load_detector("yolo", None)
