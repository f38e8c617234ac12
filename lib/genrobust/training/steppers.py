"""What the one training loop (:func:`genrobust.training.loop.fit`) steps.

* :class:`BinaryStepper`: K binary models d_k, Eq. 3 / Eq. 9 (:func:`genrobust.core.objectives.binary_loss`) on
  (K, n) batches. K = 1 (the per-class path) steps the model itself with its own ``torch.optim.SGD``; K > 1 steps
  the K models as one vmapped network (:class:`genrobust.training.fused.FusedBinaryModels`) with one
  :class:`~genrobust.training.fused.FusedSGD` whose per-model learning rates come from each run's own scheduler,
  and writes the stacked state back into each run's model and optimizer once per epoch (:meth:`sync`), so every
  class keeps its own checkpoint, in the per-class format.
* :class:`SoftmaxStepper`: the softmax PGD-AT baseline (:func:`genrobust.core.objectives.softmax_pgd_at_loss`).

Each run draws its batches and augmentation from its own generator (its ``make_batches`` yields augmented
batches), in the per-class path's order, so the K models stepped together get the numbers of K runs one after
another (tests/test_training.py); the inner attack's random starts (``train.attack_random_start``) come from the
first run's generator. Where the engine says so (:func:`genrobust.training.loop.engine_for`: CUDA), the forward
passes run under bf16 autocast.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.objectives import binary_loss, softmax_pgd_at_loss
from ..core.scoring import binary_auroc_k
from ..data.batches import augment
from .fused import FusedBinaryModels, FusedSGD
from .loop import Engine, Run, engine_for, to_device


class _Stepper:
    """The part every stepper shares: train mode, and the update (backward of the summed per-run losses, one
    optimizer step, each run's lr schedule step)."""
    def __init__(self, runs: Sequence[Run], net, opt, engine: Engine):
        self.runs, self.net, self.opt, self.engine = list(runs), net, opt, engine
        self.result_extra: dict = {}  # added to each run's result.json
        self._runs_opts_bookkeeping = False  # True: the runs' optimizers are not stepped (FusedSGD steps for them)

    def train(self) -> None:
        self.net.train()

    def update(self, loss_k: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss_k.sum().backward()
        self.opt.step()
        with warnings.catch_warnings():
            if self._runs_opts_bookkeeping:
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            for r in self.runs:
                r.sched.step()

    def sync(self) -> None:
        pass

    def select(self) -> list[dict | None]:
        """Each run's own ``select_metrics`` on its own model (eval mode), one run after another."""
        out = []
        for r in self.runs:
            if r.select_metrics is not None:
                r.model.eval()
            out.append(None if r.select_metrics is None else r.select_metrics(r.model))
        return out

    def _precision(self):
        """bf16 autocast of the forward passes (attack and update) where the engine says so (CUDA); the loss,
        the PGD state (perturbation, norms, projection: fp32 tensors), BN statistics and weights stay fp32."""
        if self.engine.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.engine.autocast)


@dataclass(frozen=True, eq=False)
class BinarySelection:
    """d_k's model selection (Section 3.4): clean and adversarial AUROC (L2 PGD within ``eps``, ``steps`` steps,
    generator seeded ``seed``) of d_k on its selection images. Called on one d_k (the per-class path, a run's
    ``select_metrics``), or scored for the K d_k stepped together on their K-model network at once
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

    def __init__(self, runs: Sequence[Run], cfg, device, engine: Engine | None = None):
        runs = list(runs)
        self.cfg, self.device = cfg, torch.device(device)
        engine = engine or engine_for(None, self.device)
        if len(runs) == 1:  # the model itself: no vmap, its own SGD, channels-last as the config says
            super().__init__(runs, runs[0].model, runs[0].opt, engine)
            self.channels_last = cfg.channels_last
            return
        models = [r.model for r in runs]
        fused = FusedBinaryModels([m.train() for m in models]).to(self.device)
        opt = FusedSGD(fused.parameters(), lrs=[r.lr for r in runs], momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay)
        super().__init__(runs, fused, opt, engine)
        self.channels_last = False  # the stacked weights are 5-d
        self.result_extra = {"path": f"fused ({len(runs)} models)"}
        self._runs_opts_bookkeeping = True
        # FusedSGD's stacked parameters, in the single model's named_parameters order (its optimizer state's order)
        named = dict(fused.named_parameters())
        self._fparams = [named[n.replace(".", "__")] for n, _ in models[0].named_parameters()]
        if runs[0].start_epoch > 0:  # resumed: each class's momentum buffers, stacked
            params = [list(m.parameters()) for m in models]
            for j, fp in enumerate(self._fparams):
                bufs = [r.opt.state.get(ps[j], {}).get("momentum_buffer") for r, ps in zip(runs, params)]
                if all(b is not None for b in bufs):
                    opt.state[fp]["momentum_buffer"] = torch.stack(bufs).to(self.device)

    def loss(self, batches):
        """batches: one augmented (x_pos, x_neg) uint8 pair per run (its make_batches drew and augmented them)."""
        pos = [to_device(b_pos, self.device, self.channels_last) for b_pos, _ in batches]
        neg = [to_device(b_neg, self.device, self.channels_last) for _, b_neg in batches]
        if len(pos) == 1:  # (1, n, ...) views keep a channels-last batch channels-last
            x_pos, x_neg = pos[0].unsqueeze(0), neg[0].unsqueeze(0)
        else:
            x_pos, x_neg = torch.stack(pos), torch.stack(neg)
            self.opt.set_lrs([r.lr for r in self.runs])  # each class's scheduled lr of this step
        with self._precision():
            loss_k, stats = binary_loss(self.net, x_pos, x_neg, self.cfg, self.runs[0].generator)
        return loss_k.float(), stats, sum(len(p) + len(q) for p, q in batches)

    def sync(self) -> None:
        """The stacked weights, buffers and momentum into each class's model and optimizer (its checkpoint)."""
        if len(self.runs) == 1:
            return
        for i, r in enumerate(self.runs):
            r.model.load_state_dict(self.net.model_state_dict(i))
            for fp, p in zip(self._fparams, r.model.parameters()):
                buf = self.opt.state.get(fp, {}).get("momentum_buffer")
                if buf is not None:
                    r.opt.state[p]["momentum_buffer"] = buf[i].detach().clone()
            r.model.train()

    def select(self) -> list[dict | None]:
        """K > 1: the K d_k's selection metrics in one pass over the K-model network (each d_k on its own images;
        :meth:`BinarySelection.together`); K = 1, or runs with another selection: one run after another."""
        sels = [r.select_metrics for r in self.runs]
        if len(self.runs) == 1 or not all(isinstance(t, BinarySelection) for t in sels):
            return super().select()
        return BinarySelection.together(self.net, sels)


class SoftmaxStepper(_Stepper):
    """The softmax model of one run: PGD-AT (Madry) on (x, y) batches of uint8 images and labels."""

    def __init__(self, run: Run, cfg, device, engine: Engine | None = None):
        self.cfg, self.device = cfg, torch.device(device)
        super().__init__([run], run.model, run.opt, engine or engine_for(None, self.device))

    def loss(self, batches):
        (x, y), = batches
        r = self.runs[0]
        xf = to_device(augment(x, self.cfg.augment, r.generator), self.device, self.cfg.channels_last)
        with self._precision():
            # the labels' copy does not wait for the device (non_blocking; a blocking copy is a host sync)
            loss, stats = softmax_pgd_at_loss(self.net, xf, y.to(self.device, non_blocking=True), self.cfg,
                                              r.generator)
        return loss.float().reshape(1), {k: v.reshape(1) for k, v in stats.items()}, len(x)
