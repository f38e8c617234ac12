"""paper-vs-ours tables and conclusions written from the numbers (notebooks)

Tables (pandas DataFrames, the paper's value beside ours) and conclusions written from the numbers, for the
notebooks; the report (:mod:`genrobust.reporting.report`) reuses them. Everything here reads records (evaluation,
calibration, generation, ablation), so it works as well on a reloaded metrics file.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..core import paper
from ..core.config import Profile
from ..core.fmt import ci_pct, pct
from ..core.registry import ATTACK_LABELS
from ..data.base import CLASSES
from ..measure.ablate import regime_note
from ..measure.accuracy import accuracy_rows, paired_tests
from ..measure.claims import Verdict, claim_decision, claim_info
from ..measure.record import EvalRecord


def config_table(cfg, sections=("model", "train")) -> pd.DataFrame:
    rows = []
    for sec in sections:
        for k, v in dataclasses.asdict(getattr(cfg, sec)).items():
            rows.append({"setting": f"{sec}.{k}", "value": str(v)})
    return pd.DataFrame(rows).set_index("setting")


def training_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        last = r["metrics"][-1] if r["metrics"] else {}
        best = next((m for m in r["metrics"] if m["epoch"] == r["best_epoch"]), last)
        out.append({
            "k": r["k"], "class": CLASSES[r["k"]], "epochs": r["epochs"], "selected epoch": r["best_epoch"],
            **{k.replace("_", " "): round(v, 4) for k, v in best.items() if k.endswith("auroc")},
            "final train loss": round(last.get("train_loss", float("nan")), 4),
            "images/s": last.get("images_per_s"),
            "wall time (min)": round(r["provenance"]["wall_time_s"] / 60, 2),
        })
    return pd.DataFrame(out).set_index("k")


def softmax_table(res: dict, cfg) -> pd.DataFrame:
    best = next((m for m in res["metrics"] if m["epoch"] == res["best_epoch"]), res["metrics"][-1])
    row = {"model": f"{cfg.softmax.model} (width {cfg.softmax.width})", "parameters": res["parameters"],
           "epochs": res["epochs"], "selected epoch": res["best_epoch"],
           **{k.replace("_", " "): round(v, 4) for k, v in best.items() if k.endswith("acc") and "train" not in k},
           "wall time (min)": round(res["provenance"]["wall_time_s"] / 60, 2)}
    return pd.DataFrame([row])


def tab3(cal: dict) -> pd.DataFrame:
    a = cal["accuracy"]
    rows = [
        {"classifier": "generative (before calibration)", "paper train %": pct(paper.TAB3["before"]["train"]),
         "ours train %": pct(a["train_before"]), "paper test %": pct(paper.TAB3["before"]["test"]),
         "ours test %": pct(a["test_before"])},
        {"classifier": "generative (after calibration)", "paper train %": pct(paper.TAB3["after"]["train"]),
         "ours train %": pct(a["train_after"]), "paper test %": pct(paper.TAB3["after"]["test"]),
         "ours test %": pct(a["test_after"])},
    ]
    return pd.DataFrame(rows).set_index("classifier")


def tab4(cal: dict) -> pd.DataFrame:
    return pd.DataFrame({"class": [f"c_{k + 1} ({CLASSES[k]})" for k in range(len(cal["c"]))],
                         "paper": list(paper.TAB4["c"]),
                         "ours": [round(v, 4) for v in cal["c"]]}).set_index("class").T


# ---------------------------------------------------------------------------------------------------------------
# Notebook 03: clean and robust accuracy (Tab. 1, Fig. 1) and the gradient-masking checks. Everything below reads
# evaluation records (genrobust.measure.accuracy.evaluate_classifier), so it works as well on a reloaded 03_accuracy.json.


def paired_table(records: dict) -> pd.DataFrame:
    """The paired tests of :func:`genrobust.measure.accuracy.paired_tests` as a table: accuracies of the two sides
    on the same images, the discordant counts, the difference and the exact McNemar p, unadjusted: a description,
    not a decision (the verdicts, Holm-adjusted, decide; no 'significant' column beside them)."""
    rows = [{"comparison": t["comparison"], "attack": t["attack"], "eps": t["eps"], "n": t["n"],
             "first %": pct(t["acc_first"]), "second %": pct(t["acc_second"]),
             "difference (points)": round(100 * t["diff"], 2), "right under first only": t["n_first"],
             "right under second only": t["n_second"],
             "McNemar p (unadjusted)": float(f"{t['p']:.3g}")} for t in paired_tests(records)]
    return pd.DataFrame(rows)


def accuracy_table(records: dict) -> pd.DataFrame:
    """Every run, the clean accuracy and the per-example worst case at each eps: accuracy with n and 95% Wilson
    interval, attack settings and cost. records: {kind: evaluate_classifier record}."""
    out = []
    for r in accuracy_rows(records):
        out.append({
            "classifier": r["classifier"], "eps": r["eps"], "attack": ATTACK_LABELS[r["attack"]], "role": r["role"],
            "n": r["n"], "accuracy %": pct(r["accuracy"]), "95% CI %": ci_pct(r["ci95"]),
            "steps": r.get("steps"), "step size": None if r.get("step_size") is None else round(r["step_size"], 4),
            "restarts": r.get("restarts"), "time (s)": r.get("time_s"),
            "s / attacked image": round(r["time_s"] / r["n_attacked"], 3) if r.get("n_attacked") else None,
        })
    order = {"clean": 0, "paper": 1, "strong": 2, "more steps": 3, "more restarts": 4, "large eps": 5, "worst case": 6}
    df = pd.DataFrame(out).astype({"steps": "Int64", "restarts": "Int64"})
    df["_o"] = df["role"].map(order)
    return df.sort_values(["classifier", "eps", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def tab1_entries(rec: dict, eps: float = paper.TAB1["eps"]) -> tuple[dict, dict | None, dict | None]:
    """Tab. 1's three numbers of one classifier's evaluation record at ``eps``: (clean, the paper's attack run,
    the per-example worst case over every attack at eps); the last two None when the paper's attack did not run
    at eps. The notebook's table and the report both read Tab. 1 through this."""
    typed = EvalRecord.from_dict(rec)
    run = typed.paper_run(eps)
    return rec["clean"], None if run is None else run.to_dict(), None if run is None else typed.worst(eps).to_dict()


