"""Importing and checking your model: its 'module:factory' spec imported and called, the contract checked ((N, 10)
finite logits for (N, 3, 32, 32) images in [0, 1]), the input range it expects found by a paired test, its description.

Bad input is one line naming the problem and the fix (:class:`ModelError`): an import that fails, a factory that
is not callable or does not return a module, outputs of the wrong shape or not finite, a model that expects another
input range than [0, 1] (CIFAR mean/std, [-1, 1] or 0-255: found by a paired test on :data:`PROBE_IMAGES` images;
``--assume-input-range`` overrides it, converting [0, 1] images to the range named, :class:`InputRange`). The code
imported is the user's own: it runs because the user named it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from ..core.cifar10 import NUM_CLASSES
from ..core.stats import paired_increase
from ..core.models import CIFAR10_MEAN, CIFAR10_STD, ModelError
from ..measure.claims import holm
from ..store.checkpoints import state_digest

PROBE_IMAGES = 200    # images of the input-range check (and of the contract checks)
RANGE_ALPHA = 0.01    # family-wise level of the input-range check (Holm over the three other conventions)
CONTRACT_IMAGES = 16  # images of the shape / finiteness check on the model as given

# The input conventions the range check tries: name -> (label, how an image in [0, 1] becomes that convention).
INPUT_RANGES = {
    "0-1": "[0, 1]",
    "cifar-meanstd": "CIFAR-10 mean/std normalized",
    "neg1-1": "[-1, 1]",
    "0-255": "0-255",
}


def to_range(x: torch.Tensor, name: str) -> torch.Tensor:
    """Images x (N, 3, H, W) in [0, 1] in the convention ``name`` of :data:`INPUT_RANGES`."""
    if name == "0-1":
        return x
    if name == "cifar-meanstd":
        mean = torch.tensor(CIFAR10_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std
    if name == "neg1-1":
        return 2 * x - 1
    if name == "0-255":
        return 255 * x
    raise ModelError(f"unknown input range {name!r}; choose one of {', '.join(INPUT_RANGES)}")


class InputRange(torch.nn.Module):
    """``model`` behind a conversion of [0, 1] images into the input range it expects (``--assume-input-range``):
    attacks still perturb [0, 1] images and eps stays in [0, 1] pixel units."""

    def __init__(self, model: torch.nn.Module, name: str):
        super().__init__()
        to_range(torch.zeros(1, 3, 1, 1), name)  # an unknown name fails here, in one line
        self.model, self.input_range = model, name

    def forward(self, x):
        return self.model(to_range(x, self.input_range))


def import_model(spec: str) -> torch.nn.Module:
    """``'package.module:factory'`` or ``'path/to/file.py:factory'`` -> factory(), which must return an
    nn.Module (a module class with no required arguments works too). The code imported is the user's own."""
    if ":" not in spec:
        raise ModelError(f"--model needs MODULE:FACTORY (e.g. mypackage.models:build or models.py:build), got {spec!r}")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ModelError(f"{where}: no such file for --model {spec}; give an existing .py file or a module name")
            loaded = importlib.util.spec_from_file_location(f"genrobust_user_{path.stem}", path)
            module = importlib.util.module_from_spec(loaded)
            sys.modules[loaded.name] = module  # dataclasses and pickling look the module up by name
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ModelError:
        raise
    except Exception as e:  # the user's module failed to import: say which and how
        raise ModelError(f"cannot import {where!r} for --model {spec} ({type(e).__name__}: {e}); put its directory "
                         "on PYTHONPATH, or give the file: --model path/to/file.py:FACTORY") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ModelError(f"{where!r} has no attribute {name!r}; name a function or class in it that builds the model")
    if not callable(factory):
        raise ModelError(f"{spec} is a {type(factory).__name__}, not callable; name a function or class that "
                         "returns the model")
    try:
        model = factory()
    except Exception as e:
        raise ModelError(f"calling {spec}() failed ({type(e).__name__}: {e}); the factory must build the model "
                         "with no arguments (load its weights inside)") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module mapping [0, 1] images "
                         "to logits")
    return model


def describe_model(model: torch.nn.Module, name: str, input_range: str = "0-1") -> dict:
    """What the record says about the evaluated model itself: its name (the spec), class, parameter count, weights
    digest (of its state_dict, genrobust.store.checkpoints.state_digest) and the input range it is fed."""
    cls = type(model)
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights_digest": state_digest(model.state_dict()), "input_range": input_range}


def classifier_id(description: dict) -> str:
    """The name its units are kept under: the weights digest, plus the input range when it is not [0, 1] (the
    same weights behind another conversion are another function)."""
    r = description["input_range"]
    return description["weights_digest"] if r == "0-1" else f"{description['weights_digest']}-{r}"


