"""The report (genrobust.reporting.report, notebook 06, `genrobust report`): built only from metrics files.

The metrics files are written by the real writers of notebooks 01-05 (genrobust.reporting.metrics_files) from small
records of the smoke profile, so the report is tested against the structure those notebooks produce, in seconds.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
import torch

from genrobust.core import paper, stats
from genrobust.core.config import PAPER, config_hash, get_profile
from genrobust.core.registry import PAPER_ATTACK
from genrobust.measure import accuracy as evaluate
from genrobust.pipeline import notebooks as runner
from genrobust.reporting import consistency
from genrobust.reporting import metrics_files as report
from genrobust.reporting import report as overview
from genrobust.store.checkpoints import save_checkpoint
from genrobust.store.provenance import provenance
from genrobust.store.runs import classifier_run_config

ROOT = Path(__file__).resolve().parents[1]
CFG = get_profile("smoke")
# a real-data source record as data.py writes it for the JPEG copy (the paper used the original batches)
JPEG = {"kind": "zip", "name": "CIFAR-10 (JPEG copy)", "path": "cifar10.zip", "sha256": "ab" * 32,
        "synthetic": False}
CLEAN = {"generative": 0.8, "softmax": 0.9}


def _eval_record(kind: str, n: int = 100) -> dict:
    """An evaluate_classifier record with deterministic flags: clean-correct = first CLEAN[kind] * n examples; each
    attack run keeps a shrinking prefix of them robust (so the worst case is the strongest run)."""
    ecfg = CFG.eval
    clean = torch.arange(n) < int(CLEAN[kind] * n)
    runs = []
    for i, run in enumerate(evaluate.plan_runs(kind, ecfg, n)):
        keep = 0.7 - 0.1 * (run.eps > ecfg.strong_eps) - 0.01 * i
        flags = clean[:run.n] & (torch.arange(run.n) < int(keep * run.n))
        runs.append(evaluate._run_record(run, flags, {"time_s": 0.1, "n_attacked": int(clean[:run.n].sum())}, ecfg))
    k = int(clean.sum())
    return {"classifier": kind, "paper_attack": PAPER_ATTACK[kind], "n": n, "n_strong": ecfg.n_strong,
            "norm": "l2", "clean": {"n": n, "robust": evaluate.flags_to_str(clean), "n_robust": k, "accuracy": k / n,
                                    "ci95": stats.wilson_interval(k, n)},
            "runs": runs, "model_checks": {}, "autoattack_warnings": []}


def _write_all(results: Path) -> dict:
    """Write 01-05's metrics files for the smoke profile into results/smoke/ with the real writers."""
    data = SimpleNamespace(source=JPEG, split={"train": 1000, "val": 200, "test": 400})
    metric = [{"epoch": 1, "train_loss": 0.6, "val_adv_auroc": 0.8, "images_per_s": 100.0}]
    ckpts = [save_checkpoint(results / "ckpt" / f"d_{k}.pt", kind="binary", state={"w": torch.full((2,), float(k))},
                             config={}) for k in range(10)]  # real files: the writer records their weights digests
    rows = [{"k": k, "best_epoch": 1, "best_metric": 0.8, "select_key": "val_adv_auroc", "epochs": 2,
             "parameters": 1000, "checkpoint": str(ckpts[k]), "metrics": metric, "provenance": {"wall_time_s": 1.0}}
            for k in range(10)]
    soft = {**rows[0], "parameters": 5000, "provenance": {"wall_time_s": 2.0}}
    report.write_training_metrics(CFG, rows, soft, data)

    cal = {"checkpoint": "classifier.pt", "c": [0.01 * k for k in range(10)],
           "accuracy": {"train_before": 0.60, "train_after": 0.70, "test_before": 0.55, "test_after": 0.65},
           "n": {"train": 1000, "test": 400, "select": 200}, "select_on": "val", "steps": 42, "history": [],
           "binary_best_epochs": [1] * 10,
           "provenance": provenance(classifier_run_config(CFG), data_source=JPEG, seed=0)}
    report.write_calibration_metrics(CFG, cal)

    records = {kind: _eval_record(kind) for kind in ("generative", "softmax")}
    checks = [{"classifier": "generative", "type": "masking", "check": "deterministic outputs", "passed": True,
               "detail": ""}]
    report.write_accuracy_metrics(CFG, records, checks, data, wall_time_s=3.0)

    cells = [{"kind": kind, "classifier": clf, "steps": s, "step_size": a, "fid": 100.0 + 10 * i, "n": 20,
              "n_reference": 40, "full_rank": False, "paper": paper.TAB2[(s, a)][clf][kind], "target_rate": 0.9,
              "mean_p_target": 0.5, "mean_l2": 3.0, "max_l2": 4.0, "comparable": "same N only"}
             for i, ((s, a), clf, kind) in enumerate([(pg, c, k) for pg in CFG.gen.pgd_configs
                                                      for c in ("generative", "softmax")
                                                      for k in ("samples", "counterfactuals")])]
    gen = {"notebook": "04_generation_fid", "n_samples": 20, "n_counterfactuals": 20, "n_reference": 40, "eps": 10.0,
           "pgd_configs": [list(c) for c in CFG.gen.pgd_configs], "cf_target": "random", "chained": True,
           "synthetic": False, "cells": cells,
           "anchor": {"what": "FID(test, train)", "fid": 80.0, "n": 20, "n_reference": 40, "full_rank": False,
                      "comparable": "same N only"},
           "reference": {"n": 40}, "inception": {}, "seconds": {}}
    report.write_generation_metrics(CFG, gen, data, wall_time_s=4.0)

    points = [{"figure": "fig5", "setting": s, "seed": 0, "run": s, "data_source": JPEG, "eps": [0.0, 0.5],
               "auroc": [0.9, 0.7], "train_wall_time_s": 1.0, "eval_wall_time_s": 1.0}
              for s in ("width 0.5, wd 1e-4", "width 1.0, wd 1e-4")]
    table = pd.DataFrame([{"figure": p["figure"], "setting": p["setting"], "seed": 0, "ci_lo": 0.6, "ci_hi": 0.95}
                          for p in points for _ in p["eps"]])
    verdicts = ["supported", "contradicted", "not established", "not tested", "supported"]
    claims = {key: {"source": src, "claim": text, "verdict": v, "why": f"because {v}",
                    "comparisons": [] if v == "not tested" else
                    [{"metric_name": "adversarial AUROC", "higher": "A", "lower": "B", "higher_value": 0.7,
                      "lower_value": 0.6, "diff": 0.1, "ci": [0.02, 0.2], "verdict": v}]}
              for (key, (src, text)), v in zip(paper.ABLATION_CLAIMS.items(), verdicts)}
    report.write_ablation_metrics(CFG, points, table, claims, wall_time_s=5.0)
    return {"records": records, "cal": cal, "claims": claims}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENROBUST_RESULTS", str(root))
        written = _write_all(root)
        yield SimpleNamespace(root=root, dir=root / "smoke", **written)


