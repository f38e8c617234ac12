"""Sanity checks of an evaluation (auto-attack's ``checks.py`` is the model): one small function per check, all
run from :data:`CHECKS` on every evaluation, their verdicts reported next to the numbers.

Each check takes (kind, record, eval config) -- ``record`` an :class:`genrobust.measure.record.EvalRecord` (the
typed view of an :func:`genrobust.measure.accuracy.evaluate_classifier` record; every run is found through it) --
and returns one row {classifier, check, passed, detail, type}. type 'masking': a failure means the robust
accuracies are not trustworthy (gradient masking or a weak attack); type 'finding': a result to report (the paper's
attack vs AutoAttack gap), not a failure. ``passed`` is None when the runs a check needs are missing. Paired
comparisons (same examples under two runs) use the one-sided exact McNemar test of
:func:`genrobust.core.stats.paired_increase` at 5%.
"""
from __future__ import annotations

from typing import Optional

from ..core.config import EvalConfig
from ..core.fmt import pct_text
from ..core.stats import paired_increase
from ..core.registry import ATTACK_LABELS, ATTACKS
from .record import AttackResult, EvalRecord, records


def _row(kind, name, passed, detail, type_="masking") -> dict:
    return {"classifier": kind, "check": name, "passed": passed, "detail": detail, "type": type_}


def _is_autoattack(run: AttackResult) -> bool:
    return ATTACKS[run.attack].family == "autoattack"


def _all_robust(rec: EvalRecord, runs: list[AttackResult], n: int):
    """(n,) bool: clean-correct and robust under every run in ``runs`` (runs at one eps; on the first n examples)."""
    return rec.worst(runs[0].eps, {r.attack for r in runs}).flags[:n]


