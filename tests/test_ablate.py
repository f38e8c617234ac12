"""Ablations (Figs. 5-8): sweep points and their sharing, AUROC scores and the paired bootstrap, claim verdicts,
the runtime estimate, and one tiny sweep end to end (inline executor, isolated runs/results)."""
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from genrobust.core import models, scoring, stats
from genrobust.core import upgrade as U
from genrobust.measure import ablate
from genrobust.measure import claims as C
from genrobust.pipeline.params import NOTEBOOK_PARAMETERS, resolve_profile
from genrobust.reporting import metrics_files, plots, tables
from genrobust.core.config import ConfigError, apply_overrides, from_dict, get_profile, to_dict

ROOT = Path(__file__).resolve().parents[1]
# the smoke ablation, shrunk further: 3 train steps per run, 16 test images per side
TINY = {"data.synthetic_train_per_class": 72, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "train.epochs": 1, "executor": "inline", "ablation.n_boot": 200}


def tiny(**extra):
    return apply_overrides(get_profile("smoke"), {**TINY, **extra})


def test_sweep_points_cover_figures_and_share_runs():
    cfg = tiny()
    pts = ablate.sweep_points(cfg)
    a = cfg.ablation
    assert [p.figure for p in pts].count("fig5") == len(a.widths) * len(a.weight_decays) * len(a.seeds)
    spec = ablate.eval_spec(cfg)
    paths = {pt: ablate.eval_path(ablate.point_profile(cfg, pt), spec) for pt in pts}
    # the base (width 0.5, wd 1e-4, eps 0.3, crop_flip, Eq. 3) appears in all four figures: one run
    base = {paths[pt] for pt in pts if pt.setting in ("width 0.5, wd 1e-4", "train eps 0.3", "crop+flip",
                                                      ablate.OBJECTIVE_NAMES["out"])}
    assert len(base) == 1
    assert len(set(paths.values())) == 7 and len(pts) == 10
    p = ablate.point_profile(cfg, next(pt for pt in pts if pt.setting == "width 1.0, no wd"))
    assert (p.model.width, p.train.weight_decay, p.train.classes, p.train.eps) == (1.0, 0.0, (0,), 0.3)
    p = ablate.point_profile(cfg, next(pt for pt in pts if pt.figure == "fig8" and "Eq. 9" in pt.setting))
    assert (p.train.objective, p.train.weight_decay, p.model.width) == ("combined", 1e-4, 0.5)
    # seeds are separate runs
    two = tiny(**{"ablation.seeds": (0, 1)})
    assert len(ablate.sweep_points(two)) == 20
    assert len({ablate.eval_path(ablate.point_profile(two, pt), spec) for pt in ablate.sweep_points(two)}) == 14


def test_ablation_config_validation_and_notebook_names():
    cfg = resolve_profile("smoke", dict(widths=[0.25, 0.5], train_per_class=50, epochs=3, workers=1), NOTEBOOK_PARAMETERS["05_ablations"])
    assert cfg.ablation.widths == (0.25, 0.5) and cfg.workers == 1
    b = ablate.base_profile(cfg)
    assert (b.data.train_per_class, b.train.epochs, b.train.weight_decay) == (50, 3, 1e-4)
    assert b.train.classes == (0,)
    with pytest.raises(ConfigError, match="ablation.widths"):
        resolve_profile("smoke", dict(widths=[0.5, 0.5]), NOTEBOOK_PARAMETERS["05_ablations"])
    with pytest.raises(ConfigError, match="ablation.augmentations"):
        resolve_profile("smoke", dict(augmentations=["mixup"]), NOTEBOOK_PARAMETERS["05_ablations"])
    with pytest.raises(ConfigError, match="unknown parameter"):
        resolve_profile("smoke", dict(width_list=[0.5]), NOTEBOOK_PARAMETERS["05_ablations"])


def test_binary_auroc_scores_match_binary_auroc():
    torch.manual_seed(0)
    model = models.create_model("small_cnn", 1, 0.5).eval()
    x = torch.rand(24, 3, 32, 32)
    scores = scoring.binary_auroc_scores(model, x[:12], x[12:], (0.0, 0.5), steps=2, seed=3)
    ref = scoring.binary_auroc(model, x[:12], x[12:], (0.0, 0.5), steps=2, seed=3)
    assert {e: stats.auroc(*scores[e]) for e in scores} == ref
    # the adversarial scenario pushes positives down and negatives up
    assert scores[0.5][0].mean() < scores[0.0][0].mean() and scores[0.5][1].mean() > scores[0.0][1].mean()


