"""Fused training of K binary models d_k: one vmapped network instead of K sequential training steps.

The paper trains one binary model d_k per class (K = 10, same architecture, each on its own balanced batch of
class-k positives and non-k negatives). :class:`FusedBinaryModels` holds the K models' parameters and buffers
stacked along a new leading dim (``torch.func.stack_module_state``) and runs them as one network with
``torch.func.vmap`` over ``torch.func.functional_call``: every convolution becomes one grouped convolution
(groups = K), so a GPU gets K times bigger kernels. On CPU the K small kernels are already efficient and the
vmap reshuffles cost extra, so sequential stays the default there (see :func:`choose_training_path`;
benchmarks/bench_fused.py measures both paths through the training step,
:meth:`genrobust.training.steppers.BinaryStepper.step`).

Layout. The fused module is an ordinary ``nn.Module`` taking x: (K * n, 3, H, W) in [0, 1], rows
``k * n .. (k + 1) * n - 1`` belonging to model k, and returning (K * n, num_outputs) where row i is
d_{i // n}(x_i). Every attack step in ``genrobust.core.attacks`` is per example (per row), so the existing
objective :func:`genrobust.core.objectives.binary_loss` runs on the fused module as on one d_k (K = 1), with the
same guarantees (eval mode restored, buffers frozen, input gradients only).

BatchNorm. Running statistics are buffers stacked per model (running_mean (K, C), running_var (K, C),
num_batches_tracked (K,)). Under vmap the BN batching rule normalizes each model's slice with its own batch
statistics and updates its own slice of the stacked buffers in place, exactly as K separate train-mode forwards
would (checked in tests/test_fused.py to 1e-5 against the sequential objective code). We do NOT use
``torch.func.replace_all_batch_norm_modules_``, which would drop the running statistics.

Exactness: ``binary_loss`` returns the K per-model losses; the backward of their SUM gives every model the gradient
of its own sequential objective (not 1/K of it), and with :class:`FusedSGD` (one learning rate
per model: the paper's 0.05 for classes 0, 1, 6) one fused step equals K sequential SGD steps. One difference:
with ``attack_random_start=True`` the random starts are drawn for all K * n negatives at once, so they differ
from the sequential draws (same distribution); the default deterministic attack (start at delta = 0) is identical.

Usage (the training step that runs them: :meth:`genrobust.training.steppers.BinaryStepper.step`)::

    models = [create_model("resnet18", 1, 0.5) for _ in range(10)]
    fused = FusedBinaryModels(models).to(device)
    opt = FusedSGD(fused.parameters(), lrs=[run.lr for run in runs], momentum=0.9, weight_decay=1e-4)
    loss_k, stats = objectives.binary_loss(fused, x_pos, x_neg, cfg, generator)   # x_pos, x_neg: (K, n, 3, 32, 32)
    loss_k.sum().backward(); opt.step()
    fused.model_state_dict(k)   # d_k's weights in the ordinary single-model format (checkpoints, evaluation)
    opt.model_state(k, lr)      # d_k's momentum buffers in torch.optim.SGD's state_dict format (its last.pt)
"""
from __future__ import annotations

import copy
import weakref
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap

from ..core.fold import FoldedView, conv_bn_pairs, fold_modules_, fold_state, register_view, set_tensor, tensor_slots
from .loop import ENGINE_RULE

__all__ = ["FusedError", "FusedBinaryModels", "FoldedFusedView", "FusedSGD", "choose_training_path", "PATH_RULE"]


class FusedError(ValueError):
    """Models that cannot be fused, or inputs that do not match the fused layout."""


def _mangle(name: str) -> str:
    # Parameter/buffer names may not contain '.', and the stacked tensors live flat on the fused module.
    return name.replace(".", "__")


