"""Released models (results/<profile>/models/) and evaluating your own model (`genrobust evaluate --model`,
genrobust.evaluate_model), on the smoke profile's classifiers trained once for this module."""
from __future__ import annotations

import json
import re
import shutil
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genrobust import cli
from genrobust.core.config import apply_overrides, get_profile, replace, to_dict
from genrobust.core.models import CIFAR10_MEAN, CIFAR10_STD, ModelError, create_model
from genrobust.measure import accuracy as E
from genrobust.measure.record import EvalRecord
from conftest import smoke_classifiers
from genrobust.pipeline import own_checks, own_units
from genrobust.pipeline.classifiers import ensure_classifiers, release
from genrobust.pipeline.own_checks import INPUT_RANGES, PROBE_IMAGES, InputRange, check_model, import_model
from genrobust.pipeline.own_cost import WallLedger
from genrobust.pipeline.own_model import evaluate_model
from genrobust.reporting.own_table import own_model_table, render
from genrobust.store.checkpoints import load_classifier, read_checkpoint, weights_digest
from genrobust.store.executors import RunError
from genrobust.store.io import ResultsError, read_json
from genrobust.store.released import models_dir

# small evaluation: every attack of notebook 03 still runs, on fewer images
EVAL = {"eval.n_test": 40, "eval.n_strong": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke profile's classifiers, trained and released in a temporary runs/ and results/."""
    with smoke_classifiers(tmp_path_factory, "released") as (cfg, data, paths, tmp):
        listed = release(cfg, data)
        yield cfg, data, paths, listed, tmp


@pytest.fixture
def fresh_clone(trained, tmp_path, monkeypatch):
    """Only results/smoke/models/ of the trained module, in an empty runs/ and results/ (as a fresh clone has)."""
    cfg, data, paths, listed, _ = trained
    dst = tmp_path / "results" / "smoke" / "models"
    shutil.copytree(listed.parent, dst)
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    return dst


@pytest.mark.slow
def test_released_files_are_the_evaluated_models(trained):
    cfg, data, paths, listed, _ = trained
    meta = read_json(listed)
    assert set(meta["files"]) == {"generative.safetensors", "softmax.safetensors"}
    x, _ = E.evaluation_set(data, cfg.eval)
    for kind, ckpt in paths.items():
        rel = listed.parent / f"{kind}.safetensors"
        entry = meta["files"][rel.name]
        # the digest the results files record (weights_digest of the training checkpoint) is the released one
        assert entry["weights_digest"] == weights_digest(ckpt) == weights_digest(rel)
        assert entry["kind"] == kind and entry["parameters"] > 0
        with torch.no_grad():
            assert torch.equal(load_classifier(rel)(x[:8]), load_classifier(ckpt)(x[:8]))
    card = (listed.parent / "MODEL_CARD.md").read_text()
    assert all(e["weights_digest"] in card for e in meta["files"].values()) and "MIT" in card


def test_a_fresh_clone_loads_the_released_models_without_runs(fresh_clone):
    cfg = get_profile("smoke")
    paths = ensure_classifiers(cfg, train_missing=False, from_released=True)
    assert {k: p.endswith(".safetensors") for k, p in paths.items()} == {"generative": True, "softmax": True}
    assert load_classifier(paths["generative"])(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(Exception, match="missing"):  # negative control: without --from-released nothing is there
        ensure_classifiers(cfg, train_missing=False)


def test_an_altered_released_file_is_refused(fresh_clone):
    path = fresh_clone / "softmax.safetensors"
    read_checkpoint(path)  # negative control: untouched, it loads
    flat = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    name = next(n for n, t in flat.items() if t.is_floating_point())
    flat[name] = flat[name].clone()
    flat[name].view(-1)[0] += 1e-3  # one weight changed, metadata (and its digest) kept
    save_file(flat, str(path), metadata=meta)
    with pytest.raises(ResultsError, match="digest .* differs .* damaged or altered") as e:
        load_classifier(path)
    assert "\n" not in str(e.value)


def test_models_json_disagreeing_with_a_file_is_refused(fresh_clone):
    listed = fresh_clone / "models.json"
    meta = read_json(listed)
    meta["files"]["generative.safetensors"]["weights_digest"] = "0" * 16
    listed.write_text(json.dumps(meta))
    with pytest.raises(ResultsError, match="differs from the recorded"):
        load_classifier(fresh_clone / "generative.safetensors")
    load_classifier(fresh_clone / "softmax.safetensors")  # negative control: its entry is intact


def test_not_a_released_file_is_one_line(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ResultsError, match="not a readable released model") as e:
        load_classifier(bad)
    assert "\n" not in str(e.value)
    other = tmp_path / "y.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ResultsError, match="not a genrobust released model"):
        load_classifier(other)


def test_release_is_idempotent_and_records_accuracy(trained):
    cfg, data, paths, listed, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in listed.parent.glob("*.safetensors")}
    rec = {"classifier": "softmax", "n": 10, "clean": {"robust": "1" * 5 + "0" * 5, "accuracy": 0.5}, "runs": []}
    release(cfg, data, {"softmax": paths["softmax"]}, {"softmax": rec})
    after = {p.name: p.stat().st_mtime_ns for p in listed.parent.glob("*.safetensors")}
    assert before == after  # same weights: the files are kept
    meta = read_json(listed)
    assert meta["files"]["softmax.safetensors"]["accuracy"]["clean"] == {"accuracy": 0.5, "n": 10,
                                                                          "attacks": "clean"}
    assert "generative.safetensors" in meta["files"]  # an entry not re-released stays


def test_reproduce_from_released_refuses_training_notebooks(trained, capsys):
    assert cli.main(["reproduce", "--profile", "smoke", "--from-released", "--notebooks", "01_training"]) == 2
    err = capsys.readouterr().err.strip()
    assert "01_training" in err and "without --from-released" in err and "\n" not in err


# ----------------------------------------------------------------------------------------------------------------
# Your own model
def _write_factory(tmp_path, body: str) -> str:
    f = tmp_path / "mymodels.py"
    f.write_text("import torch\nimport genrobust\n" + body)
    return str(f)


@pytest.mark.parametrize("spec_body, needle", [
    (None, "needs MODULE:FACTORY"),
    ("", "has no attribute 'build'"),
    ("build = 3\n", "not callable"),
    ("def build():\n    raise RuntimeError('no weights here')\n", "calling .* failed .*no weights here"),
    ("def build():\n    return [1, 2]\n", "returned a list, not a torch.nn.Module"),
    ("import not_a_module_anywhere\n", "cannot import .*PYTHONPATH"),
])
def test_bad_factories_are_one_line(tmp_path, spec_body, needle):
    spec = "mymodels" if spec_body is None else _write_factory(tmp_path, spec_body) + ":build"
    with pytest.raises(ModelError, match=needle) as e:
        import_model(spec)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="cannot import 'no_such_pkg.mod'"):
        import_model("no_such_pkg.mod:build")


