"""BatchNorm folded into the preceding convolution, for attacks on eval-mode models.

Why: every attack here runs the model in eval mode, and there a ``BatchNorm2d`` is a fixed per-channel affine map,
BN(y) = gamma * (y - mu) / sqrt(var + eps) + beta. Applied to a convolution's output it folds into the convolution:
W' = W * s, b' = (b - mu) * s + beta with s = gamma / sqrt(var + eps) per output channel -- the same function up to
float rounding, one memory pass less per convolution (forward and backward). Measured on input gradients of a
frozen eval-mode ResNet18 width 0.125 at batch 128, 1 CPU thread: 667 img/s contiguous, 1,001 channels-last, 1,087
folded, 1,533 folded + channels-last (2.30x). The arithmetic is torch's own
``torch.nn.utils.fusion.fuse_conv_bn_weights``.

Two entry points, one per situation:

* :func:`folded_copy` -- evaluation, generation, ablation scoring, training-time selection: the weights are fixed
  for the duration, so take one frozen, eval-mode, folded (and channels-last) snapshot and attack that. The
  caller's model is not touched.
* :func:`fold_for_attack` -- the training step's inner attack (``objectives._perturb``): the weights change at
  every optimizer step, so a folded module *structure* is built once per live model (cached) and each call
  refreshes its tensors from the live parameters and BN running statistics (detached: attacks take input
  gradients only). No deep copy per step; the refresh is a few small elementwise ops per folded conv.

Which pairs fold (:func:`conv_bn_pairs`): the model's forward is traced symbolically (``torch.fx``; a module that
does not trace is searched child by child), and a ``Conv2d`` folds into a ``BatchNorm2d`` when the BN is the only
consumer of the conv's output, each module runs exactly once, and the BN uses running statistics in eval mode. So
folding follows the data flow, not attribute names or registration order, and works whatever the nesting (ResNet
blocks, shortcut ``Sequential``, ``GenerativeClassifier``'s ``ModuleList``). Module classes are kept (a folded
``GenerativeClassifier`` still has ``.d``, ``.logits_for`` and ``.c``, so ``eq11_12_attack`` runs on it): only the
BN modules become ``nn.Identity`` and the convs get a bias.

Modules whose forward is not plain module composition (``genrobust.training.fused.FusedBinaryModels``: a vmapped
``functional_call`` of a stateless template over stacked (K, ...) state) register their own view with
:func:`register_view`; :func:`fold_state` folds stacked state as well (``stacked=True``).
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
import torch.fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["FoldPair", "conv_bn_pairs", "fold_state", "fold_modules_", "fold_inplace", "FoldedView", "folded_copy",
           "fold_for_attack", "register_view"]


@dataclass(frozen=True)
class FoldPair:
    """One Conv2d -> BatchNorm2d pair, by qualified module names in the model (``layer1.0.conv1``), and the BN's eps."""
    conv: str
    bn: str
    eps: float


# ----------------------------------------------------------------------------------------------------------------
# Finding the pairs
def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # Exact types: a subclass may override forward (weight standardization, quantization), so folding its
    # parameters would not give its function. A BN without running statistics normalizes with batch statistics
    # even in eval mode, so it is not affine.
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.running_var is not None and conv.out_channels == bn.num_features)


