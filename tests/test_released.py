"""Released models (results/<profile>/models/) and evaluating your own model (`genrobust evaluate --model`,
genrobust.evaluate_model), on the smoke profile's classifiers trained once for this module."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genrobust import cli
from genrobust.core.config import apply_overrides, get_profile
from genrobust.core.models import ModelError, create_model
from genrobust.data import prepare_data
from genrobust.measure import accuracy as E
from genrobust.pipeline.classifiers import ensure_classifiers, release, train_all
from genrobust.pipeline.own_model import check_model, evaluate_model, import_model
from genrobust.store.checkpoints import load_classifier, read_checkpoint, weights_digest
from genrobust.store.io import ResultsError, read_json
from genrobust.store.released import models_dir
from genrobust.training.calibrate import calibrate

# small evaluation: every attack of notebook 03 still runs, on fewer images
EVAL = {"eval.n_test": 40, "eval.n_strong": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke profile's classifiers, trained and released in a temporary runs/ and results/."""
    with pytest.MonkeyPatch.context() as mp:
        tmp = tmp_path_factory.mktemp("released")
        mp.setenv("GENROBUST_RUNS", str(tmp / "runs"))
        mp.setenv("GENROBUST_RESULTS", str(tmp / "results"))
        cfg = get_profile("smoke")
        data = prepare_data(cfg.data, progress=False)
        train_all(cfg, softmax=True, executor="inline", progress=False)
        calibrate(cfg, data, progress=False)
        paths = ensure_classifiers(cfg, data=data, train_missing=False)
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


def test_a_model_expecting_normalized_inputs_is_caught(trained):
    cfg, data, paths, *_ = trained
    x, y = E.evaluation_set(data, cfg.eval)
    ours = load_classifier(paths["softmax"])
    probe = check_model(ours, x, y)  # negative control: normalization inside, [0, 1] inputs: passes
    assert probe["accuracy_01"] > 0.5
    ours.normalize = torch.nn.Identity()  # the same weights, now expecting normalized inputs
    with pytest.raises(ModelError, match="expects normalized inputs.*Normalize") as e:
        check_model(ours, x, y)
    assert "\n" not in str(e.value)


def test_evaluate_model_end_to_end_matches_notebook_03(fresh_clone, tmp_path):
    """Our own softmax baseline given as 'your model' (a file:factory) gets exactly the per-example results notebook
    03's evaluation gives it (zero discordant pairs), and a different model is compared on the same images."""
    cfg = apply_overrides(get_profile("smoke"), EVAL)
    spec = _write_factory(tmp_path, f"def build():\n    return genrobust.load_classifier({str(fresh_clone / 'softmax.safetensors')!r})\n")
    rec = evaluate_model(spec + ":build", cfg, from_released=True, out=tmp_path / "ev.json", progress=False,
                         echo=lambda s: None)
    saved = read_json(tmp_path / "ev.json")
    assert saved["yours"]["weights_digest"] == rec["yours"]["weights_digest"]
    same = [t for t in rec["comparison"] if t["comparison"] == "yours vs softmax"]
    assert same and all(t["n_first"] == 0 and t["n_second"] == 0 for t in same)
    assert any(t["eps"] > 0 and "apgd-ce" in t["attacks"] for t in same)  # attacked, under the same attack set
    gen = [t for t in rec["comparison"] if t["comparison"] == "yours vs generative"]
    assert gen and all("eq11_12" not in t["attacks"] for t in gen)  # only attacks both faced
    eps = E.eps_values(rec["yours"])
    assert len(rec["per_class"]) == 10 * len(eps)
    assert sum(r["n"] for r in rec["per_class"] if r["eps"] == 0) == cfg.eval.n_test
    assert {c["classifier"] for c in rec["checks"]} == {"yours"}


def test_cli_evaluate_model_prints_a_table(fresh_clone, tmp_path, capsys):
    spec = _write_factory(tmp_path, "def build():\n    torch.manual_seed(0)\n"
                                    "    return genrobust.models.create_model('small_cnn', 10, 0.5)\n")
    out = tmp_path / "cli.json"
    code = cli.main(["evaluate", "--profile", "smoke", "--model", spec + ":build", "--no-compare",
                     "-p", "n_test", "40", "-p", "n_strong", "16", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "yours" in text and str(out) in text
    assert read_json(out)["comparison"] == [] and read_json(out)["yours"]["n"] == 40
    assert cli.main(["evaluate", "--profile", "smoke", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "MODULE:FACTORY" in err and "\n" not in err


def test_profiles_with_large_models_release_digests_only(trained, tmp_path, monkeypatch):
    cfg, data, paths, *_ = trained
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    assert get_profile("gpu").release_weights is False and get_profile("cpu").release_weights is True
    listed = release(apply_overrides(cfg, {"release_weights": False}), data, paths)
    meta = read_json(listed)
    assert {e["weights_digest"] for e in meta["files"].values()} == {weights_digest(p) for p in paths.values()}
    assert not list(listed.parent.glob("*.safetensors"))  # negative control is the module fixture: files written
    assert "weights not released" in (listed.parent / "MODEL_CARD.md").read_text()