def test_wrong_outputs_are_one_line(trained):
    cfg, data, *_ = trained
    x, y = E.evaluation_set(data, cfg.eval)
    with pytest.raises(ModelError, match=r"returned \(40, 1\) .* \(40, 10\) logits"):
        check_model(create_model("small_cnn", 1, 0.5).eval(), x[:40], y[:40])
    nan = create_model("small_cnn", 10, 0.5).eval()
    with torch.no_grad():
        for p in nan.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ModelError, match="non-finite logits"):
        check_model(nan, x[:40], y[:40])


class _Expects(torch.nn.Module):
    """Our [0, 1] model behind the inverse of a convention: a model that expects ``name``'s inputs."""

    def __init__(self, model, name):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        back = {"cifar-meanstd": lambda z: z * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
                + torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1),
                "neg1-1": lambda z: (z + 1) / 2, "0-255": lambda z: z / 255}[self.name]
        return self.model(back(x))


@pytest.mark.parametrize("name", ["cifar-meanstd", "neg1-1", "0-255"])
def test_a_model_expecting_another_input_range_is_refused(trained, name):
    cfg, data, paths, *_ = trained
    x, y = E.evaluation_set(data, replace(cfg.eval, n_test=PROBE_IMAGES))
    assert len(y) >= PROBE_IMAGES == 200
    ours = load_classifier(paths["softmax"])
    probe = check_model(ours, x, y)  # negative control: normalization inside, [0, 1] inputs: passes
    assert probe["clear_winner"] is None and probe["accuracy"]["0-1"] > 0.5 and probe["n"] == 200
    theirs = _Expects(ours, name).eval()
    with pytest.raises(ModelError, match=rf"expects {re.escape(INPUT_RANGES[name])} inputs.*"
                                         rf"--assume-input-range {name}") as e:
        check_model(theirs, x, y)
    assert "\n" not in str(e.value)
    # --assume-input-range overrides: the converted model is the one we checked first, the check passes
    fixed = check_model(InputRange(theirs, name), x, y, assumed=name)
    assert fixed["accuracy"]["0-1"] == probe["accuracy"]["0-1"] and fixed["assumed"] == name