def _pairs_in_graph(root: nn.Module, graph: torch.fx.Graph, prefix: str) -> list[FoldPair]:
    calls: dict[int, int] = {}  # id(module) -> number of call_module nodes running it
    for node in graph.nodes:
        if node.op == "call_module":
            m = root.get_submodule(node.target)
            calls[id(m)] = calls.get(id(m), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv, bn = root.get_submodule(src.target), root.get_submodule(node.target)
        if _foldable(conv, bn) and calls[id(conv)] == 1 and calls[id(bn)] == 1:
            pairs.append(FoldPair(prefix + src.target, prefix + node.target, float(bn.eps)))
    return pairs


def _find_pairs(module: nn.Module, prefix: str) -> list[FoldPair]:
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:  # data-dependent control flow, vmap, ...: search the children instead
        return [p for name, child in module.named_children() for p in _find_pairs(child, f"{prefix}{name}.")]
    return _pairs_in_graph(module, graph, prefix)


def conv_bn_pairs(model: nn.Module) -> list[FoldPair]:
    """Every Conv2d -> BatchNorm2d pair of ``model`` that folds exactly (see the module docstring), in forward order.

    A module shared under two names is never folded (folding it for one use would change the other)."""
    shared = set()
    seen = set()
    for _, m in model.named_modules(remove_duplicate=False):
        (shared if id(m) in seen else seen).add(id(m))
    return [p for p in _find_pairs(model, "")
            if id(model.get_submodule(p.conv)) not in shared and id(model.get_submodule(p.bn)) not in shared]


# ----------------------------------------------------------------------------------------------------------------
# Folding state (pure tensor functions) and module structure
def fold_state(state: Mapping[str, torch.Tensor], pairs, *, stacked: bool = False) -> dict[str, torch.Tensor]:
    """Folded copy of a name -> tensor state (parameters and buffers, as ``named_parameters`` / ``named_buffers``
    give them): for each pair, ``conv.weight`` and ``conv.bias`` become the folded ones and the BN's entries are
    dropped; every other entry is passed through as is (the same tensor object).

    stacked=True: every tensor carries a leading model dim (K, ...), as ``torch.func.stack_module_state`` gives
    (conv weight (K, C_out, C_in, kh, kw), BN statistics (K, C_out)); the folding is per output channel, so the K
    models fold as one (K * C_out)-channel conv. Computed in the tensors' own dtype; no autograd graph is kept
    when the inputs are detached (call under ``torch.no_grad()`` or pass detached tensors)."""
    out = dict(state)
    for p in pairs:
        w, b = out[f"{p.conv}.weight"], out.get(f"{p.conv}.bias")
        rm, rv = out.pop(f"{p.bn}.running_mean"), out.pop(f"{p.bn}.running_var")
        gamma, beta = out.pop(f"{p.bn}.weight", None), out.pop(f"{p.bn}.bias", None)
        out.pop(f"{p.bn}.num_batches_tracked", None)
        lead = w.shape[:2] if stacked else w.shape[:1]  # (K, C_out) or (C_out,)
        flat = lambda t: None if t is None else t.reshape(-1)  # noqa: E731  (K, C_out) -> (K * C_out,)
        fw, fb = fuse_conv_bn_weights(w.reshape(-1, *w.shape[len(lead):]), flat(b), flat(rm), flat(rv), p.eps,
                                      flat(gamma), flat(beta))
        out[f"{p.conv}.weight"] = fw.detach().reshape(w.shape)
        out[f"{p.conv}.bias"] = fb.detach().reshape(lead)
    return out


def fold_modules_(model: nn.Module, pairs) -> nn.Module:
    """Structure only, in place: every paired BN becomes ``nn.Identity`` and its conv gets a (zero) bias if it had
    none. The folded values come from :func:`fold_state`. Returns ``model``."""
    for p in pairs:
        conv = model.get_submodule(p.conv)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype,
                                                 device=conv.weight.device), requires_grad=False)
        parent, _, leaf = p.bn.rpartition(".")
        setattr(model.get_submodule(parent), leaf, nn.Identity())
    return model


def _live_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached aliases (no copy) of every parameter and buffer, by qualified name."""
    state = {n: t.detach() for n, t in model.named_parameters()}
    state.update((n, t.detach()) for n, t in model.named_buffers())
    return state


def tensor_slots(root: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    """name -> (owning module, attribute, is_parameter) for every parameter and buffer of ``root`` (looked up once,
    so that a refresh does not walk the module tree per tensor)."""
    out = {}
    for prefix, mod in root.named_modules():
        for table, is_param in ((mod._parameters, True), (mod._buffers, False)):
            for leaf, t in table.items():
                if t is not None:
                    out[f"{prefix}.{leaf}" if prefix else leaf] = (mod, leaf, is_param)
    return out


def set_tensor(slot: tuple[nn.Module, str, bool], value: torch.Tensor) -> None:
    """Point a parameter or buffer slot at ``value`` (no copy); parameters stay frozen Parameters."""
    mod, leaf, is_param = slot
    if is_param:
        mod._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        mod._buffers[leaf] = value


def _layout(t: torch.Tensor, channels_last: Optional[bool], like: torch.Tensor) -> torch.Tensor:
    """4-d conv weights in the asked memory format (None: the format of ``like``, the live weight)."""
    if t.dim() != 4:
        return t
    if channels_last is None:
        channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _load_folded(slots, state: Mapping[str, torch.Tensor], pairs, channels_last: Optional[bool]) -> None:
    """Point every tensor of a folded structure (its :func:`tensor_slots`) at fold_state(state) (4-d weights in the asked
    layout)."""
    for name, value in fold_state(state, pairs).items():
        if value.dim() == 4:
            value = _layout(value, channels_last, state[name])
        set_tensor(slots[name], value)


# ----------------------------------------------------------------------------------------------------------------
# Views: a folded structure built once, refreshed from the live model's tensors
class FoldedView:
    """A folded, eval-mode module that computes ``model``'s eval-mode function from ``model``'s current tensors.

    Built once per model (deep copy of the structure, BN -> Identity); :meth:`refresh` points every tensor of the
    view at the live model's (detached aliases, no copy) and replaces the folded convs' weight and bias by
    :func:`fold_state` of the live conv and BN tensors. The view is always in eval mode, whatever the live model's
    flags (it is the function the inner attack wants), and its parameters never require grad.

    channels_last: True / False put the 4-d weights in that memory format (a copy of each, every refresh); None
    keeps the live weights' format (a model that ``training.loop.fit`` put in channels-last stays channels-last).
    """

    def __init__(self, model: nn.Module, channels_last: Optional[bool] = None):
        self._live = weakref.ref(model)  # the cache maps model -> view; a strong reference would keep model alive
        self.channels_last = channels_last
        self.pairs = conv_bn_pairs(model)
        self._names = list(_live_state(model))
        with torch.no_grad():
            self.module = fold_modules_(copy.deepcopy(model), self.pairs).eval()
        for t in self.module.parameters():
            t.requires_grad_(False)
        self._slot_map = tensor_slots(self.module)

    def _state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Detached aliases of the live tensors, by name (views of other module types override it)."""
        return _live_state(model)

    def _load(self, state: Mapping[str, torch.Tensor]) -> None:
        """Point the view's tensors at the folded ``state`` (views of other module types override it)."""
        _load_folded(self._slot_map, state, self.pairs, self.channels_last)

    @torch.no_grad()
    def refresh(self) -> Optional[nn.Module]:
        """The view with the live model's current weights and BN statistics folded in (``self.module``), or None
        when the live model's parameter/buffer names changed since the view was built (then build a new view)."""
        model = self._live()
        if model is None:
            raise RuntimeError(f"the model of this {type(self).__name__} no longer exists")
        state = self._state(model)
        if list(state) != self._names:
            return None
        self._load(state)
        return self.module