def tab1(records: dict) -> pd.DataFrame:
    """Tab. 1 (eps = paper.TAB1['eps'], L2): the paper's standard and robust accuracy beside ours, with ours under
    the paper's attack and as the worst case over all attacks at that eps (n and 95% CI for each)."""
    rows = []
    for kind, rec in records.items():
        _, run, w = tab1_entries(rec)
        rows.append({
            "classifier": kind, "paper standard %": pct(paper.TAB1[kind]["clean"]),
            "ours clean %": pct(rec["clean"]["accuracy"]), "clean 95% CI": ci_pct(rec["clean"]["ci95"]),
            "n clean": rec["n"], "paper robust %": pct(paper.TAB1[kind]["robust"]),
            "paper's attack": ATTACK_LABELS[rec["paper_attack"]],
            "ours robust, paper's attack %": None if run is None else pct(run["accuracy"]),
            "paper-attack 95% CI": None if run is None else ci_pct(run["ci95"]),
            "n paper attack": None if run is None else run["n"],
            "ours robust, worst case %": None if w is None else pct(w["accuracy"]),
            "worst-case 95% CI": None if w is None else ci_pct(w["ci95"]),
            "n worst case": None if w is None else w["n"],
        })
    return pd.DataFrame(rows).set_index("classifier")


def checks_table(checks: list[dict]) -> pd.DataFrame:
    """The masking checks as a table; passed: True / False / None (not run)."""
    df = pd.DataFrame(checks, columns=["classifier", "type", "check", "passed", "detail"])
    df["passed"] = df["passed"].map({True: "yes", False: "NO", None: "not run"})
    return df


def verdicts_markdown(verdicts: list) -> str:
    """Stored verdicts (genrobust.measure.claims.Verdict, or their dicts) as markdown: per claim, the paper's
    statement, our decision and why, then one line per subject. Renders only; decides nothing."""
    vs = [v if isinstance(v, Verdict) else Verdict.from_dict(v) for v in verdicts]
    parts = []
    for claim in dict.fromkeys(v.claim for v in vs):
        mine = [v for v in vs if v.claim == claim]
        source, text = claim_info(claim)
        decision, why = claim_decision(mine)
        parts.append(f"**{source}: {text}.** Ours: **{decision}** ({why}).")
        parts.extend(f"- {v.render()}" for v in mine)
        parts.append("")
    return "\n".join(parts).strip()


def accuracy_conclusion(verdicts: list, checks: list[dict]) -> str:
    """Notebook 03's conclusion: the stored verdicts (Tab. 1, Fig. 1, the protocol gap; one rule, Holm over eps)
    and the masking checks as they came out."""
    lines = [verdicts_markdown(verdicts)] if verdicts else ["Only one classifier evaluated: no claim is tested."]
    failed = [c for c in checks if c["type"] == "masking" and c["passed"] is False]
    if failed:
        lines.append("**Masking checks failed:** " + "; ".join(f"{c['classifier']}: {c['check']}" for c in failed)
                     + ". Treat the affected robust accuracies as upper bounds.")
    else:
        lines.append("All gradient-masking checks passed (or were not run: see the table).")
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Notebook 04: Tab. 2 (FID of generated samples and counterfactuals)
def _pgd_name(steps, step_size) -> str:
    return f"L2 PGD, {steps} steps, step size {step_size:g}"


