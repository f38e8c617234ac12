"""Benchmark: our L2 PGD (genrobust.core.attacks.pgd_untargeted) vs torchattacks' PGDL2, and the cost of notebook 03.

Usage:
    python benchmarks/bench_attacks.py [--batch 128] [--steps 10] [--eps 0.5] [--repeats 3] [--threads 1]
                                       [--device cpu|cuda] [--no-tf32]
    python benchmarks/bench_attacks.py --estimate cpu [--clean-acc 0.7] [--robust 0.5]
    python benchmarks/bench_attacks.py --fold [--batch 128] [--steps 10] [--eps 0.05] [--repeats 3] [--threads 1]

Default mode: the same model (a ResNet18 of width 0.8 (7.2M parameters, the softmax-baseline scale), random init, eval mode, frozen
parameters), batch, steps, eps and step size 2.5 * eps / steps, no random start, for both; timed alternately,
median of ``--repeats``. Prints images/s of each, the ratio (ours must not be slower), and the largest difference
between the two adversarial batches (same algorithm: it should be ~0).

torchattacks is not a dependency of genrobust: install it with ``pip install --no-deps torchattacks`` (its declared
dependencies pin an old ``requests``; it runs without them). ``make bench`` does this.

--fold: the attack as evaluation runs it against torchattacks as a user would run it, on a checkpoint-like d_k
generative classifier (10 ResNet18 width 0.125 d_k, random weights, BN running statistics moved by a few train-mode
forwards, frozen, eval mode: what ``load_classifier`` returns). Ours: ``pgd_untargeted`` on ``fold.folded_copy`` of
it (BN folded into the convs, channels-last weights; the copy's one-off cost is printed); theirs: ``PGDL2`` on the
unfolded module. Also ours on the unfolded module, which separates the folding's gain from the implementations'.
Calibration c centres each d_k on random images (as notebook 02's c balances the classes); labels are the clean
predictions, so every image is attacked. Random weights are far less robust than trained ones: eps defaults to
0.05 here, where about half the images survive, so the robust flags (prediction of the unfolded classifier on each
x_adv == label) compare borderline cases; the speed does not depend on eps. Prints images/s (CPU time), the
ratios, and whether the robust flags of the three attacks agree.

--estimate PROFILE: per-image cost of every attack run notebook 03 plans for the profile (genrobust.measure.accuracy.
plan_runs), measured on randomly initialised models of the profile's sizes (channels-last copies, as evaluate does)
with a tiny eps, so that no attack succeeds and every one spends its whole budget (the all-robust upper bound);
iteration budgets are probed at a fraction and scaled linearly. Prints per-run s/image, the notebook's total
single-thread CPU time for an assumed clean accuracy (only clean-correct images are attacked), an expected value
with a robust fraction for the attacks that stop early on broken examples (APGD-T / FAB-T targets, Square queries),
and the wall time on 2 cores (x 1/2: the brief's scaling; two threads give somewhat less).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from genrobust.core import attacks as A
from genrobust.core.config import budget_values, get_profile
from genrobust.measure.accuracy import _attack_copy, plan_runs
from genrobust.pipeline.evaluation import probe_seconds_per_image
from genrobust.core.fold import folded_copy
from genrobust.core.models import GenerativeClassifier, create_model


def _frozen(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def compare(args) -> None:
    import torchattacks

    torch.manual_seed(0)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    model = _frozen(create_model("resnet18", 10, 0.8)).to(device)
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        y = model(x).argmax(1)
    step = A.default_step_size(args.eps, args.steps)
    ours = lambda: A.pgd_untargeted(model, x, y, eps=args.eps, norm="l2", steps=args.steps, step_size=step)  # noqa: E731
    ta = torchattacks.PGDL2(model, eps=args.eps, alpha=step, steps=args.steps, random_start=False)
    theirs = lambda: ta(x, y)  # noqa: E731
    ours(), theirs()  # warm-up
    wall = {"ours": [], "theirs": []}
    cpu = {"ours": [], "theirs": []}
    for i in range(args.repeats):
        # alternate the order, so that drifting background load does not favour either
        for name, fn in (("ours", ours), ("theirs", theirs))[::1 if i % 2 == 0 else -1]:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    diff = (ours() - theirs()).abs().max().item()
    ips = {k: {m: args.batch / statistics.median(v[k]) for m, v in (("wall", wall), ("cpu", cpu))} for k in wall}
    where = (f"{torch.cuda.get_device_name(device)}, TF32 convolutions {torch.backends.cudnn.allow_tf32}" if on_gpu
             else f"CPU, {torch.get_num_threads()} thread(s)")
    print(f"L2 PGD, resnet18 width 0.8 (7.2M params), batch {args.batch}, {args.steps} steps, eps {args.eps}, "
          f"step {step:.4g}, {where}, median of {args.repeats}")
    print(f"  {'':34s} {'images/s (wall)':>16s} {'images/s (CPU time)':>20s}")
    print(f"  {'genrobust.core.attacks.pgd_untargeted':34s} {ips['ours']['wall']:16.2f} {ips['ours']['cpu']:20.2f}")
    print(f"  {'torchattacks.PGDL2 ' + torchattacks.__version__:34s} {ips['theirs']['wall']:16.2f} "
          f"{ips['theirs']['cpu']:20.2f}")
    rw, rc = ips["ours"]["wall"] / ips["theirs"]["wall"], ips["ours"]["cpu"] / ips["theirs"]["cpu"]
    # The verdict uses CPU time on a CPU (on a shared machine wall time mostly measures the other processes'
    # load) and wall time on a GPU (the host's CPU time there is launch overhead and synchronization waits).
    r, by = (rw, "wall time") if on_gpu else (rc, "CPU time")
    print(f"  {'ratio ours / torchattacks':34s} {rw:16.2f} {rc:20.2f}  "
          f"({'OK: not slower' if r >= 0.97 else 'SLOWER'}, by {by})")
    print(f"  max |x_adv ours - x_adv theirs|: {diff:.2e} (same algorithm; float rounding differs)")


def machine() -> str:
    """Platform, CPU model name and torch threads, for labelling saved numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.platform()}, {cpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def _checkpoint_like(model, seed=0):
    """Random weights with BN running statistics away from (0, 1) (a few train-mode forwards on brightened random
    images), then frozen and in eval mode, as ``results.load_classifier`` returns a trained classifier."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(2 * torch.rand(32, 3, 32, 32, generator=g))
    return _frozen(model)


def compare_fold(args) -> None:
    import torchattacks

    torch.manual_seed(0)
    gen = _checkpoint_like(GenerativeClassifier([create_model("resnet18", 1, 0.125) for _ in range(10)]))
    with torch.no_grad():
        gen.c.copy_(-gen(torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(7))).mean(0))
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = gen(x).argmax(1)
    t0 = time.perf_counter()
    work = folded_copy(gen, channels_last=True)  # what evaluate_classifier attacks (once per evaluation)
    t_copy = time.perf_counter() - t0
    step = A.default_step_size(args.eps, args.steps)
    kw = dict(eps=args.eps, norm="l2", steps=args.steps, step_size=step)
    ta = torchattacks.PGDL2(gen, eps=args.eps, alpha=step, steps=args.steps, random_start=False)
    runs = {"ours, folded channels-last copy": lambda: A.pgd_untargeted(work, x, y, **kw),
            "torchattacks.PGDL2 " + torchattacks.__version__ + ", unfolded": lambda: ta(x, y),
            "ours, unfolded (as passed)": lambda: A.pgd_untargeted(gen, x, y, **kw)}
    adv = {name: fn() for name, fn in runs.items()}  # warm-up, and the examples compared below
    cpu = {name: [] for name in runs}
    for i in range(args.repeats):
        for name, fn in list(runs.items())[::1 if i % 2 == 0 else -1]:  # alternate the order (drifting load)
            c0 = time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
    ips = {name: args.batch / statistics.median(v) for name, v in cpu.items()}
    with torch.no_grad():
        robust = {name: gen(xa).argmax(1) == y for name, xa in adv.items()}
    names = list(runs)
    print(f"L2 PGD-CE on a d_k generative classifier (10 x resnet18 width 0.125, checkpoint-like BN, centred c), batch "
          f"{args.batch}, {args.steps} steps, eps {args.eps}, step {step:.4g}, median of {args.repeats} (CPU time)")
    print(f"  machine: {machine()}")
    print(f"  folded_copy: {t_copy * 1e3:.0f} ms once per evaluation")
    print(f"  {'':44s} {'images/s':>9s} {'robust':>7s}")
    for name in names:
        print(f"  {name:44s} {ips[name]:9.2f} {int(robust[name].sum()):4d}/{args.batch}")
    print(f"  ratio ours folded / torchattacks unfolded:   {ips[names[0]] / ips[names[1]]:.2f}x")
    print(f"  ratio ours folded / ours unfolded:           {ips[names[0]] / ips[names[2]]:.2f}x")
    for other in names[1:]:
        agree = int((robust[names[0]] == robust[other]).sum())
        diff = (adv[names[0]] - adv[other]).abs().max().item()
        print(f"  robust flags, folded vs {other}: {agree}/{args.batch} agree "
              f"({'OK' if agree == args.batch else 'DIFFER'}); max |x_adv difference| {diff:.2e}")


def estimate(args) -> None:
    cfg = get_profile(args.estimate)
    e = cfg.eval
    torch.manual_seed(0)
    models = {"generative": GenerativeClassifier([create_model(cfg.model.name, 1, cfg.model.width) for _ in range(10)]),
              "softmax": create_model(cfg.softmax.model, 10, cfg.softmax.width)}
    x = torch.rand(args.probe, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    b = budget_values(e)
    print(f"profile {cfg.name}: n_test {e.n_test}, n_strong {e.n_strong}, steps {e.steps}, restarts {e.restarts}, "
          f"AutoAttack apgd {b['apgd_iters']} it, {b['targets']} targets, fab {b['fab_iters']} it, "
          f"square {b['square_queries']} q; assumed clean accuracy {args.clean_acc}, robust fraction {args.robust}; "
          f"{torch.get_num_threads()} thread(s), probe batch {args.probe}")
    total_ub = total_exp = 0.0
    for kind in e.classifiers:
        work = _attack_copy(_frozen(models[kind]), e.channels_last)
        with torch.no_grad():
            y = work(x).argmax(1)
        for run in plan_runs(kind, e, e.n_test):
            per_img = probe_seconds_per_image(work, x, y, run, e, n=len(x))  # notebook 03's own probe
            n_att = args.clean_acc * run.n
            ub = per_img * n_att
            # Early stopping on broken examples: later targets / queries run only on the still-robust ones.
            shrink = {"apgd-t": (1 + (b["targets"] - 1) * args.robust) / b["targets"],
                      "fab-t": (1 + (b["targets"] - 1) * args.robust) / b["targets"],
                      "square": args.robust}.get(run.attack, 1.0)
            total_ub += ub
            total_exp += ub * shrink
            print(f"  {kind:10s} {run.attack:15s} {run.role:13s} eps {run.eps:5g} n {run.n:5d}: "
                  f"{per_img:7.3f} s/img -> {ub:7.1f} s (expected {ub * shrink:7.1f} s)")
    print(f"total single-thread CPU: upper bound {total_ub / 60:.1f} min, expected {total_exp / 60:.1f} min; "
          f"on 2 cores: {total_ub / 120:.1f} / {total_exp / 120:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=None, help="default 0.5 (--fold: 0.05, see the docstring)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: stable numbers on a shared machine)")
    ap.add_argument("--device", default="cpu", help="compare mode: cpu or cuda")
    ap.add_argument("--no-tf32", action="store_true", help="cuda: convolutions in full float32 (TF32 off)")
    ap.add_argument("--fold", action="store_true", help="folded channels-last attack vs torchattacks on the unfolded "
                    "d_k generative classifier (CPU)")
    ap.add_argument("--estimate", default=None, metavar="PROFILE", help="estimate notebook 03's attack cost instead")
    ap.add_argument("--clean-acc", type=float, default=0.7, help="--estimate: assumed clean accuracy")
    ap.add_argument("--robust", type=float, default=0.5, help="--estimate: assumed robust fraction of attacked images")
    ap.add_argument("--probe", type=int, default=16, help="--estimate: images per probe")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.eps is None:
        args.eps = 0.05 if args.fold else 0.5
    if args.fold:
        compare_fold(args)
    else:
        estimate(args) if args.estimate else compare(args)


if __name__ == "__main__":
    main()
