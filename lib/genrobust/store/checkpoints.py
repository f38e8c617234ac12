"""Checkpoints: one format for every model (weights + the config that rebuilds the module), their weights digest,
and the one model loader (:func:`load_model`; :func:`load_classifier` is the evaluation contract).

A checkpoint is a torch file (training's, read with ``weights_only=True``) or, for released models, a safetensors
file (:func:`save_released`): the same content, tensors stored flat by their path in the nested state
("models/3/conv1.weight", "c"), the kind and config as JSON metadata, and the weights digest, which loading
recomputes and compares (a damaged or altered file is refused). safetensors holds tensors only, so reading one can
never run code."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..core.models import GenerativeClassifier, create_model
from .io import ResultsError, atomic_path, load_torch, save_torch

CHECKPOINT_FORMAT = "genrobust-checkpoint-v1"
RELEASED_FORMAT = "genrobust-released-v1"   # the metadata "format" of a released safetensors file
RELEASED_SUFFIX = ".safetensors"


def save_checkpoint(path, *, kind: str, state: dict, config: dict, **extra) -> Path:
    """kind: 'binary' (one d_k), 'generative' (K d_k + c), 'softmax'. ``state`` holds state dicts; ``config`` the
    model/run config needed to rebuild the modules."""
    if kind not in ("binary", "generative", "softmax"):
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return save_torch(path, {"format": CHECKPOINT_FORMAT, "kind": kind, "state": state, "config": config, **extra})


def read_checkpoint(path) -> dict:
    """{'format', 'kind', 'state', 'config', ...} of a training checkpoint or a released safetensors file."""
    if str(path).endswith(RELEASED_SUFFIX):
        return _read_released(path)
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
    computed from an earlier copy. A released file has the digest of the checkpoint it was released from."""
    if str(path).endswith(RELEASED_SUFFIX):
        return state_digest(_read_released(path)["state"])
    ckpt = load_torch(path)
    return state_digest(ckpt.get("state", ckpt) if isinstance(ckpt, dict) else ckpt)


def state_digest(state) -> str:
    """:func:`weights_digest` of a nested dict/list of tensors (a checkpoint's state, or a module's state_dict)."""
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


# ---------------------------------------------------------------------------------------------------------------
# Released models: safetensors (tensors only) with the checkpoint's kind, config and weights digest as metadata
def _nest(flat: dict[str, torch.Tensor]):
    """The nested state back from flat 'a/0/b' names: dicts, and lists where every key of a level is an index."""
    root: dict = {}
    for name, t in flat.items():
        *parents, leaf = name.split("/")
        node = root
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = t

    def lists(node):
        if not isinstance(node, dict):
            return node
        node = {k: lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
        return node
    return lists(root)


def save_released(path, checkpoint) -> dict:
    """Write the checkpoint at ``checkpoint`` (a training checkpoint path) as a released safetensors file at
    ``path`` (fp32 as trained; atomic). Returns its entry: kind, config, weights digest (equal to the checkpoint's),
    parameters, bytes."""
    ckpt = read_checkpoint(checkpoint)
    flat = {name.lstrip("/"): t.detach().cpu().contiguous() for name, t in _tensors(ckpt["state"])}
    digest = state_digest(ckpt["state"])
    meta = {"format": RELEASED_FORMAT, "kind": ckpt["kind"], "config": json.dumps(ckpt["config"], sort_keys=True),
            "weights_digest": digest}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)
    return {"kind": ckpt["kind"], "config": ckpt["config"], "weights_digest": digest,
            "parameters": sum(t.numel() for n, t in flat.items() if t.is_floating_point()),
            "bytes": Path(path).stat().st_size}


def _read_released(path) -> dict:
    """A released file as a checkpoint dict, after checking its weights digest against the one it records and,
    where a models.json sits beside it, the one that names it."""
    try:
        flat = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != RELEASED_FORMAT:
            raise ResultsError(f"{path}: not a genrobust released model (format {meta.get('format')!r}, expected "
                               f"{RELEASED_FORMAT}); for a model of your own use `genrobust evaluate --model`")
        config = json.loads(meta["config"])
    except (FileNotFoundError, ResultsError):
        raise
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise ResultsError(f"{path}: not a readable released model ({type(e).__name__}: {e}); download it again "
                           "or re-release it from its checkpoint (genrobust.classifiers.release)") from None
    state = _nest(flat)
    digest = state_digest(state)
    listed = Path(path).with_name("models.json")
    expected = {meta.get("weights_digest")}
    if listed.is_file():
        entry = json.loads(listed.read_text()).get("files", {}).get(Path(path).name)
        if entry is not None:
            expected.add(entry.get("weights_digest"))
    if expected != {digest}:
        raise ResultsError(f"{path}: weights digest {digest} differs from the recorded {sorted(map(str, expected))}; "
                           "the file is damaged or altered: download it again")
    return {"format": CHECKPOINT_FORMAT, "kind": meta["kind"], "state": state, "config": config}
