"""Issue 39: the verdict engine's tests, read as a statistician would. One test per defect, each failing on the rule
it replaces: coverage computed exactly or simulated on cases with a known answer, c = 0 pairs, 5-seed data."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import binom

from genrobust.core import paper, stats
from genrobust.measure import ablate, claims as C
from genrobust.measure import fid
from genrobust.measure.record import records
from test_accuracy import _record, _run
from genrobust.core.registry import PAPER_ATTACK


def flags(k: int, n: int) -> torch.Tensor:
    return torch.tensor([True] * k + [False] * (n - k))


def one_way(b: int, n: int, right: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(paper attack, worst case) flags on n images: ``right`` right under both, b more right under the paper's
    attack only (c = 0: the worst case is at most each attack)."""
    return flags(right + b, n), flags(right, n)


# 1. attack gaps: c = 0 by construction ------------------------------------------------------------------------
def test_an_attack_gap_is_judged_against_a_tolerance_not_by_mcnemar():
    n = 250
    paper_f, worst_f = one_way(6, n, 100)
    old = stats.mcnemar(paper_f, worst_f)               # the rule it replaces: p = 2^(1 - b), 'significant'
    assert old["n_second"] == 0 and old["p"] == pytest.approx(2.0 ** -5) and old["p"] < 0.05
    (v,) = C.judge("protocol_softmax", [C.gap_subject(paper_f, worst_f, "eps 0.5", {}, 0.02)])
    assert v.decision == "not established" and v.effect == pytest.approx(6 / 250)   # 2.4 points vs 2: undecided
    assert 0 <= v.ci95[0] < 6 / 250 < v.ci95[1] and v.detectable > 0 and "tolerance" in v.render()
    (none,) = C.judge("protocol_softmax", [C.gap_subject(*one_way(0, n, 100), "eps 0.5", {}, 0.02)])
    assert none.decision == "supported"                   # the null can hold: no gap in 250 puts it below 2 points
    (big,) = C.judge("protocol_softmax", [C.gap_subject(*one_way(20, n, 100), "eps 1", {}, 0.02)])
    assert big.decision == "contradicted"                 # 8 points: above the tolerance
    with pytest.raises(C.ClaimError, match="at most each attack"):
        C.gap_subject(worst_f, paper_f, "eps 0.5", {}, 0.02)


def test_the_gap_interval_covers_the_true_gap_and_the_mcnemar_one_did_not():
    """Exact coverage (summed over the binomial law of b, no simulation noise) of the gap's 95% interval at n = 250
    for true gaps of 1-5 points: Clopper-Pearson >= 95% and never below 0; McNemar's conditional interval, whose upper
    end equals the estimate when c = 0, covered about half the time (negative control)."""
    n = 250
    for gap in (0.01, 0.02, 0.03, 0.05):
        new = old = 0.0
        for b in range(n + 1):
            pr = binom.pmf(b, n, gap)
            lo, hi = C.gap_subject(*one_way(b, n, 0), "x", {}, 0.02)["ci95"]
            new += pr * (lo <= gap <= hi)
            assert lo >= 0
            lo, hi = C.mcnemar_interval(b, 0, n)
            old += pr * (lo <= gap <= hi)
        assert new >= 0.95 and old < 0.6, (gap, new, old)


# 2. scale in every label ---------------------------------------------------------------------------------------
def test_every_decision_is_rendered_with_its_scale():
    scale = C.scale_label("cpu", C.ONE_RUN)
    assert scale == "cpu profile, one training run per arm"
    (v,) = C.judge("tab1_clean", [C.mcnemar_subject(flags(90, 100), flags(60, 100), "clean", {})], scale)
    assert v.decision == "contradicted"
    assert "**contradicted** at this scale (cpu profile, one training run per arm)" in v.render()
    assert C.Verdict.from_dict(v.to_dict()) == v      # stored with the verdict, not added by a renderer


# 3. seed-level inference from 5 seeds --------------------------------------------------------------------------
def _points(diffs, setting_hi="combined", setting_lo="out", base=0.7):
    out = []
    for seed, d in enumerate(diffs):
        for setting, a in ((setting_hi, base + d), (setting_lo, base)):
            out.append({"figure": "fig8", "setting": setting, "seed": seed, "eps": [0.0, 0.5],
                        "auroc": [0.9, a], "n_pos": 300, "n_neg": 300})
    return out


