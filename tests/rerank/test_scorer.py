"""Eq. 1: the arithmetic against hand computations, and its plumbing through Eq1Scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mesed_build.rerank.scorer import Eq1Scorer, ScoreRequest, diversity, eq1, eq1_from_embeddings


def test_eq1_by_hand():
    # image [1,0,0] vs text [1,1,0]: cos = 1/sqrt(2); objects [0,1,0] and [3,4,0] vs infobox [0,2,0]:
    # cos 1.0 and 0.8, max 1.0; alpha 0.3 -> 0.3 * 0.7071068 + 0.7 * 1.0 = 0.9121320
    s = eq1_from_embeddings(np.array([1.0, 0, 0]), np.array([1.0, 1, 0]),
                            np.array([[0.0, 1, 0], [3.0, 4, 0]]), np.array([0.0, 2, 0]), alpha=0.3)
    assert s.clip_term == pytest.approx(1 / math.sqrt(2))
    assert s.object_term == pytest.approx(1.0)
    assert s.score == pytest.approx(0.9121320, abs=1e-7)
    assert s.n_objects == 2
    # only the second object faces the infobox image: max picks 0.8 -> 0.5 * 0.6 + 0.5 * 0.8 = 0.7
    s = eq1_from_embeddings(np.array([3.0, 4, 0]), np.array([1.0, 0, 0]),
                            np.array([[0.0, 0, 1], [3.0, 4, 0]]), np.array([0.0, 1, 0]), alpha=0.5)
    assert (s.clip_term, s.object_term) == (pytest.approx(0.6), pytest.approx(0.8))
    assert s.score == pytest.approx(0.7)


def test_without_infobox_image_the_first_term_alone():
    s = eq1_from_embeddings(np.array([3.0, 4, 0]), np.array([1.0, 0, 0]), np.array([[0.0, 1, 0]]), None, 0.2)
    assert s.object_term is None and s.score == pytest.approx(0.6)
    assert eq1(0.25, None, 0.9) == 0.25
    assert eq1(0.25, -0.5, 0.9) == pytest.approx(0.9 * 0.25 + 0.1 * -0.5)


class _Injected(Eq1Scorer):
    """Eq1Scorer with embeddings injected by region colour / text, and fixed detector boxes."""

    def __init__(self, image_vectors, text_vectors, boxes, alpha):
        super().__init__(clip=None, detector=None, alpha=alpha)
        self.image_vectors, self.text_vectors, self.fixed_boxes = image_vectors, text_vectors, boxes
        self.detector = self  # truthy: use the object term

    def embed_regions(self, regions):
        # a region is identified by the colour at its top-left corner
        return np.array([self.image_vectors[im.getpixel(box[:2])] for im, box in regions], dtype=np.float64)

    def embed_texts(self, texts):
        return np.array([self.text_vectors[t] for t in texts], dtype=np.float64)

    def boxes(self, images):
        return [self.fixed_boxes[im.getpixel((0, 0))] for im in images]


def test_scorer_plumbing_on_injected_embeddings():
    red, green, blue, white = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    # candidate "two": left half green, right half blue; crops are identified by their top-left pixel
    two = Image.new("RGB", (40, 20), green)
    two.paste(Image.new("RGB", (20, 20), blue), (20, 0))
    one = Image.new("RGB", (40, 20), red)
    infobox = Image.new("RGB", (10, 10), white)
    vectors = {red: [1, 0, 0], green: [0, 1, 0], blue: [0.6, 0.8, 0], white: [0, 0.6, 0.8]}
    scorer = _Injected(vectors, {"a sentence": [1, 0, 0]},
                       {red: [(0, 0, 40, 20)], green: [(0, 0, 20, 20), (20, 0, 40, 20)]}, alpha=0.25)
    out = scorer.score([
        ScoreRequest("s1", "a sentence", [("one", one), ("two", two)], ("inf", infobox)),
        ScoreRequest("s2", "a sentence", [("two", two)], None),
    ])
    one_s, two_s = out["s1"]
    # one: whole image red [1,0,0]: clip 1.0; its only crop is red: cos with white = 0 -> 0.25
    assert (one_s.clip_term, one_s.object_term, one_s.score) == (pytest.approx(1.0), pytest.approx(0.0), pytest.approx(0.25))
    # two: whole image read as green [0,1,0]: clip 0; crops green (cos 0.6) and blue (cos 0.48): max 0.6
    assert (two_s.clip_term, two_s.object_term) == (pytest.approx(0.0), pytest.approx(0.6))
    assert two_s.score == pytest.approx(0.75 * 0.6) and two_s.n_objects == 2
    # the same image for a sentence whose entity has no infobox image: first term only
    assert out["s2"][0].object_term is None and out["s2"][0].score == pytest.approx(0.0)


def test_diversity_by_hand():
    # pairwise cosines 1, 0, 0 -> mean 1/3 -> diversity 3
    assert diversity(np.array([[1.0, 0], [2.0, 0], [0, 1.0]])) == pytest.approx(3.0)
    assert diversity(np.array([[1.0, 0]])) is None
    assert diversity(np.array([[1.0, 0], [-1.0, 0]])) is None


def test_alpha_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        Eq1Scorer(None, None, alpha=1.5)