class FusedBinaryModels(nn.Module):
    """K models of one architecture as one module; forward x: (K * n, 3, H, W) -> (K * n, num_outputs).

    Parameters and buffers are copies of the given models' state, stacked (K, ...), registered under the
    model's names with '.' replaced by '__' (so ``.to()``, ``.double()``, ``state_dict()``, ``eval_mode`` and
    ``frozen_state`` work as for any module). The given models are not modified or kept; a copy of the first one
    on the meta device serves as the stateless template that ``functional_call`` runs.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        models = list(models)
        if len(models) < 1:
            raise FusedError("FusedBinaryModels needs at least one model")
        ref = models[0]
        ref_p = [(n, p.shape, p.dtype) for n, p in ref.named_parameters()]
        ref_b = [(n, b.shape, b.dtype) for n, b in ref.named_buffers()]
        for k, m in enumerate(models[1:], 1):
            if type(m) is not type(ref) or [(n, p.shape, p.dtype) for n, p in m.named_parameters()] != ref_p \
                    or [(n, b.shape, b.dtype) for n, b in m.named_buffers()] != ref_b:
                raise FusedError(f"model {k} ({type(m).__name__}) differs in architecture from model 0 "
                                 f"({type(ref).__name__}); only models of one architecture and width can be fused")
        if any(m.training != ref.training for m in models):
            raise FusedError("the models must all be in the same mode (train or eval)")
        params, buffers = stack_module_state(models)  # new tensors, (K, ...) each
        self.num_models = len(models)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        persistent = set(ref.state_dict())
        self._state_names = [n for n in ref.state_dict()]  # d_k's checkpoint keys, in its own order
        for n, p in params.items():
            self.register_parameter(_mangle(n), nn.Parameter(p.detach()))
        for n, b in buffers.items():
            self.register_buffer(_mangle(n), b.detach().clone(), persistent=n in persistent)
        if len({_mangle(n) for n in self._param_names + self._buffer_names}) != len(params) + len(buffers):
            raise FusedError("parameter/buffer names collide after replacing '.' by '__'")
        # The template is hidden from .modules()/.to()/state_dict (plain attribute): it holds no state, only code.
        object.__setattr__(self, "_template", copy.deepcopy(ref).to("meta"))
        self.train(ref.training)

    def _stacked(self, names):
        return {n: getattr(self, _mangle(n)) for n in names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.num_models
        if x.dim() < 1 or x.shape[0] % k:
            raise FusedError(f"fused input must hold K * n rows (K = {k}), got shape {tuple(x.shape)}")
        xs = x.reshape(k, x.shape[0] // k, *x.shape[1:])  # (K, n, 3, H, W): slice k goes to model k
        # The template's flags follow the fused module's (eval_mode on the fused module therefore reaches BN).
        self._template.train(self.training)

        def one(params, buffers, xk):  # one model's forward; vmap maps it over the leading K dim of all three
            return functional_call(self._template, (params, buffers), (xk,))

        out = vmap(one)(self._stacked(self._param_names), self._stacked(self._buffer_names), xs)  # (K, n, out)
        return out.reshape(x.shape[0], *out.shape[2:])

    def model_state_dict(self, k: int) -> dict:
        """Model k's state dict in the single-model format (keys as in ``create_model``; detached copies)."""
        if not 0 <= k < self.num_models:
            raise FusedError(f"model index must be in [0, {self.num_models}), got {k}")
        return {n: getattr(self, _mangle(n))[k].detach().clone() for n in self._state_names}

    def load_into(self, models: Sequence[nn.Module]) -> None:
        """Copy the fused state into K single models (e.g. to checkpoint or evaluate each d_k)."""
        if len(models) != self.num_models:
            raise FusedError(f"expected {self.num_models} models, got {len(models)}")
        for k, m in enumerate(models):
            m.load_state_dict(self.model_state_dict(k))