def _row(df, **match):
    sel = df
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (match, sel)
    return sel.iloc[0]


def test_overview_builds_from_the_metrics_files(results):
    ov = overview.build("smoke", results.dir)
    assert set(ov.status["status"]) == {"ok"}
    t1 = ov.sections["tab1"].table
    gen_clean = _row(t1, classifier="generative", quantity="standard accuracy (clean)")
    assert gen_clean["paper %"] == pytest.approx(100 * paper.TAB1["generative"]["clean"])
    assert gen_clean["ours %"] == pytest.approx(100 * CLEAN["generative"])
    diff = 100 * CLEAN["generative"] - 100 * paper.TAB1["generative"]["clean"]
    assert gen_clean["difference (points)"] == f"{diff:+.2f}"
    # the worst case at eps 0.5 is at most the paper's attack there
    robust = t1[t1.quantity.str.startswith("robust") & (t1.classifier == "softmax")]
    assert robust["ours %"].iloc[1] <= robust["ours %"].iloc[0]
    # every row names its file and config hash; the hash is that of the recorded config
    rec = json.loads((results.dir / "03_accuracy.json").read_text())
    assert set(t1["source"]) == {f"03_accuracy.json (config {config_hash(rec['provenance']['config'])})"}

    # what differs: derived from the recorded config vs the paper profile, and the data copy
    legend = ov.sections["tab1"].settings
    text = legend[gen_clean["setting (ours vs paper)"]]
    assert "CIFAR-10 (JPEG copy)" in text
    assert f"train.epochs {CFG.train.epochs} vs {PAPER.train.epochs}" in text
    assert f"model.name {CFG.model.name} vs {PAPER.model.name}" in text
    assert "eval." not in text  # attack strength only on robust rows
    robust_text = legend[_row(t1, classifier="generative", quantity="robust accuracy, eps 0.5, paper's attack "
                                                                     "(Eq. 11-12)")["setting (ours vs paper)"]]
    assert f"eval.n_test {CFG.eval.n_test} vs {PAPER.eval.n_test}" in robust_text

    t3 = ov.sections["tab3"].table
    assert _row(t3, classifier="generative (after calibration)", split="test")["ours %"] == 65.0
    t4 = ov.sections["tab4"].table
    assert list(t4["paper"]) == list(paper.TAB4["c"]) and _row(t4, constant="c_3")["ours"] == 0.02
    # 02 records no model/train config: those come from 01 (and say so)
    assert any("01_training.json" in n for n in ov.sections["tab3"].notes)
    # Tab. 1's claims are the verdicts stored in 03's file, rendered
    claim = next(n for n in ov.sections["tab1"].notes if n.startswith("**Claims"))
    assert "stored in 03_accuracy.json" in claim and "Table 1: the generative classifier is more robust" in claim
    assert "train.epochs" in ov.sections["tab4"].settings["S1"]

    t2 = ov.sections["tab2"].table
    cell = _row(t2, PGD="10 steps, step size 1", classifier="softmax", images="samples")
    assert cell["paper FID"] == paper.TAB2[(10, 1.0)]["softmax"]["samples"] and isinstance(cell["ours FID"], float)
    assert any(f"gen.n_samples {CFG.gen.n_samples} vs {PAPER.gen.n_samples}" in v
               for v in ov.sections["tab2"].settings.values())

    cl = ov.sections["claims"].table
    assert list(cl["claim"]) == list(paper.ABLATION_CLAIMS)
    assert _row(cl, claim="fig5_weight_decay")["difference"] == "contradicts the paper"
    assert _row(cl, claim="fig5_capacity")["ours"] == "supported"

    prov = ov.provenance
    assert set(prov["data source"]) == {"CIFAR-10 (JPEG copy)"} and prov["git commit"].notna().all()
    assert prov["config hash"].notna().all()
    # training jobs run side by side: their summed time (10 x 1 s + 2 s) is job time, never shown as wall time
    train_row = _row(prov, **{"results file": "01_training.json"})
    assert train_row["job time (min)"] == round(12.0 / 60, 2) and pd.isna(train_row["wall time (min)"])
    assert _row(prov, **{"results file": "03_accuracy.json"})["wall time (min)"] == round(3.0 / 60, 2)


