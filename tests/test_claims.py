"""The verdict engine (genrobust.measure.claims): one rule for every claim, with negative controls, and each case
issue 26 found overstated reading what its evidence supports."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genrobust.core import paper
from genrobust.measure import claims as C
from genrobust.measure.record import records

ROOT = Path(__file__).resolve().parents[1]


def flags(*bits: int) -> torch.Tensor:
    return torch.tensor(bits, dtype=torch.bool)


def paired(n_both: int, n_first_only: int, n_second_only: int, n_neither: int):
    """Two flag vectors on the same n images with the given discordant counts."""
    f = [1] * n_both + [1] * n_first_only + [0] * n_second_only + [0] * n_neither
    s = [1] * n_both + [0] * n_first_only + [1] * n_second_only + [0] * n_neither
    return flags(*f), flags(*s)


def subject(first, second, name="eps 0.5"):
    return C.mcnemar_subject(first, second, name, {"first": "generative", "second": "softmax"})


def test_one_rule_supported_contradicted_not_established(monkeypatch):
    up = C.judge("tab1_robust", [subject(*paired(50, 30, 2, 18))])[0]       # generative clearly more robust
    down = C.judge("tab1_robust", [subject(*paired(50, 2, 30, 18))])[0]     # the reverse
    tiny = C.judge("tab1_robust", [subject(*paired(50, 3, 1, 46))])[0]      # a small gap at small n
    assert (up.decision, down.decision, tiny.decision) == ("supported", "contradicted", "not established")
    assert up.effect > 0 > down.effect and up.detectable is None
    assert tiny.detectable is not None and tiny.detectable > abs(tiny.effect)
    # the detectable effect shrinks as n grows (the same discordance rate, 4%)
    bigger = C.judge("tab1_robust", [subject(*paired(500, 22, 18, 460))])[0]
    assert bigger.detectable < tiny.detectable
    # the direction comes from core/paper.CLAIMS: the same data contradict a claim of the other sign (tab1_clean
    # claims generative < softmax) and support it once the claim's sign in paper.CLAIMS is flipped
    higher = [subject(*paired(50, 30, 2, 18), "clean")]
    assert C.judge("tab1_clean", higher)[0].decision == "contradicted"
    source, text, sign = paper.CLAIMS["tab1_clean"][:3]
    monkeypatch.setitem(paper.CLAIMS, "tab1_clean", (source, text, -sign) + tuple(paper.CLAIMS["tab1_clean"][3:]))
    assert C.judge("tab1_clean", higher)[0].decision == "supported"


def test_a_protocol_gap_is_judged_against_the_tolerance_both_ways():
    """The cpu run's eps 1 gap, 17 images of 130 (13 points), is above a 2-point tolerance; no gap in 130 images
    cannot put it below (the interval reaches 2.8 points): not established, not 'adequate'."""
    gap = C.judge("protocol_generative", [C.gap_subject(*paired(40, 17, 0, 73), "eps 1", {}, 0.02)])[0]
    none = C.judge("protocol_generative", [C.gap_subject(*paired(40, 0, 0, 90), "eps 1", {}, 0.02)])[0]
    assert gap.decision == "contradicted" and gap.effect == pytest.approx(17 / 130)
    assert none.decision == "not established" and none.ci95[1] > 0.02


def test_holm_over_the_eps_of_one_claim_changes_a_borderline_decision():
    assert C.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert C.holm([None, 0.2]) == [None, 0.2]
    border = subject(*paired(50, 14, 4, 62), "eps 0.5")                      # p ~ 0.03 alone
    assert C.judge("tab1_robust", [border])[0].decision == "supported"
    nulls = [subject(*paired(50, 3, 3, 74), f"eps {e}") for e in (0.25, 1.0)]
    with_others = C.judge("tab1_robust", [border] + nulls)[0]
    assert with_others.p == border["p"] and with_others.p_adjusted == pytest.approx(3 * border["p"])
    assert with_others.decision == "not established"


def test_the_protocol_finding_of_three_images_is_not_established():
    """Issue 26: 'Finding (softmax)' read an overestimate from a 2.3-point gap, 3 of 130 images."""
    v = C.judge("protocol_softmax", [C.gap_subject(*paired(30, 3, 0, 97), "eps 1", {}, 0.02)])[0]
    assert v.decision == "not established"
    assert "not established" in v.render() and "could be detected" in v.render()


def test_numbers_under_different_attack_sets_are_refused():
    """Issue 26: Tab. 1's 'gap growing' compared the full worst case at eps 0.5 with the paper's attack alone at 2."""
    with pytest.raises(C.ClaimError, match="different attack sets"):
        C.same_attacks(["apgd-ce", "eq11_12", "multi_targeted"], ["eq11_12"])
    # each classifier's own paper attack is the same protocol (negative control)
    assert C.same_attacks(["apgd-ce", "eq11_12"], ["apgd-ce", "pgd"], ("generative", "softmax")) == ["apgd-ce", "paper"]


def test_an_ablation_difference_that_flips_between_seeds_is_not_established():
    flip = C.seed_t_subject([-0.03, 0.03, -0.02, 0.03, -0.01], 0.0, "adv", {}, "AUROC")
    assert C.judge("fig7_augmentation", [flip])[0].decision == "not established"
    # negative control: a consistent +0.02 on every seed (small spread) is supported
    steady = C.seed_t_subject([0.021, 0.019, 0.020, 0.022, 0.018], 0.02, "adv", {}, "AUROC")
    assert C.judge("fig7_augmentation", [steady])[0].decision == "supported"


def test_tab2_with_too_few_subsampling_replicates_states_no_interval():
    """Issue 26: Tab. 2's '95% interval' came from 10 bootstrap replicates; a stated SE needs MIN_SUBSAMPLES."""
    rng = np.random.default_rng(0)
    few = {"kind": "samples", "steps": 7, "step_size": 1.0, "diff": 32.5, "n": 2050, "m": 1025,
           "replicates": list(32.5 + rng.standard_normal(10))}
    (v,) = C.generation_verdicts([few])
    assert v.decision == "not established" and v.ci95 is None and v.p is None and str(C.MIN_SUBSAMPLES) in v.note
    enough = {**few, "replicates": list(32.5 + rng.standard_normal(C.MIN_SUBSAMPLES))}
    assert C.generation_verdicts([enough])[0].decision == "contradicted"  # the paper says lower, ours is higher
    with pytest.raises(C.ClaimError, match="re-run notebook 04"):      # a record from before issue 39
        C.generation_verdicts([{k: v for k, v in few.items() if k != "replicates"}])


