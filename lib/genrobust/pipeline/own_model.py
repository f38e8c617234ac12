"""Evaluating your own model with notebook 03's protocol (``genrobust evaluate --model MODULE:FACTORY`` or
:func:`evaluate_model`).

Any ``torch.nn.Module`` that maps (N, 3, 32, 32) images in [0, 1] to (N, 10) logits is attacked like the softmax
baseline: the paper's PGD on cross-entropy over the profile's eps grid, AutoAttack and multi-targeted at the strong
eps, the gradient-masking checks, per-example flags and the worst case per eps. Its units are keyed by its weights
digest under runs/eval/ like ours, so a killed evaluation resumes. Where the profile's classifiers exist (trained,
or released with ``from_released``), each is compared with yours on the same images by an exact McNemar test, on
the worst case over the attacks both faced at that eps (never across different attack sets).

Bad input is one line naming the problem and the fix (:class:`ModelError`): an import that fails, a factory that
is not callable or does not return a module, outputs of the wrong shape or not finite, a model that expects
normalized inputs.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from pathlib import Path

import torch

from ..core.config import Profile, get_profile, to_dict
from ..core.metrics import mcnemar, wilson_interval
from ..core.models import CIFAR10_MEAN, CIFAR10_STD, ModelError
from ..data.splits import prepare_data
from ..measure.accuracy import UnitContext, evaluate_classifier, evaluation_set, prepare_attacks
from ..measure.checks import masking_checks
from ..measure.record import EvalRecord
from ..store.checkpoints import state_digest
from ..store.executors import RunError
from ..store.io import write_json
from ..store.paths import runs_dir
from ..store.provenance import provenance
from ..store.units import UnitStore
from ..training.loop import default_device
from .classifiers import ensure_classifiers
from .evaluation import eval_set_identity, evaluate

OWN_SCHEMA = 1
NUM_CLASSES = 10
# A model that scores this much higher on normalized inputs than on [0, 1] ones expects normalized inputs.
NORMALIZED_GAP = 0.2
PROBE_IMAGES = 200


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


def check_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Check the contract on the first images of the evaluation set (x in [0, 1], y): (N, 10) finite logits, and
    inputs taken in [0, 1] (a model much more accurate on CIFAR-normalized inputs expects normalized ones).
    Returns {'accuracy_01': ..., 'accuracy_normalized': ..., 'n': ...} of that probe."""
    x, y = x[:PROBE_IMAGES], y[:PROBE_IMAGES]
    mean = torch.tensor(CIFAR10_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=x.device).view(1, 3, 1, 1)
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
            raise ModelError("the model returned non-finite logits (nan or inf) on clean [0, 1] images; fix the "
                             "model (or its weights) first")
        acc = float((out.argmax(1) == y).float().mean())
        acc_norm = float((model((x - mean) / std).argmax(1) == y).float().mean())
    if acc_norm - acc > NORMALIZED_GAP:
        raise ModelError(f"the model is {acc:.0%} accurate on [0, 1] images but {acc_norm:.0%} on CIFAR-normalized "
                         f"ones (n {len(y)}): it expects normalized inputs; put the normalization inside it, e.g. "
                         "nn.Sequential(genrobust.models.Normalize(), model), so attacks see [0, 1] images")
    return {"n": len(y), "accuracy_01": acc, "accuracy_normalized": acc_norm}


def _frozen(model: torch.nn.Module, device) -> torch.nn.Module:
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks take input gradients only
    return model


def per_class_rows(rec: dict, y: torch.Tensor) -> list[dict]:
    """Accuracy per class, clean and as the worst case at every eps: rows (eps, attacks, class, n, accuracy, ci95)."""
    rows, record = [], EvalRecord.from_dict(rec)
    for e in record.eps_values():
        w = record.worst(e)
        yy = y[:w.n].cpu()
        for k in range(NUM_CLASSES):
            mask = yy == k
            n, r = int(mask.sum()), int(w.flags[mask].sum())
            rows.append({"eps": e, "attacks": list(w.attacks) or ["clean"], "class": k, "n": n,
                         "accuracy": r / n if n else float("nan"), "ci95": wilson_interval(r, n)})
    return rows


