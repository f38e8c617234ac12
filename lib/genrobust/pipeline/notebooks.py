"""Notebooks through papermill: execute one into results/<profile>/ (atomically; skipped when already run with the
same parameters), or all of them in order (:func:`reproduce`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..core.config import get_profile
from ..store.executors import RunError
from ..store.io import read_json, write_json
from ..store.paths import project_root, results_dir
from ..store.provenance import provenance
from .params import NOTEBOOK_PARAMETERS

NOTEBOOKS = tuple(NOTEBOOK_PARAMETERS)
# Reads the other notebooks' metrics files (seconds): always re-executed by `reproduce`, so it is never stale.
REPORT_NOTEBOOK = "06_report"


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
    import papermill as pm  # heavy import (nbconvert, jupyter_client): only when a notebook is run
    return set(pm.inspect_notebook(str(notebook_path(name))))


def _check_parameters(name: str, params: dict) -> None:
    # papermill would inject an unknown name as a new variable that nothing reads: a typo must fail instead
    declared = notebook_parameters(name)
    unknown = sorted(set(params) - declared)
    if unknown:
        raise RunError(f"{notebook_path(name).name}: unknown parameter(s) {unknown}; it takes {sorted(declared)}")


def _ipc_kernel_manager():
    """A kernel manager that talks to the kernel over IPC (unix sockets) instead of TCP: the kernel always runs on
    this machine, and over TCP ipykernel prints on every start a warning that the channel is unencrypted."""
    from jupyter_client.manager import KernelManager  # with papermill: imported only when a notebook runs

    class IPCKernelManager(KernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"
    return IPCKernelManager


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
                            progress_bar=False, log_output=False, kernel_manager_class=_ipc_kernel_manager())
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
