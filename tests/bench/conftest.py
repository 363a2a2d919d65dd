"""Fixtures for the benchmark tests: a real-text MESED layout, a tiny synthetic set, tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bench" / "enwiki_mini"


@pytest.fixture(autouse=True)
def _one_thread():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def enwiki_mini(tmp_path) -> Path:
    """A private copy of the real-text fixture (tests may break it on purpose)."""
    target = tmp_path / "enwiki_mini"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="session")
def enwiki_features(tmp_path_factory) -> Path:
    """ResNet-50 (weights=None) features of the fixture's real photos, computed once per session."""
    from mesed_build.bench.features import compute_image_features
    from mesed_build.bench.loader import load_mesed

    data = load_mesed(FIXTURE)
    folder = tmp_path_factory.mktemp("enwiki_features")
    images = sorted({s.image for s in data.sentences})
    compute_image_features(FIXTURE, images, folder, weights=None, progress=False)
    return folder


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    from mesed_build.bench.synth import SynthConfig, make_synthetic

    root = tmp_path_factory.mktemp("synthetic") / "data"
    # the two image-disambiguated families only: the classes where images must be used
    make_synthetic(root, SynthConfig(entities_per_class=6, distractors=4, sentences_per_entity=4, image_variants=2,
                                     families=(0, 1)))
    return root


@pytest.fixture(scope="session")
def synthetic_features(synthetic_set, tmp_path_factory) -> Path:
    from mesed_build.bench.features import compute_image_features
    from mesed_build.bench.loader import load_mesed

    data = load_mesed(synthetic_set)
    folder = tmp_path_factory.mktemp("synthetic_features")
    compute_image_features(synthetic_set, sorted({s.image for s in data.sentences}), folder, weights=None,
                           progress=False)
    return folder


def write_word_vocab(data_dir: Path, path: Path) -> Path:
    """A WordPiece vocab of the dataset's lowercased words plus single characters, for tiny random BERTs
    on machines without the offline MiniLM package (its vocab is the usual choice)."""
    from mesed_build.bench.loader import load_mesed

    words = {t.lower() for s in load_mesed(data_dir).sentences for t in s.tokens}
    chars = {c for w in words for c in w}
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + sorted(chars) + sorted("##" + c for c in chars)
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return path
