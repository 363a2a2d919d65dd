"""The MultiExpan model (MULTIEXPAN.md section 3) over any BERT-family text encoder."""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_TEXT_MODEL = "bert-base-uncased"


class ModelLoadError(RuntimeError):
    """The text encoder cannot be loaded (missing folder, or offline without a cached copy)."""


@dataclass
class ModelConfig:
    num_entities: int
    num_clusters: int  # number of classes + 1 (the hard-negative group)
    text_model: str | None = DEFAULT_TEXT_MODEL  # a name or a folder; None uses `bert_config`
    bert_config: dict[str, Any] | None = None  # a randomly initialised BertConfig (tests, benchmarks)
    use_images: bool = True
    image_dim: int = 2048
    num_patches: int = 36
    num_heads: int = 12
    image_layers: int = 3
    fusion_layers: int = 3
    dropout: float = 0.1
    head_dropout: float = 0.2
    projection_dim: int = 128
    projection_hidden: int = 256
    trainable_text_layers: int = 1  # the reference trains only the last encoder layer; -1 trains all of it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_text_encoder(cfg: ModelConfig):
    from transformers import BertConfig, BertModel

    if cfg.text_model is None:
        if cfg.bert_config is None:
            raise ValueError("ModelConfig needs text_model or bert_config")
        return BertModel(BertConfig(**cfg.bert_config), add_pooling_layer=False)
    try:
        return BertModel.from_pretrained(cfg.text_model, add_pooling_layer=False)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        hint = (
            "it is not cached and the process is offline; fetch it once with "
            f"`python -c \"from transformers import BertModel; BertModel.from_pretrained('{cfg.text_model}')\"` "
            "or pass --text-model PATH to a local BERT-family folder"
            if offline and not Path(cfg.text_model).exists()
            else str(exc).splitlines()[0]
        )
        raise ModelLoadError(f"cannot load text encoder {cfg.text_model!r}: {hint}") from None


def load_tokenizer(cfg: ModelConfig, vocab_file: str | None = None):
    from transformers import BertTokenizerFast

    if cfg.text_model is not None:
        try:
            return BertTokenizerFast.from_pretrained(cfg.text_model)
        except OSError as exc:
            raise ModelLoadError(f"cannot load tokenizer {cfg.text_model!r}: {str(exc).splitlines()[0]}") from None
    if vocab_file is None:
        raise ValueError("a random BertConfig needs a vocab_file for its tokenizer")
    with open(vocab_file, encoding="utf-8") as fh:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(fh)}
    # pass the mapping itself: transformers 5 ignores a `vocab_file=` keyword and silently keeps
    # only the special tokens, which turns every word into [UNK]
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    if len(tokenizer) < len(vocab) or tokenizer.convert_tokens_to_ids("[MASK]") == tokenizer.unk_token_id:
        raise ModelLoadError(f"{vocab_file}: the tokenizer did not take this vocabulary ({len(tokenizer)} tokens)")
    return tokenizer


