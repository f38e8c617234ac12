"""What the one training loop (:func:`genrobust.training.loop.fit`) steps: each stepper's ``step`` is the whole
training step, read top to bottom (images to the device, the inner attack, the loss, backward, the update).

* :class:`BinaryStepper`: K binary models d_k, Eq. 3 / Eq. 9 (:func:`genrobust.core.objectives.binary_perturb`, then
  :func:`~genrobust.core.objectives.binary_bce`) on (K, n) batches. K = 1 (the per-class path) steps the model
  itself with its own ``torch.optim.SGD``; K > 1 steps the K models as one vmapped network
  (:class:`genrobust.training.fused.FusedBinaryModels`) with one :class:`~genrobust.training.fused.FusedSGD` (one lr
  per model, each run's own schedule), and writes the stacked state back into each run's model and optimizer state
  once per epoch (:meth:`BinaryStepper.sync`), so every class keeps its own checkpoint, in the per-class format.
* :class:`SoftmaxStepper`: the softmax PGD-AT baseline (:func:`genrobust.core.objectives.softmax_perturb`, then
  :func:`~genrobust.core.objectives.softmax_ce`).

Each run draws its batches and augmentation from its own generator (its ``make_batches`` yields augmented
batches), in the per-class path's order, so the K models stepped together get the numbers of K runs one after
another (tests/test_training.py); the inner attack's random starts (``train.attack_random_start``) come from the
first run's generator. Where the engine says so (:func:`genrobust.training.loop.engine_for`: CUDA), the forward
passes run under bf16 autocast. The stepper builds the one optimizer it steps; each run's lr is its schedule at
its step count (:attr:`genrobust.training.loop.TrainingRun.lr`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core import objectives
from ..core.scoring import binary_auroc_k
from ..data.batches import augment
from .fused import FusedBinaryModels, FusedSGD
from .loop import Engine, TrainingRun, engine_for, to_device


class RunSGD(torch.optim.SGD):
    """torch.optim.SGD over one run's model, resumed from the run's optimizer state, with FusedSGD's ``set_lrs``
    (here one lr: the run's scheduled lr of the step)."""

    def __init__(self, run: TrainingRun):
        super().__init__(run.model.parameters(), lr=run.lr, momentum=run.cfg.momentum,
                         weight_decay=run.cfg.weight_decay)
        if run.optimizer_state is not None:
            self.load_state_dict(run.optimizer_state)

    def set_lrs(self, lrs: Sequence[float]) -> None:
        self.param_groups[0]["lr"], = lrs


class _Stepper:
    """What every stepper shares: train mode, the one-run sync and selection, the precision of the forwards."""
    def __init__(self, runs: Sequence[TrainingRun], net, opt, engine: Engine):
        self.runs, self.net, self.opt, self.engine = list(runs), net, opt, engine
        self.result_extra: dict = {}  # added to each run's result.json

    def train(self) -> None:
        self.net.train()

    def sync(self) -> None:
        """One run stepped on its own model: its optimizer state (the weights are the model's already)."""
        self.runs[0].optimizer_state = self.opt.state_dict()

    def select(self) -> list[dict | None]:
        """Each run's own ``selection.metrics`` on its own model (eval mode), one run after another."""
        out = []
        for r in self.runs:
            if r.selection.metrics is not None:
                r.model.eval()
            out.append(None if r.selection.metrics is None else r.selection.metrics(r.model))
        return out

    def _precision(self):
        """bf16 autocast of the forward passes (attack and update) where the engine says so (CUDA); the loss,
        the PGD state (perturbation, norms, projection: fp32 tensors), BN statistics and weights stay fp32."""
        if self.engine.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.engine.autocast)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """K batches (n, 3, H, W) -> (K, n, 3, H, W); one batch as a (1, n, ...) view, which keeps it channels-last."""
    return images[0].unsqueeze(0) if len(images) == 1 else torch.stack(images)


@dataclass(frozen=True, eq=False)
class BinarySelection:
    """d_k's model selection (Section 3.4): clean and adversarial AUROC (L2 PGD within ``eps``, ``steps`` steps,
    generator seeded ``seed``) of d_k on its selection images. Called on one d_k (the per-class path, a run's
    ``selection.metrics``), or scored for the K d_k stepped together on their K-model network at once
    (:meth:`together`; each d_k on its own positives vs its own negatives, the same images and attacks)."""
    pos: torch.Tensor  # (n_k, 3, H, W) float in [0, 1]: the selection split's class-k images
    neg: torch.Tensor  # (n_k, 3, H, W): as many other-class images, drawn evenly and seeded
    split: str  # 'val' or 'test': the metrics' names
    eps: float
    steps: int
    seed: int
    device: torch.device

    def __call__(self, model) -> dict:
        return BinarySelection.together(model, [self])[0]

    @staticmethod
    def together(net, selections: Sequence["BinarySelection"]) -> list[dict]:
        """The metrics of each selection's d_k, in order, from ``net``: one d_k (K = 1) or K d_k as one network
        (rows k * n .. (k + 1) * n - 1 scored by d_k, as :class:`genrobust.training.fused.FusedBinaryModels`)."""
        s = selections[0]
        if any((t.split, t.eps, t.steps, t.seed, t.device) != (s.split, s.eps, s.steps, s.seed, s.device)
               for t in selections):
            raise ValueError("the d_k selected together must share the selection split, eps, steps, seed and device")
        res = binary_auroc_k(net, [t.pos for t in selections], [t.neg for t in selections], (0.0, s.eps),
                             steps=s.steps, device=s.device, seed=s.seed)
        return [{f"{s.split}_clean_auroc": r[0.0], f"{s.split}_adv_auroc": r[s.eps]} for r in res]


