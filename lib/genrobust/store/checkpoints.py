"""Checkpoints: one format for every model (weights + the config that rebuilds the module), their weights digest,
and the one model loader (:func:`load_model`; :func:`load_classifier` is the evaluation contract)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..core.models import GenerativeClassifier, create_model
from .io import ResultsError, load_torch, save_torch

CHECKPOINT_FORMAT = "genrobust-checkpoint-v1"


def save_checkpoint(path, *, kind: str, state: dict, config: dict, **extra) -> Path:
    """kind: 'binary' (one d_k), 'generative' (K d_k + c), 'softmax'. ``state`` holds state dicts; ``config`` the
    model/run config needed to rebuild the modules."""
    if kind not in ("binary", "generative", "softmax"):
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return save_torch(path, {"format": CHECKPOINT_FORMAT, "kind": kind, "state": state, "config": config, **extra})


def read_checkpoint(path) -> dict:
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ResultsError(f"{path}: not a genrobust checkpoint (format {CHECKPOINT_FORMAT}); "
                           "for a robustness-library file set softmax.checkpoint to it (notebook 01 imports it)")
    return ckpt


def _tensors(obj, prefix=""):
    """(name, tensor) pairs of a nested dict/list of tensors, in a deterministic (sorted-key) order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def weights_digest(path) -> str:
    """sha256 (first 16 hex digits) of the tensors of a checkpoint's weights: names, dtypes, shapes and bytes, in
    a fixed order (not the file's bytes, which depend on the serializer). Two runs that produced bit-identical
    weights have equal digests: results files record it so a retrained model can be matched to the results
    computed from an earlier copy."""
    ckpt = load_torch(path)
    state = ckpt.get("state", ckpt) if isinstance(ckpt, dict) else ckpt
    h = hashlib.sha256()
    for name, t in _tensors(state):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors (BN num_batches_tracked) need a dim to view
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def load_model(path, device="cpu") -> torch.nn.Module:
    """The one model loader: any genrobust checkpoint as a frozen (no parameter requires grad), eval-mode module
    on ``device`` that maps (N, 3, 32, 32) images in [0, 1] to logits -- (N, 1) for a binary d_k, (N, 10) for a
    generative (K d_k + c, Eq. 7) or softmax classifier. Building the modules draws throwaway initial weights: that
    happens inside ``fork_rng``, so loading never moves the caller's global RNG."""
    ckpt = read_checkpoint(path)
    cfg, kind, state = ckpt["config"], ckpt["kind"], ckpt["state"]
    with torch.random.fork_rng(devices=[]):
        if kind == "generative":
            models = [create_model(cfg["name"], 1, cfg["width"]) for _ in state["models"]]
            for m, sd in zip(models, state["models"]):
                m.load_state_dict(sd)
            model = GenerativeClassifier(models, torch.as_tensor(state["c"]))
        else:  # 'binary' (one d_k) or 'softmax'
            model = create_model(cfg["name"], cfg.get("num_outputs", 1 if kind == "binary" else 10), cfg["width"])
            model.load_state_dict(state["model"])
    if "normalize" in cfg:  # e.g. an imported robustness-library model keeps its own constants
        model.normalize.mean.copy_(torch.tensor(cfg["normalize"]["mean"]).view(1, 3, 1, 1))
        model.normalize.std.copy_(torch.tensor(cfg["normalize"]["std"]).view(1, 3, 1, 1))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen: attacks take input gradients only
    return model.to(device).eval()


def load_classifier(path, device="cpu") -> torch.nn.Module:
    """Load a generative or softmax classifier checkpoint as an eval-mode nn.Module that maps
    (N, 3, 32, 32) images in [0, 1] to (N, 10) logits. Every evaluation goes through this contract."""
    if read_checkpoint(path)["kind"] == "binary":
        raise ResultsError(f"{path}: a single binary model d_k is not a classifier; load it with load_model, or "
                           "load the calibrated GenerativeClassifier of all K (notebook 02) instead")
    return load_model(path, device)


def robustness_state_dict(path) -> tuple[dict, dict]:
    """Map a MadryLab `robustness` CIFAR-10 checkpoint (e.g. the published L2 eps 0.5 ResNet50) to our ResNet50.

    Their file holds {'model': state dict of an AttackerModel, ...} with keys 'module.model.<layer>' (the
    classifier), 'module.attacker.model.<layer>' (a copy) and 'module.normalizer.new_mean/new_std'. Their CIFAR
    ResNet uses the same layer names as ours (conv1, bn1, layer1-4 of Bottleneck blocks with `shortcut`, linear).
    Returns (state dict for create_model('resnet50', 10), {'mean': [...], 'std': [...]}) -- their normalization
    constants, which differ slightly from ours and must be kept."""
    ckpt = load_torch(path)
    sd = ckpt.get("model", ckpt.get("state_dict", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a robustness-library checkpoint (no 'model' state dict)")
    prefix = next((p for p in ("module.model.", "model.") if any(k.startswith(p) for k in sd)), None)
    if prefix is None:
        raise ValueError(f"{path}: no 'module.model.*' keys; expected a robustness-library CIFAR checkpoint")
    state = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    norm = {}
    for name in ("mean", "std"):
        t = sd.get(f"module.normalizer.new_{name}", sd.get(f"normalizer.new_{name}"))
        if t is None:
            raise ValueError(f"{path}: missing normalizer.new_{name}; is this a robustness-library checkpoint?")
        norm[name] = t.reshape(-1).tolist()
    return state, norm
