"""The training engine against the old one on the same device in one run: the paper profile's Eq. 3 PGD-10 step of
the 10 d_k (fused), end to end through each engine's own bench_epoch.measure_path, as img/s of the last epoch.

    python benchmarks/engine_check.py --old DIR [--old-commit SHA] [--repeats 3] [--budget-s 150]
                                      [--profile paper] [--train-per-class 1000] [--epochs 2]

DIR holds the old engine's lib/ and benchmarks/ (tools/gpu_run.py unpacks `git archive 18bdf27 lib benchmarks`
there: the device has no git). Three long-lived workers (old; new fp32 = engine.autocast off; new bf16 = autocast
bf16), each with its own lib/ and its data prepared once, are asked in turn, round after round (old, fp32, bf16,
old, ...), so drift of the machine (clocks, other tenants) falls on all three alike; at least --repeats rounds, more
while --budget-s lasts. Printed last: median img/s per engine and `new / old = N.NNx` per precision, then the host
syncs per step of the new engine's training step (CUDA's sync debug mode; on a CPU only the step runs, no count).
tools/gpu_run.py's call 1 runs it (docs/gpu-profile.md); on the CPU its rehearsal passes a small profile.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(lib: str, bench_dir: str, profile: str, train_per_class: int, epochs: int, sets: list[str]) -> None:
    """One engine: its lib/ and its bench_epoch first on the path; data once; then one measurement per 'go' line on
    stdin, printed as 'RESULT {json}'. Uses only what the old and the new bench_epoch share."""
    sys.path[:0] = [lib, bench_dir]
    import torch
    import bench_epoch
    from genrobust.core.config import apply_overrides, get_profile
    from genrobust.data import prepare_data
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bench = apply_overrides(get_profile(profile), {
        "data.source": "synthetic", "data.synthetic_train_per_class": train_per_class,
        "data.synthetic_test_per_class": 10, "data.val_per_class": 0, "data.train_per_class": None,
        "data.test_per_class": None, "train.epochs": epochs, "train.lr_schedule": "constant",
        "train.select_on": "last", **dict(kv.split("=", 1) for kv in sets)})
    data = prepare_data(bench.data, progress=False)
    print("READY", torch.__version__, torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        r = bench_epoch.measure_path("fused", bench, data, device)
        print("RESULT " + json.dumps(r), flush=True)


class Engine:
    def __init__(self, label: str, lib: Path, bench_dir: Path, args, sets: list[str]):
        self.label, self.rates = label, []
        cmd = [sys.executable, __file__, "--worker", str(lib), str(bench_dir), "--profile", args.profile,
               "--train-per-class", str(args.train_per_class), "--epochs", str(args.epochs)]
        for s in sets:
            cmd += ["--set", s]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib)] + [
            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != ROOT / "lib"]))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read("READY")

    def _read(self, tag: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(tag):
                return line[len(tag):].strip()
            print(f"  [{self.label}] {line.rstrip()}")
        raise SystemExit(f"engine_check: the {self.label} worker exited ({self.proc.wait()}) before {tag}")

    def measure(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        rate = json.loads(self._read("RESULT"))["images_per_s"]
        self.rates.append(rate)
        return rate

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def host_syncs(profile: str, train_per_class: int) -> None:
    """Host syncs per step of fit's training step for the 10 d_k fused (BinaryStepper.step as fit runs it: data on
    the device, the NaN flag kept there), counted with torch.cuda.set_sync_debug_mode, each site named; expected 0.
    On a CPU the steps run (the same code) and nothing is counted."""
    import torch
    from genrobust.core.config import apply_overrides, get_profile
    from genrobust.data import prepare_data
    from genrobust.training import binary, loop
    import tempfile
    base = get_profile(profile)
    p = apply_overrides(base, {  # 5 steps' positives per class (a positive half-batch each): 2 warm-up + 3 counted
        "data.source": "synthetic", "data.synthetic_train_per_class": max(train_per_class, 5 * base.train.batch_size),
        "data.synthetic_test_per_class": 10, "data.val_per_class": 0, "data.train_per_class": None,
        "data.test_per_class": None, "train.select_on": "last", "train.lr_schedule": "onecycle",
        "train.lr_drop_epoch": None})
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = prepare_data(p.data, progress=False)
    engine = binary._engine(p, dev)
    x_train = binary._train_images(data, engine, dev)
    with tempfile.TemporaryDirectory() as d:
        os.environ["GENROBUST_RUNS"] = d
        rs = [binary._open_binary_run(p, k, data, dev, False, engine, x_train) for k in p.train.classes]
        stepper = binary.BinaryStepper(rs, p.train, dev, engine)
        stepper.train()
        iters, sums = [iter(r.make_batches(r.generator)) for r in rs], {}
        nonfinite = torch.zeros(len(rs), dtype=torch.bool, device=dev)

        def step():  # one step of fit's epoch loop on CUDA
            bad, stats, _ = stepper.step([next(it) for it in iters], check_now=False)
            nonfinite.logical_or_(bad)
            loop.add_stats(sums, stats)
        step()
        step()  # warm-up: the folded view, cuDNN autotuning, the allocator
        if dev.type != "cuda":
            step()
            print(f"host syncs per step: not counted on {dev} (CUDA's sync debug mode); the step ran 3 times")
            return
        n_steps = 3
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(n_steps):
                    step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    print(f"host syncs per step, fit's step, K = {len(rs)} fused ({engine}): {len(syncs) / n_steps:g} (expected 0)")
    sites = {}
    for w in syncs:
        key = f"{os.path.relpath(w.filename)}:{w.lineno}: {str(w.message)[:100]}"
        sites[key] = sites.get(key, 0) + 1
    for site, n in sorted(sites.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d} x {site}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("LIB", "BENCH_DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--old", help="the old engine's tree (lib/ and benchmarks/)")
    ap.add_argument("--old-commit", default="?")
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last one is timed")
    ap.add_argument("--repeats", type=int, default=3, help="rounds at least (old, new fp32, new bf16 each)")
    ap.add_argument("--budget-s", type=float, default=150, help="no round starts after this many seconds")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.profile, args.train_per_class, args.epochs, args.set)
        return 0
    if not args.old or not (Path(args.old) / "lib" / "genrobust").is_dir():
        raise SystemExit(f"engine_check: --old {args.old}: no lib/genrobust there; give the old engine's tree")
    t0 = time.time()
    old = Path(args.old)
    engines = [Engine(f"old {args.old_commit}", old / "lib", old / "benchmarks", args, []),
               Engine("new fp32", ROOT / "lib", ROOT / "benchmarks", args, ["engine.autocast=off"]),
               Engine("new bf16", ROOT / "lib", ROOT / "benchmarks", args, ["engine.autocast=bf16"])]
    print(f"profile {args.profile}, fused 10 d_k, synthetic {args.train_per_class} images/class, {args.epochs} "
          f"epoch(s) per measurement (last timed); torch/device: {engines[0].ready}")
    rounds = 0
    while rounds < args.repeats or time.time() - t0 < args.budget_s:
        rounds += 1
        line = ", ".join(f"{e.label} {e.measure():8.1f}" for e in engines)
        print(f"round {rounds}: img/s {line} ({time.time() - t0:.0f} s)", flush=True)
        if rounds >= 2 * args.repeats:
            break
    for e in engines:
        e.close()
    med = {e.label: statistics.median(e.rates) for e in engines}
    for e in engines:
        print(f"{e.label:<14} median {med[e.label]:9.1f} img/s over {len(e.rates)} (min {min(e.rates):.1f}, "
              f"max {max(e.rates):.1f})")
    base = med[engines[0].label]
    for e in engines[1:]:
        print(f"new / old = {med[e.label] / base:.2f}x ({e.label.split()[1]}; old {args.old_commit} as it ran)")
    try:
        host_syncs(args.profile, args.train_per_class)
    except Exception as e:  # noqa: BLE001 - the ratios above are the point of the call; say what broke and go on
        print(f"host syncs per step: not measured ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})")
        return 1
    print(f"engine_check: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
