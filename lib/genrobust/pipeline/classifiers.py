"""ensure_classifiers: the one train-if-missing (training jobs, then calibration), or the released models; release
(writes results/<profile>/models/)

Trained, calibrated classifiers on demand: the one train-if-missing (:func:`ensure_classifiers`). Training runs
as jobs through the profile's executor (:func:`train_all`: one job per class, or all classes in one fused job on a
GPU; the softmax baseline as one more job), calibration after the binary models exist. Every notebook and command
that needs a model asks here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.config import Profile, from_dict, to_dict
from ..core.device import default_device
from ..measure.record import records as eval_records
from ..store.checkpoints import load_classifier
from ..store.executors import JobSettings, RunError, call, configure_threads, run_jobs
from ..store.paths import runs_dir
from ..store.provenance import provenance
from ..store.released import release_models, released_paths
from ..store.runs import (binary_result, binary_run_config, classifier_path, run_dir_for, softmax_result,
                          softmax_run_config)
from ..training.binary import train_binaries_fused, train_binary
from ..training.calibrate import calibrate
from ..training.fused import choose_training_path
from ..training.softmax import train_softmax


# ---------------------------------------------------------------------------------------------------------------
# Jobs: one per class model. 'inline' runs in this process; 'local' runs real subprocesses through submitit,
# at most `workers` at a time; 'slurm' submits to a cluster (one job per class, e.g. one GPU each).
def _binary_job(profile_dict: dict, k: int) -> dict:
    profile = from_dict(profile_dict)
    configure_threads(profile)
    res = train_binary(profile, k, progress=False)
    return {"k": k, "best_epoch": res["best_epoch"], "checkpoint": res["checkpoint"]}


def _fused_job(profile_dict: dict, classes: list[int]) -> list[dict]:
    profile = from_dict(profile_dict)
    configure_threads(profile)
    return [{"k": k, "best_epoch": r["best_epoch"], "checkpoint": r["checkpoint"]}
            for k, r in zip(classes, train_binaries_fused(profile, classes, progress=False))]


def training_path(profile: Profile) -> str:
    """'fused' or 'sequential' for the binary models: profile.train_path, where 'auto' follows
    genrobust.training.fused.PATH_RULE (read from genrobust.training.loop.ENGINE_RULE) for this machine's default
    device (the device a local or inline job gets; for SLURM GPU jobs set train_path='fused' explicitly to train all
    classes in one job)."""
    if profile.train_path != "auto":
        return profile.train_path
    return choose_training_path(default_device())


def _softmax_job(profile_dict: dict) -> dict:
    profile = from_dict(profile_dict)
    configure_threads(profile)
    res = train_softmax(profile, progress=False)
    return {"best_epoch": res["best_epoch"], "checkpoint": res["checkpoint"]}


def train_all(profile: Profile, *, softmax: bool = False, jobs: JobSettings | None = None, progress: bool = True):
    """Train the binary models of profile.train.classes (and, with softmax=True, the softmax baseline) as
    independent jobs under ``jobs`` (None: the profile's executor, workers and SLURM resources), train-if-missing.
    A job still in flight from an earlier driver is adopted, not resubmitted (genrobust.store.executors.run_jobs);
    one that fails does not stop the others: they finish, then RunError names it. Returns the binary results (and
    the softmax result if asked)."""
    todo, claims = [], []
    if softmax and softmax_result(profile) is None:
        todo.append((_softmax_job, (to_dict(profile),)))  # first: it is the longest job
        claims.append([run_dir_for(softmax_run_config(profile))])
    missing = [k for k in profile.train.classes if binary_result(profile, k) is None]
    dirs = {k: run_dir_for(binary_run_config(profile, k)) for k in missing}
    if training_path(profile) == "fused" and len(missing) > 1:
        todo.append((_fused_job, (to_dict(profile), missing)))  # one job (one device) trains them together
        claims.append([dirs[k] for k in missing])
    else:
        todo += [(_binary_job, (to_dict(profile), k)) for k in missing]
        claims += [[dirs[k]] for k in missing]
    if todo:
        run_jobs(call, todo, jobs=jobs or JobSettings.of(profile), desc=f"training ({len(todo)} jobs)",
                 progress=progress, claims=claims)
    out = []
    for k in profile.train.classes:
        res = binary_result(profile, k)
        if res is None:
            raise RunError(f"d_{k} did not finish; see the job logs in {runs_dir() / 'jobs'}")
        out.append({"k": k, **res})
    if not softmax:
        return out
    soft = softmax_result(profile)
    if soft is None:
        raise RunError(f"the softmax baseline did not finish; see the job logs in {runs_dir() / 'jobs'}")
    return out, soft


def ensure_classifiers(profile: Profile, kinds=None, data=None, *, train_missing: bool = True,
                       progress: bool = True, from_released: bool = False) -> dict[str, str]:
    """{kind: checkpoint path} of the profile's calibrated generative classifier (notebook 02) and softmax baseline
    (notebook 01), for ``kinds`` (default: profile.eval.classifiers). Missing ones are trained as jobs
    (:func:`train_all`) and calibrated, unless ``train_missing`` is False: then they are an error naming the
    notebooks and command that make them. ``from_released``: the profile's released files in
    results/<profile>/models/ instead (nothing is trained; each is digest-checked when loaded)."""
    kinds = tuple(kinds or profile.eval.classifiers)
    if from_released:
        return released_paths(profile.name, kinds)
    missing = ("generative" in kinds and not classifier_path(profile).is_file()) or \
              ("softmax" in kinds and softmax_result(profile) is None)
    if missing and not train_missing:
        raise RunError(f"classifiers of profile {profile.name!r} are missing; run notebooks 01 and 02 (or "
                       f"`genrobust train --profile {profile.name}`, then notebook 02) first, or pass "
                       "train_missing=True")
    if missing:
        train_all(profile, softmax="softmax" in kinds, progress=progress)
        if "generative" in kinds and not classifier_path(profile).is_file():
            calibrate(profile, data, progress=progress)
    out = {}
    if "generative" in kinds:
        out["generative"] = str(classifier_path(profile))
    if "softmax" in kinds:
        out["softmax"] = softmax_result(profile)["checkpoint"]
    return out


def load_classifiers(profile: Profile, kinds=None, data=None, *, train_missing: bool = True,
                     device="cpu") -> dict[str, torch.nn.Module]:
    """:func:`ensure_classifiers`, each loaded with genrobust.load_classifier (frozen, eval mode)."""
    return {kind: load_classifier(path, device)
            for kind, path in ensure_classifiers(profile, kinds, data, train_missing=train_missing,
                                                 progress=False).items()}


def release(profile: Profile, data, paths: dict[str, str] | None = None, records: dict | None = None) -> Path:
    """Write the profile's classifiers (``paths``, default: those that exist) to results/<profile>/models/
    (:func:`genrobust.store.released.release_models`), with each one's clean accuracy and worst case at the eps
    where the stronger attacks ran when ``records`` (notebook 03's) are given. Returns models.json's path."""
    if paths is None:
        paths = {}
        if classifier_path(profile).is_file():
            paths["generative"] = str(classifier_path(profile))
        if softmax_result(profile) is not None:
            paths["softmax"] = softmax_result(profile)["checkpoint"]
    accuracy = {}
    for kind, rec in eval_records(records or {}).items():
        acc = {"clean": {"accuracy": rec.clean_accuracy, "n": rec.n, "attacks": "clean"}}
        for w in rec.worst_cases(("strong",))[1:]:  # [0] is eps 0, the clean accuracy above
            acc[f"worst case at eps {w.eps:g}"] = {"accuracy": w.accuracy, "n": w.n,
                                                   "attacks": "+".join(w.attacks or ("clean",))}
        accuracy[kind] = acc
    return release_models(profile.name, paths, accuracy=accuracy, weights=profile.release_weights,
                          provenance=provenance(profile, data_source=getattr(data, "source", None)))