def deterministic_outputs(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    mc = rec.model_checks
    return _row(kind, "deterministic outputs", mc["randomness_max_diff"] <= 1e-4,
                f"max difference of normalized outputs over two passes: {mc['randomness_max_diff']:.2g} "
                f"(n = {mc['n']})")


def outputs_are_logits(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    probs = rec.model_checks["probability_outputs"]
    return _row(kind, "outputs are logits", not probs,
                "rows look like probabilities: attack the logits" if probs else "outputs are not probability vectors")


def no_zero_gradients(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    mc = rec.model_checks
    return _row(kind, "no zero input gradients", mc["zero_gradients"] == 0,
                f"{mc['zero_gradients']} of {mc['n']} clean-correct examples have an exactly zero cross-entropy "
                f"input gradient")


def non_increasing_in_eps(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    """The paper's attack, each eps attacked independently: robust accuracy must not rise with eps beyond noise."""
    label = ATTACK_LABELS[rec.paper_attack]
    seq = [(0.0, rec.clean_flags)] + [(run.eps, run.flags) for run in rec.paper_runs()]
    tests = [(e0, e1, paired_increase(f0, f1)) for (e0, f0), (e1, f1) in zip(seq, seq[1:])]
    bad = [t for t in tests if t[2]["significant"]]
    worst = max(tests, key=lambda t: t[2]["b"] - t[2]["c"], default=None)
    accs = " -> ".join(f"{pct_text(f.float().mean().item())} @ {e:g}" for e, f in seq)
    detail = f"{label}: {accs}"
    if worst is not None and worst[2]["b"] > worst[2]["c"]:
        e0, e1, t = worst
        detail += (f"; largest increase eps {e0:g} -> {e1:g}: {t['b']} examples recovered vs {t['c']} lost "
                   f"(p = {t['p']:.2g})")
    return _row(kind, "accuracy non-increasing in eps", not bad if tests else None, detail)


def near_zero_at_large_eps(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    big = rec.first("large eps")
    label = ATTACK_LABELS[rec.paper_attack]
    return _row(kind, f"accuracy near 0 at eps = {ecfg.masking_eps:g}",
                None if big is None else big.accuracy <= ecfg.masking_max_acc,
                "not run" if big is None else
                f"{label}: {pct_text(big.accuracy)} of n = {big.n} (allowed <= {pct_text(ecfg.masking_max_acc)})")


def _more_budget(role: str, what: str):
    """The check that ``role``'s run (more steps / more restarts of the paper's attack at strong_eps) does not raise
    the robust accuracy of the paper's attack at that eps beyond noise (paired test on the same examples)."""
    def check(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
        name = f"{role} do not raise accuracy"
        base, r = rec.first("paper", ecfg.strong_eps), rec.first(role)
        if r is None or base is None:
            return _row(kind, name, None, "not run")
        n = min(len(r.robust), len(base.robust))
        t = paired_increase(base.prefix(n), r.prefix(n))
        b_acc = base.prefix(n).float().mean().item()
        return _row(kind, name, not t["significant"],
                    f"{ATTACK_LABELS[rec.paper_attack]} at eps {ecfg.strong_eps:g}, n = {n}: {base.settings[what]} "
                    f"{what} {pct_text(b_acc)} -> {r.settings[what]} {what} {pct_text(r.accuracy)} ({t['b']} "
                    f"recovered, {t['c']} newly broken, p = {t['p']:.2g})")
    check.__name__ = f"{what}_do_not_raise_accuracy"
    return check


more_steps = _more_budget("more steps", "steps")
more_restarts = _more_budget("more restarts", "restarts")


def _strong_eps(ecfg: EvalConfig) -> list[float]:
    """Every eps the strong attacks ran at (eval.strong_eps, then eval.strong_eps_more), in increasing order."""
    return sorted({ecfg.strong_eps, *ecfg.strong_eps_more})


def black_box_not_stronger(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    """Square (black-box) must not break examples that every white-box attack at the same eps left robust
    (auto-attack's check_square_sr), at every eps the strong attacks ran at."""
    name = "Square not stronger than white-box"
    results, details = [], []
    for eps in _strong_eps(ecfg):
        runs = rec.at(eps)
        sq = next((r for r in runs if ATTACKS[r.attack].black_box), None)
        white = [r for r in runs if not ATTACKS[r.attack].black_box]
        if sq is None or not white:
            continue
        n = min([len(sq.robust)] + [len(r.robust) for r in white])
        wb = _all_robust(rec, white, n)
        only = int((wb & ~sq.prefix(n)).sum())
        results.append(only <= ecfg.square_alpha * n)
        details.append(f"eps {eps:g}: Square breaks {only} of n = {n} examples that all {len(white)} white-box runs "
                       f"left robust (allowed <= {ecfg.square_alpha * n:.2g}); white-box worst case "
                       f"{pct_text(wb.float().mean().item())}, Square alone {pct_text(sq.prefix(n).float().mean().item())}")
    if not results:
        return _row(kind, name, None, "Square not run")
    return _row(kind, name, all(results), "; ".join(details))


def autoattack_warnings(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    """AutoAttack's own checks (randomness, probabilities as outputs, zero gradients, Square success), collected
    from its logger while it ran."""
    warn = rec.autoattack_warnings
    ran = any(_is_autoattack(r) for r in rec.runs)
    return _row(kind, "AutoAttack's own checks", not warn if ran else None,
                "no warnings" if not warn else " | ".join(warn))


def paper_vs_autoattack(kind: str, rec: EvalRecord, ecfg: EvalConfig) -> dict:
    """Finding: the paper's attack minus AutoAttack's worst case, at every eps AutoAttack ran at (each eps compared
    with its own runs), reported when > eval.aa_gap at any of them."""
    name = "paper's attack vs AutoAttack"
    results, details = [], []
    for eps in _strong_eps(ecfg):
        aa = [r for r in rec.at(eps) if _is_autoattack(r)]
        base = rec.first("paper", eps)
        if not aa or base is None:
            continue
        n = min([len(r.robust) for r in aa] + [len(base.robust)])
        p_acc, a_acc = base.prefix(n).float().mean().item(), _all_robust(rec, aa, n).float().mean().item()
        gap = p_acc - a_acc
        results.append(gap <= ecfg.aa_gap)
        details.append(f"eps {eps:g}, n = {n}: {ATTACK_LABELS[rec.paper_attack]} {pct_text(p_acc)}, AutoAttack "
                       f"({', '.join(r.attack for r in aa)}) {pct_text(a_acc)}: gap {100 * gap:+.1f} points")
    if not results:
        return _row(kind, name, None, "AutoAttack not run", "finding")
    return _row(kind, name, all(results), "; ".join(details) + f" (reported when > {100 * ecfg.aa_gap:.0f})",
                "finding")


# Every evaluation runs these, in this order (the order of the notebook's table).
CHECKS = (deterministic_outputs, outputs_are_logits, no_zero_gradients, non_increasing_in_eps, near_zero_at_large_eps,
          more_steps, more_restarts, black_box_not_stronger, autoattack_warnings, paper_vs_autoattack)


def masking_checks(stored: dict, ecfg: EvalConfig) -> list[dict]:
    """Every check of :data:`CHECKS` for every classifier; ``stored``: {kind: evaluate_classifier record or
    EvalRecord}, read once as EvalRecords."""
    return [check(kind, rec, ecfg) for kind, rec in records(stored).items() for check in CHECKS]