def test_scoring_settings_travel_as_one_record():
    """The keyword settings reach the attack (steps and step size change the adversarial scores, the clean ones
    stay), and an unknown setting fails naming it instead of being dropped."""
    torch.manual_seed(0)
    model = models.create_model("small_cnn", 1, 0.5).eval()
    x = torch.rand(16, 3, 32, 32)
    base = scoring.binary_auroc_scores(model, x[:8], x[8:], (0.0, 0.5), steps=2, seed=3)
    assert torch.equal(scoring.binary_auroc_scores(model, x[:8], x[8:], (0.0, 0.5), steps=2, seed=3)[0.5][0],
                       base[0.5][0])
    for other in (dict(steps=3, seed=3), dict(steps=2, step_size=0.01, seed=3)):
        s = scoring.binary_auroc_scores(model, x[:8], x[8:], (0.0, 0.5), **other)
        assert torch.equal(s[0.0][0], base[0.0][0]) and not torch.equal(s[0.5][0], base[0.5][0]), other
    with pytest.raises(TypeError, match="stepz"):
        scoring.binary_auroc(model, x[:8], x[8:], (0.0,), stepz=2)


def test_bootstrap_auroc_is_roc_auc_on_each_resample_and_paired():
    rng = np.random.default_rng(1)
    p, q = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 20).astype(float)  # many ties
    q2 = q + rng.normal(0, 0.5, 20)
    boot = stats.bootstrap_auroc([(p, q), (p, q2), (p, q)], n_boot=50, seed=7)
    assert boot.shape == (50, 3)
    np.testing.assert_array_equal(boot[:, 0], boot[:, 2])  # same resamples for every pair
    # each resample is a vector of draw counts: AUROC with those counts as sample weights
    r = np.random.default_rng(7)
    w_pos = r.multinomial(30, np.full(30, 1 / 30), size=50)
    w_neg = r.multinomial(20, np.full(20, 1 / 20), size=50)
    for b in range(3):
        ref = roc_auc_score(np.r_[np.ones(30), np.zeros(20)], np.r_[p, q2], sample_weight=np.r_[w_pos[b], w_neg[b]])
        assert boot[b, 1] == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="same positives"):
        stats.bootstrap_auroc([(p, q), (p[:5], q)])


def _record(fig, setting, seed, pos, neg, eps=(0.0, 0.5)):
    """A scored point with given (per eps) score arrays."""
    return {"figure": fig, "setting": setting, "seed": seed, "eps": list(eps), "run": f"{setting}-{seed}",
            "auroc": [stats.auroc(torch.as_tensor(p), torch.as_tensor(n)) for p, n in zip(pos, neg)],
            "scores_pos": [list(map(float, p)) for p in pos], "scores_neg": [list(map(float, n)) for n in neg]}


def test_compare_verdicts():
    """compare() judges a t test over training seeds (paired by seed) from the points' stored AUROCs alone."""
    hi, lo = ablate.OBJECTIVE_NAMES["combined"], ablate.OBJECTIVE_NAMES["out"]
    comp = ablate.Comparison("fig8_combined", "adv", hi, lo)

    def points(diffs, clean=0.0):  # per seed: adversarial AUROC of hi = lo + diff, clean AUROC equal + clean
        return [{"figure": "fig8", "setting": s, "seed": i, "eps": [0.0, 0.5], "n_pos": 200, "n_neg": 200,
                 "auroc": [0.9 + (clean if s == hi else 0), 0.7 + (d if s == hi else 0)]}
                for i, d in enumerate(diffs) for s in (hi, lo)]

    def verdict(recs, c=comp):  # the comparison judged alone by the one rule
        return C.judge(c.claim, [ablate.compare(recs, c)["_subject"]])[0]
    assert verdict(points([0.030, 0.025, 0.035, 0.028, 0.032])).decision == "supported"
    assert verdict(points([-0.030, -0.025, -0.035, -0.028, -0.032])).decision == "contradicted"
    flips = verdict(points([0.03, -0.03, 0.02, -0.02, 0.01]))   # seeds pointing different ways
    assert flips.decision == "not established" and flips.ci95[0] < 0 < flips.ci95[1]
    assert flips.evidence["seeds"] == 5 and flips.evidence["df"] == 4 and flips.evidence["n"] == 400
    two = verdict(points([0.03, 0.03]))                           # too few seeds for a test over seeds
    assert two.decision == "not established" and two.p is None and "3 or more" in two.note
    # clean metric uses eps 0 only: identical there -> difference exactly 0
    c = ablate.Comparison("fig8_combined", "clean", lo, hi)
    assert ablate.compare(points([0.03, 0.02, 0.04]), c)["diff"] == 0
    assert verdict(points([0.03, 0.02, 0.04]), c).decision == "not established"


