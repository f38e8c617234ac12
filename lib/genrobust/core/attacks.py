"""The white-box attacks' public surface (the names of the six attack_* modules below, re-exported) and the contract
every attack keeps: pure functions on [0, 1] images.

White-box PGD attacks on [0, 1] images, including the paper's adaptive attack on the generative classifier: the
public surface of six modules, one job each, and the contract every attack keeps (callers write
``from genrobust.core.attacks import pgd_untargeted``).

* :mod:`~genrobust.core.attack_args`: the arguments, checked (AttackError, the PGD settings and their defaults);
* :mod:`~genrobust.core.attack_steps`: per-norm pieces (random start, projection, ascent step);
* :mod:`~genrobust.core.attack_engine`: the PGD engine with restarts (maximize, pgd_score) and the model-state guards
  (eval_mode, frozen_state);
* :mod:`~genrobust.core.attack_pgd`: PGD on logits, untargeted (Eq. 10) and targeted;
* :mod:`~genrobust.core.attack_eq11_12`: the paper's adaptive attack on the generative classifier (Eq. 11-12);
* :mod:`~genrobust.core.attack_multi_targeted`: multi-targeted PGD.

Every attack is a pure function: it takes clean images x (N, 3, H, W) float in [0, 1] and returns adversarial
images x_adv of the same shape, with ||x_adv - x||_p <= eps per example and x_adv in [0, 1]. Distances are in
image space (the models normalize internally), so eps = 0.5 (L2) means 0.5 in [0, 1] pixel units.

Attacks (Sec. 3.2 of "Generative Robust Classification", Yin):

* :func:`pgd_untargeted` -- Eq. 10: maximize the cross-entropy of the (N, K) logits (Madry et al. PGD).
* :func:`eq11_12_attack` -- Eq. 11-12, the adaptive attack on a :class:`GenerativeClassifier`: for every k != y
  maximize d_k(x + delta) alone, then keep the delta_k with the largest d_k(x + delta_k) + c_k.
* :func:`multi_targeted` -- for every target t != y maximize the margin z_t - z_y (AutoAttack's MT idea); on a
  generative classifier each step runs only sub-models t and y.
* :func:`pgd_targeted`, :func:`pgd_score` and the engine :func:`maximize` for custom objectives.

Guarantees of every attack function of these modules (all tested in tests/test_attacks.py):

* the model's train/eval flags are not changed (attacks do NOT switch modes; wrap the call in :func:`eval_mode`
  to attack the model in eval mode -- that is what you want for evaluation);
* buffers (BatchNorm running stats, num_batches_tracked) are restored on exit (:func:`frozen_state`), so an attack
  on a train-mode model does not change its BN statistics (its forward passes still use batch statistics);
* parameters' ``.grad`` are never touched and weight gradients are never computed (``torch.autograd.grad`` w.r.t.
  the input only);
* the global torch RNG is not used: randomness comes from the ``generator`` argument only (and the global CPU/CUDA
  RNG state is restored on exit, so even a model with train-mode dropout leaves it unchanged);
* deterministic for a given generator seed; works under ``torch.no_grad()`` (grad is re-enabled inside) but
  refuses to run under ``torch.inference_mode()`` (autograd is impossible there).

Common keyword arguments of all attacks:

``eps`` (>= 0, required), ``norm`` ("l2" or "linf"), ``steps`` (>= 1; any value, even 0, is accepted when eps == 0
because then x is returned unchanged), ``step_size`` (> 0; default :func:`default_step_size`), ``random_start``
(bool), ``restarts`` (>= 1; > 1 needs random_start=True, otherwise every restart would be identical),
``generator`` (a ``torch.Generator``; default: a fresh generator seeded with 0 on x's device, so results are
reproducible without touching the global RNG), ``batch_size`` (None = all at once; else attack in chunks of at
most this many examples -- note that a train-mode BN model sees chunk statistics), ``check_values`` (default True:
x must lie in [0, 1] and labels in [0, K), a one-line error otherwise; False skips these two checks, the only ones
that read tensor values on the host -- on CUDA a device sync per call -- for callers whose inputs hold them by
construction: the training step, whose images are uint8 / 255 and whose labels were checked when loaded; shapes,
dtypes and devices are checked either way).

Restarts and selection: each restart runs ``steps`` PGD steps and the *final* iterate is its candidate (no
best-iterate tracking); per example, the candidate with the largest ``select`` value over restarts (and, for
eq11_12_attack / multi_targeted, over classes / targets) is returned.
"""
from __future__ import annotations

from .attack_args import NORMS, AttackError, default_step_size
from .attack_engine import eval_mode, frozen_state, maximize, pgd_score
from .attack_eq11_12 import eq11_12_attack
from .attack_multi_targeted import multi_targeted
from .attack_pgd import pgd_targeted, pgd_untargeted
from .attack_steps import ascent_step, project, random_start

__all__ = [
    "AttackError", "NORMS", "default_step_size", "random_start", "project", "ascent_step", "eval_mode",
    "frozen_state", "maximize", "pgd_score", "pgd_untargeted", "pgd_targeted", "eq11_12_attack", "multi_targeted",
]
