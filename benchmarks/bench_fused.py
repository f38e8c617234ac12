"""Training K = 10 binary models d_k: one after another (sequential) vs together (genrobust.training.fused), images/s.

One step = every d_k's Eq. 3 update on its own batch of 128 (64 positives + 64 negatives with 2-step L2 PGD by
default, ``--pgd-steps 10`` for the paper's; eps 0.3): sequential runs objectives.binary_loss (K = 1) + SGD ten
times; fused runs one vmapped step of all ten (fused.fused_train_step). Both are measured in this one run on the same random images
(fused.measure_training_paths), for the paper's ResNet18Thinner (width 0.5) and the cpu profile's width 0.125.

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

import torch

from genrobust.core.config import TrainConfig
from genrobust.training.fused import choose_training_path, measure_training_paths
from genrobust.core.models import create_model

K, BATCH, PGD_STEPS = 10, 128, 2
NAMES = {0.5: "ResNet18Thinner w0.5 (paper)", 0.125: "ResNet18 w0.125 (cpu)"}


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
    print(f"choose_training_path({device.type!r}) rule -> {choose_training_path(device)!r}")


if __name__ == "__main__":
    main()