def test_five_seeds_with_a_known_answer_are_judged_by_a_t_test_over_seeds():
    """Fig. 8's shape: one comparison's seed differences give t p = 0.035, Holm over two comparisons 0.070: not
    established (the hierarchical bootstrap read it 'supported')."""
    comp = ablate.Comparison("fig8_combined", "adv", "combined", "out")
    diffs = [0.030, 0.004, 0.021, 0.012, 0.038]
    r = ablate.compare(_points(diffs), comp)
    s = r["_subject"]
    d = np.asarray(diffs)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert s["df"] == 4 and s["p"] == pytest.approx(2 * (1 - __import__("scipy").stats.t.cdf(t, 4)))
    assert 0.01 < s["p"] < 0.05
    other = {**s, "subject": "clean", "p": 0.5, "effect": 0.001}
    v = C.judge("fig8_combined", [s, other])
    assert v[0].p_adjusted == pytest.approx(2 * s["p"]) and v[0].decision == "not established"
    assert v[0].evidence["df"] == 4 and v[0].detectable > abs(v[0].effect)
    with pytest.raises(ValueError, match="pair them by seed"):
        ablate.compare([p for p in _points(diffs) if not (p["seed"] == 0 and p["setting"] == "out")], comp)
    few = C.seed_t_subject([0.01, 0.02], 0.015, "x", {}, "AUROC")
    assert few["p"] is None and "3 or more" in few["note"]


def test_the_seed_level_test_keeps_its_level_when_seeds_differ():
    """Simulated 5-seed sweeps under a true difference of 0 with seed-to-seed spread: the t test over seeds rejects
    about 5% (its null holds); resampling 5 seeds (the percentile bootstrap it replaces: 83% coverage) far more."""
    rng = np.random.default_rng(0)
    sims, rej_t, rej_boot = 2000, 0, 0
    for _ in range(sims):
        d = rng.normal(0.0, 0.02, size=5)                # per-seed differences, true mean 0
        rej_t += C.seed_t_subject(d, d.mean(), "x", {}, "AUROC")["p"] < 0.05
        reps = d[rng.integers(0, 5, size=(500, 5))].mean(1)
        lo, hi = np.percentile(reps, [2.5, 97.5])
        rej_boot += not lo <= 0 <= hi
    assert rej_t / sims < 0.07 and rej_boot / sims > 0.12, (rej_t / sims, rej_boot / sims)


# 4. Fig. 1: the crossover, not 'better at every eps' -----------------------------------------------------------
def _fig1(acc_g, acc_s, n=400):
    """Records whose paper-attack accuracies over eps 0.5, 1, 2 (and clean) are the given counts, nested per
    image (so that a gap is a set of images)."""
    eps = (0.5, 1.0, 2.0)

    def rec(kind, counts):
        return _record(flags(counts[0], n), [_run(PAPER_ATTACK[kind], e, flags(k, n), "paper")
                                             for e, k in zip(eps, counts[1:])], kind=kind)
    return records({"generative": rec("generative", acc_g), "softmax": rec("softmax", acc_s)})


def test_fig1_is_the_growing_gap_of_the_paper_not_better_at_every_eps():
    crossover = _fig1([340, 300, 250, 200], [360, 280, 180, 80])   # softmax ahead clean, behind from eps 0.5 on
    (v,) = [v for v in C.accuracy_verdicts(crossover) if v.claim == "fig1_gap"]
    assert v.decision == "supported" and v.unit == "accuracy/eps" and v.evidence["crosses_zero_at"] == 0.5
    shrinking = _fig1([360, 300, 200, 100], [200, 170, 130, 90])   # ahead at every eps, the gap closing
    (w,) = [v for v in C.accuracy_verdicts(shrinking) if v.claim == "fig1_gap"]
    assert w.decision == "contradicted" and w.effect < 0
    assert "fig1_robust" not in paper.CLAIMS                         # the claim the paper does not make


# 5. Tab. 1 like-for-like beside the worst case -----------------------------------------------------------------
def test_tab1_gets_the_paper_attack_subject_on_every_image():
    recs = _fig1([340, 300, 250, 200], [360, 280, 180, 80])
    (v,) = [v for v in C.accuracy_verdicts(recs) if v.claim == "tab1_robust_paper"]
    assert v.evidence["n"] == 400 and v.evidence["attacks"] == ["paper"] and "like-for-like" in v.subject
    assert v.effect == pytest.approx((300 - 280) / 400)