def comparison_rows(yours: dict, ours: dict[str, dict]) -> list[dict]:
    """Yours vs each of our classifiers at every eps both ran (exact McNemar on the same images; the worst case over
    the attacks both faced, named in 'attacks')."""
    rows, a = [], EvalRecord.from_dict(yours)
    for kind, rec in ours.items():
        b = EvalRecord.from_dict(rec)
        for e in sorted(set(a.eps_values()) & set(b.eps_values())):
            common = sorted(set(a.attacks_at(e)) & set(b.attacks_at(e)))
            if e > 0 and not common:
                continue  # no attack in common at this eps: nothing comparable
            wa, wb = a.worst(e, common), b.worst(e, common)
            n = min(wa.n, wb.n)
            rows.append({"comparison": f"yours vs {kind}", "eps": e, "attacks": common or ["clean"],
                         **mcnemar(wa.flags[:n], wb.flags[:n])})
    return rows


def evaluate_model(model: torch.nn.Module | str, profile: Profile | str = "cpu", *, name: str | None = None,
                   compare: bool = True, from_released: bool = False, out: str | Path | None = None,
                   progress: bool = True, echo=print) -> dict:
    """Notebook 03's protocol on ``model`` (an nn.Module mapping [0, 1] images to 10 logits, or a
    'module:factory' spec) with ``profile``'s evaluation settings and data. The model is put in eval mode with
    its parameters frozen. With ``compare``, the profile's classifiers (trained, or released with
    ``from_released``) are evaluated on the same images (their units are reused when notebook 03 ran) and paired
    with yours. Returns the record (also written as JSON to ``out``, default
    ./genrobust-evaluation-<digest>.json)."""
    t0 = time.perf_counter()
    spec = model if isinstance(model, str) else None
    if spec is not None:
        model = import_model(spec)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"evaluate_model needs a torch.nn.Module or a 'module:factory' string, got "
                         f"{type(model).__name__}")
    profile = get_profile(profile) if isinstance(profile, str) else profile
    ecfg, device = profile.eval, default_device()
    data = prepare_data(profile.data, progress=False)
    model = _frozen(model, device)
    x, y = evaluation_set(data, ecfg, device)
    probe = check_model(model, x, y)
    digest = state_digest(model.state_dict())
    units = UnitContext(UnitStore(runs_dir() / "eval" / digest), digest, eval_set_identity(data, ecfg))
    echo(f"yours ({spec or name or type(model).__name__}, weights digest {digest}): {len(y)} test images, "
         f"clean accuracy on the first {probe['n']}: {probe['accuracy_01']:.1%}")
    prepared = prepare_attacks(model, x, y, ecfg)
    rec = evaluate_classifier(model, x, y, ecfg, kind="softmax", progress=progress, units=units, prepared=prepared)
    ours, why = {}, None
    if compare:
        try:
            paths = ensure_classifiers(profile, data=data, train_missing=False, from_released=from_released)
        except (RunError, ValueError) as e:  # ResultsError is a ValueError
            why = f"not compared: {e}"
        else:
            ours = evaluate(profile, data, paths, executor="inline", progress=progress, echo=echo)
    yours_rec = rec | {"model": spec or name or type(model).__name__, "weights_digest": digest}
    record = {"schema_version": OWN_SCHEMA, "yours": yours_rec, "input_check": probe,
              "per_class": per_class_rows(rec, y), "checks": masking_checks({"yours": rec}, ecfg),
              "comparison": comparison_rows(rec, ours), "comparison_note": why,
              "ours": {k: {"checkpoint": v.get("checkpoint"), "n": v["n"]} for k, v in ours.items()},
              "eval": to_dict(ecfg),
              "provenance": provenance(profile, data_source=data.source, device=device,
                                       wall_time_s=round(time.perf_counter() - t0, 1))}
    path = Path(out) if out is not None else Path.cwd() / f"genrobust-evaluation-{digest}.json"
    record["path"] = str(write_json(path, record))
    return record
