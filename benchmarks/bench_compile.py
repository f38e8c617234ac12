"""Does ``torch.compile`` (inductor, CPU) speed up the folded channels-last attack forward+backward further?

Measures input gradients (what every PGD step computes: d sum(d_k(x)) / dx) of a frozen eval-mode ResNet18 width
0.125 d_k (the issue's setting; BN running statistics moved by a few train-mode forwards), images/s on CPU time:
eager unfolded contiguous (as a user passes a model), eager ``fold.folded_copy`` (channels-last), and
``torch.compile(folded_copy)`` -- with the compile time (first forward+backward: dynamo + AOTAutograd + inductor's
C++ codegen) and the largest difference of the compiled gradients from the eager ones. A measurement only:
genrobust does not compile.

    .venv/bin/python benchmarks/bench_compile.py [--batch 128] [--repeats 5] [--threads 1] [--width 0.125]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from genrobust.core.fold import folded_copy
from genrobust.core.models import create_model

from bench_attacks import _checkpoint_like, machine


def _grad_fn(model):
    def grad(x):  # x: (N, 3, 32, 32) in [0, 1] -> d sum_i d(x_i) / dx, (N, 3, 32, 32)
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(x)[:, 0].sum(), x)[0]
    return grad


def _rate(fn, x, repeats):
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn(x)
        times.append(time.process_time() - c0)
    return len(x) / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=float, default=0.125)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = _checkpoint_like(create_model("resnet18", 1, args.width))
    folded = folded_copy(model, channels_last=True)
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    eager, eager_folded = _grad_fn(model), _grad_fn(folded)
    compiled = _grad_fn(torch.compile(folded))  # inductor, the default backend

    t0, c0 = time.perf_counter(), time.process_time()
    compiled(x)  # the first call compiles forward and backward
    compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
    ref = eager(x)
    rel = lambda g: ((g - ref).abs().max() / ref.abs().max()).item()  # noqa: E731
    rows = []
    for name, fn in (("eager, unfolded contiguous", eager), ("eager, folded channels-last", eager_folded),
                     ("torch.compile(folded channels-last)", compiled)):
        fn(x)  # warm-up
        rows.append((name, _rate(fn, x, args.repeats), rel(fn(x))))
    print(f"input gradients of a frozen eval-mode resnet18 width {args.width} d_k, batch {args.batch}, "
          f"median of {args.repeats} (CPU time)")
    print(f"  machine: {machine()}")
    print(f"  compile (first forward+backward): {compile_wall:.1f} s wall, {compile_cpu:.1f} s CPU of this process "
          f"(inductor's compile workers not counted)")
    print(f"  {'':38s} {'images/s':>9s} {'vs unfolded':>12s} {'max rel. grad diff':>19s}")
    for name, r, d in rows:
        print(f"  {name:38s} {r:9.1f} {r / rows[0][1]:11.2f}x {d:19.2e}")
    print(f"  compiled / eager folded: {rows[2][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
