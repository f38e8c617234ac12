"""SLURM's side of the job executor: submitit parameters from the profile's slurm section, the sbatch file as a
dry run, the ``sinfo`` check that some node can run a request, and the queue states ``squeue`` reports.

Nothing here submits: :func:`genrobust.store.executors.run_jobs` asks :func:`check_fits` before it submits anything
and :func:`queue_states` while its jobs are queued (docs/cluster.md).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ConfigError, SlurmConfig


def slurm_parameters(cfg: SlurmConfig | None = None, *, job_name: str = "genrobust", extra: dict | None = None) -> dict:
    """submitit parameters for one job on SLURM from the profile's ``slurm`` section (validated there)."""
    cfg = cfg or SlurmConfig()
    params = {"slurm_job_name": job_name, "timeout_min": cfg.time_min, "cpus_per_task": cfg.cpus,
              "gpus_per_node": cfg.gpus, "mem_gb": cfg.mem_gb, "nodes": 1, "tasks_per_node": 1}
    if cfg.gpus == 0:
        del params["gpus_per_node"]  # a GPU-less node has no gres: asking for 0 of one is itself refused
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
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
        converted[name] = _slurm._convert_mem(value) if key == "mem_gb" else value
    valid = set(_slurm._get_default_parameters())
    unknown = sorted(set(converted) - valid)
    if unknown:
        raise ConfigError(f"slurm: unknown parameter(s) {unknown}; see submitit's SlurmExecutor parameters")
    return _slurm._make_sbatch_string(command=command, folder=str(folder), **converted)


# ---------------------------------------------------------------------------------------------------------------
# What the cluster can run (sinfo), asked before anything is submitted
@dataclass(frozen=True)
class Node:
    name: str
    partitions: tuple[str, ...]
    default_partition: str | None  # the cluster's default partition if this node is in it
    cpus: int
    mem_mb: int
    gpus: int
    time_limit_min: tuple[float, ...]  # per partition, in the order of ``partitions``; inf = no limit


SINFO_FORMAT = "%N|%c|%m|%G|%P|%l"


def _minutes(limit: str) -> float:
    """sinfo's time limit ('infinite', 'D-HH:MM:SS', 'HH:MM:SS', 'MM:SS' or 'MM') in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return float("inf")
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days) if days else 0) * 1440 + h * 60 + m + s / 60


def _gpus(gres: str) -> int:
    """GPUs in sinfo's gres column, e.g. 'gpu:a100:4(S:0-1),shard:8' -> 4; '(null)' -> 0."""
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[^:,()]+)?:(\d+)", gres))


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o SINFO_FORMAT`` (one line per node and partition)."""
    rows: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, cpus, mem, gres, part, limit = line.strip().split("|")
        row = rows.setdefault(name, {"parts": [], "default": None, "cpus": int(cpus), "mem": int(mem.rstrip("+")),
                                     "gpus": _gpus(gres), "limit": {}})
        clean = part.rstrip("*")
        row["parts"].append(clean)
        row["limit"][clean] = _minutes(limit)
        if part.endswith("*"):
            row["default"] = clean
    return [Node(n, tuple(r["parts"]), r["default"], r["cpus"], r["mem"], r["gpus"],
                 tuple(r["limit"][p] for p in r["parts"])) for n, r in rows.items()]


def _request(cfg: SlurmConfig) -> str:
    return f"{cfg.gpus} GPU(s), {cfg.cpus} CPU(s), {cfg.mem_gb:g} GB, {cfg.time_min} min"


def check_fits(cfg: SlurmConfig, sinfo_text: str | None = None) -> None:
    """Refuse, in one line naming what to lower, a job request that no node of the partition can satisfy (asked of
    ``sinfo``; ``sinfo_text`` instead for a check without a cluster). A request that fits returns None."""
    if sinfo_text is None:
        if shutil.which("sinfo") is None:
            raise ConfigError("slurm: no `sinfo` on this machine: it is not a SLURM submit host (run where sbatch "
                              "works, or start a local one: tools/slurm_local.sh start; docs/cluster.md)")
        r = subprocess.run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise ConfigError(f"slurm: sinfo failed ({(r.stderr or r.stdout).strip().splitlines()[-1:]}); is the "
                              "controller up? (docs/cluster.md)")
        sinfo_text = r.stdout
    nodes = parse_sinfo(sinfo_text)
    part = cfg.partition
    if part is None:
        defaults = {n.default_partition for n in nodes if n.default_partition}
        part = next(iter(defaults)) if defaults else None
        if part is None:
            raise ConfigError("slurm: the cluster has no default partition; name one with --partition "
                              "(or slurm.partition in the profile)")
    members = [n for n in nodes if part in n.partitions]
    if not members:
        known = sorted({p for n in nodes for p in n.partitions})
        raise ConfigError(f"slurm: no partition {part!r} (sinfo lists {known}); choose one with --partition")
    fits = [n for n in members if n.cpus >= cfg.cpus and n.mem_mb >= cfg.mem_gb * 1024 and n.gpus >= cfg.gpus]
    if not fits:
        big = max(members, key=lambda n: (n.gpus, n.cpus, n.mem_mb))
        short = [opt for opt, need, have in (("--gpus", cfg.gpus, big.gpus), ("--cpus", cfg.cpus, big.cpus),
                                             ("--mem", cfg.mem_gb * 1024, big.mem_mb)) if need > have]
        raise ConfigError(f"slurm: no node in partition {part!r} can run a job of {_request(cfg)} (largest: "
                          f"{big.name} with {big.gpus} GPU(s), {big.cpus} CPU(s), {big.mem_mb / 1024:.1f} GB); lower "
                          f"{'/'.join(short) or '--gpus/--cpus/--mem'} (or slurm.* in the profile); nothing was "
                          "submitted")
    limit = max(n.time_limit_min[n.partitions.index(part)] for n in fits)
    if cfg.time_min > limit:
        raise ConfigError(f"slurm: partition {part!r} allows at most {limit:g} min per job, {cfg.time_min} asked; "
                          "lower --time (or slurm.time_min in the profile); nothing was submitted")


# ---------------------------------------------------------------------------------------------------------------
# The queue: what squeue says of jobs in flight
def queue_states(job_ids) -> dict[str, str] | None:
    """{job id: state} of those of ``job_ids`` still in SLURM's queue (pending, running, completing); None when
    squeue cannot answer."""
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    try:
        r = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(ids)], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        # every id already gone (purged after MinJobAge) is an error for squeue, not an empty queue
        return {} if "Invalid job id" in r.stderr else None
    return dict(line.strip().split("|", 1) for line in r.stdout.splitlines() if "|" in line)
