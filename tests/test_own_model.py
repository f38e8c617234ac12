"""`genrobust evaluate --model` as researchers use it: named budgets (registry entries), the cost model, where the
outputs go, the LaTeX table, the README's variables, and pyautoattack's example ResNet18 (a real third-party model
shipped inside the installed package) under the quick budget. The end-to-end checks on our own trained classifiers
(estimate first, markdown table, workers, resume, input ranges) are in tests/test_released.py."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from genrobust import cli
from genrobust.core.config import CPU, PROFILES, ConfigError, EvalConfig, budget_values
from genrobust.core.models import ModelError
from genrobust.core.registry import ATTACKS, BUDGETS, EVAL_BUDGETS, AttackSpec, attack_spec
from genrobust.data.splits import prepare_data
from genrobust.measure.accuracy import AttackRun, evaluation_set
from genrobust.pipeline.own_checks import check_model, describe_model, import_model, to_range
from genrobust.pipeline.own_cost import assign, seconds_per_image_step
from genrobust.pipeline.own_model import EvaluateOptions, evaluate_model
from genrobust.pipeline.params import MEASUREMENT_FIELDS, apply_budget, resolve_profile
from genrobust.reporting.own_table import latex_table
from genrobust.store.checkpoints import state_digest
from genrobust.store.io import read_json
from genrobust.store.paths import cache_dir, output_root, outputs_under, runs_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "aa_example_resnet.py"


# ---------------------------------------------------------------------------------------------------------------
# Budgets: registry entries, the same attacks on every profile
@pytest.mark.parametrize("budget", list(EVAL_BUDGETS))
def test_a_budget_means_the_same_attacks_on_every_profile(budget):
    evals = {name: apply_budget(p, budget).eval for name, p in PROFILES.items()}
    first = next(iter(evals.values()))
    for e in evals.values():
        assert {f: getattr(e, f) for f in MEASUREMENT_FIELDS} == {f: getattr(first, f) for f in MEASUREMENT_FIELDS}
    # the execution fields it names are applied too; the others stay the profile's
    named = EVAL_BUDGETS[budget].as_dict()
    for name, e in evals.items():
        for f in ("batch_size", "channels_last"):
            assert getattr(e, f) == named.get(f, getattr(PROFILES[name].eval, f))


def test_the_budgets_are_what_their_names_promise():
    assert apply_budget(CPU, "cpu").eval == CPU.eval  # today's cpu evaluation, field by field
    quick = apply_budget(CPU, "quick").eval
    assert quick != CPU.eval  # negative control
    assert [e for e in quick.eps_grid if e > 0] == [quick.strong_eps] and quick.strong_eps_more == ()  # one eps
    assert quick.strong_attacks == ("apgd-ce", "apgd-t") and quick.n_test <= 100 and quick.n_strong <= quick.n_test
    standard = apply_budget(CPU, "standard").eval
    defaults = {n: b.default for n, b in BUDGETS.items()}
    assert budget_values(standard) == defaults  # AutoAttack's standard budgets
    assert standard.n_test == standard.n_strong == 10000
    assert {"apgd-ce", "apgd-t", "fab-t", "square"} <= set(standard.strong_attacks)


def test_parameters_go_on_top_of_a_budget_and_bad_names_are_one_line():
    p = resolve_profile("cpu", {"n_test": 7, "eval.masking_restarts": 3}, cli.EVALUATE_PARAMETERS, budget="quick")
    assert p.eval.n_test == 7 and p.eval.masking_restarts == 3 and p.eval.strong_attacks == ("apgd-ce", "apgd-t")
    with pytest.raises(ConfigError, match="unknown budget 'huge'; choose one of quick, cpu, standard") as e:
        apply_budget(CPU, "huge")
    assert "\n" not in str(e.value)
    assert set(cli.build_parser()._subparsers._group_actions[0].choices["evaluate"]._option_string_actions[
        "--budget"].choices) == set(EVAL_BUDGETS)


def test_evaluate_p_has_help_naming_the_parameters(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "n_strong" in text and "eps_grid" in text and "dotted config key" in text and "quick:" in text


# ---------------------------------------------------------------------------------------------------------------
# The cost model: passes per attacked image from the registry, a measured pass, units shared out over workers
def test_each_attack_counts_its_passes_per_image():
    e = EvalConfig(budgets=(("apgd_iters", 20), ("targets", 3)))
    runs = {a: AttackRun(a, 0.5, 10, "strong", **attack_spec(a).settings(e)) for a in ATTACKS}
    steps = {a: attack_spec(a).image_steps(r) for a, r in runs.items()}
    assert all(s > 0 for s in steps.values())  # contract over the registry
    assert steps["pgd"] == e.steps and steps["multi_targeted"] == 9 * e.steps
    assert steps["apgd-t"] == 3 * steps["apgd-ce"] == 3 * 1.5 * 20
    assert attack_spec("pgd").image_steps(dataclasses.replace(runs["pgd"], restarts=3)) == 3 * e.steps
    assert AttackSpec("x", "x", None, ("softmax",), "ours").image_steps(runs["pgd"]) == e.steps  # default


def test_units_are_shared_out_longest_first():
    costs = [1.0, 4.0, 2.0, 3.0, 0.0]
    groups = assign(costs, [0, 1, 2, 3, 4], 2)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]  # every unit once, even one with no cost
    assert sorted(sum(costs[i] for i in g) for g in groups) == [5.0, 5.0]
    assert all(costs[g[0]] == max(costs[i] for i in g) for g in groups)  # largest first in each
    assert assign(costs, [0, 1], 4) == [[1], [0]] and assign(costs, [], 2) == []  # no empty groups
    assert len(assign(costs, [0, 1, 2], 1)) == 1  # negative control: one worker, one group


def test_a_pass_is_timed_on_the_model():
    small, big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)), \
        torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(12)], torch.nn.Flatten(),
                            torch.nn.Linear(3 * 32 * 32, 10))
    x = torch.rand(16, 3, 32, 32)
    assert 0 < seconds_per_image_step(small, x) < seconds_per_image_step(big, x)


def test_the_model_is_described_by_itself():
    m = torch.nn.Linear(4, 2)
    d = describe_model(m, "pkg:build")
    assert d == {"name": "pkg:build", "class": "torch.nn.modules.linear.Linear", "parameters": 10,
                 "weights_digest": state_digest(m.state_dict()), "input_range": "0-1"}


def test_evaluate_model_takes_the_fields_of_evaluate_options_and_refuses_others():
    """A misspelt keyword is refused in one line naming it and the options, before any work; a real one passes
    that check (negative control: the next check, on the model, is what refuses it)."""
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['budgte'\].*budget, parameters, name") as e:
        evaluate_model(torch.nn.Linear(4, 2), "smoke", budgte="quick")
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="needs a torch.nn.Module"):
        evaluate_model(42, "smoke", budget="quick", workers=1, echo=lambda s: None)
    assert {f.name for f in dataclasses.fields(EvaluateOptions)} >= {
        "budget", "parameters", "compare", "from_released", "out", "out_dir", "workers", "assume_input_range",
        "progress", "echo"}  # the keywords `genrobust evaluate --model` passes (cli._evaluate_own_model)


# ---------------------------------------------------------------------------------------------------------------
# Where outputs go
def test_outputs_go_under_the_current_directory_outside_a_checkout(tmp_path, monkeypatch):
    for v in ("GENROBUST_ROOT", "GENROBUST_RUNS", "GENROBUST_CACHE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.chdir(tmp_path)
    assert output_root() == tmp_path.resolve()
    assert output_root(tmp_path / "elsewhere") == (tmp_path / "elsewhere").resolve()
    with outputs_under(output_root()):
        assert runs_dir() == tmp_path / "runs" and cache_dir() == (tmp_path / "cache").resolve()
    assert "GENROBUST_RUNS" not in os.environ and "GENROBUST_CACHE" not in os.environ  # restored
    monkeypatch.chdir(ROOT / "lib")  # negative control: inside the checkout, the checkout's runs/
    assert output_root() == ROOT
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "mine"))
    with outputs_under(tmp_path):
        assert runs_dir() == tmp_path / "mine"  # a variable the user set wins
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENROBUST_ROOT", str(ROOT))
    assert output_root() == ROOT


def test_readme_documents_the_variables_and_where_cifar10_comes_from():
    used = set()
    for f in (ROOT / "lib" / "genrobust").rglob("*.py"):
        used |= set(re.findall(r"GENROBUST_[A-Z]+(?:_[A-Z]+)*", f.read_text()))
    assert {"GENROBUST_ROOT", "GENROBUST_RUNS", "GENROBUST_RESULTS", "GENROBUST_CACHE", "GENROBUST_DATA"} <= used
    readme = (ROOT / "README.md").read_text()
    assert not [v for v in used if v not in readme], "README must document every GENROBUST_* variable"
    assert "cifar10-jpeg.zip" in readme and "torchvision" in readme and "different numbers" in readme
    assert [v for v in used | {"GENROBUST_NOT_DOCUMENTED"} if v not in readme] == ["GENROBUST_NOT_DOCUMENTED"]


def test_latex_table_escapes_and_keeps_the_columns():
    df = pd.DataFrame({"accuracy %": [50.0, None], "attack": ["PGD_CE & co", "worst {x}"]})
    tex = latex_table(df, "caption_text")
    lines = tex.splitlines()
    assert lines[0] == "% caption_text" and lines[1] == r"\begin{tabular}{ll}" and lines[-1] == r"\end{tabular}"
    assert r"accuracy \% & attack \\" in tex and r"PGD\_CE \& co" in tex and r"worst \{x\}" in tex
    assert all(line.count(" & ") == 1 for line in lines if line.endswith(r"\\"))


# ---------------------------------------------------------------------------------------------------------------
# A real third-party model: pyautoattack's example ResNet18
@pytest.mark.slow
def test_pyautoattack_example_resnet18_under_the_quick_budget(real_zip, tmp_path, monkeypatch, capsys):
    """The command a new user runs, outside the checkout: the estimate comes first, the units land under the
    current directory (not the checkout), the markdown table pastes, the record describes their model. The quick
    budget with fewer images (-p) to stay within CI's time."""
    pytest.importorskip("pyautoattack")
    monkeypatch.setenv("GENROBUST_CACHE", str(cache_dir()))  # the decoded CIFAR-10 the other tests use (decoded once)
    for v in ("GENROBUST_RUNS", "GENROBUST_ROOT"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["evaluate", "--model", f"{FIXTURE}:build", "--budget", "quick", "-p", "n_test", "20",
                     "-p", "n_strong", "4", "--format", "markdown"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.index("budget quick") < err.index("cost estimate:") < err.index("yours: attacks")
    assert "ResNet" in err and "11.17M parameters" in err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1 and sum(" | clean | " in line for line in table) == 1
    assert any("PGD-CE (Eq. 10), 10 steps (the paper's attack) | 20 |" in line for line in table)
    assert any("worst case over APGD-CE + APGD-T + PGD-CE (Eq. 10) | 4 |" in line for line in table)
    assert "--from-released" in out  # ours are not trained under this directory
    rec = read_json(next(tmp_path.glob("genrobust-evaluation-*-quick.json")))
    assert rec["budget"]["name"] == "quick" and rec["model"]["class"].endswith("ResNet")
    assert rec["model"]["parameters"] == 11173962 and rec["estimate"]["workers"] == CPU.workers
    assert (tmp_path / "runs" / "eval" / rec["model"]["weights_digest"]).is_dir()
    assert not (ROOT / "runs" / "eval" / rec["model"]["weights_digest"]).exists()  # not inside the checkout
    # the input-range check accepted it (it expects [0, 1], as its own eval.py feeds it); the same network behind
    # (x + 1) / 2 expects [-1, 1] and is refused, naming the override
    assert rec["input_check"]["clear_winner"] is None and rec["input_check"]["n"] == 200
    model = import_model(f"{FIXTURE}:build").eval()
    x, y = evaluation_set(prepare_data(CPU.data, progress=False), dataclasses.replace(CPU.eval, n_test=200))

    class Expects(torch.nn.Module):
        def forward(self, z):
            return model((z + 1) / 2)
    # 60 images are plenty for a network this accurate to lose clearly on the wrong scale (a ResNet18 forward over 4
    # ranges x 200 images is ~20 s of CI's CPU)
    with pytest.raises(ModelError, match=r"same 60 images.* expects \[-1, 1\] inputs .*--assume-input-range neg1-1"):
        check_model(Expects(), x[:60], y[:60])
    assert torch.equal(to_range(x, "neg1-1"), 2 * x - 1)
