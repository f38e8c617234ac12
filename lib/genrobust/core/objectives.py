"""Training objectives: Eq. 3 (out-distribution AT), Eq. 9 (combined in/out AT), and Madry's softmax PGD-AT.

Each objective is written once as two small functions, the inner attack (``*_perturb``: the images to train on)
and the outer loss (``binary_bce`` / ``softmax_ce``: (loss, stats)), which the training step
(``genrobust.training.steppers``) calls in turn; ``binary_loss`` / ``softmax_pgd_at_loss`` compose them for callers
that want the objective as one function. Eq. 3 and Eq. 9 work on (K, n) batches of K binary models (K = 1: one
d_k). The paper writes the objectives as log-likelihoods to *maximize*; here they are the equivalent binary
cross-entropy losses to *minimize* on the logit d_k (D_k = sigmoid(d_k)).

BatchNorm during the inner attack: the attack runs with the model in **eval mode** (BN uses its running
statistics, as in TRADES and most PGD-AT code since), so (1) crafting the perturbation never updates BN statistics,
(2) each example's perturbation does not depend on the rest of its batch, and (3) the attack targets the function
that will be evaluated. The update step then runs in train mode on the clean positives and perturbed negatives
together, so BN sees one balanced batch. In eval mode a BN is an affine map, so the attack runs on
:func:`genrobust.core.fold.fold_for_attack` of the model: BN folded into the convolutions from the live weights and
running statistics of this step (the same function up to float rounding; tests/test_fold.py checks the
perturbations, losses and updated weights of training steps against the unfolded attack).

No host reads: the objectives run inside every training step, where a read of a device tensor's value is a host
sync on CUDA. They take images in [0, 1] and labels in [0, K) without reading them (the inner attacks run with
``check_values=False``): the engine's images are uint8 / 255 (``genrobust.data.batches.to_float`` checks the
dtype), its labels were checked when the data were loaded; the public attacks keep the checks for every other
caller.
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
    function with BN folded (see the module docstring). x's range is not read (module docstring)."""
    if eps == 0:
        return x
    with eval_mode(model):  # the live model's mode too (the folded view is always in eval mode)
        return pgd_score(fold_for_attack(model), d_score, x, minimize=minimize, eps=eps, norm="l2",
                         steps=cfg.attack_steps, step_size=cfg.attack_step_size,
                         random_start=cfg.attack_random_start, generator=generator, check_values=False)


def perturb_negatives(model, x_neg, cfg, generator):
    """Eq. 3 inner problem: x' in B(x, eps) maximizing d_k(x') (the min over log(1 - D_k))."""
    return _perturb(model, x_neg, cfg.eps, False, cfg, generator)


def perturb_positives(model, x_pos, cfg, generator):
    """Eq. 9 in-distribution inner problem: x' in B(x, eps1) minimizing d_k(x') (the min over log D_k)."""
    return _perturb(model, x_pos, cfg.eps1, True, cfg, generator)


class ObjectiveError(ValueError):
    """Batches that do not match the (K, n) layout of :func:`binary_loss`, or an unknown objective."""


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])  # (K, n, ...) -> (K * n, ...): row i belongs to d_{i // n}


def binary_perturb(model, x_pos, x_neg, cfg, generator):
    """The inner problems of Eq. 3 (``cfg.objective`` 'out') and Eq. 9 ('combined') for K binary models d_k at once.

    x_pos, x_neg: (K, n, 3, H, W) in [0, 1]; model k trains on x_pos[k] (class k, label 1) and x_neg[k] (not k,
    label 0). ``model`` maps (K * n, 3, H, W) -> (K * n, 1) with row i scored by d_{i // n}: one d_k when K = 1
    (the per-class path), or the K models as one network (:class:`genrobust.training.fused.FusedBinaryModels`).
    Eq. 9 first perturbs the positives (within eps1, minimizing d_k), then both objectives perturb the negatives
    (within eps, maximizing d_k), each on the eval-mode function with BN folded (module docstring). Returns the
    (x_pos', x_neg') that :func:`binary_bce` scores, (K, n, 3, H, W) each (Eq. 3 leaves x_pos as it is).
    """
    if x_pos.dim() != 5 or x_neg.shape != x_pos.shape:
        raise ObjectiveError(f"x_pos and x_neg must both be (K, n, 3, H, W); got {tuple(x_pos.shape)} and "
                             f"{tuple(x_neg.shape)}")
    if cfg.objective not in ("out", "combined"):
        raise ObjectiveError(f"cfg.objective must be 'out' or 'combined', got {cfg.objective!r}")
    if cfg.objective == "combined":  # positives first: the per-class path's order of draws (random starts)
        x_pos = perturb_positives(model, _rows(x_pos), cfg, generator).view_as(x_pos)
    x_neg = perturb_negatives(model, _rows(x_neg), cfg, generator).view_as(x_neg)
    return x_pos, x_neg