def test_missing_files_are_not_run_yet(tmp_path):
    ov = overview.build("smoke", tmp_path / "nothing")
    assert set(ov.status["status"]) == {report.NOT_RUN}
    for key, col in (("tab1", "ours %"), ("fig1", "ours, paper's attack %"), ("tab2", "ours FID"),
                     ("tab3", "ours %"), ("tab4", "ours"), ("claims", "ours")):
        assert set(ov.sections[key].table[col]) == {report.NOT_RUN}, key
    text = overview.render_markdown(ov)
    assert "not run yet" in text


def test_some_files_missing_and_one_corrupt(results, tmp_path):
    d = tmp_path / "smoke"
    d.mkdir()
    (d / "02_calibration.json").write_text((results.dir / "02_calibration.json").read_text())
    (d / "03_accuracy.json").write_text('{"notebook": "03_acc')  # cut by a crash of something else
    ov = overview.build("smoke", d)
    status = dict(zip(ov.status["notebook"], ov.status["status"]))
    assert status["02_calibration"] == "ok" and status["01_training"] == report.NOT_RUN
    assert status["03_accuracy"].startswith("unreadable")
    assert set(ov.sections["tab1"].table["ours %"]) == {status["03_accuracy"]}
    assert isinstance(ov.sections["tab4"].table["ours"].iloc[0], float)
    # without 01, Tab. 3/4 say that model/training settings could not be compared
    assert any("01_training.json is missing" in n for n in ov.sections["tab3"].notes)


