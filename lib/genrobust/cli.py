"""The ``genrobust`` command line.

    genrobust reproduce --profile cpu            # all notebooks -> results/cpu/, skipping finished ones
    genrobust notebook 01_training --profile smoke -p epochs 3
    genrobust train --profile cpu --executor local --workers 2
    genrobust train --profile paper --executor slurm --partition gpu --gpus 1 --mem 32 --time 4320
    genrobust evaluate --profile cpu             # notebook 03's attack units as jobs, without the notebook
    genrobust evaluate --profile cpu --checkpoint my_model.pt   # any checkpoint load_classifier reads
    genrobust evaluate --profile cpu --model mypackage.models:build   # your own nn.Module ([0, 1] -> 10 logits)
    genrobust evaluate --model models.py:build --budget quick --format markdown   # minutes on a laptop CPU
    genrobust reproduce --profile cpu --from-released   # 03-04 (and the report) on results/cpu/models/, no training
    genrobust report --profile cpu               # results/cpu/REPORT.md from the metrics files (seconds)
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import pandas as pd

from .core.config import ConfigError, to_dict
from .core.registry import EVAL_BUDGETS
from .core.version import __version__
from .data.splits import prepare_data
from .measure.accuracy import classifier_kind
from .measure.checks import masking_checks
from .pipeline.classifiers import ensure_classifiers, train_all
from .pipeline.evaluation import evaluate
from .pipeline.notebooks import REPORT_NOTEBOOK, execute_notebook, notebook_path, reproduce
from .pipeline.own_checks import INPUT_RANGES
from .pipeline.own_model import evaluate_model
from .pipeline.params import EVALUATE_PARAMETERS, TRAIN_PARAMETERS, resolve_profile
from .reporting.changes import write_changes
from .reporting.metrics_files import write_verdicts
from .reporting.readme import update_readme
from .reporting.report import build, write_report
from .reporting.own_table import FORMATS, render
from .reporting.tables import accuracy_table, checks_table
from .store.checkpoints import load_classifier
from .store.executors import JobSettings, RunError, configure_threads
from .store.io import ResultsError, write_json
from .store.paths import results_dir, runs_dir
from .store.slurm import sbatch_script, slurm_parameters


# What `reproduce --from-released` runs: the notebooks that only evaluate models (05 trains its own ablations).
FROM_RELEASED = ("03_accuracy", "04_generation_fid", REPORT_NOTEBOOK)


def _parse_params(pairs):
    out = {}
    for key, raw in pairs or []:
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _evaluate_own_model(args) -> None:
    """`genrobust evaluate --model`: your model under the named budget (estimate first, then a progress bar), its
    table on stdout in --format (paste-ready for markdown / latex), then the masking checks and the record's path."""
    if args.checkpoint:
        raise RunError("give --model or --checkpoint, not both (evaluate one at a time)")
    if args.executor == "slurm":
        raise RunError("--model runs in this process or in local workers (--workers N); --executor slurm is for "
                       "the profile's classifiers")
    workers = 1 if args.executor == "inline" else args.workers
    rec = evaluate_model(args.model, args.profile, budget=args.budget, parameters=_parse_params(args.p),
                         compare=not args.no_compare, from_released=args.from_released, out=args.out,
                         out_dir=args.out_dir, workers=workers, assume_input_range=args.assume_input_range,
                         echo=lambda s: print(s, file=sys.stderr))
    print(render(rec, args.format))
    notes = []
    failed = [c for c in rec["checks"] if c["passed"] is False and c["type"] == "masking"]
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 80):
        notes.append(checks_table(failed).to_string(index=False) if failed else "masking checks: none failed")
    if rec["comparison_note"]:
        notes.append(rec["comparison_note"])
    notes.append(f"wall time {rec['wall_time_s']:.0f} s over {len(rec['legs'])} run(s); record: {rec['path']}")
    print("\n" + "\n".join(notes))