def test_each_comparison_stores_its_verdict_once():
    """evaluate_claims (05's writer, and verdicts.json's re-derivation) stores each tested comparison's verdict as
    its verdict_record only, none of its fields copied beside it (issue 41 point 1); an untested comparison keeps its
    own verdict and why. Negative control: the check finds the copies in the committed 05 file (schema 3 wrote them)."""
    stored = json.loads((ROOT / "results" / "cpu" / "05_ablations.json").read_text())

    def copies(claims):
        return [(k, f) for k, c in claims.items() for r in c["comparisons"] if "verdict_record" in r
                for f in U.COPIED_VERDICT_FIELDS if f in r]
    assert len(copies(stored["claims"])) >= 5 * 5
    claims = ablate.evaluate_claims(from_dict(stored["provenance"]["config"]), stored["points"])
    tested = [r for c in claims.values() for r in c["comparisons"] if "verdict_record" in r]
    assert len(tested) >= 5 and copies(claims) == []
    cfg = tiny(**{"ablation.augmentations": ("crop_flip", "autoaugment_cutout")})
    points = [{"figure": "fig7", "setting": s, "seed": 0, "eps": [0.0], "auroc": [0.9]}
              for s in (ablate.AUGMENTATION_NAMES["crop_flip"], ablate.AUGMENTATION_NAMES["autoaugment_cutout"])]
    untested, = ablate.evaluate_claims(cfg, points)["fig7_augmentation"]["comparisons"]
    assert untested["verdict"] == "not tested" and untested["why"] and "verdict_record" not in untested


def test_claims_not_testable_with_one_value():
    cfg = tiny(**{"ablation.weight_decays": (1e-4,), "ablation.train_eps": (0.3,)})
    comps = ablate.comparisons(cfg)
    assert comps["fig5_weight_decay"] == [] and comps["fig6_train_eps"] == []
    assert len(comps["fig5_capacity"]) == 1 and len(comps["fig8_combined"]) == 2


def test_sanity_checks_flag_auroc_rising_with_eps():
    ok = {"figure": "fig6", "setting": "a", "seed": 0, "eps": [0.0, 0.5, 1.0], "auroc": [0.9, 0.8, 0.7]}
    bad = {**ok, "setting": "b", "auroc": [0.9, 0.7, 0.8]}
    assert ablate.sanity_checks([ok]) == []
    (msg,) = ablate.sanity_checks([ok, bad])
    assert "fig6 / b" in msg and "rises" in msg


def test_runtime_estimate_cpu_fits_the_budget():
    cpu = get_profile("cpu")
    # 900 img/s per job at width 0.125 (notebook 05's default, fitted to results/cpu's measured job time), width
    # cost exponent 1.6 (measured); 12 points x 5 training seeds
    est = ablate.estimate_runtime(cpu, images_per_s=900, width_exponent=1.6)
    assert est["n_jobs"] == 12 * len(cpu.ablation.seeds) and len(cpu.ablation.seeds) >= 5 and est["slots"] == 2
    assert est["wall_s"] <= 60 * 60, est["wall_s"]
    # one base job by hand: 1000 positives // 64 = 15 steps x 128 images x 6 epochs, 2 units per image (2-step PGD
    # on the half that are negatives + the update), at 900 images/s = 1800 units/s
    row = est["jobs"][(est["jobs"].setting == "train eps 0.1") & (est["jobs"].seed == 0)].iloc[0]
    assert row.train_s == pytest.approx(6 * 15 * 128 * 2 / 1800, abs=0.1)
    wide = est["jobs"][(est["jobs"].setting == "width 0.5, no wd") & (est["jobs"].seed == 0)].iloc[0]
    assert wide.train_s == pytest.approx(4 ** 1.6 * row.train_s, rel=1e-2)
    # the FLOP rule (exponent 2) errs long
    assert ablate.estimate_runtime(cpu, images_per_s=900)["wall_s"] > est["wall_s"]