def test_report_md_is_written_atomically_with_the_paper_values(results, monkeypatch):
    fig = results.dir / "figures" / "fig1_accuracy_vs_eps.png"
    fig.parent.mkdir(exist_ok=True)
    fig.write_bytes(b"\x89PNG\r\n\x1a\n")  # a figure notebook 03 would have written
    ov = overview.build("smoke", results.dir)
    path = overview.write_report(ov)
    assert path == results.dir / "REPORT.md"
    text = path.read_text()
    for kind in ("generative", "softmax"):
        for q in ("clean", "robust"):
            assert f"| {100 * paper.TAB1[kind][q]:g} |" in text
    for key, per in paper.TAB2.items():
        if key != "source":
            for kinds in per.values():
                for v in kinds.values():
                    assert f"| {v:g} |" in text
    for stage in ("before", "after"):
        for split in ("train", "test"):
            assert f"| {100 * paper.TAB3[stage][split]:g} |" in text
    for c in paper.TAB4["c"]:
        assert f"| {c:g} |" in text
    for _, claim in paper.ABLATION_CLAIMS.values():
        assert claim in text
    assert "](figures/fig1_accuracy_vs_eps.png)" in text  # linked relative to REPORT.md
    assert "## Provenance" in text and ov.sources["03_accuracy"].config_hash in text

    # atomic: a failure while writing leaves the previous report and no temporary file
    before = path.read_bytes()

    def boom(self, *a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError, match="disk full"):
        overview.write_report(ov)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in results.dir.iterdir() if p.name.startswith(".REPORT.md")]


def test_fig1_is_replotted_from_the_json_when_the_png_is_missing(results, tmp_path):
    d = tmp_path / "smoke"
    d.mkdir()
    (d / "03_accuracy.json").write_text((results.dir / "03_accuracy.json").read_text())
    sec = overview.build("smoke", d).sections["fig1"]
    assert [p.name for _, p in sec.figures] == ["fig1_accuracy_vs_eps.png"]
    assert (d / "figures" / "fig1_accuracy_vs_eps.png").read_bytes()[:4] == b"\x89PNG"
    assert any("re-plotted" in n for n in sec.notes)


