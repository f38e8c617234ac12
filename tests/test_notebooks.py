"""The notebooks are jupytext pairs (jupytext.toml): notebooks/NN_name.py (percent format, what people edit and
review) and notebooks/NN_name.ipynb (what papermill, nbval and JupyterLab run, committed without outputs).

These tests fail when a pair has drifted apart (cells, sources or tags differ), when one side of a pair is missing,
when a committed .ipynb carries outputs, or when papermill could not find a notebook's parameters. The fix for a
drifted pair: make sync-notebooks (jupytext --sync notebooks/*.py), which takes the newer side of each pair.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SYNC = "run `make sync-notebooks` (jupytext --sync notebooks/*.py)"
STEMS = sorted({p.stem for p in NOTEBOOKS.glob("*.ipynb")} | {p.stem for p in NOTEBOOKS.glob("*.py")})


def _cells(nb) -> list[tuple[str, str, list]]:
    """What a pair must agree on, per cell: type, source and tags (papermill's `parameters` among them)."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_notebooks():
    assert len(STEMS) >= 6, f"expected notebooks 01-06 in {NOTEBOOKS}, found {STEMS}"


@pytest.mark.parametrize("stem", STEMS)
def test_pair_exists(stem):
    missing = [f"{stem}{ext}" for ext in (".py", ".ipynb") if not (NOTEBOOKS / f"{stem}{ext}").is_file()]
    assert not missing, f"notebooks/{stem}: {missing} missing; a notebook is a .py + .ipynb pair: {SYNC}"


@pytest.mark.parametrize("stem", STEMS)
def test_pair_has_the_same_cells(stem):
    py, ipynb = NOTEBOOKS / f"{stem}.py", NOTEBOOKS / f"{stem}.ipynb"
    if not (py.is_file() and ipynb.is_file()):
        pytest.skip("one side of the pair is missing (test_pair_exists fails)")
    text = _cells(jupytext.read(py, fmt="py:percent"))
    nb = _cells(nbformat.read(ipynb, as_version=4))
    for i, (a, b) in enumerate(zip(text, nb)):
        assert a == b, (f"notebooks/{stem}: cell {i} differs between the .py and the .ipynb:\n"
                        f"  .py:    {a!r:.300}\n  .ipynb: {b!r:.300}\n{SYNC}")
    assert len(text) == len(nb), f"notebooks/{stem}: {len(text)} cells in the .py, {len(nb)} in the .ipynb; {SYNC}"


@pytest.mark.parametrize("stem", STEMS)
def test_committed_notebook_is_clean_and_parametrized(stem):
    ipynb = NOTEBOOKS / f"{stem}.ipynb"
    if not ipynb.is_file():
        pytest.skip("no .ipynb (test_pair_exists fails)")
    nb = nbformat.read(ipynb, as_version=4)
    nbformat.validate(nb)
    run = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not run, (f"notebooks/{stem}.ipynb has outputs in cells {run}; executed copies belong in results/ "
                     f"(clear them: jupyter nbconvert --clear-output --inplace notebooks/{stem}.ipynb)")
    # papermill injects overrides after the cell tagged `parameters` and needs a kernel name to execute
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"notebooks/{stem}: the `parameters` tag must be on the first code cell only, is on {tagged}"
    assert nb.metadata.get("kernelspec", {}).get("name"), f"notebooks/{stem}.ipynb has no kernelspec (papermill)"


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed (pip install -e '.[test]')")
def test_notebook_code_lints():
    """Pyflakes-level checks (undefined names, redefinitions; the rules: notebooks/ruff.toml) of the cell code."""
    paths = sorted(str(p) for p in NOTEBOOKS.glob("*.py"))
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *paths],
                       capture_output=True, text=True, timeout=120, cwd=NOTEBOOKS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
