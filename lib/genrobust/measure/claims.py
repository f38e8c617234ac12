"""Claims as data: one verdict engine under one statistical rule, the public surface of three modules, one job each
(callers write ``from genrobust.measure import claims`` and ``claims.judge(...)``, ``claims.Verdict``):

* :mod:`~genrobust.measure.claims_rule`: the :class:`Verdict` record and the one rule (Holm over a claim's subjects;
  supported / contradicted / not established with the detectable effect; the claim's decision; the scale);
* :mod:`~genrobust.measure.claims_subjects`: the subjects it judges, one statistical test each (paired McNemar, an
  attack's gap against a tolerance, Fig. 1's slope, t over training seeds, FID half-subsampling);
* :mod:`~genrobust.measure.claims_notebooks`: the verdicts of notebooks 03 (Tab. 1, Fig. 1, the protocol gap) and
  04 (Tab. 2) from their stored evidence.

Every claim of the paper that a notebook tests (ids in :data:`genrobust.core.paper.CLAIMS`) is judged here and
stored as :class:`Verdict` records; notebooks, REPORT.md and README only render them.
"""
from __future__ import annotations

from .claims_notebooks import accuracy_verdicts, generation_verdicts
from .claims_rule import ALPHA, CLAIM_DECISIONS, DECISIONS, ONE_RUN, POWER, ClaimError, Verdict, claim_decision, \
    claim_info, decide, detectable_effect, holm, holm_alphas, judge, scale_label
from .claims_subjects import MIN_SEEDS, MIN_SUBSAMPLES, gap_subject, mcnemar_interval, mcnemar_subject, same_attacks, \
    seed_t_subject, slope_subject, subsample_subject

__all__ = [
    "ALPHA", "POWER", "DECISIONS", "CLAIM_DECISIONS", "ClaimError", "Verdict", "claim_info", "holm", "decide",
    "holm_alphas", "detectable_effect", "judge", "claim_decision", "ONE_RUN", "scale_label", "same_attacks",
    "mcnemar_interval", "mcnemar_subject", "gap_subject", "MIN_SEEDS", "seed_t_subject", "slope_subject",
    "MIN_SUBSAMPLES", "subsample_subject", "accuracy_verdicts", "generation_verdicts",
]
