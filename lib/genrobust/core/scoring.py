"""d_k's AUROC, clean and under attack (Section 3.4; training's selection and the ablations); one d_k, or the K d_k of
a K-model network in one pass (K = 1 is the one-d_k path); ScoreSettings.

AUROC of binary models d_k (Section 3.4): the normal scenario (clean class-k test images vs clean
other-class images) and the adversarial scenario (positives perturbed to *minimize* d_k, negatives to *maximize*
it, L2 PGD within eps). Training's model selection and the ablations (Figs. 5-8) both score d_k this way.

One d_k is the K = 1 case of K d_k scored at once on a K-model network (rows k * n .. (k + 1) * n - 1 of its
(K * n, 3, H, W) input scored by d_k, the layout of ``genrobust.training.fused.FusedBinaryModels`` and of
:func:`genrobust.core.objectives.binary_loss`): every attack step is per example (eval mode, BN folded, per-row L2
steps), so model k's scores are those of d_k alone, up to float rounding of the bigger kernels.

Every public function takes the same keyword settings, the fields of :class:`ScoreSettings` (steps, step_size,
batch_size, seed, device), and passes them on as one record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from .attacks import eval_mode, pgd_score
from .fold import folded_copy
from .stats import auroc
from .objectives import d_score


@dataclass(frozen=True)
class ScoreSettings:
    """How d_k is scored: the adversarial scenario's L2 PGD (``steps``; ``step_size`` None: 2.5 * eps / steps), the
    images per model per chunk (``batch_size``), the seed of each eps's attack generator and the device."""
    steps: int = 10
    step_size: Optional[float] = None
    batch_size: int = 256
    seed: int = 0
    device: Union[str, torch.device] = "cpu"


def _batched_scores(model, x, eps, minimize, generator, s: ScoreSettings):
    """x: (K, n, 3, H, W), model k's n images -> (K, n) float32 scores on the CPU, each image attacked (eps > 0)
    against its own model; chunks of ``s.batch_size`` images per model, run as (K * b, 3, H, W) rows."""
    k, out = x.shape[0], []
    for i in range(0, x.shape[1], s.batch_size):
        xb = x[:, i:i + s.batch_size].to(s.device)
        xb = xb.reshape(-1, *xb.shape[2:])  # (K, b, ...) -> (K * b, ...): a view for K = 1 and for contiguous x
        if eps > 0:
            xb = pgd_score(model, d_score, xb, minimize=minimize, eps=eps, norm="l2", steps=s.steps,
                           step_size=s.step_size, generator=generator)
        with torch.no_grad():
            out.append(d_score(model, xb).float().cpu().view(k, -1))
    return torch.cat(out, dim=1) if out else torch.empty(k, 0)


def _side_by_side(model, x_pos, x_neg, eps, generator, s: ScoreSettings):
    """(s_pos, s_neg), (K, n) each, of (K, n, 3, H, W) positives and negatives; each side attacked against itself
    (positives minimize d_k, negatives maximize it), positives first (the generator's order of draws)."""
    with eval_mode(model):
        s_pos = _batched_scores(model, x_pos, eps, True, generator, s)
        s_neg = _batched_scores(model, x_neg, eps, False, generator, s)
    return s_pos, s_neg


def _padded(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """K image sets (n_k, 3, H, W) -> (K, max n_k, 3, H, W), the shorter ones padded with black images (in [0, 1],
    attacked like the others, their scores dropped: each row's attack is its own). K = 1: a view, no copy."""
    if len(xs) == 1:
        return xs[0].unsqueeze(0)
    n = max(len(x) for x in xs)
    return torch.stack([x if len(x) == n else torch.cat([x, x.new_zeros(n - len(x), *x.shape[1:])]) for x in xs])


def binary_auroc_scores_k(model, x_pos: Sequence[torch.Tensor], x_neg: Sequence[torch.Tensor], eps_grid=(0.0,),
                          **settings) -> list[dict[float, tuple[torch.Tensor, torch.Tensor]]]:
    """The scores of :func:`binary_auroc_scores` for K d_k at once on a K-model network ``model`` (module
    docstring): x_pos[k], x_neg[k] (n_k, 3, H, W) d_k's positives and negatives (n_k may differ per model, and per
    side). Per model k: {eps: (s_pos (n_pos_k,), s_neg (n_neg_k,))}. Each eps attacks with a generator seeded
    ``seed``, on one frozen copy with batch norm folded (genrobust.core.fold; the model's own layout) taken once;
    ``batch_size`` images per model per chunk. ``settings``: the fields of :class:`ScoreSettings`."""
    s = ScoreSettings(**settings)
    if len(x_pos) != len(x_neg):
        raise ValueError(f"one positive and one negative set per model: got {len(x_pos)} and {len(x_neg)}")
    work = folded_copy(model, channels_last=None)
    pos, neg = _padded(x_pos), _padded(x_neg)
    out = [{} for _ in x_pos]
    for eps in eps_grid:
        g = torch.Generator().manual_seed(s.seed)
        s_pos, s_neg = _side_by_side(work, pos, neg, float(eps), g, s)
        for k, (p, q) in enumerate(zip(x_pos, x_neg)):
            out[k][float(eps)] = (s_pos[k, :len(p)], s_neg[k, :len(q)])
    return out


def binary_auroc_scores(model, x_pos, x_neg, eps_grid=(0.0,), **settings) -> dict[float, tuple[torch.Tensor,
                                                                                                torch.Tensor]]:
    """The per-example scores behind :func:`binary_auroc`, with the same attacks and seeds:
    {eps: (s_pos (n_pos,), s_neg (n_neg,))}, so ``auroc(*scores[eps]) == binary_auroc(...)[eps]``. The attacks
    run on a frozen copy with batch norm folded (genrobust.core.fold; the model's own memory layout), taken once."""
    return binary_auroc_scores_k(model, [x_pos], [x_neg], eps_grid, **settings)[0]


def binary_auroc_k(model, x_pos: Sequence[torch.Tensor], x_neg: Sequence[torch.Tensor], eps_grid=(0.0,),
                   **settings) -> list[dict[float, float]]:
    """AUROC of each of the K d_k of a K-model network for each eps in eps_grid, in one pass per eps and side
    (:func:`binary_auroc_scores_k`): per model k, {eps: AUROC of x_pos[k] vs x_neg[k]}."""
    scores = binary_auroc_scores_k(model, x_pos, x_neg, eps_grid, **settings)
    return [{eps: auroc(s_pos, s_neg) for eps, (s_pos, s_neg) in per.items()} for per in scores]


def binary_auroc(model, x_pos, x_neg, eps_grid=(0.0,), **settings) -> dict[float, float]:
    """AUROC of d_k for each eps in eps_grid (eps 0 = normal scenario, eps > 0 = adversarial scenario)."""
    return binary_auroc_k(model, [x_pos], [x_neg], eps_grid, **settings)[0]