def check_contract(model: torch.nn.Module, x: torch.Tensor) -> None:
    """(N, 10) finite logits for a batch of [0, 1] images x (N, 3, 32, 32); else one line naming the fix."""
    with torch.no_grad():
        try:
            out = model(x)
        except Exception as e:
            raise ModelError(f"the model failed on a ({len(x)}, 3, 32, 32) batch of [0, 1] images ({type(e).__name__}: "
                             f"{e}); it must take CIFAR-10 images as (N, 3, 32, 32) floats in [0, 1]") from None
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), NUM_CLASSES):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"the model returned {got} for a ({len(x)}, 3, 32, 32) batch; the protocol needs "
                         f"({len(x)}, {NUM_CLASSES}) logits, one per CIFAR-10 class (return the logits tensor)")
    if not torch.isfinite(out).all():
        raise ModelError("the model returned non-finite logits (nan or inf) on clean [0, 1] images; fix the model "
                         "(or its weights) first")


def check_input_range(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, assumed: str | None = None,
                      clean: torch.Tensor | None = None) -> dict:
    """Does the model take [0, 1] images? Its predictions on the first :data:`PROBE_IMAGES` images x (in [0, 1]),
    y in each convention of :data:`INPUT_RANGES` are paired with its predictions on [0, 1] (``clean``: those
    flags when known; one-sided exact McNemar, Holm over the three at :data:`RANGE_ALPHA`); a convention
    significantly more accurate than [0, 1] is a clear winner and the model is refused, in one line naming it and
    ``--assume-input-range``, unless ``assumed`` names the range the caller has put in front of the model already.
    Returns {n, accuracy: {range: fraction}, p_holm: {range: p}, clear_winner, assumed}."""
    x, y = x[:PROBE_IMAGES], y[:PROBE_IMAGES]
    flags = {}
    with torch.no_grad():
        for r in INPUT_RANGES:
            if r == "0-1" and clean is not None:
                flags[r] = clean[:len(y)].cpu()
                continue
            try:
                out = model(to_range(x, r))
            except Exception:  # another convention may break a model that is fine on [0, 1]: it loses the test
                out = None
            ok = isinstance(out, torch.Tensor) and out.shape == (len(x), NUM_CLASSES)
            flags[r] = (out.argmax(1) == y).cpu() if ok else torch.zeros(len(y), dtype=torch.bool)
    acc = {r: float(f.float().mean()) for r, f in flags.items()}
    others = [r for r in INPUT_RANGES if r != "0-1"]
    p = dict(zip(others, holm([paired_increase(flags["0-1"], flags[r])["p"] for r in others])))
    wins = [r for r in others if p[r] < RANGE_ALPHA]
    winner = max(wins, key=lambda r: acc[r]) if wins else None
    if winner is not None and assumed is None:
        raise ModelError(
            f"the model is {acc['0-1']:.0%} accurate on [0, 1] images but {acc[winner]:.0%} on "
            f"{INPUT_RANGES[winner]} ones (same {len(y)} images, paired McNemar, Holm p {p[winner]:.2g}): it expects "
            f"{INPUT_RANGES[winner]} inputs and would be attacked on the wrong scale; rerun with --assume-input-range "
            f"{winner} (genrobust converts [0, 1] images for it), or put the conversion inside the model")
    return {"n": len(y), "accuracy": acc, "p_holm": p, "clear_winner": winner, "assumed": assumed}


def check_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, assumed: str | None = None) -> dict:
    """:func:`check_contract` on the first :data:`PROBE_IMAGES` images, then :func:`check_input_range`."""
    check_contract(model, x[:PROBE_IMAGES])
    return check_input_range(model, x, y, assumed=assumed)


def _frozen(model: torch.nn.Module, device) -> torch.nn.Module:
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks take input gradients only
    return model


def build_model(spec: str, input_range: str, device) -> tuple[torch.nn.Module, dict]:
    """(the model to attack, its description): the factory's module, frozen in eval mode on ``device``, behind the
    input-range conversion when ``input_range`` is not '0-1'."""
    model = import_model(spec)
    return prepare_model(model, spec, input_range, device)


def prepare_model(model: torch.nn.Module, name: str, input_range: str, device) -> tuple[torch.nn.Module, dict]:
    """(the model to attack, its description) for a module given as such, under ``name``: as :func:`build_model`."""
    model = _frozen(model, device)
    desc = describe_model(model, name, input_range)
    return (model if input_range == "0-1" else InputRange(model, input_range).eval()), desc
