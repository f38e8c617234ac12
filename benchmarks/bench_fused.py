"""Training K = 10 binary models d_k: one after another (sequential) vs together (genrobust.training.fused), images/s.

One step = every d_k's Eq. 3 update on its own batch of 128 (64 positives + 64 negatives with 2-step L2 PGD by
default, ``--pgd-steps 10`` for the paper's; eps 0.3), through the training step itself
(genrobust.training.steppers.BinaryStepper.step: uint8 images on the device to [0, 1], attack, loss, backward,
update): sequential runs ten K = 1 steppers one after another; fused runs one K = 10 stepper (one vmapped step of
all ten). Both are measured in this one run on the same random images (:func:`measure_training_paths`), for the
paper's ResNet18Thinner (width 0.5) and the cpu profile's width 0.125.

    .venv/bin/python benchmarks/bench_fused.py [--device cpu|cuda] [--repeats R] [--warmup W] [--threads N]
                                               [--widths 0.5,0.125] [--pgd-steps 2]

Defaults: CPU 1 timed step per path and no warm-up (first-call overhead included for both paths alike); on the
2-vCPU EPYC at 1 thread, sharing the machine with training jobs, width 0.125 took 20 s and width 0.5 230 s
(``--widths 0.125`` for a quick run); CUDA 2 warm-up + 5 timed steps. The sequential path uses channels_last on CPU
(as the cpu profile, where it was measured faster) and the contiguous format on CUDA (as the paper profile).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import torch

from genrobust.core.config import TrainConfig
from genrobust.core.models import create_model
from genrobust.training.fused import choose_training_path
from genrobust.training.loop import BestCheckpoint, TrainingRun
from genrobust.training.steppers import BinaryStepper
from timing import timed

K, BATCH, PGD_STEPS = 10, 128, 2
NAMES = {0.5: "ResNet18Thinner w0.5 (paper)", 0.125: "ResNet18 w0.125 (cpu)"}


def memory_runs(models, cfg, seed: int = 0) -> list[TrainingRun]:
    """Runs of ``models`` (class k = model k) that live in memory only (no directory, no checkpoint): what a
    stepper reads of a run (its model, generator, lr schedule)."""
    return [TrainingRun(run_dir=None, run_config={}, label=f"d_{k}", model=m,
                        generator=torch.Generator().manual_seed(seed), make_batches=None, steps_per_epoch=1, cfg=cfg,
                        base_lr=cfg.lr_for(k), epochs=1, checkpoint=BestCheckpoint("binary", {}))
            for k, m in enumerate(models)]


def measure_training_paths(make_model: Callable[[int], torch.nn.Module], cfg, device, *, num_models: int = 10,
                           batch_size: int = 128, repeats: int = 1, warmup: int = 1, seed: int = 0) -> dict:
    """Training images/s of the sequential and the fused path, measured in one process on random images.

    make_model(k) -> a fresh d_k; cfg: a ``TrainConfig`` (objective, eps, attack steps, channels_last, momentum,
    weight decay). Sequential: for each k, a K = 1 BinaryStepper's step on its own (batch_size // 2 +
    batch_size // 2) batch, channels_last as cfg says (as the per-class path runs it). Fused: one K-model
    BinaryStepper's step on the K batches. The NaN flags stay on the device (as fit runs the step on CUDA).
    Returns {'sequential': img/s, 'fused': img/s, 'ratio': fused / sequential, 'seconds_per_step': {...}} with one
    step = all K models' update on K * batch_size images.
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    half = batch_size // 2
    x = torch.randint(0, 256, (num_models, 2 * half, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)
    batches = [(x[k, :half], x[k, half:]) for k in range(num_models)]  # (pos, neg) per model, uint8 on the device
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    singles = [BinaryStepper(memory_runs([make_model(k).to(device).to(memory_format=fmt)], cfg, seed), cfg, device)
               for k in range(num_models)]
    fused = BinaryStepper(memory_runs([make_model(k).to(device) for k in range(num_models)], cfg, seed), cfg, device)
    for stepper in singles + [fused]:
        stepper.train()

    def sequential_step():
        for stepper, batch in zip(singles, batches):
            stepper.step([batch], check_now=False)

    t_seq = timed(sequential_step, device, warmup, repeats)
    t_fused = timed(lambda: fused.step(batches, check_now=False), device, warmup, repeats)
    n_img = num_models * 2 * half
    return {"sequential": n_img / t_seq, "fused": n_img / t_fused, "ratio": t_seq / t_fused,
            "seconds_per_step": {"sequential": t_seq, "fused": t_fused}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per path (default: cpu 1, cuda 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: cpu 0, cuda 2)")
    ap.add_argument("--threads", type=int, default=1 if not torch.cuda.is_available() else None)
    ap.add_argument("--widths", default="0.5,0.125", help="comma-separated ResNet18 width multipliers")
    ap.add_argument("--pgd-steps", type=int, default=PGD_STEPS, help="PGD steps on the negatives (paper: 10)")
    args = ap.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    repeats = args.repeats if args.repeats is not None else (5 if on_gpu else 1)
    warmup = args.warmup if args.warmup is not None else (2 if on_gpu else 0)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(objective="out", eps=0.3, attack_steps=args.pgd_steps, batch_size=BATCH, lr=0.1, momentum=0.9,
                      weight_decay=1e-4, channels_last=not on_gpu)
    where = (torch.cuda.get_device_name(device) if on_gpu
             else f"CPU ({os.cpu_count()} logical), {torch.get_num_threads()} thread(s)")
    print(f"Eq. 3 step of K={K} binary models, batch {BATCH} each ({BATCH // 2} pos + {BATCH // 2} PGD-{args.pgd_steps} "
          f"neg), torch {torch.__version__}, {where}; {warmup} warm-up + {repeats} timed step(s) per path")
    print(f"{'model':<30}{'params/model':>13}{'seq img/s':>11}{'fused img/s':>13}{'fused/seq':>11}{'s total':>9}")
    for width in (float(w) for w in args.widths.split(",")):
        t0 = time.perf_counter()
        make = lambda k, w=width: create_model("resnet18", 1, w)  # noqa: E731
        res = measure_training_paths(make, cfg, device, num_models=K, batch_size=BATCH, repeats=repeats,
                                     warmup=warmup)
        n_par = sum(p.numel() for p in make(0).parameters())
        print(f"{NAMES.get(width, f'ResNet18 w{width}'):<30}{n_par:>13,}{res['sequential']:>11.1f}"
              f"{res['fused']:>13.1f}{res['ratio']:>10.2f}x{time.perf_counter() - t0:>9.0f}")
    print(f"choose_training_path({device.type!r}) rule -> {choose_training_path(device)!r} (the measured faster "
          f"path above is the one to compare it with)")


if __name__ == "__main__":
    main()
