"""The ``genrobust`` command line.

    genrobust reproduce --profile cpu            # all notebooks -> results/cpu/, skipping finished ones
    genrobust notebook 01_training --profile smoke -p epochs 3
    genrobust train --profile cpu --executor local --workers 2
    genrobust train --profile paper --executor slurm --partition gpu --gpus 1 --time 4320
    genrobust report --profile cpu               # results/cpu/REPORT.md from the metrics files (seconds)
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from .core.config import ConfigError
from .pipeline.classifiers import train_all
from .pipeline.notebooks import execute_notebook, reproduce
from .pipeline.params import resolve_profile
from .reporting.report import build, write_report
from .store.executors import RunError, configure_threads, sbatch_script, slurm_parameters
from .store.paths import runs_dir


def _parse_params(pairs):
    out = {}
    for key, raw in pairs or []:
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="genrobust", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="execute all notebooks into results/<profile>/")
    r.add_argument("--profile", default="cpu")
    r.add_argument("--notebooks", default=None, help="comma-separated, e.g. 01_training,02_calibration")
    r.add_argument("--force", action="store_true", help="re-execute finished notebooks")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="notebook parameter override")
    n = sub.add_parser("notebook", help="execute one notebook")
    n.add_argument("name")
    n.add_argument("--profile", default="cpu")
    n.add_argument("--force", action="store_true")
    n.add_argument("--out-dir", default=None)
    n.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    t = sub.add_parser("train", help="train the binary models (and nothing else) as jobs")
    t.add_argument("--profile", default="cpu")
    t.add_argument("--classes", default=None, help="comma-separated class indices")
    t.add_argument("--executor", default=None, choices=("inline", "local", "slurm"))
    t.add_argument("--workers", type=int, default=None)
    t.add_argument("--partition", default=None)
    t.add_argument("--gpus", type=int, default=1)
    t.add_argument("--cpus", type=int, default=8)
    t.add_argument("--time", type=int, default=4320, help="minutes per job")
    t.add_argument("--dry-run", action="store_true", help="with --executor slurm: print the sbatch script and stop")
    t.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    rp = sub.add_parser("report", help="write results/<profile>/REPORT.md from the metrics files (no training)")
    rp.add_argument("--profile", default="cpu")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "reproduce":
            nbs = args.notebooks.split(",") if args.notebooks else None
            for path in reproduce(args.profile, nbs, force=args.force, parameters=_parse_params(args.p)):
                print(path)
        elif args.cmd == "notebook":
            print(execute_notebook(args.name, args.profile, _parse_params(args.p), force=args.force,
                                   out_dir=Path(args.out_dir) if args.out_dir else None))
        elif args.cmd == "report":
            print(write_report(build(args.profile)))
        elif args.cmd == "train":
            params = _parse_params(args.p)
            if args.classes:
                params["classes"] = tuple(int(c) for c in args.classes.split(","))
            profile = resolve_profile(args.profile, params)
            configure_threads(profile)
            slurm = slurm_parameters(partition=args.partition, gpus=args.gpus, cpus=args.cpus, time_min=args.time)
            if args.dry_run:
                print(sbatch_script(slurm, runs_dir() / "jobs"))
                return 0
            for row in train_all(profile, executor=args.executor, workers=args.workers, slurm=slurm):
                print(f"d_{row['k']}: best epoch {row['best_epoch']} -> {row['checkpoint']}")
    except (ConfigError, RunError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"genrobust: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
