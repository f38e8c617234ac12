"""Batch runs: papermill execution of the notebooks, job executors (local processes or SLURM via submitit), and the
``genrobust`` command line.

    genrobust reproduce --profile cpu            # all notebooks -> results/cpu/, skipping finished ones
    genrobust notebook 01_training --profile smoke -p epochs 3
    genrobust train --profile cpu --executor local --workers 2
    genrobust train --profile paper --executor slurm --partition gpu --gpus 1 --time 4320
    genrobust report --profile cpu               # results/cpu/REPORT.md from the metrics files (seconds)
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import time
from pathlib import Path

from .config import ConfigError, Profile, apply_overrides, from_dict, get_profile, to_dict
from .results import project_root, provenance, read_json, results_dir, runs_dir, write_json

NOTEBOOKS = ("01_training", "02_calibration", "03_accuracy", "04_generation_fid", "05_ablations", "06_report")
# Reads the other notebooks' metrics files (seconds): always re-executed by `reproduce`, so it is never stale.
REPORT_NOTEBOOK = "06_report"

# Notebook parameter name -> dotted config key. Notebooks expose flat literals; this is the one place they map.
PARAMETER_KEYS = {
    "classes": "train.classes", "model": "model.name", "width": "model.width", "objective": "train.objective",
    "eps": "train.eps", "eps1": "train.eps1", "eps2": "train.eps", "attack_steps": "train.attack_steps",
    "attack_step_size": "train.attack_step_size", "augment": "train.augment", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "lr_schedule": "train.lr_schedule",
    "lr_drop_epoch": "train.lr_drop_epoch", "weight_decay": "train.weight_decay", "seed": "train.seed",
    "select_on": "train.select_on", "data_source": "data.source", "data_path": "data.path",
    "train_per_class": "data.train_per_class", "val_per_class": "data.val_per_class",
    "softmax_epochs": "softmax.epochs", "softmax_model": "softmax.model", "softmax_width": "softmax.width",
    "softmax_checkpoint": "softmax.checkpoint", "executor": "executor", "workers": "workers",
    "num_threads": "num_threads", "train_path": "train_path",
}


class RunError(RuntimeError):
    pass


def resolve_profile(profile: str, **params) -> Profile:
    """The profile with notebook parameters applied (None = keep the profile's value). Unknown names fail."""
    overrides = {}
    for name, value in params.items():
        if value is None:
            continue
        key = PARAMETER_KEYS.get(name, name if "." in name else None)
        if key is None:
            raise ConfigError(f"unknown parameter {name!r}; known: {sorted(PARAMETER_KEYS)} or a dotted config key "
                              "such as 'train.epochs'")
        overrides[key] = value
    return apply_overrides(get_profile(profile), overrides)


def configure_threads(profile: Profile) -> None:
    """Torch threads for this process (profile.num_threads; None keeps torch's default)."""
    import torch
    if profile.num_threads:
        torch.set_num_threads(profile.num_threads)


# ---------------------------------------------------------------------------------------------------------------
# Jobs: one per class model. 'inline' runs in this process; 'local' runs real subprocesses through submitit,
# at most `workers` at a time; 'slurm' submits to a cluster (one job per class, e.g. one GPU each).
def _binary_job(profile_dict: dict, k: int) -> dict:
    from .train import train_binary
    profile = from_dict(profile_dict)
    configure_threads(profile)
    res = train_binary(profile, k, progress=False)
    return {"k": k, "best_epoch": res["best_epoch"], "checkpoint": res["checkpoint"]}


def _fused_job(profile_dict: dict, classes: list[int]) -> list[dict]:
    from .train import train_binaries_fused
    profile = from_dict(profile_dict)
    configure_threads(profile)
    return [{"k": k, "best_epoch": r["best_epoch"], "checkpoint": r["checkpoint"]}
            for k, r in zip(classes, train_binaries_fused(profile, classes, progress=False))]


def training_path(profile: Profile) -> str:
    """'fused' or 'sequential' for the binary models: profile.train_path, where 'auto' follows
    genrobust.fused.PATH_RULE for this machine's default device (the device a local or inline job gets; for SLURM
    GPU jobs set train_path='fused' explicitly to train all classes in one job)."""
    if profile.train_path != "auto":
        return profile.train_path
    from .fused import choose_training_path
    from .train import default_device
    return choose_training_path(default_device())


def _softmax_job(profile_dict: dict) -> dict:
    from .train import train_softmax
    profile = from_dict(profile_dict)
    configure_threads(profile)
    res = train_softmax(profile, progress=False)
    return {"best_epoch": res["best_epoch"], "checkpoint": res["checkpoint"]}


def slurm_parameters(*, partition: str | None = None, gpus: int = 1, time_min: int = 4320, cpus: int = 8,
                     mem_gb: int = 32, job_name: str = "genrobust", extra: dict | None = None) -> dict:
    """submitit parameters for one class-model job on SLURM (validated here, so a bad value fails before submit)."""
    if gpus < 0 or cpus < 1 or time_min < 1 or mem_gb < 1:
        raise ConfigError(f"slurm: gpus >= 0, cpus >= 1, time >= 1 min, mem >= 1 GB; got gpus={gpus} cpus={cpus} "
                          f"time={time_min} mem={mem_gb}")
    params = {"slurm_job_name": job_name, "timeout_min": int(time_min), "cpus_per_task": int(cpus),
              "gpus_per_node": int(gpus), "mem_gb": int(mem_gb), "nodes": 1, "tasks_per_node": 1}
    if partition:
        params["slurm_partition"] = partition
    params.update(extra or {})
    return params


def sbatch_script(params: dict, folder: Path, command: str = "python -m submitit.core._submit <folder>") -> str:
    """The sbatch file submitit would submit for ``params`` (from :func:`slurm_parameters`), rendered without a
    cluster: a dry run for users (`genrobust train --executor slurm --dry-run`) and a check in tests. Unknown
    parameters fail here, as they would at submission."""
    from submitit.slurm import slurm as _slurm
    equiv = _slurm.SlurmExecutor._equivalence_dict()
    converted = {}
    for key, value in params.items():
        name = key[len("slurm_"):] if key.startswith("slurm_") else equiv.get(key, key)
        converted[name] = f"{value}GB" if key == "mem_gb" else value
    valid = set(_slurm._get_default_parameters())
    unknown = sorted(set(converted) - valid)
    if unknown:
        raise ConfigError(f"slurm: unknown parameter(s) {unknown}; see submitit's SlurmExecutor parameters")
    return _slurm._make_sbatch_string(command=command, folder=str(folder), **converted)


def make_executor(kind: str, folder: Path, *, slurm: dict | None = None):
    import submitit
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=24 * 60)
        return ex
    if kind == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**(slurm or slurm_parameters()))
        return ex
    raise ConfigError(f"unknown executor {kind!r}; choose 'inline', 'local' or 'slurm'")


