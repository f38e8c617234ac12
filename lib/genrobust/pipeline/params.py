"""Notebook / command-line parameters -> profile (one table per notebook)

Notebook (and command-line) parameters -> a profile: the one place where flat parameter names map to config
keys. Each notebook's first cell (tagged ``parameters``) declares literals; :data:`NOTEBOOK_PARAMETERS` says, per
notebook, which config key each name sets (None: the notebook's own switch, not a config key). A test checks that
every notebook's parameters cell declares exactly these names. ``None`` values mean "the profile's value".
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from ..core.config import ConfigError, EvalConfig, Profile, apply_overrides, get_profile
from ..core.registry import EVAL_BUDGETS

# Profile-wide overrides for every notebook of a run, as a JSON object of config keys (dotted, or a profile field such
# as train_path), e.g. '{"train.epochs": 1, "data.train_per_class": 20}': one setting that 01-04 all see (a notebook parameter reaches only
# the notebooks that declare it, and 02-04 must find the runs 01 trained under the same data/model/train keys).
# tools/gpu_run.py's rehearsal shrinks the gpu profile with it; the description says so and provenance records it.
OVERRIDES_ENV = "GENROBUST_OVERRIDES"


def env_overrides() -> dict[str, Any]:
    """The dotted overrides of $GENROBUST_OVERRIDES ({} when unset); bad JSON fails with one line."""
    raw = os.environ.get(OVERRIDES_ENV, "").strip()
    if not raw:
        return {}
    example = '{"train.epochs": 1}'
    try:
        got = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"${OVERRIDES_ENV}: not JSON ({e.msg}); give an object of dotted config keys, e.g. "
                          f"{example}") from None
    if not isinstance(got, dict) or any(isinstance(v, dict) for v in got.values()):
        raise ConfigError(f"${OVERRIDES_ENV}: give an object of dotted config keys, e.g. {example}; got {raw[:80]}")
    return got


EXECUTION = {"executor": "executor", "workers": "workers"}
# `genrobust train -p NAME VALUE`: the training parameters of notebook 01 and a few more.
TRAIN_PARAMETERS = {
    "classes": "train.classes", "model": "model.name", "width": "model.width", "objective": "train.objective",
    "eps": "train.eps", "eps1": "train.eps1", "eps2": "train.eps", "attack_steps": "train.attack_steps",
    "attack_step_size": "train.attack_step_size", "augment": "train.augment", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "lr_schedule": "train.lr_schedule",
    "lr_drop_epoch": "train.lr_drop_epoch", "weight_decay": "train.weight_decay", "seed": "train.seed",
    "select_on": "train.select_on", "data_source": "data.source", "data_path": "data.path",
    "train_per_class": "data.train_per_class", "val_per_class": "data.val_per_class",
    "softmax_epochs": "softmax.epochs", "softmax_model": "softmax.model", "softmax_width": "softmax.width",
    "softmax_checkpoint": "softmax.checkpoint", "num_threads": "num_threads", "train_path": "train_path",
    **EXECUTION,
}
_NB01 = ("classes", "model", "width", "objective", "eps", "eps1", "attack_steps", "attack_step_size", "augment",
         "epochs", "lr", "lr_schedule", "weight_decay", "seed", "select_on", "data_source", "data_path", "executor",
         "workers", "softmax_epochs")
_ABLATION = ("cls", "widths", "weight_decays", "train_eps", "augmentations", "objectives", "test_eps", "attack_steps",
             "n_test", "seeds", "train_per_class", "epochs", "base_width", "base_weight_decay", "n_boot")
NOTEBOOK_PARAMETERS: dict[str, dict[str, str | None]] = {
    "01_training": {**{n: TRAIN_PARAMETERS[n] for n in _NB01}, "train_softmax": None},
    "02_calibration": {"select_on": "calib.select_on", "train_missing": None},
    "03_accuracy": {**{n: f"eval.{n}" for n in ("classifiers", "norm", "eps_grid", "n_test", "n_strong", "strong_eps",
                                                "steps", "restarts", "seed")}, "train_missing": None,
                    "from_released": None},
    "04_generation_fid": {**{n: f"gen.{n}" for n in ("n_samples", "n_counterfactuals", "n_reference", "eps", "seed",
                                                     "inception")}, "train_missing": None,
                          "from_released": None, "fid": None, "generated_from": None},
    "05_ablations": {**{n: f"ablation.{n}" for n in _ABLATION}, **EXECUTION, "images_per_s": None,
                     "width_exponent": None},
    "06_report": {},
}

# `genrobust evaluate -p NAME VALUE` (and evaluate_model's parameters): notebook 03's and the execution settings.
EVALUATE_PARAMETERS = {**NOTEBOOK_PARAMETERS["03_accuracy"], **EXECUTION}

# The eval fields a named budget fixes on every profile (a field it does not name takes EvalConfig's default); the
# others are execution settings (which of ours run, batch size, shards, memory format, compile) that stay the
# profile's unless the budget names them.
EXECUTION_FIELDS = ("classifiers", "batch_size", "shard_batches", "units_per_job", "channels_last", "compile")
MEASUREMENT_FIELDS = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name not in EXECUTION_FIELDS)


def apply_budget(profile: Profile, name: str) -> Profile:
    """``profile`` with the named evaluation budget (genrobust.core.registry.EVAL_BUDGETS) as its eval settings:
    every measurement field from the budget, else EvalConfig's default; execution fields from the budget where it
    names them, else the profile's. An unknown name is one line naming the budgets."""
    if name not in EVAL_BUDGETS:
        raise ConfigError(f"unknown budget {name!r}; choose one of {', '.join(EVAL_BUDGETS)} (--budget NAME)")
    given, defaults = EVAL_BUDGETS[name].as_dict(), EvalConfig()
    values = {f: given.get(f, getattr(defaults, f)) for f in MEASUREMENT_FIELDS}
    values.update({f: v for f, v in given.items() if f in EXECUTION_FIELDS})
    return apply_overrides(profile, {"eval": values})