class FusedSGD(torch.optim.Optimizer):
    """``torch.optim.SGD`` (momentum, weight decay; no dampening, no Nesterov) over stacked (K, ...) parameters
    with one learning rate per model: for model k, buf_k = momentum * buf_k + g_k + wd * p_k; p_k -= lr_k * buf_k
    (the first step sets buf = g + wd * p, as torch's SGD). ``lrs``: (K,) current learning rates (numbers or a
    tensor; kept as host numbers), set per step
    with :meth:`set_lrs` (a schedule per model, each run's :attr:`genrobust.training.loop.TrainingRun.lr`; a
    ``torch.optim.lr_scheduler`` cannot schedule entries of one tensor differently, and the paper's step schedule
    drops classes 0, 1, 6 by 0.2x and the others by 0.1x). Model k's slice of the state is written and read in
    torch.optim.SGD's format (:meth:`model_state`, :meth:`load_model_states`), so each d_k's last.pt resumes on
    either path."""

    def __init__(self, params, lrs, momentum: float = 0.0, weight_decay: float = 0.0):
        lrs = _host_lrs(lrs)
        if any(lr < 0 for lr in lrs) or momentum < 0 or weight_decay < 0:
            raise FusedError(f"lrs, momentum and weight_decay must be >= 0, got {list(lrs)}, {momentum}, "
                             f"{weight_decay}")
        super().__init__(params, dict(lrs=lrs, momentum=momentum, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() == 0 or p.shape[0] != len(lrs):
                    raise FusedError(f"every parameter must be stacked (K={len(lrs)}, ...), got {tuple(p.shape)}")

    def set_lrs(self, lrs) -> None:
        lrs = _host_lrs(lrs)
        for group in self.param_groups:
            if len(lrs) != len(group["lrs"]):
                raise FusedError(f"expected {len(group['lrs'])} learning rates, got {len(lrs)}")
            if lrs != group["lrs"]:  # unchanged (constant / step schedules): keep the device copies
                group["lrs"] = lrs
                group.pop("_lrs_on", None)

    @staticmethod
    def _lrs_for(group, p) -> torch.Tensor:
        """The group's (K,) learning rates on p's device and dtype: one host-to-device copy per change of the
        rates, not one per parameter per step, and one that does not wait for the device (non_blocking: a
        pageable host-to-device copy is staged before the call returns; a blocking one is a host sync)."""
        cache = group.setdefault("_lrs_on", {})
        key = (p.device, p.dtype)
        if key not in cache:
            cache[key] = torch.tensor(group["lrs"], dtype=p.dtype).to(p.device, non_blocking=True)
        return cache[key]

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mom, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                if mom != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(mom).add_(d_p)
                    d_p = buf
                lr = self._lrs_for(group, p).view(-1, *([1] * (p.dim() - 1)))  # (K, 1, ..)
                p.sub_(lr * d_p)
        return loss

    # Model k's state in torch.optim.SGD's state_dict format: parameter j of this optimizer is parameter j of the
    # single model (FusedBinaryModels registers the stacked tensors in the model's named_parameters order).
    def model_state(self, k: int, lr: float) -> dict:
        """Model k's momentum buffers and hyperparameters, as model k's own torch.optim.SGD would hold them (lr:
        its next step's)."""
        (group,) = self.param_groups
        state = {j: {"momentum_buffer": self.state[p]["momentum_buffer"][k].detach().clone()}
                 for j, p in enumerate(group["params"]) if "momentum_buffer" in self.state.get(p, {})}
        return {"state": state, "param_groups": [{
            "lr": lr, "momentum": group["momentum"], "dampening": 0, "weight_decay": group["weight_decay"],
            "nesterov": False, "maximize": False, "foreach": None, "differentiable": False, "fused": None,
            "params": list(range(len(group["params"])))}]}

    def load_model_states(self, states: Sequence[dict]) -> None:
        """The K models' torch.optim.SGD state dicts (each run's last.pt), their momentum buffers stacked."""
        (group,) = self.param_groups
        for j, p in enumerate(group["params"]):
            bufs = [st["state"].get(j, {}).get("momentum_buffer") for st in states]
            if all(b is not None for b in bufs):
                self.state[p]["momentum_buffer"] = torch.stack(bufs).to(p.device)


def _host_lrs(lrs) -> tuple[float, ...]:
    """(K,) learning rates (a sequence of numbers, or a tensor) as host numbers: FusedSGD compares and keeps them
    on the host, so a training step reads no tensor to set them (a tensor's value read is a host sync on CUDA)."""
    if isinstance(lrs, torch.Tensor):
        return tuple(lrs.detach().double().reshape(-1).tolist())
    return tuple(float(lr) for lr in lrs)


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm folding of the fused module (genrobust.core.fold). Its forward is vmap(functional_call(template, stacked
# state)), which torch.fx cannot trace, and its state is stacked (K, ...) under mangled names: the pairs are found
# on the (stateless, meta-device) template, the stacked state is folded for all K models at once
# (fold_state(..., stacked=True)), and the view is itself a FusedBinaryModels built once from K copies of the
# folded template, whose stacked tensors each refresh points at the folded live ones -- so the view runs the fused
# module's own forward (same row layout). Channels-last does not apply: the stacked conv weights are 5-d.
def _stacked_state(fused: FusedBinaryModels) -> dict[str, torch.Tensor]:
    """Detached aliases of the stacked (K, ...) tensors, by the single model's qualified names."""
    return {n: getattr(fused, _mangle(n)).detach() for n in fused._param_names + fused._buffer_names}


class FoldedFusedView(FoldedView):
    """The fused module's eval-mode function with BN folded, refreshed from its current stacked tensors (a
    :class:`genrobust.core.fold.FoldedView` whose state is the stacked (K, ...) one)."""

    def __init__(self, fused: FusedBinaryModels, channels_last: Optional[bool] = None):
        self._live = weakref.ref(fused)
        self.pairs = conv_bn_pairs(fused._template)  # tracing needs no values: the meta template traces
        self._names = list(_stacked_state(fused))
        one = fold_modules_(copy.deepcopy(fused._template), self.pairs).to_empty(device="cpu").eval()
        # Values are placeholders (to_empty): every tensor is replaced by the first refresh.
        self.module = FusedBinaryModels([one] * fused.num_models).eval()
        for t in self.module.parameters():
            t.requires_grad_(False)
        self._slot_map = tensor_slots(self.module)

    def _state(self, fused: FusedBinaryModels) -> dict[str, torch.Tensor]:
        return _stacked_state(fused)

    def _load(self, state) -> None:
        for name, value in fold_state(state, self.pairs, stacked=True).items():
            set_tensor(self._slot_map[_mangle(name)], value)



register_view(FusedBinaryModels, FoldedFusedView)  # fold_for_attack / folded_copy of a fused module use this view


# ---------------------------------------------------------------------------------------------------------------
# Choosing fused vs sequential per device: the rule is written with the other per-device choices, in
# genrobust.training.loop.ENGINE_RULE (its comment gives the measurements).
PATH_RULE = {kind: rule["path"] for kind, rule in ENGINE_RULE.items()}


def choose_training_path(device) -> str:
    """'fused' or 'sequential' for training K binary models on ``device``: the rule :data:`PATH_RULE` (CPU ->
    sequential, CUDA -> fused; other devices -> sequential, the path that needs nothing from vmap).
    benchmarks/bench_fused.py measures both paths on a machine."""
    return PATH_RULE.get(torch.device(device).type, "sequential")
