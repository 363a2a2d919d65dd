"""The four MultiExpan losses (paper eq. 7-15, MULTIEXPAN.md section 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mep_loss(log_probs: torch.Tensor, targets: torch.Tensor, eta: float = 0.075) -> torch.Tensor:
    """KL(label-smoothed target || model): 1 - eta on the gold entity, eta / (V - 1) elsewhere; batch mean."""
    vocab = log_probs.shape[-1]
    off = eta / (vocab - 1)
    target = torch.full_like(log_probs, off)
    target.scatter_(1, targets.view(-1, 1), 1.0 - eta)
    # KLDivLoss(batchmean) as in the reference; 0 * log 0 never occurs because eta > 0
    return F.kl_div(log_probs, target, reduction="batchmean")


def _negative_mask(n: int, device: torch.device) -> torch.Tensor:
    """[2n, 2n] mask that is False on each row's own column and its partner's column."""
    eye = torch.eye(n, dtype=torch.bool, device=device)
    own = torch.cat([torch.cat([eye, eye], 1), torch.cat([eye, eye], 1)], 0)
    return ~own


def hard_negative_contrastive(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, tau: float = 0.05, beta: float = 1.0
) -> torch.Tensor:
    """Debiased hard-negative contrastive loss (eq. 9-12), mean over the 2B rows.

    Rows of z1 and z2 must be L2-normalised; row i of z1 and row i of z2 are partners.
    """
    n = z1.shape[0]
    if n < 2:
        raise ValueError("the contrastive loss needs at least 2 pairs in a batch")
    z = torch.cat([z1, z2], 0).float()
    sim = torch.exp(z @ z.t() / temperature)
    negatives = sim.masked_select(_negative_mask(n, z.device)).view(2 * n, 2 * n - 2)
    pos = torch.exp((z1.float() * z2.float()).sum(-1) / temperature)
    pos = torch.cat([pos, pos], 0)
    count = 2 * n - 2
    importance = negatives.pow(beta)
    reweighted = count * (importance * negatives).sum(-1) / importance.sum(-1)
    ng = (reweighted - tau * count * pos) / (1.0 - tau)
    ng = torch.clamp(ng, min=count * math.exp(-1.0 / temperature))
    return (-torch.log(pos / (pos + ng))).mean()


def cluster_loss(
    p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.5, tau: float = 0.05, beta: float = 1.0
) -> torch.Tensor:
    """Cluster-level loss (eq. 13-14): the contrastive estimator over the K columns of both views'
    soft assignments, minus the entropy of each view's column-mean (cluster-size) distribution.

    Deviation from the reference: columns are L2-normalised before the estimator (the reference
    uses raw columns, whose dot products overflow exp() to inf/NaN for large batches).
    """
    c1 = F.normalize(p1.float().t(), dim=1)
    c2 = F.normalize(p2.float().t(), dim=1)
    contrast = hard_negative_contrastive(c1, c2, temperature, tau, beta)
    entropy = 0.0
    for p in (p1, p2):
        mean = p.float().mean(0)
        mean = mean / mean.sum()
        entropy = entropy + -(mean * torch.log(mean.clamp_min(1e-12))).sum()
    return contrast - entropy


def distillation_loss(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """Momentum distillation (eq. 15): KL(teacher || student), batch mean, teacher detached.

    Deviation from the reference, which passes probabilities where log-probabilities belong and lets
    gradients flow into the teacher.
    """
    teacher = teacher_log_probs.detach().float()
    return F.kl_div(student_log_probs.float(), teacher, reduction="batchmean", log_target=True)