def test_the_mcnemar_interval_excludes_zero_exactly_when_the_test_is_significant():
    """A stored verdict must not print an interval that excludes 0 beside 'not established' (the Wald interval did,
    in 86 of a grid of 1,800 cases, among them 03's 5-of-130 protocol gap at eps 0.25: p = 0.0625)."""
    for n in (130, 1000):
        for b in range(25):
            for c in range(25):
                t = C.mcnemar_subject(*paired(0, b, c, n - b - c), "x", {})
                lo, hi = t["ci95"]
                assert (lo > 0 or hi < 0) == (t["p"] < 0.05), (n, b, c, t["p"], lo, hi)
                assert lo <= t["effect"] + 1e-6 and t["effect"] <= hi + 1e-6  # effect: float32 accuracies
    five = C.judge("tab1_robust", [subject(*paired(40, 5, 0, 85), "eps 0.25")])[0]
    assert five.decision == "not established" and five.ci95[0] < 0 < five.ci95[1]
    gap = C.judge("tab1_robust", [subject(*paired(40, 17, 0, 73), "eps 1")])[0]  # control: decided
    assert gap.decision == "supported" and gap.ci95[0] > 0
    assert C.mcnemar_interval(0, 0, 130) == (0.0, 0.0)


def test_verdicts_round_trip_and_bad_ones_are_refused():
    v = C.judge("tab1_robust", [subject(*paired(50, 30, 2, 18))])[0]
    assert C.Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    with pytest.raises(C.ClaimError, match="unknown field"):
        C.Verdict.from_dict({**v.to_dict(), "confidence": "high"})
    with pytest.raises(C.ClaimError, match="unknown decision"):
        C.Verdict.from_dict({**v.to_dict(), "decision": "probably"})
    with pytest.raises(C.ClaimError, match="unknown claim id"):
        C.Verdict.from_dict({**v.to_dict(), "claim": "tab9"})
    with pytest.raises(C.ClaimError, match=r"lacks field\(s\) \['p_adjusted'\]") as err:
        C.Verdict.from_dict({k: x for k, x in v.to_dict().items() if k != "p_adjusted"})
    assert "\n" not in str(err.value)
    assert C.claim_decision([v, v]) == ("supported", "all 2 subject(s) supported")
    assert C.claim_decision([])[0] == "not tested"


def test_a_claim_with_an_untested_subject_is_not_tested_by_the_engine():
    """05's claim-level decisions are the engine's: one planned subject the sweep could not test makes the claim
    not tested (its reason), a claim without subjects gives the caller's reason; negative control: the same
    verdicts with every subject tested are decided."""
    v = C.judge("tab1_robust", [subject(*paired(50, 30, 2, 18))])[0]
    assert C.claim_decision([v], ["the sweep has no clean AUROC"]) == ("not tested", "the sweep has no clean AUROC")
    assert C.claim_decision([], (), "a single width") == ("not tested", "a single width")
    assert C.claim_decision([v], ()) == ("supported", "all 1 subject(s) supported")


def test_the_cpu_results_read_what_their_evidence_supports():
    """results/cpu's stored flags through the rule of issue 39 (03 of the 2026-12-05 pass, worst case on 250 images):
    the generative classifier's protocol gap is above the 2-point tolerance at eps 0.5 and 1 (not established at
    0.25: 3.2 points, interval [1.4, 6.2]); the softmax baseline's is decided nowhere (McNemar's one-way p had
    called eps 1 'contradicted'); Tab. 1's worst-case advantage is contradicted at eps 0.5 and 1, the like-for-like
    paper-attack one not established; Fig. 1's growing gap is contradicted (the gap shrinks with eps)."""
    stored = json.loads((ROOT / "results" / "cpu" / "03_accuracy.json").read_text())
    by = {(v.claim, v.subject): v.decision for v in C.accuracy_verdicts(records(stored["classifiers"]),
                                                                         gap_tolerance=stored["eval"]["aa_gap"])}
    assert [by[("protocol_generative", f"eps {e}")] for e in ("0.25", "0.5", "1")] == \
        ["not established", "contradicted", "contradicted"]
    assert {by[("protocol_softmax", f"eps {e}")] for e in ("0.25", "0.5", "1")} == {"not established"}
    assert by[("tab1_robust", "eps 1, worst case")] == by[("tab1_robust", "eps 0.5, worst case")] == "contradicted"
    assert by[("tab1_robust", "eps 0.25, worst case")] == "not established"
    assert by[("tab1_robust_paper", "eps 0.5, paper's attacks (like-for-like with Tab. 1)")] == "not established"
    assert by[("fig1_gap", "eps 0-2, paper's attacks")] == "contradicted"
    assert by[("tab1_clean", "clean")] == "contradicted"