# 6. FID: subsampling without replacement at n close to the dimension -------------------------------------------
@pytest.mark.slow
def test_fid_half_subsampling_covers_and_the_bootstrap_did_not():
    """A scaled-down Tab. 2: D = 8 features, n = 10 paired images (n close to D, as 2,050 vs 2,048), the truth
    the expected FID difference at this n (from 2,000 draws). The delete-n/2 jackknife interval from half-subsamples
    covers about 95%; the percentile interval of the bootstrap it replaces (rows drawn with replacement) about 80%
    (negative control: the simulation can see bad coverage)."""
    rng = np.random.default_rng(0)
    d, n, sims, reps = 8, 10, 100, C.MIN_SUBSAMPLES
    ref = fid.statistics(rng.standard_normal((5000, d)))
    scale = np.linspace(0.6, 1.4, d)

    def draw():
        z = rng.standard_normal((n, d))
        return z * scale + 0.3, 0.3 * z + 0.3 * rng.standard_normal((n, d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fid.FIDWarning)
        truth = np.mean([fid.fid(ref, a).fid - fid.fid(ref, b).fid for a, b in (draw() for _ in range(2000))])
        new = old = 0
        for s in range(sims):
            a, b = draw()
            sub = fid.paired_subsampling(ref, a, b, n_rep=reps, seed=s)
            lo, hi = C.subsample_subject(sub["replicates"], sub["diff"], n, sub["m"], "x", {}, "FID")["ci95"]
            new += lo <= truth <= hi
            ra, rb, r = fid.Resampler(ref, a), fid.Resampler(ref, b), np.random.default_rng(s)
            boot = [ra.fid(c) - rb.fid(c) for c in (np.bincount(r.integers(0, n, n), minlength=n) for _ in range(reps))]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            old += lo <= truth <= hi
    assert new / sims >= 0.9 and old / sims <= 0.85, (new / sims, old / sims)


def test_tab2_says_the_ten_step_cells_continue_the_seven_step_runs():
    rng = np.random.default_rng(0)
    cells = [{"kind": k, "steps": st, "step_size": 1.0, "diff": 5.0, "n": 2050, "m": 1025,
              "replicates": list(5 + rng.standard_normal(C.MIN_SUBSAMPLES))}
             for k in ("samples", "counterfactuals") for st in (7, 10)]
    v = C.generation_verdicts(cells, chained=True)
    assert all("2 independent" in x.evidence["chained"] or "kinds, not cells" in x.evidence["chained"] for x in v)
    assert "chained" not in C.generation_verdicts(cells)[0].evidence


# 8. smaller ----------------------------------------------------------------------------------------------------
def test_a_bootstrap_p_at_its_floor_prints_below_the_floor():
    p = 2 / 1000                                           # two-sided floor 2 / (B + 1) of B = 999 replicates
    v = C.Verdict("tab2_fid", "x", {"n_boot": 999}, "paired bootstrap", 1.5, (1.0, 2.0), p, p, "contradicted",
                  unit="FID")
    assert "p < 0.002" in v.render() and "p = 0.002" not in v.render()
    old = C.Verdict("tab2_fid", "x", {"n_boot": 1000}, "paired bootstrap", 1.5, (1.0, 2.0), 0.001, 0.004,
                    "contradicted", unit="FID")               # a stored verdict of the older floor 1 / B
    assert "p < 0.002" in old.render()


def test_holm_prints_through_the_same_floor_as_the_p_it_adjusts():
    """An adjusted p is never printed smaller than its raw p: below 1e-12 neither prints digits (a raw 'p < 1e-12'
    beside 'Holm 3.1e-198' read as the adjustment lowering it), a floored Holm equal to the raw one is not repeated,
    and above the floor Holm is printed as before."""
    tiny = C.Verdict("tab2_fid", "x", {"n": 2050}, "paired half-subsampling", 30.0, (28.0, 32.0), 1e-199, 3.1e-198,
                     "contradicted", unit="FID")
    assert "p < 1e-12;" in tiny.render() and "Holm" not in tiny.render() and "e-198" not in tiny.render()
    near = C.Verdict("tab2_fid", "x", {"n": 2050}, "paired half-subsampling", 30.0, (28.0, 32.0), 1e-13, 0.04,
                     "contradicted", unit="FID")
    assert "p < 1e-12 (Holm 0.04);" in near.render()
    plain = C.Verdict("tab1_robust", "x", {"n": 250}, "exact McNemar", -0.05, (-0.09, -0.01), 0.02, 0.04,
                      "contradicted")
    assert "p = 0.02 (Holm 0.04);" in plain.render()
    same = C.Verdict("tab1_robust", "x", {"n": 250}, "exact McNemar", -0.05, (-0.09, -0.01), 0.02, 0.02,
                     "contradicted")
    assert "Holm" not in same.render()

def test_the_detectable_effect_is_computed_at_the_level_holm_used():
    s = C.mcnemar_subject(flags(55, 100), flags(50, 100), "eps 0.5", {})
    alone = C.judge("tab1_robust", [s])[0]
    three = C.judge("tab1_robust", [s, {**s, "subject": "b", "p": 0.9}, {**s, "subject": "c", "p": 0.95}])
    assert alone.evidence["alpha"] == 0.05 and alone.decision == "not established"
    lowest = three[0]                                      # smallest p: Holm tests it at 0.05 / 3
    assert lowest.evidence["alpha"] == pytest.approx(0.05 / 3) and lowest.detectable > alone.detectable
    assert "level 0.0167" in lowest.render()
