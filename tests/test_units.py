"""Evaluation as units (genrobust.measure.accuracy units, genrobust.store.units, genrobust.pipeline.evaluation):
sharded == unsharded == in memory, a corrupt unit is recomputed, and an evaluation killed with SIGKILL resumes to
the same records as an uninterrupted one."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genrobust.core.config import EvalConfig, apply_overrides, budget_values, get_profile
from genrobust.core.models import GenerativeClassifier, create_model
from genrobust.core.upgrade import unit_key_before_budgets
from genrobust.measure import accuracy as E
from genrobust.store.units import UnitStore, UnitWarning
from conftest import trained_smoke_runs

TIMING = ("time_s", "wall_time_s")


def _strip(rec: dict) -> dict:
    """A record without its timings (they differ between any two runs)."""
    out = {k: v for k, v in rec.items() if k not in TIMING}
    out["runs"] = [{k: v for k, v in r.items() if k not in TIMING} for r in rec["runs"]]
    return out


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    gen = GenerativeClassifier([create_model("small_cnn", 1, 0.5) for _ in range(10)]).eval()
    x = torch.rand(30, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = gen(x).argmax(1)
    y[::4] = (y[::4] + 1) % 10  # some clean-wrong examples: not attacked
    return gen, x, y


def _ecfg(**kw):
    base = dict(eps_grid=(0.0, 0.05), n_test=30, n_strong=20, steps=3, restarts=2, strong_eps=0.05,
                strong_attacks=("apgd-ce", "multi_targeted"), budgets=(("apgd_iters", 3),), batch_size=8,
                shard_batches=1)
    return EvalConfig(**{**base, **kw})


def _context(tmp_path, name):
    return E.UnitContext(UnitStore(tmp_path / name), "digest", {"data": "test", "split": {}, "seed": 0})


@pytest.mark.slow
def test_sharded_equals_unsharded_and_in_memory(small, tmp_path):
    gen, x, y = small
    sharded = E.evaluate_classifier(gen, x, y, _ecfg(), kind="generative", progress=False,
                                    units=_context(tmp_path, "a"))
    one = E.evaluate_classifier(gen, x, y, _ecfg(shard_batches=100), kind="generative", progress=False,
                                units=_context(tmp_path, "b"))
    memory = E.evaluate_classifier(gen, x, y, _ecfg(), kind="generative", progress=False)
    assert len(list((tmp_path / "a").glob("*.json"))) > len(list((tmp_path / "b").glob("*.json")))
    assert _strip(sharded) == _strip(memory)
    # the shard size is not part of a run's numbers: only the unit files differ
    assert [r["robust"] for r in sharded["runs"]] == [r["robust"] for r in one["runs"]]
    assert [r["n_attacked"] for r in sharded["runs"]] == [r["n_attacked"] for r in one["runs"]]
    assert any(r["restarts"] == 2 for r in sharded["runs"])  # random starts are covered: seeds are per chunk
    # a second evaluation reads every unit and recomputes nothing
    again = E.evaluate_classifier(gen, x, y, _ecfg(), kind="generative", progress=False,
                                  units=_context(tmp_path, "a"))
    assert [r["time_s"] for r in again["runs"]] == [r["time_s"] for r in sharded["runs"]]


def test_first_chunk_draws_what_the_runs_own_seed_draws(small):
    # chunk 0 uses the run's seed: an evaluation of at most one batch is the pre-units computation (one
    # generator seeded run.seed over all clean-correct examples)
    gen, x, y = small
    e = _ecfg(batch_size=64)
    work, clean = E.prepare_attacks(gen, x, y, e)
    run = E.AttackRun("eq11_12", 0.05, 30, "paper", steps=3, restarts=2, seed=5)
    idx = clean.nonzero(as_tuple=True)[0]
    x_adv = E.run_attack(work, x[idx], y[idx], run, ecfg=e, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        old = torch.zeros(30, dtype=torch.bool)
        old[idx] = work(x_adv).argmax(1) == y[idx]
    assert E.attack_unit(work, x, y, clean, run, 0, 30, ecfg=e)["robust"] == E.flags_to_str(old)
    assert E.chunk_seed(5, 0) == 5 and len({E.chunk_seed(s, c) for s in range(3) for c in range(3)}) == 9


@pytest.mark.slow
def test_corrupt_or_truncated_unit_is_reported_and_recomputed(small, tmp_path):
    gen, x, y = small
    ctx = _context(tmp_path, "c")
    first = E.evaluate_classifier(gen, x, y, _ecfg(), kind="generative", progress=False, units=ctx)
    victim = sorted((tmp_path / "c").glob("*.json"))[0]
    victim.write_text(victim.read_text()[:40])  # truncated mid-write by hand
    other = sorted((tmp_path / "c").glob("*.json"))[1]
    rec = json.loads(other.read_text())
    rec["result"]["robust"] = rec["result"]["robust"].replace("0", "1")  # edited: checksum no longer matches
    other.write_text(json.dumps(rec))
    with pytest.warns(UnitWarning, match="corrupt") as caught:
        again = E.evaluate_classifier(gen, x, y, _ecfg(), kind="generative", progress=False, units=ctx)
    assert all("\n" not in str(w.message) for w in caught) and len(caught) == 2
    assert [r["robust"] for r in again["runs"]] == [r["robust"] for r in first["runs"]]
    assert victim.is_file() and json.loads(victim.read_text())["result"]


# ----------------------------------------------------------------------------------------------------------------
# `genrobust evaluate` on the smoke profile: killed with SIGKILL mid-way, run again -> the same records as an
# uninterrupted run (both from the same trained classifiers).
SMOKE = {"eval.batch_size": 10, "eval.eps_grid": [0.0, 0.5], "eval.strong_attacks": ["apgd-ce", "multi_targeted"],
         "eval.n_test": 40, "eval.n_strong": 20, "eval.units_per_job": 2}


def _cli(runs: Path, out: Path | None, tmp_path: Path) -> list[str]:
    args = [sys.executable, "-m", "genrobust", "evaluate", "--profile", "smoke", "--executor", "inline"]
    for k, v in SMOKE.items():
        args += ["-p", k, json.dumps(v)]
    return args + (["--out", str(out)] if out else [])


def _env(runs: Path, tmp_path: Path) -> dict:
    return {**os.environ, "GENROBUST_RUNS": str(runs), "GENROBUST_CACHE": str(tmp_path / "cache"),
            "GENROBUST_RESULTS": str(tmp_path / "results")}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """runs/ with the smoke profile's classifiers trained and calibrated (each test copies it)."""
    return trained_smoke_runs(tmp_path_factory)