class BinaryStepper(_Stepper):
    """The d_k of ``runs`` (one run per class, all at one epoch) stepped together; see the module docstring."""

    def __init__(self, runs: Sequence[TrainingRun], cfg, device, engine: Engine | None = None):
        runs = list(runs)
        self.cfg, self.device = cfg, torch.device(device)
        engine = engine or engine_for(None, self.device)
        if len(runs) == 1:  # the model itself: no vmap, its own SGD, channels-last as the config says
            super().__init__(runs, runs[0].model, RunSGD(runs[0]), engine)
            self.channels_last = cfg.channels_last
            return
        fused = FusedBinaryModels([r.model.train() for r in runs]).to(self.device)
        opt = FusedSGD(fused.parameters(), lrs=[r.lr for r in runs], momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay)
        if runs[0].optimizer_state is not None:  # resumed: each class's momentum buffers, stacked
            opt.load_model_states([r.optimizer_state for r in runs])
        super().__init__(runs, fused, opt, engine)
        self.channels_last = False  # the stacked weights are 5-d
        self.result_extra = {"path": f"fused ({len(runs)} models)"}

    def step(self, batches, *, check_now: bool):
        """One training step of the K d_k. batches: one augmented (x_pos, x_neg) uint8 pair per run (its
        make_batches drew and augmented them). Returns (nonfinite (K,) bool, stats {'loss', 'acc'}: (K,) each,
        images in the step); with ``check_now`` a non-finite loss is read here and returns before the update."""
        x_pos = _stack([to_device(b_pos, self.device, self.channels_last) for b_pos, _ in batches])  # (K, n, 3, H, W)
        x_neg = _stack([to_device(b_neg, self.device, self.channels_last) for _, b_neg in batches])
        with self._precision():
            # the inner problems on the eval-mode function: Eq. 9's positives (within eps1, minimizing d_k), then
            # the negatives (within eps, maximizing d_k); random starts from the first run's generator
            x_pos, x_neg = objectives.binary_perturb(self.net, x_pos, x_neg, self.cfg, self.runs[0].generator)
            # the outer problem: each d_k's mean BCE on [x_pos[k]; x_neg[k]], in train mode (one BN batch each)
            loss_k, stats = objectives.binary_bce(self.net, x_pos, x_neg)
        loss_k = loss_k.float()  # (K,)
        nonfinite = ~torch.isfinite(loss_k.detach())  # (K,) on the device: the NaN guard's flags
        if check_now and nonfinite.any():
            return nonfinite, stats, 0
        self.opt.zero_grad(set_to_none=True)
        loss_k.sum().backward()  # the sum: every d_k gets the gradient of its own loss (not 1/K of it)
        self.opt.set_lrs([r.lr for r in self.runs])  # each class's scheduled lr of this step
        self.opt.step()
        for r in self.runs:
            r.step += 1
        return nonfinite, stats, sum(len(p) + len(q) for p, q in batches)

    def sync(self) -> None:
        """The stacked weights, buffers and momentum into each class's model and optimizer state (its checkpoint)."""
        if len(self.runs) == 1:
            return super().sync()
        for i, r in enumerate(self.runs):
            r.model.load_state_dict(self.net.model_state_dict(i))
            r.optimizer_state = self.opt.model_state(i, r.lr)
            r.model.train()

    def select(self) -> list[dict | None]:
        """K > 1: the K d_k's selection metrics in one pass over the K-model network (each d_k on its own images;
        :meth:`BinarySelection.together`); K = 1, or runs with another selection: one run after another."""
        sels = [r.selection.metrics for r in self.runs]
        if len(self.runs) == 1 or not all(isinstance(t, BinarySelection) for t in sels):
            return super().select()
        return BinarySelection.together(self.net, sels)


class SoftmaxStepper(_Stepper):
    """The softmax model of one run: PGD-AT (Madry) on (x, y) batches of uint8 images and labels."""

    def __init__(self, run: TrainingRun, cfg, device, engine: Engine | None = None):
        self.cfg, self.device = cfg, torch.device(device)
        super().__init__([run], run.model, RunSGD(run), engine or engine_for(None, self.device))

    def step(self, batches, *, check_now: bool):
        """One PGD-AT step; as :meth:`BinaryStepper.step` with K = 1 (flags and stats (1,))."""
        (x, y), = batches
        r = self.runs[0]
        x = to_device(augment(x, self.cfg.augment, r.generator), self.device, self.cfg.channels_last)
        y = y.to(self.device, non_blocking=True)  # the labels' copy does not wait for the device (no host sync)
        with self._precision():
            x_adv = objectives.softmax_perturb(self.net, x, y, self.cfg, r.generator)  # L2 PGD within eps, eval mode
            loss, stats = objectives.softmax_ce(self.net, x_adv, y)  # cross-entropy in train mode
        loss = loss.float()
        nonfinite, stats = ~torch.isfinite(loss.detach()).reshape(1), {k: v.reshape(1) for k, v in stats.items()}
        if check_now and nonfinite.any():
            return nonfinite, stats, 0
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.set_lrs([r.lr])
        self.opt.step()
        r.step += 1
        return nonfinite, stats, len(x)