class ReferenceTransformerLayer(nn.Module):
    """x = x + LN(MHA(x)); x = x + LN(FFN(x)): the reference's layer (post-sublayer LayerNorm)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * hidden, hidden)
        )
        self.norm2 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        attended, _ = self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        x = x + self.norm1(self.drop(attended))
        return x + self.norm2(self.drop(self.ffn(x)))


class ImageEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, hidden: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(cfg.image_dim, hidden), nn.Dropout(cfg.head_dropout), nn.LayerNorm(hidden), nn.GELU()
        )
        self.position = nn.Parameter(torch.zeros(1, cfg.num_patches, hidden))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(
            ReferenceTransformerLayer(hidden, cfg.num_heads, cfg.dropout) for _ in range(cfg.image_layers)
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.proj(patches) + self.position
        for layer in self.layers:
            x = layer(x)
        return x


class MultiExpanCore(nn.Module):
    """Encoders, fusion and MEP head: the part the momentum teacher copies."""

    def __init__(self, cfg: ModelConfig, text_encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.text = text_encoder
        hidden = text_encoder.config.hidden_size
        self.hidden = hidden
        self.image = ImageEncoder(cfg, hidden) if cfg.use_images else None
        self.fusion = nn.ModuleList(
            ReferenceTransformerLayer(hidden, cfg.num_heads, cfg.dropout) for _ in range(cfg.fusion_layers)
        )
        self.mep_head = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.Dropout(cfg.head_dropout),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, cfg.num_entities),
        )

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask_positions: torch.Tensor,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused hidden state at each sample's [MASK]: [B, h]."""
        tokens = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        padding = attention_mask == 0
        if self.image is not None:
            if image_features is None:
                raise ValueError("this model uses images but got no image features")
            patches = self.image(image_features.to(tokens.dtype))
            x = torch.cat([tokens, patches], 1)
            padding = torch.cat(
                [padding, torch.zeros(patches.shape[:2], dtype=torch.bool, device=padding.device)], 1
            )
        else:
            x = tokens
        for layer in self.fusion:
            x = layer(x, key_padding_mask=padding)
        return x[torch.arange(x.shape[0], device=x.device), mask_positions]

    def mep_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.mep_head(hidden).float(), dim=-1)


class MultiExpan(nn.Module):
    def __init__(self, cfg: ModelConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        text_encoder = text_encoder if text_encoder is not None else load_text_encoder(cfg)
        self.core = MultiExpanCore(cfg, text_encoder)
        hidden = self.core.hidden
        self.projection = nn.Sequential(
            nn.Linear(hidden, cfg.projection_hidden, bias=False),
            nn.BatchNorm1d(cfg.projection_hidden),
            nn.ReLU(),
            nn.Linear(cfg.projection_hidden, cfg.projection_dim),
        )
        self.cluster_head = nn.Sequential(
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, cfg.num_clusters),
        )
        self.teacher: MultiExpanCore | None = None
        self.freeze_text_layers()

    def freeze_text_layers(self) -> None:
        """Only the last `trainable_text_layers` encoder layers of the text model are trained."""
        text = self.core.text
        if self.cfg.trainable_text_layers < 0:
            return  # a randomly initialised encoder has nothing worth freezing
        for p in text.parameters():
            p.requires_grad = False
        layers = text.encoder.layer
        for layer in layers[len(layers) - self.cfg.trainable_text_layers :]:
            for p in layer.parameters():
                p.requires_grad = True

    def enable_teacher(self) -> None:
        """Create the momentum (EMA) copy of encoders and MEP head; it is never trained directly."""
        if self.teacher is None:
            self.teacher = copy.deepcopy(self.core)
            for p in self.teacher.parameters():
                p.requires_grad = False

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        if self.teacher is None:
            return
        for t, s in zip(self.teacher.parameters(), self.core.parameters()):
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
        for t, s in zip(self.teacher.buffers(), self.core.buffers()):
            t.copy_(s)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.core.encode(
            batch["input_ids"], batch["attention_mask"], batch["mask_positions"], batch.get("image_features")
        )

    def mep_log_probs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.core.mep_log_probs(self.encode(batch))

    def teacher_log_probs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.teacher is None:
            raise RuntimeError("call enable_teacher() first")
        self.teacher.eval()
        with torch.no_grad():
            hidden = self.teacher.encode(
                batch["input_ids"], batch["attention_mask"], batch["mask_positions"], batch.get("image_features")
            )
            return self.teacher.mep_log_probs(hidden)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(hidden).float(), dim=-1)

    def cluster_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.cluster_head(hidden).float(), dim=-1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        teacher = {id(p) for p in self.teacher.parameters()} if self.teacher is not None else set()
        return [p for p in self.parameters() if p.requires_grad and id(p) not in teacher]