def run_jobs(fn, arg_list: list[tuple], *, executor: str = "local", workers: int = 1, slurm: dict | None = None,
             folder: Path | None = None, desc: str = "jobs", progress: bool = True) -> list:
    """Run fn(*args) for each args; results in order. Local: at most ``workers`` subprocesses at once."""
    from tqdm.auto import tqdm
    if executor == "inline":
        return [fn(*a) for a in tqdm(arg_list, desc=desc, disable=not progress)]
    # jobs inherit the environment: passive OpenMP waiting keeps parallel jobs from spinning on each other's cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    folder = folder or runs_dir() / "jobs"
    ex = make_executor(executor, folder, slurm=slurm)
    limit = len(arg_list) if executor == "slurm" else max(1, workers)
    pending = list(enumerate(arg_list))
    running, results = {}, [None] * len(arg_list)
    bar = tqdm(total=len(arg_list), desc=desc, disable=not progress)
    try:
        while pending or running:
            while pending and len(running) < limit:
                i, args = pending.pop(0)
                running[i] = ex.submit(fn, *args)
            for i, job in list(running.items()):
                if job.done():
                    try:
                        results[i] = job.result()
                    except Exception as e:  # noqa: BLE001 - report which job failed and where its log is
                        raise RunError(f"{desc}: job {i} failed: {str(e).strip().splitlines()[-1]}"
                                       f"; see logs in {folder}") from None
                    del running[i]
                    bar.update(1)
            time.sleep(0.5)
    finally:
        for job in running.values():
            job.cancel(check=False)
        bar.close()
    return results


def train_all(profile: Profile, *, softmax: bool = False, executor: str | None = None,
              workers: int | None = None, slurm: dict | None = None, progress: bool = True):
    """Train the binary models of profile.train.classes (and, with softmax=True, the softmax baseline) as
    independent jobs, train-if-missing. Returns the binary results (and the softmax result if asked)."""
    from .train import binary_result, softmax_result
    jobs = []
    if softmax and softmax_result(profile) is None:
        jobs.append((_softmax_job, (to_dict(profile),)))  # first: it is the longest job
    missing = [k for k in profile.train.classes if binary_result(profile, k) is None]
    if training_path(profile) == "fused" and len(missing) > 1:
        jobs.append((_fused_job, (to_dict(profile), missing)))  # one job (one device) trains them together
    else:
        jobs += [(_binary_job, (to_dict(profile), k)) for k in missing]
    if jobs:
        run_jobs(_call, jobs, executor=executor or profile.executor, workers=workers or profile.workers,
                 slurm=slurm, desc=f"training ({len(jobs)} jobs)", progress=progress)
    out = []
    for k in profile.train.classes:
        res = binary_result(profile, k)
        if res is None:
            raise RunError(f"d_{k} did not finish; see the job logs in {runs_dir() / 'jobs'}")
        out.append({"k": k, **res})
    if not softmax:
        return out
    soft = softmax_result(profile)
    if soft is None:
        raise RunError(f"the softmax baseline did not finish; see the job logs in {runs_dir() / 'jobs'}")
    return out, soft


