"""Where things live: the project checkout, runs/ (checkpoints, units), cache/ (decoded data, features) and
results/<profile>/ (executed notebooks, metrics JSON, figures). Each honours an environment variable so tests and
clusters can redirect it."""
from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The genrobust checkout: ``$GENROBUST_ROOT``, else the nearest parent of ``start`` (default cwd) whose
    pyproject.toml names the genrobust project, else the checkout this package was installed from, else cwd."""
    if os.environ.get("GENROBUST_ROOT"):
        return Path(os.environ["GENROBUST_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for candidate in [here, *here.parents, *Path(__file__).resolve().parents]:
        pp = candidate / "pyproject.toml"
        if pp.is_file() and 'name = "genrobust"' in pp.read_text(errors="ignore"):
            return candidate
    return here


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