def _evaluate(profile, args, jobs: JobSettings) -> None:
    """`genrobust evaluate`: the profile's classifiers (trained and calibrated already) or the given checkpoints
    through notebook 03's attacks and masking checks, as units; the accuracy table and checks on stdout."""
    if args.model:
        return _evaluate_own_model(args)
    if args.out_dir or args.assume_input_range or args.format != "text":
        raise RunError("--out-dir, --assume-input-range and --format go with --model (your own model)")
    data = prepare_data(profile.data, progress=False)
    if args.checkpoint:
        paths = {}
        for path in args.checkpoint:
            kind = classifier_kind(load_classifier(path))
            if kind in paths:
                raise RunError(f"two {kind} checkpoints given ({paths[kind]}, {path}); evaluate them one at a time")
            paths[kind] = path
    else:
        paths = ensure_classifiers(profile, data=data, train_missing=False, from_released=args.from_released)
    records = evaluate(profile, data, paths, jobs=jobs)
    checks = masking_checks(records, profile.eval)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 80):
        print(accuracy_table(records).to_string(index=False))
        print(checks_table(checks).to_string(index=False))
    if args.out:
        print(write_json(args.out, {"classifiers": records, "checks": checks, "eval": to_dict(profile.eval)}))


def _help(parser: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Give the option ``dest`` of ``parser`` (added in a loop shared with other commands) its help text."""
    next(a for a in parser._actions if a.dest == dest).help = text


def build_parser() -> argparse.ArgumentParser:
    """The command line (its subcommands and options are what messages may tell a user to run)."""
    ap = argparse.ArgumentParser(prog="genrobust", description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"genrobust {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="execute all notebooks into results/<profile>/")
    r.add_argument("--profile", default="cpu")
    r.add_argument("--notebooks", default=None, help="comma-separated, e.g. 01_training,02_calibration")
    r.add_argument("--force", action="store_true", help="re-execute finished notebooks")
    r.add_argument("--from-released", action="store_true",
                   help="notebooks 03-04 (and the report) on the released models in results/<profile>/models/, "
                        "without training")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="notebook parameter override")
    n = sub.add_parser("notebook", help="execute one notebook")
    n.add_argument("name")
    n.add_argument("--profile", default="cpu")
    n.add_argument("--force", action="store_true")
    n.add_argument("--out-dir", default=None)
    n.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    t = sub.add_parser("train", help="train the binary models and the softmax baseline (one more job) as jobs")
    t.add_argument("--classes", default=None, help="comma-separated class indices")
    t.add_argument("--no-softmax", action="store_true", help="train the binary models only")
    ev = sub.add_parser("evaluate", help="notebook 03's attack units (resumable) as jobs; prints the accuracies")
    ev.add_argument("--checkpoint", action="append", default=None, metavar="PATH",
                    help="evaluate this checkpoint (any file genrobust.load_classifier reads) instead of the "
                         "profile's classifiers; repeatable")
    ev.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                    help="evaluate your own nn.Module (maps [0, 1] images to 10 logits): MODULE:FACTORY or "
                         "path/to/file.py:FACTORY, FACTORY() returning the model")
    ev.add_argument("--no-compare", action="store_true",
                    help="with --model: do not evaluate and pair the profile's classifiers on the same images")
    ev.add_argument("--from-released", action="store_true",
                    help="the released models in results/<profile>/models/ as the profile's classifiers (with "
                         "--model: as the ones yours is compared with)")
    ev.add_argument("--out", default=None, help="also write the records and checks as JSON here (with --model: the "
                                                "record, default genrobust-evaluation-<digest>-<budget>.json in "
                                                "--out-dir)")
    ev.add_argument("--budget", default=None, choices=list(EVAL_BUDGETS),
                    help="a named evaluation budget (the record names it): "
                         + "; ".join(f"{b.name}: {b.doc}" for b in EVAL_BUDGETS.values())
                         + ". Default: the profile's eval settings")
    ev.add_argument("--format", default="text", choices=FORMATS,
                    help="with --model: the table as text, or markdown / latex to paste into a paper")
    ev.add_argument("--assume-input-range", default=None, choices=list(INPUT_RANGES),
                    help="with --model: the input range your model expects, overriding the check that refuses a "
                         "model more accurate on another range than [0, 1] ("
                         + ", ".join(f"{k}: {v}" for k, v in INPUT_RANGES.items())
                         + "); genrobust converts [0, 1] images to it, so eps stays in [0, 1] pixel units")
    ev.add_argument("--out-dir", default=None,
                    help="with --model: where runs/, cache/ and the record go (default: the checkout when run "
                         "inside it, else the current directory)")
    for cmd in (t, ev):
        cmd.add_argument("--profile", default="cpu")
        cmd.add_argument("--executor", default=None, choices=("inline", "local", "slurm"))
        cmd.add_argument("--workers", type=int, default=None)
        # SLURM resources per job: each overrides the profile's slurm.* setting (None: the profile's)
        cmd.add_argument("--partition", default=None, help="SLURM partition (default: slurm.partition, else the "
                                                          "cluster's default)")
        cmd.add_argument("--gpus", type=int, default=None, help="GPUs per SLURM job (default: slurm.gpus)")
        cmd.add_argument("--cpus", type=int, default=None, help="CPUs per SLURM job (default: slurm.cpus)")
        cmd.add_argument("--mem", type=float, default=None, help="GB per SLURM job (default: slurm.mem_gb)")
        cmd.add_argument("--time", type=int, default=None, help="minutes per SLURM job (default: slurm.time_min)")
        cmd.add_argument("--dry-run", action="store_true",
                         help="with --executor slurm: print the sbatch script and stop")
        cmd.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    _help(ev, "p", "an eval setting on top of the budget: " + ", ".join(sorted(EVALUATE_PARAMETERS))
          + ", or a dotted config key (e.g. -p n_test 200 -p eval.masking_restarts 3)")
    rp = sub.add_parser("report", help="write results/<profile>/verdicts.json (every verdict re-derived from the "
                                       "metrics files' evidence) and REPORT.md from them (no training)")
    rp.add_argument("--profile", default="cpu")
    rp.add_argument("--readme", action="store_true",
                    help="also rewrite README's results and findings tables from this profile's metrics files")
    rp.add_argument("--changes-since", metavar="DIR", default=None,
                    help="write results/<profile>/CHANGES.md: which verdicts changed from DIR (an older copy of "
                         "results/<profile>, e.g. `git archive REV results/cpu | tar -x -C /tmp/old`) to "
                         "results/<profile>, and what differs in their evidence (REPORT.md links it)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "reproduce":
            nbs = args.notebooks.split(",") if args.notebooks else None
            params = _parse_params(args.p)
            if args.from_released:
                nbs = nbs or list(FROM_RELEASED)
                trains = [n for n in nbs if notebook_path(n).stem not in FROM_RELEASED]
                if trains:
                    raise RunError(f"--from-released runs {', '.join(FROM_RELEASED)} on the released models; "
                                   f"{', '.join(trains)} train(s) models: run it without --from-released")
                params["from_released"] = True
            for path in reproduce(args.profile, nbs, force=args.force, parameters=params):
                print(path)
        elif args.cmd == "notebook":
            print(execute_notebook(args.name, args.profile, _parse_params(args.p), force=args.force,
                                   out_dir=Path(args.out_dir) if args.out_dir else None))
        elif args.cmd == "report" and args.changes_since:
            if not Path(args.changes_since).is_dir():
                raise ResultsError(f"--changes-since {args.changes_since}: no such directory; give an older copy of "
                                   f"results/{args.profile}/")
            print(write_changes(args.changes_since, results_dir(args.profile)))
        elif args.cmd == "report":
            print(write_verdicts(results_dir(args.profile)))  # re-derived from the metrics files' evidence first
            print(write_report(build(args.profile)))
            if args.readme:
                print(update_readme(args.profile))
        elif args.cmd in ("train", "evaluate"):
            params = _parse_params(args.p)
            if args.cmd == "train" and args.classes:
                params["classes"] = tuple(int(c) for c in args.classes.split(","))
            params.update({f"slurm.{key}": value for key, value in (
                ("partition", args.partition), ("gpus", args.gpus), ("cpus", args.cpus), ("mem_gb", args.mem),
                ("time_min", args.time)) if value is not None})
            keys = TRAIN_PARAMETERS if args.cmd == "train" else EVALUATE_PARAMETERS
            profile = resolve_profile(args.profile, params, keys, budget=getattr(args, "budget", None))
            configure_threads(profile)
            jobs = JobSettings.of(profile, executor=args.executor, workers=args.workers)  # --gpus...: profile.slurm
            if args.dry_run:
                print(sbatch_script(slurm_parameters(jobs.slurm), runs_dir() / "jobs"))
                return 0
            if args.cmd == "train":
                out = train_all(profile, softmax=not args.no_softmax, jobs=jobs)
                rows, soft = out if not args.no_softmax else (out, None)
                for row in rows:
                    print(f"d_{row['k']}: best epoch {row['best_epoch']} -> {row['checkpoint']}")
                if soft is not None:
                    print(f"softmax: best epoch {soft['best_epoch']} -> {soft['checkpoint']}")
            else:
                _evaluate(profile, args, jobs)
    except (ConfigError, RunError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"genrobust: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
