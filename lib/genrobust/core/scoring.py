"""AUROC of one binary model d_k (Section 3.4): the normal scenario (clean class-k test images vs clean
other-class images) and the adversarial scenario (positives perturbed to *minimize* d_k, negatives to *maximize*
it, L2 PGD within eps). Training's model selection and the ablations (Figs. 5-8) both score d_k this way.
"""
from __future__ import annotations

import torch

from .attacks import eval_mode, pgd_score
from .fold import folded_copy
from .metrics import auroc
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


def binary_auroc_scores(model, x_pos, x_neg, eps_grid=(0.0,), *, steps=10, step_size=None, batch_size=256, seed=0,
                        device="cpu") -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """The per-example scores behind :func:`binary_auroc`, with the same attacks and seeds:
    {eps: (s_pos (n_pos,), s_neg (n_neg,))}, so ``auroc(*scores[eps]) == binary_auroc(...)[eps]``. The attacks
    run on a frozen copy with batch norm folded (genrobust.core.fold; the model's own memory layout), taken once."""
    work = folded_copy(model, channels_last=None)
    out = {}
    for eps in eps_grid:
        g = torch.Generator().manual_seed(seed)
        out[float(eps)] = binary_scores(work, x_pos, x_neg, eps=float(eps), steps=steps, step_size=step_size,
                                        batch_size=batch_size, generator=g, device=device)
    return out




def binary_auroc(model, x_pos, x_neg, eps_grid=(0.0,), *, steps=10, step_size=None, batch_size=256, seed=0,
                 device="cpu") -> dict[float, float]:
    """AUROC of d_k for each eps in eps_grid (eps 0 = normal scenario, eps > 0 = adversarial scenario)."""
    scores = binary_auroc_scores(model, x_pos, x_neg, eps_grid, steps=steps, step_size=step_size,
                                 batch_size=batch_size, seed=seed, device=device)
    return {eps: auroc(s_pos, s_neg) for eps, (s_pos, s_neg) in scores.items()}