def _call(fn, args):
    return fn(*args)


# ---------------------------------------------------------------------------------------------------------------
# Notebooks through papermill
def notebook_path(name: str) -> Path:
    stem = name[:-6] if name.endswith(".ipynb") else name
    matches = [n for n in NOTEBOOKS if n == stem or n.startswith(stem + "_") or n.split("_")[0] == stem]
    path = project_root() / "notebooks" / f"{matches[0] if matches else stem}.ipynb"
    if not path.is_file():
        raise RunError(f"no notebook {name!r} in {path.parent}; available: "
                       f"{sorted(p.stem for p in path.parent.glob('*.ipynb'))}")
    return path


def notebook_parameters(name: str) -> set[str]:
    """Names declared in the notebook's `parameters` cell (papermill's inspection)."""
    import papermill as pm
    return set(pm.inspect_notebook(str(notebook_path(name))))


def _check_parameters(name: str, params: dict) -> None:
    # papermill would inject an unknown name as a new variable that nothing reads: a typo must fail instead
    declared = notebook_parameters(name)
    unknown = sorted(set(params) - declared)
    if unknown:
        raise RunError(f"{notebook_path(name).name}: unknown parameter(s) {unknown}; it takes {sorted(declared)}")


def execute_notebook(name: str, profile: str, parameters: dict | None = None, *, out_dir: Path | None = None,
                     force: bool = False, kernel: str | None = None) -> Path:
    """Execute one notebook with papermill into results/<profile>/ (atomically: a failed run leaves a
    ``<name>.failed.ipynb`` for inspection and never a half-written result)."""
    import papermill as pm
    get_profile(profile)  # fail fast on an unknown profile
    src = notebook_path(name)
    out_dir = Path(out_dir or results_dir(profile))
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / src.name
    marker = out_dir / f".{src.stem}.done.json"
    params = {"profile": profile, **(parameters or {})}
    _check_parameters(name, params)
    if not force and dst.exists() and marker.exists() and read_json(marker).get("parameters") == params:
        return dst
    tmp = out_dir / f".{src.stem}.running.ipynb"
    failed = out_dir / f"{src.stem}.failed.ipynb"
    t0 = time.time()
    env_root = str(project_root())
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name=kernel, cwd=env_root,
                            progress_bar=False, log_output=False)
    except Exception as e:  # noqa: BLE001 - papermill wraps the cell error; keep the notebook to look at
        if tmp.exists():
            os.replace(tmp, failed)
        raise RunError(f"{src.name} failed under profile {profile!r}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
                       f"; the executed notebook is kept at {failed}") from None
    os.replace(tmp, dst)
    if failed.exists():
        failed.unlink()
    write_json(marker, {"parameters": params, "wall_time_s": round(time.time() - t0, 1),
                        "provenance": provenance(None)})
    return dst


def reproduce(profile: str, notebooks=None, *, force: bool = False, parameters: dict | None = None) -> list[Path]:
    from tqdm.auto import tqdm
    get_profile(profile)
    names = [notebook_path(n).stem for n in (notebooks or NOTEBOOKS)]  # unknown names fail here, before any run
    # each notebook gets the overrides it declares; one that no selected notebook declares is an error
    parameters = parameters or {}
    declared = {name: notebook_parameters(name) for name in names}
    unused = sorted(set(parameters) - set().union(*declared.values()))
    if unused:
        raise RunError(f"unknown parameter(s) {unused} for notebooks {names}; see each notebook's first cell")
    out = []
    for name in tqdm(names, desc=f"notebooks ({profile})", unit="nb"):
        own = {k: v for k, v in parameters.items() if k in declared[name]}
        out.append(execute_notebook(name, profile, own, force=force or name == REPORT_NOTEBOOK))
    return out


# ---------------------------------------------------------------------------------------------------------------
# CLI
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
            from .overview import build, write_report
            print(write_report(build(args.profile)))
        elif args.cmd == "train":
            params = _parse_params(args.p)
            if args.classes:
                params["classes"] = tuple(int(c) for c in args.classes.split(","))
            profile = resolve_profile(args.profile, **params)
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
