"""The library's pipeline end to end on a CUDA device, side by side with the same pipeline on the CPU, in one run.

Smoke profile (SYNTHETIC data, tiny models; its numbers say nothing about the paper): the 10 d_k by the path
``train_path=auto`` picks for the device (fused on CUDA, one after another on CPU), the softmax baseline,
calibration (Eq. 7), notebook 03's evaluation (the paper's attacks, AutoAttack, multi-targeted, the masking checks)
and notebook 04's generation (targeted PGD samples and counterfactuals); FID is left out (its weights are a
package of their own). Each device gets its own temporary runs/results/cache directories.

What agreement to expect: the same code and seeds, but float arithmetic differs between the devices (cuDNN
algorithms, TF32 convolutions on CUDA by default), and training amplifies it, so the trained models differ
slightly. The table shows both devices' numbers and stage times; clean and robust accuracies should agree within a
few test images, and every masking check and generation check should pass on both. Not a test (CI has no GPU).

    python tools/cuda_smoke.py [--devices cuda,cpu]     (PYTHONPATH=lib, or the package installed)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from genrobust.data import prepare_data
from genrobust.measure import accuracy as evaluate
from genrobust.measure import generate
from genrobust.measure.checks import masking_checks
from genrobust.pipeline.classifiers import ensure_classifiers, load_classifiers
from genrobust.training import binary, calibrate, fused, softmax
from genrobust.core.config import get_profile


def pipeline(device: torch.device) -> dict:
    profile = get_profile("smoke")
    out, t = {"times": {}}, time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        out["times"][name] = now - t
        t = now

    data = prepare_data(profile.data, progress=False)
    path = fused.choose_training_path(device)
    if path == "fused":
        binaries = binary.train_binaries_fused(profile, data=data, device=device, progress=False)
    else:
        binaries = [binary.train_binary(profile, k, data, device=device, progress=False)
                    for k in profile.train.classes]
    out["path"] = path
    out["d_k best val adv AUROC (mean)"] = sum(r["best_metric"] for r in binaries) / len(binaries)
    lap("train d_k")
    softmax.train_softmax(profile, data, device=device, progress=False)
    lap("train softmax")
    cal = calibrate.calibrate(profile, data, device=device, progress=False)
    out["calibrated test accuracy"] = cal["accuracy"]["test_after"]
    lap("calibrate")
    paths = ensure_classifiers(profile, data=data, train_missing=False)
    x, y = evaluate.evaluation_set(data, profile.eval, device=device)
    records = evaluate.evaluate_classifiers(paths, x, y, profile.eval, device=device, progress=False)
    for row in evaluate.accuracy_rows(records):
        if row["role"] == "clean" or (row["role"] == "worst case" and row["eps"] > 0):
            out[f"{row['classifier']} {row['role']} eps {row['eps']:g}"] = row["accuracy"]
    checks = masking_checks(records, profile.eval)
    out["masking checks passed"] = f"{sum(c['passed'] is True for c in checks)}/{len(checks)}"
    out["checks not passed"] = ", ".join(f"{c['classifier'][:3]}:{c['check']}" for c in checks
                                         if c["passed"] is not True) or "-"
    lap("evaluate (03)")
    classifiers = load_classifiers(profile, ("generative", "softmax"), data, train_missing=False)
    generated = generate.generate(profile.gen, data, classifiers, device=device, progress=False)
    out["generation cells"] = len(generated.checks)
    out["generation: min target-hit rate"] = min(c["target_rate"] for c in generated.checks)
    lap("generate (04)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="cuda,cpu")
    args = ap.parse_args()
    devices = [torch.device(d) for d in args.devices.split(",")]
    if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
        print("cuda_smoke: no CUDA device here; run it on a GPU machine, or pass --devices cpu", file=sys.stderr)
        return 2
    res = {}
    for d in devices:
        with tempfile.TemporaryDirectory(prefix=f"cuda_smoke_{d.type}_") as tmp:
            for var in ("RUNS", "RESULTS", "CACHE"):
                os.environ[f"GENROBUST_{var}"] = os.path.join(tmp, var.lower())
            t0 = time.perf_counter()
            res[d.type] = pipeline(d)
            print(f"{d.type}: pipeline done in {time.perf_counter() - t0:.1f} s", flush=True)
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"\nsmoke profile (SYNTHETIC data), torch {torch.__version__}, {where}, {torch.get_num_threads()} CPU threads")
    names = [d.type for d in devices]
    keys = [k for k in res[names[0]] if k != "times"]
    print(f"{'':44s}" + "".join(f"{n:>14s}" for n in names))
    fmt = lambda v: f"{v:14.3f}" if isinstance(v, float) else f" {v!s:>13s}"  # noqa: E731
    for k in keys:
        print(f"{k:44s}" + "".join(fmt(res[n].get(k)) for n in names))
    for stage in res[names[0]]["times"]:
        print(f"{'seconds: ' + stage:44s}" + "".join(fmt(res[n]["times"].get(stage, float("nan"))) for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
