"""Each loss against a direct, element-by-element computation of its formula (MULTIEXPAN.md section 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mesed_build.bench.losses import cluster_loss, distillation_loss, hard_negative_contrastive, mep_loss


def test_mep_loss_is_kl_to_label_smoothed_target():
    torch.manual_seed(0)
    log_probs = F.log_softmax(torch.randn(3, 5), dim=-1)
    targets = torch.tensor([0, 4, 2])
    eta, vocab = 0.075, 5
    total = 0.0
    for b in range(3):
        for j in range(vocab):
            t = 1 - eta if j == targets[b] else eta / (vocab - 1)
            total += t * (math.log(t) - log_probs[b, j].item())
    assert mep_loss(log_probs, targets, eta).item() == pytest.approx(total / 3, rel=1e-5)


def _direct_contrastive(z1, z2, t, tau, beta):
    z = torch.cat([z1, z2]).tolist()
    n = len(z1)
    N = 2 * n - 2
    losses = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        dot = lambda a, b: sum(x * y for x, y in zip(z[a], z[b]))  # noqa: E731
        pos = math.exp(dot(i, partner) / t)
        neg = [math.exp(dot(i, j) / t) for j in range(2 * n) if j not in (i, partner)]
        assert len(neg) == N
        R = N * sum(v ** (beta + 1) for v in neg) / sum(v ** beta for v in neg)
        ng = max((R - tau * N * pos) / (1 - tau), N * math.exp(-1 / t))
        losses.append(-math.log(pos / (pos + ng)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_hard_negative_contrastive_matches_eq_9_to_12(beta):
    torch.manual_seed(1)
    z1 = F.normalize(torch.randn(4, 6), dim=-1)
    z2 = F.normalize(z1 + 0.3 * torch.randn(4, 6), dim=-1)
    got = hard_negative_contrastive(z1, z2, temperature=0.5, tau=0.05, beta=beta).item()
    assert got == pytest.approx(_direct_contrastive(z1, z2, 0.5, 0.05, beta), rel=1e-5)


def test_contrastive_clamp_lower_bound_is_used():
    # identical rows everywhere: R = N e^{2}, pos = e^{2}; (R - tau N pos)/(1 - tau) = N e^{2} > N e^{-2}
    z = F.normalize(torch.ones(3, 4), dim=-1)
    N = 4
    expected = -math.log(math.exp(2) / (math.exp(2) + N * math.exp(2)))
    assert hard_negative_contrastive(z, z.clone()).item() == pytest.approx(expected, rel=1e-6)


def test_cluster_loss_is_column_estimator_minus_entropies():
    torch.manual_seed(2)
    p1 = F.softmax(torch.randn(6, 3), dim=-1)
    p2 = F.softmax(p1.log() + 0.2 * torch.randn(6, 3), dim=-1)
    # columns (one per cluster) L2-normalised, then the same estimator over the 2K column rows
    c1 = [[p1[b, k].item() for b in range(6)] for k in range(3)]
    c2 = [[p2[b, k].item() for b in range(6)] for k in range(3)]
    unit = lambda v: [x / math.sqrt(sum(y * y for y in v)) for x in v]  # noqa: E731
    contrast = _direct_contrastive(torch.tensor([unit(c) for c in c1]), torch.tensor([unit(c) for c in c2]),
                                   0.5, 0.05, 1.0)
    entropy = 0.0
    for p in (p1, p2):
        mean = [sum(p[b, k].item() for b in range(6)) / 6 for k in range(3)]
        entropy += -sum(m * math.log(m) for m in mean)
    assert cluster_loss(p1, p2).item() == pytest.approx(contrast - entropy, rel=1e-5)


def test_cluster_loss_stays_finite_for_a_large_confident_batch():
    # raw columns of a 4096-row batch have dot products in the thousands: exp() overflows without normalising
    logits = torch.zeros(4096, 5)
    logits[:, 0] = 30.0
    p = F.softmax(logits, dim=-1)
    assert torch.isfinite(cluster_loss(p, p.clone()))


def test_distillation_is_kl_teacher_student_with_detached_teacher():
    torch.manual_seed(3)
    student = F.log_softmax(torch.randn(2, 4, requires_grad=True), dim=-1)
    teacher_logits = torch.randn(2, 4, requires_grad=True)
    teacher = F.log_softmax(teacher_logits, dim=-1)
    direct = 0.0
    for b in range(2):
        for j in range(4):
            pt = teacher[b, j].exp().item()
            direct += pt * (teacher[b, j].item() - student[b, j].item())
    loss = distillation_loss(student, teacher)
    assert loss.item() == pytest.approx(direct / 2, rel=1e-5)
    loss.backward()
    assert teacher_logits.grad is None  # no gradient reaches the teacher