@pytest.mark.slow
def test_evaluate_model_end_to_end_matches_notebook_03(fresh_clone, tmp_path):
    """Our own softmax baseline given as 'your model' (a file:factory) gets exactly the per-example results notebook
    03's evaluation gives it (zero discordant pairs), and a different model is compared on the same images."""
    cfg = apply_overrides(get_profile("smoke"), EVAL)
    spec = _write_factory(tmp_path, f"def build():\n    return genrobust.load_classifier({str(fresh_clone / 'softmax.safetensors')!r})\n")
    rec = evaluate_model(spec + ":build", cfg, from_released=True, out=tmp_path / "ev.json", progress=False,
                         workers=1, echo=lambda s: None)
    saved = read_json(tmp_path / "ev.json")
    assert saved["yours"]["weights_digest"] == rec["yours"]["weights_digest"]
    same = [t for t in rec["comparison"] if t["comparison"] == "yours vs softmax"]
    assert same and all(t["n_first"] == 0 and t["n_second"] == 0 for t in same)
    assert any(t["eps"] > 0 and "apgd-ce" in t["attacks"] for t in same)  # attacked, under the same attack set
    gen = [t for t in rec["comparison"] if t["comparison"] == "yours vs generative"]
    assert gen and all("eq11_12" not in t["attacks"] for t in gen)  # only attacks both faced
    eps = EvalRecord.from_dict(rec["yours"]).eps_values()
    assert len(rec["per_class"]) == 10 * len(eps)
    assert sum(r["n"] for r in rec["per_class"] if r["eps"] == 0) == cfg.eval.n_test
    assert {c["classifier"] for c in rec["checks"]} == {"yours"}
    # the table: one clean row, the paper's attack at each eps over n_test, the worst case, ours on the same images
    table = own_model_table(rec)
    yours = table[table["model"] == "yours"]
    assert (table["attack"] == "clean").sum() == 1 + 2  # yours once, and each of ours once (as comparisons)
    paper = yours[yours["attack"].str.contains("the paper's attack")]
    assert sorted(paper["eps"]) == [e for e in cfg.eval.eps_grid if e > 0] and set(paper["n"]) == {cfg.eval.n_test}
    worst = yours[yours["attack"].str.startswith("worst case")]
    assert list(worst["eps"]) == sorted({cfg.eval.strong_eps, *cfg.eval.strong_eps_more})
    ours = table[table["model"] == "ours: softmax"]
    assert len(ours) and all(v.startswith("+0.0 points") for v in ours["yours - ours"])  # the same model
    # the record describes the evaluated model, not our training config; wall time of its one leg
    m = rec["model"]
    assert m["parameters"] == sum(p.numel() for p in load_classifier(fresh_clone / "softmax.safetensors").parameters())
    assert m["weights_digest"] == rec["yours"]["weights_digest"] and m["class"].endswith("Classifier") is False
    assert set(rec["provenance"]["config"]) == {"budget", "parameters", "eval", "data", "compared_with"}
    assert len(rec["legs"]) == 1 and rec["wall_time_s"] == rec["legs"][0]["seconds"] > 0


