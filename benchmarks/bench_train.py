"""Training-step throughput of one Eq. 3 step (PGD on the negatives, then the BCE update), images/s.

Measures, in one run on this machine: ResNet18Thinner (the paper's d_k, width 0.5) and the cpu profile's d_k
(the cpu profile's width), with the paper's PGD-10 and the cpu profile's PGD-2, batch 128 (64 positives + 64 negatives),
channels_last on and off; and the share of step time spent in the attack vs the update.

    .venv/bin/python benchmarks/bench_train.py [--threads N] [--repeats R] [--device cpu|cuda] [--amp] [--batch B]

The inner attack runs as training runs it (``objectives._perturb``: BN folded into the convs from the live weights
at every step, ``fold.fold_for_attack``) and, for comparison, on the unfolded model (the code before folding); each
layout gets both rows and the folded/unfolded ratio. The update step is unchanged (train mode, unfolded).

--amp adds a row per setting with the step under bf16 autocast (contiguous layout), its ratio to float32. It
measures speed only; whether bf16 keeps the attack's strength is benchmarks/bench_amp.py's question.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch

from genrobust.core.config import apply_overrides, get_profile
from genrobust.core import objectives
from genrobust.core.models import create_model
from genrobust.core.objectives import binary_loss


@contextlib.contextmanager
def inner_attack(fold: bool):
    """objectives' inner attack on the folded view (what training runs) or on the unfolded model (as before)."""
    saved = objectives.fold_for_attack
    objectives.fold_for_attack = saved if fold else (lambda model: model)
    try:
        yield
    finally:
        objectives.fold_for_attack = saved


def measure(width, steps, channels_last, device, repeats, batch=128, amp=False, fold=False):
    """(images/s, attack share of step time); amp: attack and update under bf16 autocast (weights, optimizer
    and the loss's reduction stay float32, as torch.autocast does); fold: the attack on the folded view, as
    training runs it (refreshed at every step; its refresh is timed as part of the attack), else unfolded."""
    cfg = apply_overrides(get_profile("cpu"), {"train.attack_steps": steps, "train.channels_last": channels_last}).train
    model = create_model("resnet18", 1, width).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g).to(device).contiguous(memory_format=fmt)
    t_attack = t_update = 0.0

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(repeats + 2):  # 2 warm-up steps
        model.train()
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            with inner_attack(fold):
                x_neg = objectives.perturb_negatives(model, x[batch // 2:], cfg, g)
        sync()
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):  # the update: binary_loss, attack off
            loss, _ = binary_loss(model, x[None, :batch // 2], x_neg[None], dataclasses.replace(cfg, eps=0.0), g)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sync()
        t2 = time.perf_counter()
        if i >= 2:
            t_attack += t1 - t0
            t_update += t2 - t1
    total = t_attack + t_update
    return batch * repeats / total, t_attack / total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128, help="images per step (half positives, half negatives)")
    ap.add_argument("--amp", action="store_true", help="also time the step under bf16 autocast (contiguous layout)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    b = args.batch
    print(f"Eq. 3 training step, batch {b} ({b // 2} pos + {b - b // 2} PGD neg), on {where}")
    print(f"{'model':<28}{'PGD':>5}{'ch_last':>9}{'img/s':>9}{'attack %':>10}{'vs contiguous':>15}")
    cpu_width = get_profile("cpu").model.width
    for width, name in ((get_profile("paper").model.width, "ResNet18Thinner (paper)"),
                        (cpu_width, f"ResNet18 w{cpu_width:g} (cpu)")):
        for steps in (10, 2):
            base, bshare = measure(width, steps, False, device, args.repeats, args.batch)
            cfold, cshare = measure(width, steps, False, device, args.repeats, args.batch, fold=True)
            fast, share = measure(width, steps, True, device, args.repeats, args.batch)
            folded, fshare = measure(width, steps, True, device, args.repeats, args.batch, fold=True)
            print(f"{name:<28}{steps:>5}{'no':>9}{base:>9.1f}{100 * bshare:>9.0f}%")
            print(f"{name:<28}{steps:>5}{'no':>9}{cfold:>9.1f}{100 * cshare:>9.0f}%{cfold / base:>14.2f}x  "
                  f"<- folded inner attack: {cfold / base:.2f}x unfolded contiguous")
            print(f"{name:<28}{steps:>5}{'yes':>9}{fast:>9.1f}{100 * share:>9.0f}%{fast / base:>14.2f}x")
            print(f"{name:<28}{steps:>5}{'yes':>9}{folded:>9.1f}{100 * fshare:>9.0f}%{folded / base:>14.2f}x  "
                  f"<- folded inner attack: {folded / fast:.2f}x unfolded channels-last")
            if args.amp:
                amp, share = measure(width, steps, False, device, args.repeats, args.batch, amp=True)
                print(f"{name:<28}{steps:>5}{'no':>9}{amp:>9.1f}{100 * share:>9.0f}%{amp / base:>14.2f}x  "
                      f"<- bf16 autocast")


if __name__ == "__main__":
    main()