def resolve_profile(profile: str | Profile, parameters: Mapping[str, Any] | None = None,
                    keys: Mapping[str, str | None] = TRAIN_PARAMETERS, *, budget: str | None = None) -> Profile:
    """The profile (a name or a Profile) with the evaluation ``budget`` (a name in EVAL_BUDGETS; None keeps the
    profile's eval), then ``parameters`` applied: each name is looked up in ``keys`` (a dotted config key such as
    'train.epochs' may be given directly); names whose key is None are not config settings and are skipped, as
    are None values (the profile's value). An unknown name fails with one line naming what is allowed."""
    overrides = {}
    for name, value in (parameters or {}).items():
        key = keys.get(name, name if "." in name else None) if name in keys or "." in name else False
        if key is False:
            raise ConfigError(f"unknown parameter {name!r}; known: {sorted(keys)} or a dotted config key such as "
                              "'train.epochs'")
        if key is not None and value is not None:
            overrides[key] = value
    base = get_profile(profile) if isinstance(profile, str) else profile
    env = env_overrides()
    if env:
        base = apply_overrides(base, env, description=f"{base.description} [${OVERRIDES_ENV}: {json.dumps(env)}]")
    return apply_overrides(base if budget is None else apply_budget(base, budget), overrides)


def notebook_profile(notebook: str, namespace: Mapping[str, Any]) -> Profile:
    """The profile of a running notebook: ``namespace`` is its globals() after the parameters cell (papermill's
    injected overrides included); ``profile`` and the names of :data:`NOTEBOOK_PARAMETERS[notebook]` are read."""
    if notebook not in NOTEBOOK_PARAMETERS:
        raise ConfigError(f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOK_PARAMETERS)}")
    keys = NOTEBOOK_PARAMETERS[notebook]
    return resolve_profile(namespace["profile"], {n: namespace[n] for n in keys if n in namespace}, keys)
