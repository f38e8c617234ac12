"""Evaluation: AUROC of one binary model d_k (Section 3.4: normal and adversarial scenarios), accuracy helpers.

Normal scenario: clean class-k test images (positives) vs clean other-class images (negatives).
Adversarial scenario: positives perturbed to *minimize* d_k and negatives perturbed to *maximize* d_k, L2 PGD
within eps. AUROC is scikit-learn's ``roc_auc_score`` over the scores d_k.
"""
from __future__ import annotations

import math

import torch
from sklearn.metrics import roc_auc_score

from .attacks import eval_mode, pgd_score
from .objectives import d_score


def _batched_scores(model, x, *, eps, steps, step_size, minimize, batch_size, generator, device):
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        if eps > 0:
            xb = pgd_score(model, d_score, xb, minimize=minimize, eps=eps, norm="l2", steps=steps,
                           step_size=step_size, generator=generator)
        with torch.no_grad():
            out.append(d_score(model, xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def binary_scores(model, x_pos, x_neg, *, eps=0.0, steps=10, step_size=None, batch_size=256, generator=None,
                  device="cpu"):
    """d_k on positives and negatives (float images in [0, 1]); with eps > 0, each side attacked against itself."""
    with eval_mode(model):
        s_pos = _batched_scores(model, x_pos, eps=eps, steps=steps, step_size=step_size, minimize=True,
                                batch_size=batch_size, generator=generator, device=device)
        s_neg = _batched_scores(model, x_neg, eps=eps, steps=steps, step_size=step_size, minimize=False,
                                batch_size=batch_size, generator=generator, device=device)
    return s_pos, s_neg


def auroc(s_pos: torch.Tensor, s_neg: torch.Tensor) -> float:
    """Area under the ROC curve for separating positives (label 1) from negatives (label 0) by score."""
    scores = torch.cat([s_pos, s_neg]).numpy()
    labels = [1] * len(s_pos) + [0] * len(s_neg)
    if not (math.isfinite(float(scores.sum()))):
        return float("nan")
    return float(roc_auc_score(labels, scores))


def binary_auroc(model, x_pos, x_neg, eps_grid=(0.0,), *, steps=10, step_size=None, batch_size=256, seed=0,
                 device="cpu") -> dict[float, float]:
    """AUROC of d_k for each eps in eps_grid (eps 0 = normal scenario, eps > 0 = adversarial scenario)."""
    out = {}
    for eps in eps_grid:
        g = torch.Generator().manual_seed(seed)
        s_pos, s_neg = binary_scores(model, x_pos, x_neg, eps=float(eps), steps=steps, step_size=step_size,
                                     batch_size=batch_size, generator=g, device=device)
        out[float(eps)] = auroc(s_pos, s_neg)
    return out


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n (well-behaved near 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def predict(model, x, batch_size=500, device="cpu") -> torch.Tensor:
    """argmax predictions (N,) of a classifier on float images (N, 3, 32, 32) in [0, 1]."""
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
