"""Run keys: a run is named by the hash of everything that determines it, so equal configs share one directory
under runs/ and a finished run is found again by any later notebook or command.

    runs/binary/<hash>/       one d_k (genrobust.training.binary)
    runs/softmax/<hash>/      the softmax PGD-AT baseline (genrobust.training.softmax)
    runs/generative/<hash>/   the calibrated generative classifier (genrobust.training.calibrate)

The key functions below are the only place these configs are built; changing one renames every run it keys.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.cifar10 import NUM_CLASSES
from ..core.config import Profile, config_hash, to_dict
from .io import read_json
from .paths import runs_dir


def binary_run_config(profile: Profile, k: int) -> dict:
    """Identity of d_k's training run: data, model and training settings with classes=(k,) and k's lr."""
    t = dataclasses.replace(profile.train, classes=(k,))
    return {"kind": "binary", "k": k, "lr": t.lr_for(k), "data": to_dict(profile.data),
            "model": to_dict(profile.model), "train": to_dict(t)}


def softmax_run_config(profile: Profile) -> dict:
    return {"kind": "softmax", "data": to_dict(profile.data), "softmax": to_dict(profile.softmax)}


def classifier_run_config(profile: Profile) -> dict:
    """Identity of a calibrated generative classifier: the K binary runs + the calibration config."""
    return {"kind": "generative",
            "binary_runs": [config_hash(binary_run_config(profile, k)) for k in range(NUM_CLASSES)],
            "calib": to_dict(profile.calib), "data": to_dict(profile.data)}


def run_dir_for(run_config: dict) -> Path:
    return runs_dir() / run_config["kind"] / config_hash(run_config)


def _finished(run_config: dict) -> dict | None:
    path = run_dir_for(run_config) / "result.json"  # written last, atomically: present = finished
    return read_json(path) if path.exists() else None


def binary_result(profile: Profile, k: int) -> dict | None:
    """The finished run of class k under this profile (its result.json content), or None."""
    return _finished(binary_run_config(profile, k))


def softmax_result(profile: Profile) -> dict | None:
    return _finished(softmax_run_config(profile))


def classifier_path(profile: Profile) -> Path:
    """The calibrated generative classifier's checkpoint (notebook 02 / genrobust.training.calibrate writes it)."""
    return run_dir_for(classifier_run_config(profile)) / "classifier.pt"
