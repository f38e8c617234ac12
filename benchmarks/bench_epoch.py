"""End-to-end training epochs of all K d_k (the real training loop, data pipeline included), fused vs one after
another, and from them the projected wall time of a profile's whole training (default: the paper profile).

bench_fused.py times the training step alone (BinaryStepper.step) on images already on the device; this runs the
training a user runs, genrobust.training.binary.train_binaries_fused and train_binary (the one loop,
training.loop.fit), with their per-class batch sampling and crop+flip (on the CPU, or on the device where the engine
settings say so), host->device copies, checkpoints and metrics, on SYNTHETIC images of CIFAR-10's shape
(genrobust.data.make_synthetic; throughput does not depend on the pixels) in throw-away run directories.

Measured in this one run, for the profile's model, objective, batch, PGD steps and eps:
  * training images/s of each path: the LAST of ``--epochs`` epochs (the first carries warm-up: cuDNN autotuning,
    allocator growth), from the ``train_time_s`` that each path writes to metrics.jsonl;
  * one model-selection evaluation of one d_k (clean + adversarial AUROC, the profile's select_attack_steps) at the
    profile's own selection size (the paper: the test set's 1,000 class-k images + 1,000 others), seconds; and,
    for the fused path, one selection of all K d_k at once on their K-model network (how the fused path selects).
Projected training wall time of the profile, path P:
    epochs x (sum over classes of images per epoch) / (P's images/s)  +  selections x (P's s per selection epoch)
with the s per selection epoch: classes x (s per d_k) one after another, or the all-K selection's s fused,
where images per epoch follow the profile's batch and CIFAR-10's 5,000 training images per class less the
validation split, and selections = epochs / select_every. It leaves out the cost of data loading before training
(seconds) and assumes the measured epoch's speed for all of them.

    .venv/bin/python benchmarks/bench_epoch.py [--device cpu|cuda] [--profile paper|cpu] [--paths fused,sequential]
                                               [--train-per-class N] [--epochs E] [--threads N] [--softmax]
                                               [--compare-old REV]

--compare-old REV: also run the old engine, this script as it was at git revision REV with its own lib/ (a
temporary git worktree of REV, removed afterwards), in a subprocess of this same run on the same device and
settings, first; then print each path's rate new / old, every number labelled with the machine.

Defaults: on a GPU the paper profile, 1,000 images per class, 2 epochs (47 s on an H100); on a CPU the cpu
profile, 200 images per class, 1 epoch (warm-up included; about 45 s on the 2-vCPU machine), since the paper's
PGD-10 width-0.5 models take hours there.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from genrobust.data import prepare_data
from genrobust.training import binary, loop, softmax
from genrobust.core.config import apply_overrides, get_profile
from genrobust.training.fused import FusedBinaryModels
from genrobust.training.steppers import BinarySelection
from timing import timed  # warm-up, then synchronized timing

CIFAR_TRAIN_PER_CLASS = 5000
CIFAR_TEST_PER_CLASS = 1000


def _fmt_h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


@contextlib.contextmanager
def _throwaway_runs(name: str):
    """Point genrobust's run directory (runs_dir() reads $GENROBUST_RUNS at call time) at a temporary one, so
    that nothing lands in runs/ and no earlier run is found and reused; restore the variable afterwards."""
    before = os.environ.get("GENROBUST_RUNS")
    with tempfile.TemporaryDirectory(prefix=f"bench_epoch_{name}_") as runs:
        os.environ["GENROBUST_RUNS"] = runs
        try:
            yield
        finally:
            if before is None:
                del os.environ["GENROBUST_RUNS"]
            else:
                os.environ["GENROBUST_RUNS"] = before


def measure_path(path: str, profile, data, device) -> dict:
    """Train ``profile`` (all its classes) by ``path`` in a fresh run directory; the last epoch's timing."""
    with _throwaway_runs(path):
        t0 = time.perf_counter()
        if path == "fused":
            results = binary.train_binaries_fused(profile, data=data, device=device, progress=False)
        else:
            results = [binary.train_binary(profile, k, data, device=device, progress=False)
                       for k in profile.train.classes]
        wall = time.perf_counter() - t0
    last = [r["metrics"][-1] for r in results]
    if path == "fused":  # one fused epoch trains every class: its time is each class's train_time_s
        return {"images_per_s": last[0]["fused_images_per_s"], "epoch_s": last[0]["train_time_s"], "wall_s": wall}
    seconds = sum(m["train_time_s"] for m in last)
    images = sum(m["images_per_s"] * m["train_time_s"] for m in last)  # each class's images in its epoch
    return {"images_per_s": images / seconds, "epoch_s": seconds, "wall_s": wall}