def tab2(rec: dict) -> pd.DataFrame:
    """Tab. 2: FID per PGD configuration x classifier, ours beside the paper's, for samples and counterfactuals."""
    rows = {}
    for c in sorted(rec["cells"], key=lambda c: (c["step_size"], c["steps"], c["classifier"])):
        row = rows.setdefault((_pgd_name(c["steps"], c["step_size"]), c["classifier"]), {})
        row[f"{c['kind']} (ours)"] = round(c["fid"], 2)
        row[f"{c['kind']} (paper)"] = c["paper"]
        if c.get("kid") is not None:  # KID x 1000 (the usual scale), with its SD over subsets
            row[f"{c['kind']} KID x1e3 (ours)"] = kid_text(c)
        row["N"] = c["n"]
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.names = ["PGD attack", "classifier"]
    cols = [c for kind in ("samples", "counterfactuals")
            for c in (f"{kind} (ours)", f"{kind} (paper)", f"{kind} KID x1e3 (ours)") if c in df.columns]
    return df[cols + ["N"]]


def kid_text(c: dict) -> str:
    """KID x 1000 and its SD over subsets, '12.34 +- 0.56' (the paper reports no KID)."""
    sd = "" if c.get("kid_std") is None else f" +- {1e3 * c['kid_std']:.2f}"
    return f"{1e3 * c['kid']:.2f}{sd}"


def generation_checks(rec: dict) -> pd.DataFrame:
    """Did each targeted attack reach its class? Rate classified as the target, mean p(target), L2 moved."""
    rows = [{"kind": c["kind"], "classifier": c["classifier"], "PGD": f"{c['steps']} x {c['step_size']:g}",
             "reached target %": pct(c["target_rate"]), "mean p(target)": round(c["mean_p_target"], 3),
             "mean L2 moved": round(c["mean_l2"], 2), "max L2 moved": round(c["max_l2"], 2)} for c in rec["cells"]]
    return pd.DataFrame(rows).set_index(["kind", "classifier", "PGD"])


def generation_conclusion(rec: dict, verdicts: list) -> str:
    """Notebook 04's conclusion: the stored Tab. 2 verdicts (paired half-subsampling per cell, Holm over the cells), then
    KID beside FID and the FID(test, train) anchor for scale."""
    by = {(c["kind"], c["steps"], c["step_size"], c["classifier"]): c for c in rec["cells"]}
    pairs = sorted({(k, s, a) for k, s, a, _ in by if (k, s, a, "generative") in by and (k, s, a, "softmax") in by})
    n_text = (f"N = {rec['n_samples']:,} images per cell" if rec["n_samples"] == rec["n_counterfactuals"] else
              f"N = {rec['n_samples']:,} samples / {rec['n_counterfactuals']:,} counterfactuals per cell")
    lines = [f"At {n_text} against {rec['n_reference']:,} reference training images (the paper states no N):",
             verdicts_markdown(verdicts) if verdicts else "No cell has both classifiers: Tab. 2's claim is not tested."]
    kids = [(k, st, a, by[(k, st, a, "generative")].get("kid"), by[(k, st, a, "softmax")].get("kid"))
            for k, st, a in pairs]
    if kids and all(g is not None and sm is not None for *_, g, sm in kids):
        k_win = sum(g < sm for *_, g, sm in kids)
        lines.append(f"KID (unbiased at any N; x 1000, {by[(kids[0][0], kids[0][1], kids[0][2], 'generative')]['kid_subsets']} "
                     f"subsets of {by[(kids[0][0], kids[0][1], kids[0][2], 'generative')]['kid_subset_size']}) is lower "
                     f"for the generative classifier in **{k_win} of {len(kids)}** cells: "
                     + "; ".join(f"{k}, {st} x {a:g}: {1e3 * g:.2f} vs {1e3 * sm:.2f}" for k, st, a, g, sm in kids)
                     + ".")
    anchor = rec["anchor"]
    lines.append(f"For scale, {anchor['n']:,} real test images score FID(test, train) = {anchor['fid']:.1f} "
                 "against the same reference: roughly what images as close to the training data as real test images "
                 "would get at this N.")
    low = [c for c in rec["cells"] if c["target_rate"] < 0.5]
    if low:
        lines.append("Check: the targeted attack reached its class for fewer than half of the images in "
                     + ", ".join(f"{c['classifier']} {c['kind']} ({c['steps']} steps: {100 * c['target_rate']:.0f}%)"
                                 for c in low)
                     + "; those images are only partly class-specific.")
    if rec.get("synthetic"):
        lines.append("**These are SYNTHETIC data and tiny models (smoke profile): the numbers exercise the code and "
                     "say nothing about the paper.**")
    if not all(c["full_rank"] for c in rec["cells"]):
        lines.append(f"With N <= 2048 ({n_text}) the 2048 x 2048 feature covariance is singular: the FIDs "
                     "are dominated by small-sample bias and are comparable only with FIDs at the same N, never "
                     "with the paper's.")
    elif min(rec["n_samples"], rec["n_counterfactuals"]) < 50000:
        lines.append(f"FID is biased upward at {n_text}: these numbers are comparable with each other "
                     "(equal N, same reference), not with the paper's values printed beside them.")
    return "\n\n".join(lines)


