"""Training MultiExpan in modes 0-4 (MULTIEXPAN.md section 4) on one device.

Mode 0 = MEP; 1 = MEP + contrastive (CL); 2 = MEP + cluster; 3 = MEP + momentum distillation (MD);
4 = all. Per epoch: CL passes, cluster passes, then one MEP (+MD) pass, each phase taking its own
optimizer steps on one shared AdamW.

One device stands in for the reference's 8: micro-batches accumulate gradients until a target
global batch is reached. The contrastive and cluster losses couple only the rows of one
micro-batch (as they couple the rows of one GPU's batch in the reference).

Every random choice derives from `seed`, the epoch and the phase, so a resumed run samples the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mesed_build.bench.losses import cluster_loss, distillation_loss, hard_negative_contrastive, mep_loss
from mesed_build.bench.samples import PreparedData, collate, length_bucketed_batches

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
NEGATIVE_GROUP = "__hard_negatives__"


@dataclass
class TrainConfig:
    mode: int = 4
    epochs: int = 5  # the reference runs 50
    micro_batch: int = 32
    global_batch: int = 256  # the reference: 2048 (8 GPUs x 256)
    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    eta: float = 0.075
    sentences_per_entity: int = 64
    pair_sentences: int = 64
    cl_passes: int = 2
    cluster_passes: int = 2
    temperature: float = 0.5
    tau: float = 0.05
    beta: float = 1.0
    cl_weight: float = 0.5
    cluster_weight: float = 0.2
    md_weight: float = 0.02
    momentum: float = 0.995
    seed: int = 0
    bf16: bool = True  # only takes effect on CUDA
    max_steps_per_phase: int | None = None  # micro-batches per phase; for benchmarks and smoke runs
    # length bucketing: sort within chunks of this many batches (1 = plain shuffled batches). Large
    # chunks save padding but make batches of near-identical length, which on templated data means
    # near-identical sentences; keep it small on tiny sets.
    bucket_batches: int = 50

    def __post_init__(self) -> None:
        if self.mode not in (0, 1, 2, 3, 4):
            raise ValueError(f"mode must be 0-4, got {self.mode}")

    @property
    def uses_cl(self) -> bool:
        return self.mode in (1, 4)

    @property
    def uses_cluster(self) -> bool:
        return self.mode in (2, 4)

    @property
    def uses_md(self) -> bool:
        return self.mode in (3, 4)

    @property
    def accumulation(self) -> int:
        return max(1, math.ceil(self.global_batch / self.micro_batch))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for, but torch sees no CUDA device")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: str, bf16: bool):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16 and device.startswith("cuda"))


def build_pair_groups(groups: dict[str, list[int]], rng: random.Random, partners: int = 2) -> list[tuple[int, int]]:
    """Self-pairs plus `partners` random same-group pairs per entity (distinct pairs where possible)."""
    pairs: list[tuple[int, int]] = []
    for name in sorted(groups):
        members = sorted(set(groups[name]))
        seen: set[tuple[int, int]] = set()
        for e in members:
            pairs.append((e, e))
            seen.add((e, e))
            for _ in range(partners):
                for _attempt in range(10):
                    other = rng.choice(members)
                    key = (min(e, other), max(e, other))
                    if key not in seen:
                        break
                seen.add(key)
                pairs.append((e, other))
    return pairs


def sentence_pairs(
    pairs: list[tuple[int, int]], by_entity: list[list[int]], limit: int, rng: random.Random
) -> list[tuple[int, int]]:
    """For each entity pair, up to `limit` (sample, sample) pairs; the shorter side samples with replacement."""
    out = []
    for a, b in pairs:
        sa, sb = by_entity[a], by_entity[b]
        if not sa or not sb:
            continue
        n = min(max(len(sa), len(sb)), limit)
        pick_a = rng.sample(sa, n) if len(sa) >= n else [rng.choice(sa) for _ in range(n)]
        pick_b = rng.sample(sb, n) if len(sb) >= n else [rng.choice(sb) for _ in range(n)]
        out.extend(zip(pick_a, pick_b))
    return out


@dataclass
class PhaseStats:
    name: str
    steps: int = 0
    micro_batches: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.micro_batches, 1)

    def as_dict(self) -> dict:
        return {
            "phase": self.name,
            "optimizer_steps": self.steps,
            "micro_batches": self.micro_batches,
            "samples": self.samples,
            "mean_loss": self.mean_loss,
            "seconds": self.seconds,
            **self.extra,
        }


class Trainer:
    def __init__(
        self,
        model,
        prepared: PreparedData,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        image_store=None,
        device: str = "cpu",
        pair_groups: dict[str, list[int]] | None = None,
        progress: bool | None = None,
        on_epoch: Callable[[int, list[dict]], None] | None = None,
    ):
        self.model = model
        self.prepared = prepared
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.image_store = image_store if model.cfg.use_images else None
        self.device = device
        self.pair_groups = pair_groups
        self.progress = progress if progress is not None else os.isatty(2)
        self.on_epoch = on_epoch
        if (cfg.uses_cl or cfg.uses_cluster) and not pair_groups:
            raise ValueError(f"mode {cfg.mode} needs positive/negative groups mined from a mode-0 model")
        if cfg.uses_md:
            model.enable_teacher()
        self.model.to(device)
        self.optimizer = torch.optim.AdamW(
            model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps
        )
        self.by_entity = prepared.samples_by_entity()
        self.lengths = [len(s.input_ids) for s in prepared.samples]
        self.history: list[dict] = []
        self.start_epoch = 0

    # --- checkpoints -------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def save(self, epoch: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "eids": self.prepared.eids,
            "model_config": self.model.cfg.to_dict(),
            "train_config": asdict(self.cfg),
            "pair_groups": self.pair_groups,
        }
        tmp = self._checkpoint_path().with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self._checkpoint_path())  # a kill mid-save leaves the previous epoch intact

    def try_resume(self) -> bool:
        path = self._checkpoint_path()
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["eids"] != self.prepared.eids:
            raise RuntimeError(f"{path}: checkpoint was trained on a different entity list; use a new --out")
        saved = {k: v for k, v in state["train_config"].items() if k != "epochs"}
        current = {k: v for k, v in asdict(self.cfg).items() if k != "epochs"}
        if saved != current:
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise RuntimeError(f"{path}: checkpoint used other training settings ({', '.join(diff)}); use a new --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = state["history"]
        self.start_epoch = state["epoch"]
        log.info("resumed %s after epoch %d", path, self.start_epoch)
        return True

    # --- phases ------------------------------------------------------------------------------
    def _rng(self, epoch: int, phase: str) -> random.Random:
        return random.Random(f"{self.cfg.seed}/{epoch}/{phase}")

    def _optimizer_loop(self, stats: PhaseStats, batches, loss_fn) -> None:
        cfg = self.cfg
        accumulation = cfg.accumulation
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        pending = 0
        start = time.perf_counter()
        from tqdm import tqdm

        limit = cfg.max_steps_per_phase
        total = len(batches) if limit is None else min(limit, len(batches))
        for batch_items in tqdm(batches[:total], desc=stats.name, disable=not self.progress, leave=False):
            with autocast(self.device, cfg.bf16):
                loss, n = loss_fn(batch_items)
            (loss / accumulation).backward()
            stats.loss_sum += float(loss.detach())
            stats.micro_batches += 1
            stats.samples += n
            pending += 1
            if pending == accumulation:
                self._step(stats)
                pending = 0
        if pending:
            self._step(stats)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        stats.seconds = time.perf_counter() - start

    def _step(self, stats: PhaseStats) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.update_teacher(self.cfg.momentum)
        stats.steps += 1

    def _collate(self, indices: list[int]) -> dict:
        return collate([self.prepared.samples[i] for i in indices], self.prepared.pad_id, self.image_store, self.device)

    def mep_phase(self, epoch: int) -> PhaseStats:
        cfg = self.cfg
        rng = self._rng(epoch, "mep")
        picked: list[int] = []
        for samples in self.by_entity:
            if not samples:
                continue
            n = cfg.sentences_per_entity
            picked.extend(rng.sample(samples, n) if len(samples) >= n else [rng.choice(samples) for _ in range(n)])
        lengths = self.lengths
        batches = length_bucketed_batches(list(range(len(picked))), [lengths[i] for i in picked], cfg.micro_batch, rng,
                                          cfg.bucket_batches)
        batches = [[picked[i] for i in b] for b in batches]
        stats = PhaseStats("mep+md" if cfg.uses_md else "mep")
        mep_sum = [0.0]

        def loss_fn(indices):
            batch = self._collate(indices)
            log_probs = self.model.mep_log_probs(batch)
            loss = mep_loss(log_probs, batch["entities"], cfg.eta)
            mep_sum[0] += float(loss.detach())
            if cfg.uses_md:
                teacher = self.model.teacher_log_probs(batch)
                loss = (1 - cfg.md_weight) * loss + cfg.md_weight * distillation_loss(log_probs, teacher)
            return loss, len(indices)

        self._optimizer_loop(stats, batches, loss_fn)
        stats.extra["mean_mep_loss"] = mep_sum[0] / max(stats.micro_batches, 1)
        return stats

    def _pair_batches(self, epoch: int, phase: str) -> list[list[tuple[int, int]]]:
        rng = self._rng(epoch, phase)
        groups = {k: v for k, v in self.pair_groups.items() if v}
        entity_pairs = build_pair_groups(groups, rng)
        pairs = sentence_pairs(entity_pairs, self.by_entity, self.cfg.pair_sentences, rng)
        lengths = [max(self.lengths[a], self.lengths[b]) for a, b in pairs]
        batches = length_bucketed_batches(list(range(len(pairs))), lengths, self.cfg.micro_batch, rng,
                                          self.cfg.bucket_batches)
        # like the reference's drop_last: the losses need at least 2 rows, BatchNorm too
        return [[pairs[i] for i in b] for b in batches if len(b) >= 2]

    def _encode_pair(self, items):
        left = self._collate([a for a, _ in items])
        right = self._collate([b for _, b in items])
        return self.model.encode(left), self.model.encode(right)

    def contrastive_phase(self, epoch: int, index: int) -> PhaseStats:
        cfg = self.cfg
        stats = PhaseStats(f"cl{index + 1}")

        def loss_fn(items):
            h1, h2 = self._encode_pair(items)
            z1, z2 = self.model.project(h1), self.model.project(h2)
            return cfg.cl_weight * hard_negative_contrastive(z1, z2, cfg.temperature, cfg.tau, cfg.beta), len(items)

        self._optimizer_loop(stats, self._pair_batches(epoch, f"cl{index}"), loss_fn)
        return stats

    def cluster_phase(self, epoch: int, index: int) -> PhaseStats:
        cfg = self.cfg
        stats = PhaseStats(f"cluster{index + 1}")

        def loss_fn(items):
            h1, h2 = self._encode_pair(items)
            p1, p2 = self.model.cluster_probs(h1), self.model.cluster_probs(h2)
            return cfg.cluster_weight * cluster_loss(p1, p2, cfg.temperature, cfg.tau, cfg.beta), len(items)

        self._optimizer_loop(stats, self._pair_batches(epoch, f"cluster{index}"), loss_fn)
        return stats

    def train(self, resume: bool = True) -> list[dict]:
        if resume:
            self.try_resume()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            torch.manual_seed(self.cfg.seed * 1000 + epoch)  # dropout, per epoch, so resumes match
            phases: list[PhaseStats] = []
            if self.cfg.uses_cl:
                phases += [self.contrastive_phase(epoch, i) for i in range(self.cfg.cl_passes)]
            if self.cfg.uses_cluster:
                phases += [self.cluster_phase(epoch, i) for i in range(self.cfg.cluster_passes)]
            phases.append(self.mep_phase(epoch))
            record = {"epoch": epoch + 1, "phases": [p.as_dict() for p in phases]}
            self.history.append(record)
            log.info("epoch %d: %s", epoch + 1, json.dumps(record["phases"]))
            self.save(epoch + 1)
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1, self.history)
        return self.history


def mine_pair_groups(
    expansions: list[tuple[str, list[int], list[int]]],
    eid2row: dict[int, int],
    positives_top: int = 5,
    negative_ranks: tuple[int, int] = (171, 200),
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Positive groups per class (seeds + top `positives_top` of each query's expansion) and one
    group of hard negatives (ranks lo..hi, 1-based, of any query's expansion), from a mode-0 model.

    No gold label is read: the reference filters positives with the gold set, which leaks the test set.
    Returns the groups (as entity rows) and counts for the report.
    """
    groups: dict[str, set[int]] = {}
    negatives: set[int] = set()
    lo, hi = negative_ranks
    for name, seeds, ranked in expansions:
        members = groups.setdefault(name, set())
        members.update(eid2row[e] for e in seeds if e in eid2row)
        members.update(eid2row[e] for e in ranked[:positives_top])
        negatives.update(eid2row[e] for e in ranked[lo - 1 : hi])
    positives = set().union(*groups.values()) if groups else set()
    negatives -= positives
    out = {name: sorted(rows) for name, rows in sorted(groups.items())}
    out[NEGATIVE_GROUP] = sorted(negatives)
    counts = {"positive_entities": len(positives), "hard_negative_entities": len(negatives)}
    return out, counts
