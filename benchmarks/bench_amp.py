"""Does bf16 autocast keep the attack's strength? Robust accuracy under the same L2 PGD with and without autocast.

Trains a small CNN softmax classifier (small_cnn width 0.5) with PGD-AT (objectives.softmax_pgd_at_loss, the smoke
profile's eps 0.5, PGD-2, lr 0.05) for a fixed number of steps on SYNTHETIC data (genrobust.data.make_synthetic,
not CIFAR-10), then attacks its test set with pgd_untargeted (L2, 10 steps, no random start, the same seed) over an
eps grid (the synthetic shapes are easy: this model stays robust up to eps ~2, so the grid reaches where robust
accuracy falls):

  fp32          attack and final prediction in float32 (the reference)
  bf16 attack   the attack's forward/backward under torch.autocast(bfloat16), final prediction in float32:
                any accuracy change is attack strength (a weaker bf16 attack -> higher robust accuracy)
  bf16 all      attack and final prediction under autocast (the whole evaluation in bf16)

and the attack's speed (images/s) with and without autocast. Nothing in genrobust turns autocast on; this only
measures whether it would be safe.

    .venv/bin/python benchmarks/bench_amp.py [--device cpu|cuda] [--train-steps S] [--n-test N] [--threads T]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch

from genrobust import data as gdata
from genrobust.core.attacks import eval_mode, pgd_untargeted
from genrobust.core.config import get_profile
from genrobust.core.models import create_model
from genrobust.core.objectives import softmax_pgd_at_loss

EPS_GRID = (1.0, 2.0, 3.0, 4.0)
ATTACK_STEPS = 10


def train_small(device, steps: int, seed: int = 0, width: float = 0.5):
    """PGD-AT small_cnn (smoke profile's softmax settings: eps 0.5, PGD-2, lr 0.05, batch 64) for ``steps`` SGD
    steps. Width 0.5 rather than the smoke profile's 1.5: ~9x cheaper, so 200 steps take ~20 s at 1 CPU thread.
    Returns (model in eval mode, test images (N, 3, 32, 32) in [0, 1], labels (N,))."""
    cfg = dataclasses.replace(get_profile("smoke").softmax, width=width)
    splits = gdata.make_synthetic(200, 50, seed=seed)  # 2,000 train / 500 test images, 10 classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(cfg.model, 10, cfg.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = gdata.to_float(splits.train_x, device), splits.train_y.to(device)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(y_all), (cfg.batch_size,), generator=g).to(device)
        loss, _ = softmax_pgd_at_loss(model, x_all[idx], y_all[idx], cfg, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model, gdata.to_float(splits.test_x, device), splits.test_y.to(device)


def _autocast(device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def attack(model, x, y, eps, device, bf16: bool):
    """x_adv (N, 3, 32, 32) and seconds; the same seed and settings with and without autocast."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with eval_mode(model), _autocast(device, bf16):
        x_adv = pgd_untargeted(model, x, y, eps=eps, norm="l2", steps=ATTACK_STEPS,
                               generator=torch.Generator(device=device).manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return x_adv, time.perf_counter() - t0


def mean_ce(model, x, y) -> float:
    """Mean float32 cross-entropy at x: a finer measure of attack strength than accuracy (higher = stronger)."""
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x).float(), y).item()


def correct(model, x, y, device, bf16: bool):
    with torch.no_grad(), _autocast(device, bf16):
        return model(x).float().argmax(1) == y  # (N,) bool


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1 if not torch.cuda.is_available() else None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    model, x, y = train_small(device, args.train_steps)
    x, y = x[:args.n_test], y[:args.n_test]
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} thread(s)")
    print(f"small_cnn w0.5 softmax, PGD-AT {args.train_steps} steps on SYNTHETIC data "
          f"({time.perf_counter() - t0:.0f} s), {len(y)} test images, L2 PGD-{ATTACK_STEPS}, "
          f"torch {torch.__version__}, {where}")
    print(f"clean accuracy: fp32 {correct(model, x, y, device, False).float().mean():.3f}, "
          f"bf16 {correct(model, x, y, device, True).float().mean():.3f}")
    print(f"{'eps':>5}{'fp32':>8}{'bf16 attack':>13}{'bf16 all':>10}{'flips':>7}{'CE fp32':>9}{'CE bf16':>9}"
          f"{'fp32 img/s':>12}{'bf16 img/s':>12}{'bf16/fp32':>11}")
    for eps in EPS_GRID:
        xa32, t32 = attack(model, x, y, eps, device, False)
        xa16, t16 = attack(model, x, y, eps, device, True)
        ok32 = correct(model, xa32, y, device, False)
        ok16 = correct(model, xa16, y, device, False)
        ok16_all = correct(model, xa16, y, device, True)
        flips = int((ok32 != ok16).sum())  # examples whose robust/broken verdict depends on the attack precision
        print(f"{eps:>5}{ok32.float().mean():>8.3f}{ok16.float().mean():>13.3f}{ok16_all.float().mean():>10.3f}"
              f"{flips:>7}{mean_ce(model, xa32, y):>9.3f}{mean_ce(model, xa16, y):>9.3f}"
              f"{len(y) / t32:>12.1f}{len(y) / t16:>12.1f}{t32 / t16:>10.2f}x")
    print("robust accuracy = fraction still correct; 'bf16 attack' above 'fp32' (or CE bf16 below CE fp32, both "
          "evaluated in float32) means the bf16 attack is weaker")


if __name__ == "__main__":
    main()
