"""Model inputs (MULTIEXPAN.md section 2): one masked sample per mention, with its image row.

Deviation from the reference: tokens go through real WordPiece (BertTokenizerFast with
is_split_into_words=True) instead of a whole-word vocabulary lookup that maps unknown words to [UNK].
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mesed_build.bench.loader import MesedData

MAX_SENTENCE_TOKENS = 150
MIN_SENTENCES_PER_ENTITY = 2
MAX_WORDPIECES = 512


@dataclass
class Sample:
    input_ids: np.ndarray  # int32, [CLS] ... [MASK] ... [SEP]
    mask_position: int
    entity: int  # row in the sorted entity order
    image_row: int  # row in the ImageFeatureStore, -1 for a text-only model


@dataclass
class PreparedData:
    data: MesedData
    eids: list[int]  # sorted; row i of every V-sized vector is eids[i]
    samples: list[Sample]
    drops: Counter = field(default_factory=Counter)
    pad_id: int = 0

    @property
    def eid2row(self) -> dict[int, int]:
        return {eid: i for i, eid in enumerate(self.eids)}

    @property
    def num_entities(self) -> int:
        return len(self.eids)

    def samples_by_entity(self) -> list[list[int]]:
        by_entity: list[list[int]] = [[] for _ in self.eids]
        for i, s in enumerate(self.samples):
            by_entity[s.entity].append(i)
        return by_entity


def prepare_samples(data: MesedData, tokenizer, image_store=None) -> PreparedData:
    """Mask each mention, drop what the reference drops (and count why), and sort the entities.

    With `image_store`, sentences whose image has no stored features are dropped (counted).
    """
    drops: Counter[str] = Counter()
    raw: list[tuple[list[int], int, int, int]] = []  # ids, mask pos, eid, image row
    cls_id, sep_id, mask_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    for sentence in data.sentences:
        if not sentence.mentions:
            drops["sentence_without_mentions"] += 1
            continue
        if len(sentence.tokens) > MAX_SENTENCE_TOKENS:
            drops["sentence_over_150_tokens"] += 1
            continue
        image_row = -1
        if image_store is not None:
            if sentence.image is None:
                drops["sentence_without_image"] += 1
                continue
            image_row = image_store.index.get(sentence.image, -1)
            if image_row < 0:
                drops["sentence_image_has_no_features"] += 1
                continue
        words = [t.lower() for t in sentence.tokens]
        encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        word_ids = encoded.word_ids()
        ids = encoded["input_ids"]
        for eid, start, end in sentence.mentions:
            left = [t for t, w in zip(ids, word_ids) if w is not None and w < start]
            right = [t for t, w in zip(ids, word_ids) if w is not None and w > end]
            sample = [cls_id] + left + [mask_id] + right + [sep_id]
            if len(sample) > MAX_WORDPIECES:
                drops["mention_over_512_wordpieces"] += 1
                continue
            raw.append((sample, len(left) + 1, eid, image_row))
    per_entity = Counter(eid for _, _, eid, _ in raw)
    kept = sorted(eid for eid, n in per_entity.items() if n >= MIN_SENTENCES_PER_ENTITY)
    few = [eid for eid, n in per_entity.items() if n < MIN_SENTENCES_PER_ENTITY]
    if few:
        drops["entity_under_2_sentences"] += len(few)
        drops["mention_of_dropped_entity"] += sum(per_entity[e] for e in few)
    no_mention = len(set(data.eid2name) - set(per_entity))
    if no_mention:
        drops["entity_without_usable_sentence"] += no_mention
    row = {eid: i for i, eid in enumerate(kept)}
    samples = [
        Sample(np.asarray(ids, dtype=np.int32), pos, row[eid], image_row)
        for ids, pos, eid, image_row in raw
        if eid in row
    ]
    return PreparedData(data, kept, samples, drops, tokenizer.pad_token_id or 0)


def length_bucketed_batches(
    indices: list[int], lengths: list[int], batch_size: int, rng: random.Random, bucket_batches: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length within chunks of `bucket_batches` batches, then shuffle the batches.

    Batches of similar length waste little padding, and the order still changes every epoch.
    """
    order = list(indices)
    rng.shuffle(order)
    chunk = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(samples: list[Sample], pad_id: int, image_store=None, device: str = "cpu") -> dict:
    import torch

    longest = max(len(s.input_ids) for s in samples)
    ids = np.full((len(samples), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(samples), longest), dtype=np.int64)
    for i, s in enumerate(samples):
        ids[i, : len(s.input_ids)] = s.input_ids
        mask[i, : len(s.input_ids)] = 1
    batch = {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "mask_positions": torch.tensor([s.mask_position for s in samples], device=device),
        "entities": torch.tensor([s.entity for s in samples], device=device),
    }
    if image_store is not None:
        rows = np.asarray([s.image_row for s in samples], dtype=np.int64)
        feats = torch.from_numpy(image_store.gather(rows)).to(device).float()
        if image_store.standardize:
            mean = torch.from_numpy(image_store.mean).to(device)
            std = torch.from_numpy(image_store.std).to(device)
            feats = (feats - mean) / std
        batch["image_features"] = feats
    return batch