def test_sweep_end_to_end_inline(tmp_runs, monkeypatch):
    cfg = tiny(**{"ablation.widths": (0.5, 1.0), "ablation.augmentations": ("crop_flip",)})
    records = ablate.run_sweep(cfg, progress=False)
    assert len(records) == 9 and len({r["run"] for r in records}) == 6
    r = records[0]
    assert r["n_pos"] == r["n_neg"] == 16 and r["eps"] == [0.0, 0.5]
    assert all(0.0 <= a <= 1.0 for rec in records for a in rec["auroc"])
    table = ablate.points_table(records, n_boot=200)
    assert ((table.ci_lo <= table.auroc + 1e-9) & (table.auroc <= table.ci_hi + 1e-9)).all()
    claims = ablate.evaluate_claims(cfg, records)
    assert set(claims) == set(ablate.comparisons(cfg))
    assert claims["fig7_augmentation"]["verdict"] == "not tested"
    for c in claims.values():
        assert c["verdict"] in C.CLAIM_DECISIONS
        assert all("verdict_record" in r for r in c["comparisons"] if "diff" in r)
    text = tables.ablation_conclusion(cfg, claims, "fig6")
    assert "Paper (Figure 6)" in text and "SYNTHETIC" in text
    fig = plots.ablation_auroc(table, "fig5", path=tmp_runs / "fig5.png")
    assert (tmp_runs / "fig5.png").stat().st_size > 0 and len(fig.axes[0].get_lines()) >= 4
    est = ablate.estimate_runtime(cfg, images_per_s=350)
    path = metrics_files.write_ablation_metrics(cfg, records, table, claims, estimate=est, checks=[], wall_time_s=1.0)
    saved = json.loads(open(path).read())
    assert path.endswith("smoke/05_ablations.json")
    assert saved["provenance"]["config"]["ablation"]["widths"] == [0.5, 1.0]
    assert saved["provenance"]["data_source"]["synthetic"] is True
    assert "scores_pos" not in saved["points"][0] and len(saved["points"][0]["ci_lo"]) == 2
    # a second call trains and scores nothing
    monkeypatch.setattr("genrobust.measure.ablate.train_binary", lambda *a, **k: pytest.fail("retrained"))
    again = ablate.run_sweep(cfg, progress=False)
    assert [x["auroc"] for x in again] == [x["auroc"] for x in records]


def test_job_function_is_picklable_and_seeds_the_init(tmp_runs):
    cfg = tiny()
    assert pickle.loads(pickle.dumps(ablate._ablation_job)) is ablate._ablation_job
    spec = ablate.eval_spec(cfg)
    pt = ablate.sweep_points(cfg)[0]
    torch.manual_seed(123)  # what ran before must not matter
    a = ablate._ablation_job(to_dict(ablate.point_profile(cfg, pt)), spec)
    ablate.eval_path(ablate.point_profile(cfg, pt), spec).unlink()
    shutil.rmtree(tmp_runs / "runs" / "binary")
    torch.manual_seed(456)
    before = torch.get_rng_state()
    b = ablate._ablation_job(to_dict(ablate.point_profile(cfg, pt)), spec)
    assert a == b  # same seed, same run, whatever the global RNG held
    assert torch.equal(before, torch.get_rng_state())  # and the caller's global RNG is left as it was

    def init(seed):
        with ablate.seeded_init(seed):
            return models.create_model("small_cnn", 1, 0.5).state_dict()["features.0.weight"].clone()
    assert torch.equal(init(0), init(0)) and not torch.equal(init(0), init(1))  # seeds differ in their init too