@pytest.mark.slow
def test_cli_report(results):
    env = {**os.environ, "GENROBUST_RESULTS": str(results.root), "PYTHONPATH": str(ROOT / "lib")}
    r = subprocess.run([sys.executable, "-m", "genrobust", "report", "--profile", "smoke"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(results.dir / "verdicts.json"), str(results.dir / "REPORT.md")]
    bad = subprocess.run([sys.executable, "-m", "genrobust", "report", "--profile", "bogus"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "unknown profile 'bogus'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_report_notebook_runs_last_and_always(monkeypatch, tmp_path):
    assert runner.NOTEBOOKS[-1] == runner.REPORT_NOTEBOOK == "06_report"
    nb = nbformat.read(ROOT / "notebooks" / "06_report.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.metadata.get("tags") == ["parameters"] and first.source.startswith('profile = "smoke"')
    calls = []
    monkeypatch.setattr(runner, "execute_notebook", lambda name, profile, params, force: calls.append((name, force)))
    runner.reproduce("smoke")
    assert calls[-1] == ("06_report", True)
    assert [n for n, _ in calls] == list(runner.NOTEBOOKS) and not any(f for n, f in calls[:-1])


def _chain_sources(d3_generative="g", cpu=("AVX512", "AVX512")):
    """01 -> 02 -> 03 as Source records that name each other's weights digests; 03's generative digest given."""
    dev = [{"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": c} for c in cpu]
    recs = {"01_training": {"binary": [{"k": 1, "weights_sha256": "d1"}, {"k": 0, "weights_sha256": "d0"}],
                            "softmax": {"weights_sha256": "s"}, "provenance": {"device": dev[0]}},
            "02_calibration": {"binary_weights_sha256": ["d0", "d1"], "weights_sha256": "g",
                               "provenance": {"device": dev[1]}},
            "03_accuracy": {"checkpoints": {"generative": {"weights_sha256": d3_generative},
                                            "softmax": {"weights_sha256": "s"}}, "provenance": {}}}
    return {nb: report.Source(nb, Path(f"{nb}.json"), r, "ok") for nb, r in recs.items()}


def test_model_chain_notes_compare_every_recorded_digest_with_its_model():
    good = consistency.model_chain_notes(_chain_sources())
    assert len(good) == 1 and good[0].startswith("Same models throughout: the 4 weights digests")
    bad = consistency.model_chain_notes(_chain_sources(d3_generative="other"))
    assert len(bad) == 1 and "03_accuracy's generative classifier other vs g" in bad[0]


def test_machine_notes_name_each_cpu_kind_and_its_files():
    one = consistency.machine_notes(_chain_sources())
    assert one == ["Machines (CPU, torch's kernel family; training is bitwise reproducible only on one kind): "
                   "AMD EPYC, torch kernels AVX512 for 01, 02."]
    two = consistency.machine_notes(_chain_sources(cpu=("AVX2", "AVX512")))
    assert "AVX2 for 01" in two[0] and "AVX512 for 02" in two[0]


def test_metrics_files_carry_a_schema_version_and_unknown_ones_are_refused(results, tmp_path):
    d = tmp_path / "smoke"
    d.mkdir()
    fresh = json.loads((results.dir / "02_calibration.json").read_text())
    assert fresh["schema_version"] == report.SCHEMA_VERSION
    legacy = {k: v for k, v in fresh.items() if k != "schema_version"}  # results/cpu's files: read as version 1
    (d / "02_calibration.json").write_text(json.dumps(legacy))
    (d / "03_accuracy.json").write_text(json.dumps({**json.loads((results.dir / "03_accuracy.json").read_text()),
                                                    "schema_version": 99}))
    status = dict(zip(*overview.build("smoke", d).status[["notebook", "status"]].T.values))
    assert status["02_calibration"] == "ok"
    assert status["03_accuracy"].startswith("unreadable: schema_version 99") and "update genrobust" in status["03_accuracy"]
    assert "\n" not in status["03_accuracy"]


def test_attack_budgets_differ_alike_in_old_and_new_results_files():
    """A results file written before the attacks owned their budgets (eval.aa_*) and one written after
    (eval.budgets) name the same differences from the paper profile, per budget."""
    from genrobust.core.config import to_dict
    from genrobust.reporting import setting as R
    new = to_dict(get_profile("cpu"))
    old = to_dict(get_profile("cpu"))
    old["eval"].pop("budgets")
    old["eval"].update(aa_apgd_iters=50, aa_targets=3, aa_fab_iters=50, aa_square_queries=500)
    keys = R.ATTACK_KEYS
    assert R.differences(old, keys) == R.differences(new, keys)
    assert {"eval.budget.apgd_iters 50 vs 100", "eval.budget.targets 3 vs 9"} <= set(R.differences(new, keys))
    assert not [d for d in R.differences(to_dict(get_profile("paper")), keys) if "budget" in d]
