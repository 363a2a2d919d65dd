"""Simple baselines: random, text-emb (mean MiniLM sentence embedding), image-only (mean image features).

`text-mep` (MultiExpan without its image branch) is run by the MultiExpan runner with use_images=False.
These baselines rank each query on its own (no joint expansion across classes): every non-seed
entity that has a representation is ranked by cosine similarity to the seeds' centroid.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np

from mesed_build.bench.loader import MesedData


def random_ranking(
    data: MesedData, queries: dict[str, list[list[int]]], target_size: int, seed: int = 0
) -> list[tuple[str, list[int], list[int]]]:
    eids = sorted(data.eid2name)
    results = []
    for name in sorted(queries):
        for index, seeds in enumerate(queries[name]):
            rng = random.Random(f"{seed}/{name}/{index}/{len(seeds)}")
            pool = [e for e in eids if e not in set(seeds)]
            rng.shuffle(pool)
            results.append((name, list(seeds), pool[: max(target_size - len(seeds), 0)]))
    return results


def rank_by_centroid(
    vectors: np.ndarray, row_eids: list[int], queries: dict[str, list[list[int]]], target_size: int
) -> list[tuple[str, list[int], list[int]]]:
    """Cosine to the mean of the (normalised) seed vectors; seeds without a vector are skipped."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    row = {eid: i for i, eid in enumerate(row_eids)}
    results = []
    for name in sorted(queries):
        for seeds in queries[name]:
            seed_rows = [row[e] for e in seeds if e in row]
            n_out = max(target_size - len(seeds), 0)
            if not seed_rows:
                results.append((name, list(seeds), []))
                continue
            centroid = unit[seed_rows].mean(axis=0)
            scores = unit @ centroid
            scores[seed_rows] = -np.inf
            order = np.argsort(-scores, kind="stable")
            seed_set = set(seeds)
            ranked = [row_eids[i] for i in order if row_eids[i] not in seed_set][:n_out]
            results.append((name, list(seeds), ranked))
    return results


def _entity_sentence_lists(data: MesedData) -> dict[int, list[int]]:
    by_entity: dict[int, list[int]] = {}
    for i, sentence in enumerate(data.sentences):
        for eid, _, _ in sentence.mentions:
            by_entity.setdefault(eid, []).append(i)
    return by_entity


def text_embeddings(
    data: MesedData, model_path: str, device: str = "cpu", batch_size: int = 64, progress: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Mean over an entity's sentences of the mean-pooled, L2-normalised MiniLM embedding."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    encoder = AutoModel.from_pretrained(model_path).to(device).eval()
    by_entity = _entity_sentence_lists(data)
    used = sorted({i for rows in by_entity.values() for i in rows})
    texts = [" ".join(data.sentences[i].tokens) for i in used]
    embeddings = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="text-emb", disable=not progress):
            enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                            return_tensors="pt").to(device)
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            embeddings[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
    position = {s: i for i, s in enumerate(used)}
    eids = sorted(by_entity)
    vectors = np.stack([embeddings[[position[s] for s in by_entity[e]]].mean(0) for e in eids])
    return vectors, eids


def image_vectors(data: MesedData, image_store) -> tuple[np.ndarray, list[int]]:
    """Mean over an entity's sentences (with stored image features) of the patch-averaged features
    (standardised per dimension when the store says so, as the model sees them)."""
    by_entity: dict[int, list[int]] = {}
    for sentence in data.sentences:
        row = image_store.index.get(sentence.image, -1) if sentence.image is not None else -1
        if row < 0:
            continue
        for eid, _, _ in sentence.mentions:
            by_entity.setdefault(eid, []).append(row)
    eids = sorted(by_entity)
    pooled_cache: dict[int, np.ndarray] = {}

    def pooled(rows: Iterable[int]) -> np.ndarray:
        out = []
        for r in rows:
            if r not in pooled_cache:
                x = np.asarray(image_store.features[r], dtype=np.float32)
                if image_store.standardize:
                    x = (x - image_store.mean) / image_store.std
                pooled_cache[r] = x.mean(0)
            out.append(pooled_cache[r])
        return np.mean(out, axis=0)

    vectors = np.stack([pooled(by_entity[e]) for e in eids]) if eids else np.zeros((0, image_store.dim))
    return vectors, eids
