"""Shared fixtures. Tests run torch single-threaded (stable timings on a shared 2-core machine) and write runs,
results and caches into temporary directories so they never touch a user's runs/ or results/."""
import os

import pytest
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch):
    """Isolated runs/ and results/ directories for tests that train."""
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    return tmp_path