# Types whose forward is not module composition register a view factory(model, channels_last) with .refresh().
_VIEW_TYPES: list[tuple[type, Callable]] = []
_VIEWS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def register_view(cls: type, factory: Callable) -> None:
    """Build views of ``cls`` instances with ``factory(model, channels_last)`` instead of :class:`FoldedView`: an
    object whose ``.refresh()`` returns the refreshed folded module, or None when the model's structure changed
    (as :meth:`FoldedView.refresh`). ``genrobust.training.fused`` registers ``FusedBinaryModels``."""
    _VIEW_TYPES[:] = [(c, f) for c, f in _VIEW_TYPES if c is not cls] + [(cls, factory)]


def _new_view(model: nn.Module, channels_last: Optional[bool]):
    for cls, factory in reversed(_VIEW_TYPES):
        if isinstance(model, cls):
            return factory(model, channels_last)
    return FoldedView(model, channels_last)


def fold_for_attack(model: nn.Module, *, channels_last: Optional[bool] = None) -> nn.Module:
    """The eval-mode function of ``model`` with BN folded, from its current weights: pass the result to an attack.

    For the training step's inner attack: call it once per attack (after the last optimizer step, before the
    attack), not once per PGD step -- the weights do not change during an attack. The folded structure is built on
    the first call for a model and cached (weakly: it goes when the model goes); later calls only refresh the
    tensors. The returned module aliases the live tensors: use it for this attack only (the next optimizer step
    changes the unfolded ones in place; call again after it). Input gradients through it equal the live model's
    in eval mode up to float rounding; it computes no weight gradients and writes no state of ``model``.
    """
    views = _VIEWS.setdefault(model, {})
    view = views.get(channels_last)
    folded = None if view is None else view.refresh()
    if folded is None:  # first call for this model, or its structure changed
        view = views[channels_last] = _new_view(model, channels_last)
        folded = view.refresh()
    return folded


def fold_inplace(model: nn.Module, *, channels_last: Optional[bool] = None) -> nn.Module:
    """Fold every foldable Conv2d -> BatchNorm2d pair of ``model`` in place (BN -> Identity, folded conv weight and
    bias from the current tensors); every parameter becomes a frozen Parameter (requires_grad False) and the model
    is put in eval mode -- after folding it computes only its eval-mode function. channels_last: as
    :class:`FoldedView`. Returns ``model``. ``fid.fold_batchnorm`` can become a call of this function (same pairs,
    same features: tests/test_fold.py)."""
    with torch.no_grad():
        pairs = conv_bn_pairs(model)
        state = _live_state(model)
        _load_folded(tensor_slots(fold_modules_(model, pairs)), state, pairs, channels_last)
    return model.eval()


def folded_copy(model: nn.Module, *, channels_last: Optional[bool] = True) -> nn.Module:
    """A frozen (no parameter requires grad), eval-mode, independent deep copy of ``model`` with every foldable
    Conv2d -> BatchNorm2d pair folded, and channels-last 4-d weights if asked (None: the model's own layout; inputs
    may stay contiguous NCHW either way).

    For attacks on fixed weights (evaluation, generation, selection). The same class as ``model`` (a
    ``GenerativeClassifier`` stays one); ``model`` itself is not modified (state, flags, ``.grad``)."""
    if any(isinstance(model, cls) for cls, _ in _VIEW_TYPES):
        with torch.no_grad():
            out = copy.deepcopy(_new_view(model, channels_last).refresh())  # deep copy: unlinks the live tensors
    else:  # one deep copy (the slow part for a GenerativeClassifier's 10 sub-models), folded in place
        out = fold_inplace(copy.deepcopy(model), channels_last=channels_last)
    for t in out.parameters():
        t.requires_grad_(False)
    return out.eval()