def _small_cnn_factory(tmp_path, seeded: bool = True) -> str:
    return _write_factory(tmp_path, "def build():\n" + ("    torch.manual_seed(0)\n" if seeded else "")
                          + "    return genrobust.models.create_model('small_cnn', 10, 0.5)\n") + ":build"


QUICK_SMALL = {"n_test": 40, "n_strong": 16}


def test_cli_quick_budget_prints_the_estimate_first_and_a_markdown_table(fresh_clone, tmp_path, capsys):
    out = tmp_path / "cli.json"
    code = cli.main(["evaluate", "--profile", "smoke", "--model", _small_cnn_factory(tmp_path), "--budget", "quick",
                     "-p", "n_test", "40", "-p", "n_strong", "16", "--out", str(out), "--format", "markdown",
                     "--workers", "1"])
    captured = capsys.readouterr()
    text, err = captured.out, captured.err
    assert code == 0 and str(out) in text
    # the estimate and the budget come before the progress bar, which counts image-steps and the time left
    assert err.index("budget quick:") < err.index("cost estimate:") < err.index("yours: attacks")
    assert re.search(r"ms per image-step .* image-steps .* on 1 worker", err) and "left" in err
    # stdout: the caption, then a markdown table that pastes (every row has the header's columns)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[1].startswith("|---") and len({line.count("|") for line in table}) == 1
    assert sum(" | clean | " in line for line in table) == 1
    # ours are not trained in this runs/: the note names --from-released
    assert "not compared" in text and "--from-released" in text and "train_missing" not in text
    rec = read_json(out)
    assert rec["budget"]["name"] == "quick" and rec["budget"]["parameters"] == QUICK_SMALL
    assert rec["eval"]["strong_attacks"] == ["apgd-ce", "apgd-t"] and rec["yours"]["n"] == 40
    assert cli.main(["evaluate", "--profile", "smoke", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "MODULE:FACTORY" in err and "\n" not in err
    with pytest.raises(SystemExit):  # argparse: not a registered budget
        cli.main(["evaluate", "--profile", "smoke", "--budget", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def _ours_factory(tmp_path, released) -> str:
    return _write_factory(tmp_path, f"def build():\n    return genrobust.load_classifier({str(released)!r})\n") + ":build"


@pytest.mark.slow
def test_workers_fan_the_units_out_and_give_the_same_flags(fresh_clone, tmp_path, monkeypatch):
    monkeypatch.delenv("GENROBUST_RUNS")  # each run its own runs/ under its out_dir
    spec, runs = _ours_factory(tmp_path, fresh_clone / "softmax.safetensors"), {}
    for w in (1, 2):
        rec = evaluate_model(spec, "smoke", budget="quick", parameters=QUICK_SMALL, compare=False, workers=w,
                             out_dir=tmp_path / f"w{w}", progress=False, echo=lambda s: None)
        est = rec["estimate"]
        assert est["workers"] == w and est["units_computed_this_leg"] == est["units"] == est["total_units"]
        runs[w] = [(r["attack"], r["eps"], r["role"], r["robust"]) for r in rec["yours"]["runs"]]
    assert runs[1] == runs[2]  # chunk seeds: the same per-example results in one process or two
    assert list((tmp_path / "w2" / "runs" / "jobs").glob("*_log.*"))  # the units ran in worker processes
    assert not (tmp_path / "w1" / "runs" / "jobs").exists()  # negative control: one worker runs them here
    # a factory that builds other weights on every call: refused before any worker starts, and by a worker
    rnd = _small_cnn_factory(tmp_path / "w2", seeded=False)
    with pytest.raises(ModelError, match="digest .* workers rebuild the model") as e:
        evaluate_model(rnd, "smoke", budget="quick", parameters=QUICK_SMALL, compare=False, workers=2,
                       out_dir=tmp_path / "rnd", progress=False, echo=lambda s: None)
    assert "\n" not in str(e.value)
    first = own_checks.classifier_id(own_checks.build_model(rnd, "0-1", "cpu")[1])
    with pytest.raises(RunError, match="digest"):
        own_units._own_units_job(to_dict(get_profile("smoke")), rnd, "0-1", first, [])


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_wall_time_adds_up_across_a_resume(fresh_clone, tmp_path, monkeypatch):
    """An evaluation stopped after its first unit (as by kill -9: the ledger is not closed) and run again: the
    second leg computes only the rest, and the record's wall time is both legs."""
    spec, real = _ours_factory(tmp_path, fresh_clone / "softmax.safetensors"), own_units.compute_units

    def first_unit_then_die(work, x, y, clean, ctx, kind, units, ecfg):
        real(work, x, y, clean, ctx, kind, units[:1], ecfg)
        time.sleep(0.5)
        raise _Killed

    kw = dict(budget="quick", parameters=QUICK_SMALL, compare=False, workers=1, out_dir=tmp_path, progress=False,
              echo=lambda s: None)
    monkeypatch.setattr(own_units, "compute_units", first_unit_then_die)
    with pytest.raises(_Killed):
        evaluate_model(spec, "smoke", **kw)
    monkeypatch.setattr(own_units, "compute_units", real)
    ledger = next((tmp_path / "runs" / "eval").glob("*/wall-*.json"))
    first = read_json(ledger)["legs"][0]["seconds"]
    assert first >= 0.5
    rec = evaluate_model(spec, "smoke", **kw)
    est = rec["estimate"]
    assert est["units"] == est["total_units"] - 1 and est["units_computed_this_leg"] == est["units"]
    assert len(rec["legs"]) == 2 and rec["legs"][0]["seconds"] == first
    assert rec["wall_time_s"] == pytest.approx(first + rec["legs"][1]["seconds"], abs=0.11)
    assert not ledger.exists()  # the record is written: a later run is a new evaluation
    again = evaluate_model(spec, "smoke", **kw)  # negative control: nothing to resume, one leg
    assert len(again["legs"]) == 1 and again["estimate"]["units"] == 0


def test_assumed_input_range_feeds_the_model_that_range(fresh_clone, tmp_path):
    spec = _write_factory(tmp_path, f"class M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                    f"        self.m = genrobust.load_classifier({str(fresh_clone / 'softmax.safetensors')!r})\n"
                                    "    def forward(self, x):\n        return self.m((x + 1) / 2)\n"
                                    "def build():\n    return M()\n") + ":build"
    kw = dict(parameters=QUICK_SMALL, compare=False, workers=1, out_dir=tmp_path, progress=False,
              echo=lambda s: None)
    with pytest.raises(ModelError, match="--assume-input-range neg1-1"):
        evaluate_model(spec, "smoke", budget="quick", **kw)
    rec = evaluate_model(spec, "smoke", budget="quick", assume_input_range="neg1-1", **kw)
    assert rec["model"]["input_range"] == "neg1-1" and rec["input_check"]["assumed"] == "neg1-1"
    assert rec["input_check"]["accuracy"]["0-1"] > 0.5  # converted: as accurate as our model on [0, 1]
    assert (tmp_path / "runs" / "eval" / f"{rec['model']['weights_digest']}-neg1-1").is_dir()


def test_profiles_with_large_models_release_digests_only(trained, tmp_path, monkeypatch):
    cfg, data, paths, *_ = trained
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    assert get_profile("gpu").release_weights is False and get_profile("cpu").release_weights is True
    listed = release(apply_overrides(cfg, {"release_weights": False}), data, paths)
    meta = read_json(listed)
    assert {e["weights_digest"] for e in meta["files"].values()} == {weights_digest(p) for p in paths.values()}
    assert not list(listed.parent.glob("*.safetensors"))  # negative control is the module fixture: files written
    assert "weights not released" in (listed.parent / "MODEL_CARD.md").read_text()
