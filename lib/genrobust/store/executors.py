"""Job executors: run fn(*args) for many argument tuples as independent jobs -- in this process ('inline'), as
local subprocesses through submitit at most ``workers`` at a time ('local'), or on SLURM ('slurm', one job each).
Training, ablation sweeps and evaluation units all fan out through :func:`run_jobs`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.config import ConfigError, Profile
from .paths import runs_dir


class RunError(RuntimeError):
    """A job or notebook that failed; the message says where its log is."""


def configure_threads(profile: Profile) -> None:
    """Torch threads for this process (profile.num_threads; None keeps torch's default)."""
    if profile.num_threads:
        torch.set_num_threads(profile.num_threads)


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
    from submitit.slurm import slurm as _slurm  # optional at import time: only the SLURM path needs it
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
    import submitit  # optional at import time: the inline executor runs without it
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


def call(fn, args):
    """fn(*args): what each job runs, so that jobs of different functions share one executor (a module-level
    function: submitit pickles it)."""
    return fn(*args)
