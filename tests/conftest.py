"""Shared fixtures. Tests run torch single-threaded (stable timings on a shared 2-core machine) and write runs,
results and caches into temporary directories so they never touch a user's runs/ or results/."""
import contextlib
import fcntl
import os
import shutil
from pathlib import Path

import pytest
import torch

from genrobust.core.config import get_profile
from genrobust.data import prepare_data
from genrobust.pipeline.classifiers import ensure_classifiers, train_all
from genrobust.store.executors import JobSettings
from genrobust.training.calibrate import calibrate

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REAL_ZIP = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.zip").resolve()


@pytest.fixture(scope="session")
def real_zip() -> Path:
    """The CIFAR-10 JPEG copy beside the project (../shared/data/cifar10-jpeg.zip); a test that needs it is skipped
    without it, saying so."""
    if not REAL_ZIP.is_file():
        pytest.skip(f"{REAL_ZIP} not present: the real data (../shared/data/README.md)")
    return REAL_ZIP


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def trained_smoke_runs(tmp_path_factory) -> Path:
    """runs/ holding the smoke profile's d_k, softmax baseline and calibration, trained inline once per test run:
    by whichever of the xdist workers asks first (a file lock on a folder this run's workers share: the basetemp's
    parent); the others wait for it. Callers copy it (a test writes into its own runs/)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-smoke"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "done").is_file():
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("GENROBUST_RUNS", str(shared / "runs"))
                mp.setenv("GENROBUST_RESULTS", str(shared / "results"))
                cfg = get_profile("smoke")
                train_all(cfg, softmax=True, jobs=JobSettings("inline"), progress=False)
                calibrate(cfg, prepare_data(cfg.data, progress=False), progress=False)
            (shared / "done").touch()
    return shared / "runs"


@contextlib.contextmanager
def smoke_classifiers(tmp_path_factory, name: str):
    """The smoke profile's calibrated generative classifier and softmax baseline in a temporary runs/ (a copy of
    trained_smoke_runs) and an empty results/ (for module-scoped fixtures, which cannot take monkeypatch). Yields
    (cfg, data, paths, tmp)."""
    with pytest.MonkeyPatch.context() as mp:
        tmp = tmp_path_factory.mktemp(name)
        shutil.copytree(trained_smoke_runs(tmp_path_factory), tmp / "runs")
        mp.setenv("GENROBUST_RUNS", str(tmp / "runs"))
        mp.setenv("GENROBUST_RESULTS", str(tmp / "results"))
        cfg = get_profile("smoke")
        data = prepare_data(cfg.data, progress=False)
        yield cfg, data, ensure_classifiers(cfg, data=data, train_missing=False), tmp


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch):
    """Isolated runs/ and results/ directories for tests that train."""
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    return tmp_path



# The longest units of `make test` (measured: `pytest --durations`, 2026-12-06), started first so that short ones
# fill the end instead of one long test running alone on one worker; the others follow in collection order.
LONG_FIRST = ("notebooks", "tests/test_gpu_run.py", "tests/test_accuracy.py", "tests/test_units.py",
              "tests/test_own_model.py", "tests/test_released.py", "tests/test_pipeline.py")


def _work_unit(nodeid: str) -> str:
    """The unit one worker runs whole: all notebooks (in order), or one test file."""
    path = nodeid.split("::", 1)[0]
    return "notebooks" if path.endswith(".ipynb") else path


def pytest_collection_modifyitems(config, items):
    """Collection order = the order workers are given work (LONG_FIRST, then as collected); order within a unit kept."""
    rank = {u: i for i, u in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(_work_unit(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test`'s two workers (pytest-xdist): the notebooks are one unit of work, run in order on one worker,
    since 02-06 reuse what 01 trained in the same runs/ (two workers would train one run twice at once); each test
    file is one unit, so that a module-scoped fixture (a smoke training) is built once. (xdist's own --dist
    loadgroup marks do not reach the scheduler under pytest 9: it sets a private node id.)"""
    from xdist.scheduler import LoadScopeScheduling  # optional third-party: only here when xdist runs

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the collection's order (LONG_FIRST), not "most tests first"
    return NotebooksTogether(config, log)
