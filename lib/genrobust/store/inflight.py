"""In-flight records in the run directories a job writes: never submitted twice, a queued SLURM job adopted by a
rerun.

In-flight records: ``inflight.json`` in each run directory a queued or running job writes, so that a run
directory is never submitted twice and a rerun adopts a SLURM job still in the queue (after ``kill -9`` of its
driver) instead of submitting another.

A record is written by the driver at submission (:func:`write_record`) and removed twice over through
:func:`release`, each time only while it still names that job: by the job itself once its function has returned (a
finished job leaves no record even when its driver was killed and no rerun adopted it) and by the driver when it
collects the job (a job that failed or was cancelled). The next driver reads them (:func:`in_flight`); a record whose
job has ended is stale and ignored.
"""
from __future__ import annotations

import contextlib
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from .io import read_json, write_json
from .job_reports import RunError, Tracked, log_of
from .slurm import queue_states

INFLIGHT = "inflight.json"  # in a run directory while a job that writes it is queued or running


def _local_alive(rec: dict) -> bool:
    if rec.get("host") != socket.gethostname():
        return True  # another machine's local job: we cannot tell, so it counts as in flight
    try:
        return "submitit" in Path(f"/proc/{int(rec['job_id'])}/cmdline").read_bytes().decode(errors="ignore")
    except (OSError, ValueError):
        return False


def _read_record(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / INFLIGHT)
    except Exception:  # noqa: BLE001 - an unreadable record is a stale one: it is overwritten at submission
        return None


def in_flight(claims: list[list[Path]], executor: str) -> dict[int, dict]:
    """{job index: record} for the jobs whose run directories hold a live in-flight record: SLURM jobs still in
    the queue, to be adopted. A live record that this driver cannot adopt (a local job, or a SLURM job while
    running locally) is an error naming it. Stale records (their job ended) are ignored."""
    adopt: dict[int, dict] = {}
    records = {i: [(d, r) for d in dirs if (r := _read_record(d)) is not None] for i, dirs in enumerate(claims)}
    slurm_ids = [r["job_id"] for recs in records.values() for _, r in recs if r.get("executor") == "slurm"]
    queued = queue_states(slurm_ids) if slurm_ids else {}
    for i, recs in records.items():
        for d, r in recs:
            if r.get("executor") == "slurm":
                if queued is None:
                    raise RunError(f"{d} holds an in-flight record of SLURM job {r['job_id']} and squeue cannot "
                                   "say whether it still runs; retry when the controller answers")
                if r["job_id"] not in queued:
                    continue
                if executor == "slurm":
                    adopt[i] = r
                    break
            elif not _local_alive(r):
                continue
            raise RunError(f"{d} has a job in flight ({r.get('executor')} job {r['job_id']} on {r.get('host')}, "
                           f"submitted {r.get('submitted')}; log {r.get('log')}): wait for it to end or cancel it, "
                           "then rerun")
    return adopt


def write_record(t: Tracked, executor: str) -> None:
    """The in-flight record of a job just submitted, in every run directory it claims."""
    rec = {"executor": executor, "job_id": str(t.job.job_id), "folder": str(t.job.paths.folder),
           "log": str(log_of(t.job)), "host": socket.gethostname(), "driver_pid": os.getpid(),
           "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for d in t.claims:
        write_json(Path(d) / INFLIGHT, rec)


def release(claims, job_id) -> None:
    """Remove the in-flight records in ``claims`` that name job ``job_id`` (others are left alone): called by the
    driver when it collects a job, and inside the job itself once its function returned (``job_id``: submitit's id of
    the running job, the one its driver recorded)."""
    for d in claims:
        rec = _read_record(Path(d))
        if rec is not None and rec.get("job_id") == str(job_id):
            with contextlib.suppress(FileNotFoundError):
                (Path(d) / INFLIGHT).unlink()
