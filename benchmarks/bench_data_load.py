"""Benchmark: decoding the CIFAR-10 JPEG zip (cold, fresh cache dir) vs loading the decoded cache (warm).

Usage: python benchmarks/bench_data_load.py [--zip PATH] [--repeats N]
Default zip: <project_root>/../shared/data/cifar10-jpeg.zip. Prints a small table in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from genrobust import data as D


def main() -> None:
    root = D.find_project_root(Path(__file__).resolve().parent)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=(root / ".." / "shared" / "data" / "cifar10-jpeg.zip").resolve())
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each case (median reported)")
    args = parser.parse_args()
    if not args.zip.is_file():
        raise SystemExit(f"{args.zip}: not found; pass --zip PATH to a CIFAR-10 image zip")

    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="genrobust-bench-") as cache:
            t0 = time.perf_counter()
            first = D.load("imagefolder", args.zip, cache_dir=cache, progress=False)  # decode + write cache
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            second = D.load("imagefolder", args.zip, cache_dir=cache, progress=False)  # hash zip + read cache
            warm.append(time.perf_counter() - t0)
            assert second.source == first.source and len(second.train_y) == len(first.train_y)

    n = len(first.train_y) + len(first.test_y)
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"data: {first.source.name}, {n} images, {args.zip} (median of {args.repeats})")
    print(f"{'case':<34}{'seconds':>10}{'images/s':>12}")
    print(f"{'decode zip, no cache (+ write)':<34}{c:>10.2f}{n / c:>12.0f}")
    print(f"{'load from cache (+ sha256 of zip)':<34}{w:>10.2f}{n / w:>12.0f}")
    print(f"{'speed-up (decode / cache)':<34}{c / w:>10.1f}x")


if __name__ == "__main__":
    main()