def measure_softmax(profile, data, device) -> dict:
    """Train the profile's softmax PGD-AT baseline in a fresh run directory; the last epoch's timing."""
    with _throwaway_runs("softmax"):
        result = softmax.train_softmax(profile, data, device=device, progress=False)
    last = result["metrics"][-1]
    return {"images_per_s": last["images_per_s"], "epoch_s": last["train_time_s"]}


def measure_selection(profile, device, together: bool) -> dict:
    """Seconds of one selection evaluation of a fresh d_k at the profile's selection size (synthetic images of the
    split's real size), {'one': s, 'images': images it scores}; with ``together``, also 'all': seconds of one
    selection of all the profile's K d_k at once on their K-model network (BinarySelection.together, as the fused
    path selects)."""
    p = profile
    test_per_class = CIFAR_TEST_PER_CLASS if p.train.select_on == "test" else max(p.data.val_per_class, 1)
    n = test_per_class if p.train.select_n is None else min(p.train.select_n, test_per_class)
    sel = apply_overrides(p, {"data.source": "synthetic", "data.synthetic_train_per_class": n + 1,
                              "data.synthetic_test_per_class": n, "data.val_per_class": 0,
                              "data.train_per_class": None, "data.test_per_class": None,
                              "train.select_on": "test", "train.select_n": None})
    data = prepare_data(sel.data, progress=False)
    classes = p.train.classes
    sels = [binary._binary_selection(data, sel.train, k, device).metrics for k in classes]
    models = [loop.seeded_model(p.model.name, 1, p.model.width, k).to(device).eval() for k in classes]
    out = {"one": timed(lambda: sels[0](models[0]), device, warmup=1, repeats=1), "images": 2 * n}
    if together and len(classes) > 1:
        net = FusedBinaryModels(models).to(device).eval()
        out["all"] = timed(lambda: BinarySelection.together(net, sels), device, warmup=1, repeats=1)
    return out


ROOT = Path(__file__).resolve().parents[1]
RATE_LINE = re.compile(r"^\s+(fused|sequential)\s+([\d.]+) img/s", re.M)


