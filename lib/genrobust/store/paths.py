"""Project root, runs/, cache/, results/<profile>/ (each redirectable by $GENROBUST_*); outside a checkout, your own
model's outputs under the current directory (output_root)

Where things live: the project checkout, runs/ (checkpoints, units), cache/ (decoded data, features) and
results/<profile>/ (executed notebooks, metrics JSON, figures). Each honours an environment variable so tests and
clusters can redirect it: ``GENROBUST_ROOT`` (the checkout), ``GENROBUST_RUNS``, ``GENROBUST_CACHE``,
``GENROBUST_RESULTS`` (and ``GENROBUST_DATA``, where CIFAR-10 is: genrobust.data.sources). An evaluation of a
user's own model run outside the checkout writes under the current directory instead (:func:`output_root`,
:func:`outputs_under`)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

_MARK = 'name = "genrobust"'


def checkout_of(start: str | os.PathLike | None = None) -> Path | None:
    """The genrobust checkout that ``start`` (default cwd) lies in: the nearest parent whose pyproject.toml names
    the genrobust project, or None (walking up from ``start`` only, never from where the package is installed)."""
    here = Path(start or os.getcwd()).resolve()
    for candidate in [here, *here.parents]:
        pp = candidate / "pyproject.toml"
        if pp.is_file() and _MARK in pp.read_text(errors="ignore"):
            return candidate
    return None


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The genrobust checkout: ``$GENROBUST_ROOT``, else the nearest parent of ``start`` (default cwd) whose
    pyproject.toml names the genrobust project, else the checkout this package was installed from, else cwd."""
    if os.environ.get("GENROBUST_ROOT"):
        return Path(os.environ["GENROBUST_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    return checkout_of(here) or checkout_of(Path(__file__).parent) or here


def runs_dir() -> Path:
    """Checkpoints and per-run logs (ignored by git): ``$GENROBUST_RUNS`` or <root>/runs."""
    return Path(os.environ.get("GENROBUST_RUNS") or project_root() / "runs")


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Decoded data and feature statistics (ignored by git): ``$GENROBUST_CACHE`` or <root>/cache (``root``
    defaults to :func:`project_root`)."""
    env = os.environ.get("GENROBUST_CACHE")
    return Path(env).expanduser().resolve() if env else Path(root or project_root()) / "cache"


def results_dir(profile: str) -> Path:
    """Executed notebooks, metrics JSON and figures of a profile (committed for real runs)."""
    return Path(os.environ.get("GENROBUST_RESULTS") or project_root() / "results") / profile



def output_root(out_dir: str | os.PathLike | None = None) -> Path:
    """Where an evaluation of your own model keeps its runs/, cache/ and record: ``out_dir`` when given; else the
    checkout when the current directory is inside one (or ``$GENROBUST_ROOT`` is set); else the current directory
    -- never the checkout the package happens to be installed from."""
    if out_dir is not None:
        return Path(out_dir).expanduser().resolve()
    if os.environ.get("GENROBUST_ROOT"):
        return project_root()
    return checkout_of() or Path.cwd().resolve()


@contextlib.contextmanager
def outputs_under(root: str | os.PathLike):
    """runs/ and cache/ under ``root`` for the duration (GENROBUST_RUNS / GENROBUST_CACHE set in this process's
    environment, which job subprocesses inherit); a variable the user set already is kept."""
    root = Path(root)
    saved = {k: os.environ.get(k) for k in ("GENROBUST_RUNS", "GENROBUST_CACHE")}
    os.environ["GENROBUST_RUNS"] = saved["GENROBUST_RUNS"] or str(root / "runs")
    os.environ["GENROBUST_CACHE"] = saved["GENROBUST_CACHE"] or str(root / "cache")
    try:
        yield root
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
