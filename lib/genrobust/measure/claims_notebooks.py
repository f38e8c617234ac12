"""The verdicts of notebooks 03 (Tab. 1, Fig. 1, the protocol gap) and 04 (Tab. 2) from their stored evidence.

The verdicts of notebooks 03 and 04 from their stored evidence: Tab. 1, Fig. 1 and the protocol gap from the
evaluation records; Tab. 2 from the FID half-subsampling replicates. (05's, over training seeds, are
:mod:`genrobust.measure.ablate`'s.)
"""
from __future__ import annotations

from ..core import paper
from ..core.config import EvalConfig
from .claims_rule import ClaimError, Verdict, judge
from .claims_subjects import gap_subject, mcnemar_subject, same_attacks, slope_subject, subsample_subject
from .record import EvalRecord

__all__ = ["accuracy_verdicts", "generation_verdicts"]


# ---------------------------------------------------------------------------------------------------------------
# Notebook 03: Tab. 1, Fig. 1 and the protocol gap, from the evaluation records
def accuracy_verdicts(records: dict[str, EvalRecord], *, gap_tolerance: float = EvalConfig.aa_gap,
                      scale: str = "") -> list[Verdict]:
    """Verdicts of tab1_robust (worst case per strong eps), tab1_robust_paper (Tab. 1's own quantity: each
    classifier's paper attack at Tab. 1's eps, on every evaluation image), fig1_gap (the slope of the paper-attack
    gap against eps over the grid, eps 0 = clean), tab1_clean and protocol_<kind> (the paper's attack vs the worst
    case per strong eps, against ``gap_tolerance``, e.g. eval.aa_gap) from {kind: EvalRecord}."""
    out: list[Verdict] = []
    g, s = records.get("generative"), records.get("softmax")
    pair = {"first": "generative", "second": "softmax"}
    if g is not None and s is not None:
        strong = sorted(set(g.eps_values(("strong",))) & set(s.eps_values(("strong",))) - {0.0})
        subjects = []
        for e in strong:
            wg, ws = g.worst(e), s.worst(e)
            try:
                attacks = same_attacks(wg.attacks, ws.attacks, ("generative", "softmax"))
            except ClaimError:
                continue  # a classifier missed an attack at this eps: not comparable, so not a subject
            subjects.append(mcnemar_subject(wg.flags, ws.flags, f"eps {e:g}, worst case",
                                            {**pair, "eps": e, "attacks": attacks}))
        out += judge("tab1_robust", subjects, scale)
        grid = sorted(set(g.eps_values(("paper",))) & set(s.eps_values(("paper",))) - {0.0})
        e1 = paper.TAB1["eps"]
        if e1 in grid:
            out += judge("tab1_robust_paper", [mcnemar_subject(
                g.paper_flags(e1), s.paper_flags(e1), f"eps {e1:g}, paper's attacks (like-for-like with Tab. 1)",
                {**pair, "eps": e1, "attacks": ["paper"]})], scale)
        if grid:
            eps = [0.0] + grid
            out += judge("fig1_gap", [slope_subject([g.paper_flags(e) for e in eps], [s.paper_flags(e) for e in eps],
                                                    eps, f"eps {eps[0]:g}-{eps[-1]:g}, paper's attacks",
                                                    {**pair, "attacks": ["paper"]})], scale)
        out += judge("tab1_clean", [mcnemar_subject(g.clean_flags, s.clean_flags, "clean",
                                                    {**pair, "eps": 0.0, "attacks": []})], scale)
    for kind, rec in records.items():
        claim = f"protocol_{kind}"
        if claim not in paper.CLAIMS:
            continue
        subjects = []
        for e in sorted(set(rec.eps_values(("strong",))) - {0.0}):
            run, worst = rec.paper_run(e), rec.worst(e)
            if run is None or len(worst.attacks) < 2:
                continue
            subjects.append(gap_subject(run.flags, worst.flags, f"eps {e:g}",
                                        {"first": f"{kind}, paper's attack", "second": f"{kind}, worst case",
                                         "eps": e, "attacks": list(worst.attacks)}, gap_tolerance))
        out += judge(claim, subjects, scale)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Notebook 04: Tab. 2 from the paired FID half-subsampling replicates
def generation_verdicts(paired: list[dict], scale: str = "", chained: bool = False) -> list[Verdict]:
    """tab2_fid per cell from 04's stored subsampling replicates (each: kind, steps, step_size, diff = FID
    generative - softmax on the full sets, n, m, replicates). With ``chained`` (04's record says so) the 10-step
    cells continue the 7-step chains (the same starting images, 3 steps further), so the four cells are two
    independent comparisons, not four; Holm over the four is valid under any dependence (and conservative)."""
    subjects = []
    for b in paired:
        if "replicates" not in b:
            raise ClaimError(f"04's paired record for {b.get('kind')}, {b.get('steps')} steps holds no subsampling "
                             "replicates (written before the subsampling scheme of issue 39); re-run notebook 04 to judge Tab. 2")
        subjects.append(subsample_subject(
            b["replicates"], b["diff"], b["n"], b["m"], f"{b['kind']}, {b['steps']} x {b['step_size']:g}",
            {"first": "generative", "second": "softmax", "steps": b["steps"],
             **({"chained": "the longer runs continue the shorter ones' chains (the same starting images): "
                            "independent comparisons = kinds, not cells"} if chained else {})}, "FID"))
    return judge("tab2_fid", subjects, scale)