def run_old_engine(rev: str, argv: list[str]) -> tuple[str, dict[str, float]]:
    """This benchmark as it was at ``rev``, on its own lib/ (a temporary git worktree), with the arguments
    ``argv``. Returns (the short commit, {path: img/s}) parsed from its output."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench_epoch_old_") as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree / "lib"), "PYTHONUNBUFFERED": "1"}
            out = subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_epoch.py"), *argv], env=env,
                                 capture_output=True, text=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"the old engine ({rev} = {commit}) failed:\n{out.stderr[-3000:]}")
    return commit, {p: float(r) for p, r in RATE_LINE.findall(out.stdout)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.is_available()  # defaults: the paper's step on a GPU; on a CPU a size that runs in a minute
    ap.add_argument("--profile", default="paper" if gpu else "cpu", help="whose model/objective/PGD/batch to run "
                    "and project (default: paper on a GPU, cpu on a CPU)")
    ap.add_argument("--paths", default="fused,sequential")
    ap.add_argument("--train-per-class", type=int, default=1000 if gpu else 200,
                    help="synthetic training images per class (default: 1000 on a GPU, 200 on a CPU)")
    ap.add_argument("--epochs", type=int, default=2 if gpu else 1,
                    help="epochs per path; the last one is timed (default: 2 on a GPU, 1 on a CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--softmax", action="store_true", help="also time and project the softmax PGD-AT baseline")
    ap.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                    help="a config override of the new engine's run, e.g. engine.autocast=off (repeatable)")
    ap.add_argument("--compare-old", metavar="REV", default=None,
                    help="also run the old engine at git revision REV (a temporary worktree) in this run and print "
                         "new / old per path")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    target = get_profile(args.profile)
    # the profile's model, objective and step; synthetic data, a few epochs, constant lr (throughput only), no
    # selection inside the timed loop (measured on its own below)
    bench = apply_overrides(target, {
        "data.source": "synthetic", "data.synthetic_train_per_class": args.train_per_class,
        "data.synthetic_test_per_class": 10, "data.val_per_class": 0, "data.train_per_class": None,
        "data.test_per_class": None, "train.epochs": args.epochs, "train.lr_schedule": "constant",
        "train.select_on": "last", "softmax.epochs": args.epochs, "softmax.lr_schedule": "constant",
        "softmax.select_on": "last", **dict(kv.split("=", 1) for kv in args.set)})
    t = target.train
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU ({os.cpu_count()} logical), {torch.get_num_threads()} thread(s)")
    if args.set:
        print(f"new engine's settings: {', '.join(args.set)} -> {bench.engine}")
    print(f"profile {target.name}: {target.model.name} width {target.model.width:g}, Eq. {3 if t.objective == 'out' else 9}, "
          f"batch {t.batch_size}, PGD-{t.attack_steps} at eps {t.eps:g}, K={len(t.classes)}; synthetic data, "
          f"{args.train_per_class} images/class, {args.epochs} epochs per path (last timed); torch {torch.__version__}, "
          f"{where}")
    old = None
    if args.compare_old:  # the old engine first, the same arguments, on this machine and device
        argv = ["--device", args.device, "--profile", args.profile, "--paths", args.paths, "--train-per-class",
                str(args.train_per_class), "--epochs", str(args.epochs)] + (
                    ["--threads", str(args.threads)] if args.threads else [])
        old = run_old_engine(args.compare_old, argv)
        for path, rate in old[1].items():
            print(f"  old engine ({old[0]}) {path:<11} {rate:9.1f} img/s  on {where}")
    data = prepare_data(bench.data, progress=False)
    res = {}
    for path in args.paths.split(","):
        res[path] = measure_path(path, bench, data, device)
        print(f"  {path:<11} {res[path]['images_per_s']:9.1f} img/s  (epoch {res[path]['epoch_s']:.1f} s, "
              f"run {res[path]['wall_s']:.1f} s in all; {'new engine, ' if old else ''}{where})")
    if {"fused", "sequential"} <= res.keys():
        print(f"  fused / sequential: {res['fused']['images_per_s'] / res['sequential']['images_per_s']:.2f}x "
              f"(end to end, same run)")
    if old is not None:
        for path in res:
            if path in old[1]:
                print(f"  new / old engine ({old[0]}), {path}: {res[path]['images_per_s'] / old[1][path]:.2f}x "
                      f"({res[path]['images_per_s']:.1f} vs {old[1][path]:.1f} img/s, same run, {where})")
    sel = measure_selection(target, device, together="fused" in res)
    print(f"  one selection evaluation of a d_k ({sel['images']} images, clean + PGD-{t.select_attack_steps}): "
          f"{sel['one']:.2f} s")
    per_selection = {path: len(t.classes) * sel["one"] for path in res}  # s per selection epoch, all classes
    if "all" in sel:
        per_selection["fused"] = sel["all"]
        print(f"  one selection of all {len(t.classes)} d_k at once on their K-model network: {sel['all']:.2f} s "
              f"({len(t.classes) * sel['one'] / sel['all']:.2f}x {len(t.classes)} selections one after another)")
    # the projection: the target profile's epochs, classes and images per epoch at the measured rates
    available = (target.data.synthetic_train_per_class if target.data.source == "synthetic"
                 else CIFAR_TRAIN_PER_CLASS)  # training images per class before the validation split
    per_class = target.data.train_per_class or (available - target.data.val_per_class)
    half = t.batch_size // 2
    img_per_epoch = len(t.classes) * (per_class // half) * t.batch_size  # balanced batches: steps x batch per class
    n_select = -(-t.epochs // t.select_every) if t.select_on != "last" else 0
    print(f"projected {target.name} training ({len(t.classes)} classes x {t.epochs} epochs x "
          f"{img_per_epoch // len(t.classes):,} images, {n_select} selections per class) on this device:")
    for path, r in res.items():
        train_s = t.epochs * img_per_epoch / r["images_per_s"]
        select_total = n_select * per_selection[path]
        print(f"  {path:<11} {_fmt_h(train_s + select_total):>9}  (training {_fmt_h(train_s)}, selection "
              f"{_fmt_h(select_total)})")
    if args.softmax:
        sm, sc = measure_softmax(bench, data, device), target.softmax
        n_train = len(t.classes) * per_class // sc.batch_size * sc.batch_size  # full batches per epoch
        train_s = sc.epochs * n_train / sm["images_per_s"]
        print(f"softmax baseline ({sc.model} width {sc.width:g}, PGD-{sc.attack_steps} at eps {sc.eps:g}, batch "
              f"{sc.batch_size}): {sm['images_per_s']:.1f} img/s (epoch {sm['epoch_s']:.1f} s on "
              f"{args.train_per_class * len(t.classes):,} synthetic training images)")
        print(f"  projected {target.name} softmax training ({sc.epochs} epochs x {n_train:,} images): "
              f"{_fmt_h(train_s)} (its per-epoch selection, {sc.select_on} split at 50 images per class, left out)")


if __name__ == "__main__":
    main()