def inception_speed(rec: dict, cfg) -> str:
    """Measured Inception throughput of this run and what it implies for the profile's FID cost."""
    inc = rec["inception"]
    n_images = sum(c["n"] for c in rec["cells"]) + rec["anchor"]["n"]  # every cell + the FID(test, train) anchor
    ips = inc["images_per_s"]
    text = (f"Inception ({inc['weights']}, channels_last={inc['channels_last']}, fold_bn={inc['fold_bn']}, "
            f"{inc['torch_threads']} torch threads): **{ips:.1f} images/s**, measured on {inc['images_per_s_from']}")

    def dur(n_images):
        s = n_images / ips
        return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"
    return (text + f". At this speed the `{cfg.name}` profile's "
            f"{len(rec['cells'])} cells + anchor = {n_images:,} images take about {dur(n_images)} of Inception "
            f"per run, after a one-time reference pass of {rec['reference']['n']:,} images (about "
            f"{dur(rec['reference']['n'])}, then cached).")


# ---------------------------------------------------------------------------------------------------------------
# Notebook 05: the ablation claims
def claims_table(claims: dict) -> pd.DataFrame:
    """One row per comparison: settings, values, difference with its CI, per-seed differences, verdict (decision
    and interval from its verdict_record; a comparison without one, not tested or of the older rule, shows its own)."""
    rows = []
    for key, c in claims.items():
        for r in c["comparisons"] or [{"metric_name": "-", "higher": "-", "lower": "-", "verdict": c["verdict"],
                                       "why": c["why"]}]:
            v = Verdict.from_dict(r["verdict_record"]) if "verdict_record" in r else None
            decision, ci = (v.decision, v.ci95) if v is not None else (r["verdict"], r.get("ci"))
            rows.append({"claim": key, "metric": r["metric_name"], "expected higher": r["higher"],
                         "expected lower": r["lower"],
                         "higher": round(r["higher_value"], 4) if "diff" in r else None,
                         "lower": round(r["lower_value"], 4) if "diff" in r else None,
                         "difference": round(r["diff"], 4) if "diff" in r else None,
                         "95% CI": f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else None,
                         "per seed": ", ".join(f"{d:+.4f}" for d in r["seed_diffs"]) if "seed_diffs" in r else None,
                         "verdict": decision})
    return pd.DataFrame(rows).set_index("claim")


def comparison_line(r: dict) -> str:
    """One comparison of a claim as a markdown bullet with its numbers, for the notebook's conclusion."""
    if "diff" not in r:
        return f"- {r['higher']} vs {r['lower']}: {r['verdict']} ({r['why']})"
    seeds = f" (per seed {', '.join(f'{d:+.4f}' for d in r['seed_diffs'])})" if r["seeds"] > 1 else ""
    stored = Verdict.from_dict(r["verdict_record"]).render() if "verdict_record" in r else \
        f"{r['verdict']} ({r['why']})"  # a file of the older rule
    return (f"- {r['higher']} **{r['higher_value']:.4f}** vs {r['lower']} **{r['lower_value']:.4f}**{seeds}: "
            f"{stored}")


def ablation_conclusion(cfg: Profile, claims: dict, figure: str) -> str:
    """Markdown: each claim of ``figure``, the paper's statement, our verdict and the numbers behind it."""
    parts = []
    for key, c in claims.items():
        if not key.startswith(figure + "_"):
            continue
        parts.append(f"**Paper ({c['source']}):** {c['claim']}.  \n**Our run: {c['verdict'].upper()}** — {c['why']}.")
        parts.extend(comparison_line(r) for r in c["comparisons"])
        parts.append("")
    parts.append(f"*{regime_note(cfg)}*")
    return "\n".join(parts)
