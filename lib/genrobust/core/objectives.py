"""Training objectives: Eq. 3 (out-distribution AT), Eq. 9 (combined in/out AT), and Madry's softmax PGD-AT.

Each objective is one function ``(model, batches, cfg, generator) -> (loss, stats)``: :func:`binary_loss` (Eq. 3
and Eq. 9, written once on (K, n) batches of K binary models; K = 1 is one d_k) and :func:`softmax_pgd_at_loss`;
the training loop in ``genrobust.training`` calls them. The paper writes the objectives as log-likelihoods to *maximize*; here they are
the equivalent binary cross-entropy losses to *minimize* on the logit d_k (D_k = sigmoid(d_k)).

BatchNorm during the inner attack: the attack runs with the model in **eval mode** (BN uses its running
statistics, as in TRADES and most PGD-AT code since), so (1) crafting the perturbation never updates BN statistics,
(2) each example's perturbation does not depend on the rest of its batch, and (3) the attack targets the function
that will be evaluated. The update step then runs in train mode on the clean positives and perturbed negatives
together, so BN sees one balanced batch. In eval mode a BN is an affine map, so the attack runs on
:func:`genrobust.core.fold.fold_for_attack` of the model: BN folded into the convolutions from the live weights and
running statistics of this step (the same function up to float rounding; tests/test_fold.py checks the
perturbations, losses and updated weights of training steps against the unfolded attack).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .attacks import eval_mode, pgd_score, pgd_untargeted
from .fold import fold_for_attack


def d_score(model, x):
    """d_k(x): (N,) the single output of a binary model."""
    return model(x)[:, 0]


def _perturb(model, x, eps: float, minimize: bool, cfg, generator):
    """L2 PGD on d_k within B(x, eps) with the training attack's settings (cfg.attack_*), on the model's eval-mode
    function with BN folded (see the module docstring)."""
    if eps == 0:
        return x
    with eval_mode(model):  # the live model's mode too (the folded view is always in eval mode)
        return pgd_score(fold_for_attack(model), d_score, x, minimize=minimize, eps=eps, norm="l2",
                         steps=cfg.attack_steps, step_size=cfg.attack_step_size,
                         random_start=cfg.attack_random_start, generator=generator)


def perturb_negatives(model, x_neg, cfg, generator):
    """Eq. 3 inner problem: x' in B(x, eps) maximizing d_k(x') (the min over log(1 - D_k))."""
    return _perturb(model, x_neg, cfg.eps, False, cfg, generator)


def perturb_positives(model, x_pos, cfg, generator):
    """Eq. 9 in-distribution inner problem: x' in B(x, eps1) minimizing d_k(x') (the min over log D_k)."""
    return _perturb(model, x_pos, cfg.eps1, True, cfg, generator)


class ObjectiveError(ValueError):
    """Batches of the wrong shape, or an unknown objective."""


BINARY_OBJECTIVES = ("out", "combined")  # Eq. 3, Eq. 9 (cfg.objective)


def binary_loss(model, x_pos, x_neg, cfg, generator):
    """Eq. 3 (cfg.objective 'out') or Eq. 9 ('combined') for K binary models at once -- the one copy of both.

    x_pos, x_neg: (K, n, 3, H, W) in [0, 1], or (n, 3, H, W) for one model (K = 1). Model k trains on x_pos[k]
    (class k) and x_neg[k] (the other classes); ``model`` maps (K * n, 3, H, W) rows in K-major blocks to
    (K * n, 1) logits (one d_k when K = 1; genrobust.training.fused.FusedBinaryModels for K). The inner attacks
    (:func:`perturb_negatives`, :func:`perturb_positives`) run in eval mode with BN folded; the BCE then runs in the
    model's current mode on [x_pos[k]; x_neg'[k]] per model, one balanced BN batch each. Returns (loss, stats):
    loss = sum_k loss_k (so each model's gradient is that of its own objective); stats: 'loss', 'acc' (means over
    k, 0-d tensors) and 'loss_k', 'acc_k' (K,), all on the device (no host sync)."""
    if cfg.objective not in BINARY_OBJECTIVES:
        raise ObjectiveError(f"train.objective must be one of {BINARY_OBJECTIVES}, got {cfg.objective!r}")
    if x_pos.dim() == 4:
        x_pos, x_neg = x_pos.unsqueeze(0), x_neg.unsqueeze(0)
    if x_pos.dim() != 5 or x_neg.shape != x_pos.shape:
        raise ObjectiveError(f"x_pos and x_neg must both be (K, n, 3, H, W) (or (n, 3, H, W) for one model); got "
                             f"{tuple(x_pos.shape)} and {tuple(x_neg.shape)}")
    k, n = x_pos.shape[:2]
    flat = lambda t: t.reshape(k * t.shape[1], *t.shape[2:])  # noqa: E731  (K, m, ...) -> (K * m, ...)
    x_neg = perturb_negatives(model, flat(x_neg), cfg, generator).view_as(x_neg)
    if cfg.objective == "combined":
        x_pos = perturb_positives(model, flat(x_pos), cfg, generator).view_as(x_pos)
    logits = d_score(model, flat(torch.cat([x_pos, x_neg], dim=1))).view(k, 2 * n)  # (K, 2n)
    target = torch.cat([logits.new_ones(n), logits.new_zeros(n)]).expand(k, 2 * n)
    loss_k = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)  # (K,)
    with torch.no_grad():
        acc_k = ((logits > 0).to(target.dtype) == target).to(target.dtype).mean(dim=1)
    return loss_k.sum(), {"loss": loss_k.detach().mean(), "acc": acc_k.mean(), "loss_k": loss_k.detach(),
                          "acc_k": acc_k}


def softmax_pgd_at_loss(model, x, y, cfg, generator):
    """Madry et al. PGD-AT: cross-entropy on untargeted L2 PGD examples within cfg.eps (Eq. 10 as the inner max)."""
    if cfg.eps > 0:
        with eval_mode(model):
            x = pgd_untargeted(fold_for_attack(model), x, y, eps=cfg.eps, norm="l2", steps=cfg.attack_steps,
                               step_size=cfg.attack_step_size, random_start=False, generator=generator)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    with torch.no_grad():
        acc = (logits.argmax(1) == y).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc}