def binary_bce(model, x_pos, x_neg):
    """The outer problem of Eq. 3 / Eq. 9 as a loss: one forward in the model's own mode on [x_pos[k]; x_neg[k]] per
    model (one balanced BN batch each), each model's mean BCE against labels 1 (positives) and 0 (negatives).

    x_pos, x_neg: (K, n, 3, H, W), the images :func:`binary_perturb` returned. Returns (loss_k, stats): loss_k (K,)
    each model's mean BCE (so ``loss_k.sum().backward()`` gives every model the gradient of its own objective);
    stats 'loss' and 'acc', (K,) each, detached.
    """
    k, n = x_pos.shape[:2]
    # (K * 2n, 3, H, W): [x_pos[k]; x_neg[k]] per model, concatenated as 4-d images (keeps a channels-last batch so)
    x = torch.cat([t for j in range(k) for t in (x_pos[j], x_neg[j])])
    logits = d_score(model, x).view(k, 2 * n)  # (K, 2n)
    target = torch.cat([logits.new_ones(n), logits.new_zeros(n)]).expand(k, 2 * n)
    # one mean-reduced BCE per model: its backward divides by 2n as the single-model loss always did (a
    # reduction='none' then .mean(1) would multiply by 1/(2n) instead: other rounding unless 2n is a power of two)
    loss_k = torch.stack([F.binary_cross_entropy_with_logits(logits[j], target[j]) for j in range(k)])  # (K,)
    with torch.no_grad():
        acc_k = ((logits > 0).to(target.dtype) == target).to(target.dtype).mean(dim=1)
    return loss_k, {"loss": loss_k.detach(), "acc": acc_k}


def binary_loss(model, x_pos, x_neg, cfg, generator):
    """Eq. 3 / Eq. 9 of K binary models as one function: :func:`binary_bce` of :func:`binary_perturb`'s images
    (the training step, :meth:`genrobust.training.steppers.BinaryStepper.step`, calls the two in turn)."""
    return binary_bce(model, *binary_perturb(model, x_pos, x_neg, cfg, generator))


def softmax_perturb(model, x, y, cfg, generator):
    """Madry et al.'s inner max (Eq. 10): untargeted L2 PGD examples within cfg.eps on the eval-mode function with
    BN folded (module docstring); x itself when cfg.eps is 0. x: (N, 3, H, W) in [0, 1], y: (N,) labels."""
    if cfg.eps <= 0:
        return x
    with eval_mode(model):
        return pgd_untargeted(fold_for_attack(model), x, y, eps=cfg.eps, norm="l2", steps=cfg.attack_steps,
                              step_size=cfg.attack_step_size, random_start=False, generator=generator,
                              check_values=False)


def softmax_ce(model, x, y):
    """The outer problem of PGD-AT: cross-entropy of the model (in its own mode) on x. Returns (loss, stats 'loss'
    and 'acc', detached)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    with torch.no_grad():
        acc = (logits.argmax(1) == y).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc}


def softmax_pgd_at_loss(model, x, y, cfg, generator):
    """Madry et al. PGD-AT as one function: :func:`softmax_ce` on :func:`softmax_perturb`'s examples."""
    return softmax_ce(model, softmax_perturb(model, x, y, cfg, generator), y)