def _kill_when(proc, folder: Path, pattern: str, count: int, timeout: float = 300) -> int:
    """SIGKILL ``proc`` once ``count`` files match ``pattern`` under ``folder``; returns how many there were."""
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(folder.rglob(pattern))) < count and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(folder.rglob(pattern)))


@pytest.mark.slow
def test_killed_evaluation_resumes_to_the_uninterrupted_records(tmp_path, smoke_runs):
    a, b = tmp_path / "runs_a", tmp_path / "runs_b"
    shutil.copytree(smoke_runs, a)
    shutil.copytree(smoke_runs, b)
    done = subprocess.run(_cli(a, tmp_path / "a.json", tmp_path), env=_env(a, tmp_path), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "units," in done.stdout and "to run" in done.stdout and "estimated attack time" in done.stdout
    n_units = len(list((a / "eval").rglob("*.json")))

    proc = subprocess.Popen(_cli(b, None, tmp_path), env=_env(b, tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kept = _kill_when(proc, b / "eval", "*.json", max(2, n_units // 3))
    assert 2 <= kept < n_units, (kept, n_units)  # killed part-way, with some units on disk
    assert not list((b / "eval").rglob("*.tmp"))  # nothing half-written under a unit's name
    resumed = subprocess.run(_cli(b, tmp_path / "b.json", tmp_path), env=_env(b, tmp_path), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sum(int(n) for n in re.findall(r"(\d+) done", resumed.stdout)) == kept  # said before it started
    ra, rb = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    for kind in ra["classifiers"]:
        same = [_strip({k: v for k, v in r["classifiers"][kind].items() if k != "checkpoint"}) for r in (ra, rb)]
        assert same[0] == same[1], kind
    assert ra["checks"] == rb["checks"]


# Notebook 04's generation, killed with SIGKILL mid-way and run again: the same images and checks.
GENERATE = """
import hashlib, json, sys
from genrobust.core.config import apply_overrides, get_profile
from genrobust.data import prepare_data
from genrobust.pipeline.classifiers import ensure_classifiers
from genrobust.pipeline.generation import generate
cfg = apply_overrides(get_profile("smoke"), {"gen.batch_size": 4, "gen.n_samples": 16, "executor": "inline"})
data = prepare_data(cfg.data, progress=False)
out = generate(cfg, data, ensure_classifiers(cfg, ("generative", "softmax"), data, train_missing=False),
               progress=False)
digest = {"/".join(map(str, k)): hashlib.sha256(x.numpy().tobytes()).hexdigest() for k, x in out.images.items()}
if len(sys.argv) > 1:
    open(sys.argv[1], "w").write(json.dumps({"images": digest, "checks": out.checks}, sort_keys=True))
"""


@pytest.mark.slow
def test_killed_generation_resumes_to_the_uninterrupted_images(tmp_path, smoke_runs):
    a, b = tmp_path / "runs_a", tmp_path / "runs_b"
    shutil.copytree(smoke_runs, a)
    shutil.copytree(smoke_runs, b)
    done = subprocess.run([sys.executable, "-c", GENERATE, str(tmp_path / "a.json")], env=_env(a, tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "to run" in done.stdout and "min of targeted PGD" in done.stdout and "Inception at" in done.stdout
    n_units = len(list((a / "generate").glob("*.json")))
    proc = subprocess.Popen([sys.executable, "-c", GENERATE], env=_env(b, tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kept = _kill_when(proc, b / "generate", "*.json", max(2, n_units // 3))
    assert 2 <= kept < n_units, (kept, n_units)
    resumed = subprocess.run([sys.executable, "-c", GENERATE, str(tmp_path / "b.json")], env=_env(b, tmp_path),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{kept} done" in resumed.stdout
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())


def test_autoattack_units_under_their_legacy_key_are_reused_not_recomputed(tmp_path):
    """AutoAttack's unit keys now hold the attack's own budgets; a unit stored under the key it had before (all
    four AutoAttack budgets, under the same eval config) is the same computation: read, and kept under the new key.
    Other budgets or other attacks do not match."""
    ecfg = _ecfg(strong_attacks=("apgd-ce", "square", "multi_targeted"))
    ctx = _context(tmp_path, "legacy")
    runs = {r.attack: r for r in E.plan_runs("generative", ecfg, 20) if r.role == "strong"}
    key = ctx.key("generative", runs["apgd-ce"], 0, 8, ecfg)
    old = unit_key_before_budgets(key, budget_values(ecfg))
    assert key["budgets"] == {"apgd_iters": 3}
    assert old["budgets"] == {"apgd_iters": 3, "targets": 9, "fab_iters": 100, "square_queries": 5000}
    marker = {"robust": "10" * 4, "n_attacked": 8, "time_s": 1.0, "max_perturbation": 0.0, "warnings": ["legacy"]}
    ctx.store.put(old, marker)
    assert ctx.lookup("generative", runs["apgd-ce"], 0, 8, ecfg) == marker and key in ctx.store
    # negative controls: a legacy unit of other budgets, and attacks whose keys did not change
    other = _ecfg(strong_attacks=("apgd-ce", "square", "multi_targeted"), budgets=(("apgd_iters", 3),
                                                                                   ("square_queries", 7)))
    sq = ctx.key("generative", runs["square"], 0, 8, ecfg)
    ctx.store.put(unit_key_before_budgets(sq, budget_values(other)), marker)
    assert ctx.lookup("generative", runs["square"], 0, 8, ecfg) is None
    mt = ctx.key("generative", runs["multi_targeted"], 0, 8, ecfg)
    assert unit_key_before_budgets(mt, budget_values(ecfg)) is None
