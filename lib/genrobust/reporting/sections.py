"""The report's sections, one per paper table or figure (Tab. 1-4, Fig. 1, paired tests, Figs. 5-8)

The report's sections, one per table or figure of the paper: the paper's value (genrobust.core.paper) beside ours
(read from the metrics files only), the difference, what differs in the setting (genrobust.reporting.setting) and
the file it comes from. The claims render the stored verdicts (genrobust.reporting.verdicts); nothing here decides.
A metrics file that does not exist yet gives "not run yet" rows, never an error; an unreadable one the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..core import paper
from ..core.fmt import ci_pct, pct
from ..core.registry import ATTACK_LABELS
from ..data.base import CLASSES
from ..measure.claims import Verdict
from ..measure.record import EvalRecord
from .metrics_files import VERDICTS_NAME, Source
from .plots import accuracy_vs_eps
from .setting import (ABLATION_BASE_KEYS, ABLATION_KEYS, ATTACK_KEYS, CALIB_KEYS, CLAIM_SWEEP, GEN_KEYS, MODEL_KEYS,
                      paper_ablation_config, setting_text)
from .tables import accuracy_conclusion, kid_text, paired_table, tab1_entries, verdicts_markdown
from .verdicts import ablation_claims, notebook_verdicts

VERDICT_AGREEMENT = {"supported": "agrees", "contradicted": "contradicts the paper",
                     "not established": "not established at this n", "mixed": "mixed", "not tested": "not tested"}


# ---------------------------------------------------------------------------------------------------------------
# Sections
@dataclass
class Section:
    """One part of the report: a table (paper vs ours), notes (markdown lines) and figures (PNG paths)."""
    key: str
    title: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # legend of the SETTING column: "S1" -> what differs

    @property
    def settings_markdown(self) -> str:
        return "\n".join(f"- **{k}** (ours vs paper): {v}" for k, v in self.settings.items())


SETTING = "setting (ours vs paper)"


def _section(key: str, title: str, rows: list[dict], notes: list[str], figures=()) -> Section:
    """A section whose rows name their setting by a short key ("S1") into a legend of the distinct settings: the
    long lists of differences are printed once below the table, not once per row."""
    legend: dict[str, str] = {}
    for r in rows:
        text = r.get(SETTING)
        if text:
            label = next((k for k, v in legend.items() if v == text), None) or f"S{len(legend) + 1}"
            legend[label] = text
            r[SETTING] = label
    return Section(key, title, pd.DataFrame(rows), notes, list(figures), legend)


def _diff(ours, ref, digits=2):
    if not isinstance(ours, (int, float)) or not isinstance(ref, (int, float)):
        return None
    return f"{ours - ref:+.{digits}f}"


def _figures(directory: Path, prefixes) -> list[tuple[str, Path]]:
    """PNG figures of results/<profile>/figures/ whose name starts with one of ``prefixes`` (e.g. 'fig1_')."""
    folder = directory / "figures"
    if not folder.is_dir():
        return []
    return [(p.stem, p) for pre in prefixes for p in sorted(folder.glob(f"{pre}*.png"))]


def tab1_section(sources: dict[str, Source]) -> Section:
    """Tab. 1: clean and robust accuracy at eps = paper.TAB1['eps'] (L2); ours under the paper's attack and as the
    worst case over every attack run at that eps."""
    src, eps = sources["03_accuracy"], paper.TAB1["eps"]
    rows = []
    for kind in ("generative", "softmax"):
        ref = paper.TAB1[kind]
        rec = src.record["classifiers"].get(kind) if src.ok else None
        clean, run, worst = tab1_entries(rec, eps) if rec is not None else (None, None, None)
        model_cfg = src.config
        attack = f" ({ATTACK_LABELS.get(rec['paper_attack'], rec['paper_attack'])})" if rec is not None else ""
        for quantity, paper_value, ours, keys in (
                ("standard accuracy (clean)", ref["clean"], clean, MODEL_KEYS[kind]),
                (f"robust accuracy, eps {eps:g}, paper's attack{attack}", ref["robust"], run,
                 MODEL_KEYS[kind] + ATTACK_KEYS),
                (f"robust accuracy, eps {eps:g}, worst case over all attacks", ref["robust"], worst,
                 MODEL_KEYS[kind] + ATTACK_KEYS)):
            if not src.ok:
                value = src.status
            elif rec is None:
                value = "not evaluated (not in eval.classifiers)"
            elif ours is None:
                value = f"not evaluated at eps {eps:g}"
            else:
                value = pct(ours["accuracy"])
            measured = isinstance(value, float)
            rows.append({
                "classifier": kind, "quantity": quantity, "paper %": pct(paper_value), "ours %": value,
                "difference (points)": _diff(value, pct(paper_value)) if measured else None,
                "ours 95% CI %": ci_pct(ours["ci95"]) if measured else None, "n": ours["n"] if measured else None,
                SETTING: setting_text(src.data_source, model_cfg, keys) if src.ok else None,
                "source": src.cite()})
    notes = [f"Paper: {paper.TAB1['source']}, CIFAR-10, L2 eps = {eps:g}. 'Worst case' counts an example as robust "
             "only if no attack (the paper's, AutoAttack's and multi-targeted, where run at this eps) broke it; the "
             "paper reports its own attack only."]
    if src.ok:
        failed = [c for c in src.record.get("checks", []) if c.get("type") == "masking" and c.get("passed") is False]
        notes.append("Gradient-masking checks: " + ("all passed (or not run)." if not failed else
                     "FAILED — " + "; ".join(f"{c['classifier']}: {c['check']}" for c in failed)
                     + ". Treat these robust accuracies as upper bounds."))
        verdicts, how = notebook_verdicts(src)
        notes.append(f"**Claims ({how}):**\n\n" + accuracy_conclusion(verdicts, src.record.get("checks", [])))
    return _section("tab1", "Tab. 1 — standard and robust accuracy", rows, notes)


def fig1_section(sources: dict[str, Source], directory: Path, *, replot: bool = True) -> Section:
    """Fig. 1: accuracy vs test eps (the paper gives a plot; its Tab. 1 points are the only numbers), with the PNG
    notebook 03 wrote (re-plotted from the JSON when it is missing)."""
    src = sources["03_accuracy"]
    rows = []
    if not src.ok:
        rows.append({"classifier": "generative, softmax", "eps": None, "paper %": None, "ours, paper's attack %":
                     src.status, "ours, worst case %": None, "source": src.cite()})
    else:
        for kind, rec in src.record["classifiers"].items():
            typed = EvalRecord.from_dict(rec)
            worst = {round(w.eps, 12): w.to_dict() for w in typed.worst_cases()}
            runs = {round(r.eps, 12): r.to_dict() for r in typed.paper_runs()}
            ref = paper.TAB1.get(kind, {})
            for e in sorted(set(worst) | set(runs) | {0.0}):
                paper_v = ref.get("clean") if e == 0 else ref.get("robust") if abs(e - paper.TAB1["eps"]) < 1e-12 \
                    else None
                at = rec["clean"] if e == 0 else runs.get(e)
                rows.append({"classifier": kind, "eps": e,
                             "paper %": pct(paper_v) if paper_v is not None else "plot only",
                             "ours, paper's attack %": None if at is None else pct(at["accuracy"]),
                             "n (paper's attack)": None if at is None else at["n"],
                             "ours, worst case %": pct(worst[e]["accuracy"]) if e in worst else None,
                             "n (worst case)": worst[e]["n"] if e in worst else None,
                             SETTING: setting_text(src.data_source, src.config, MODEL_KEYS.get(kind, ())
                                                   + (ATTACK_KEYS if e > 0 else ())),
                             "source": src.cite()})
    figures = _figures(directory, ("fig1_",))
    notes = ["Paper: Figure 1 (a plot; the only numbers it gives are Tab. 1's, at eps 0 and "
             f"{paper.TAB1['eps']:g})."]
    if src.ok and not figures and replot:
        path = directory / "figures" / "fig1_accuracy_vs_eps.png"
        plt.close(accuracy_vs_eps(src.record["classifiers"], paper.TAB1, path=path))
        figures = [(path.stem, path)]
        notes.append("The figure was re-plotted from 03_accuracy.json (notebook 03's PNG was missing).")
    return _section("fig1", "Fig. 1 — accuracy vs test eps", rows, notes, figures)


def paired_section(sources: dict[str, Source]) -> Section:
    """Paired tests on notebook 03's per-example flags (both classifiers attacked on the same test images): the
    generative vs the softmax classifier at every eps, under the paper's attacks and as the worst case, and the
    paper's attack vs AutoAttack on each classifier -- beside the CIs of Tab. 1 and Fig. 1."""
    src = sources["03_accuracy"]
    if not src.ok:
        table = pd.DataFrame([{"comparison": "generative vs softmax", "McNemar p (unadjusted)": src.status, "source": src.cite()}])
    else:
        table = paired_table(src.record["classifiers"])
        table["source"] = src.cite()
    notes = ["Two-sided exact McNemar test on the per-example flags of the two sides on the same images "
             "(genrobust.core.stats.mcnemar): 'first' is the side named first. The paper reports no test. The p "
             "values are unadjusted descriptions; the claims' verdicts (Holm over each claim's subjects, and for an "
             "attack against a worst case that contains it, a test against the tolerance) are in the sections "
             "above and in the findings."]
    return _section("paired", "Paired tests — the same test images under both classifiers and both attacks",
                    table.to_dict(orient="records"), notes)


def tab2_section(sources: dict[str, Source], directory: Path) -> Section:
    """Tab. 2: FID per PGD configuration x classifier x kind (samples / counterfactuals), paper beside ours."""
    src = sources["04_generation_fid"]
    cells = {(c["steps"], float(c["step_size"]), c["classifier"], c["kind"]): c
             for c in (src.record["cells"] if src.ok else [])}
    keys = [(s, float(a), clf, kind) for (s, a), per in ((k, v) for k, v in paper.TAB2.items() if k != "source")
            for clf, kinds in per.items() for kind in kinds]
    keys += sorted(k for k in cells if k not in keys)
    rows = []
    for steps, size, clf, kind in keys:
        ref = paper.TAB2.get((steps, size), {}).get(clf, {}).get(kind)
        c = cells.get((steps, size, clf, kind))
        value = (round(c["fid"], 2) if c else "not in this run") if src.ok else src.status
        measured = isinstance(value, float)
        rows.append({"PGD": f"{steps} steps, step size {size:g}", "classifier": clf, "images": kind,
                     "paper FID": ref, "ours FID": value,
                     "difference": _diff(value, ref) if measured and ref is not None else None,
                     "ours KID x1e3": kid_text(c) if measured and c.get("kid") is not None else None,
                     "N": c["n"] if measured else None, "reference N": c["n_reference"] if measured else None,
                     "comparable with": c.get("comparable") if measured else None,
                     SETTING: setting_text(src.data_source, src.config, MODEL_KEYS[clf] + GEN_KEYS)
                     if src.ok else None,
                     "source": src.cite()})
    if src.ok and src.record.get("anchor"):
        a = src.record["anchor"]  # unmodified test images against the same reference: the scale of "close to data"
        rows.append({"PGD": "none (real test images)", "classifier": "-", "images": a.get("what", "anchor"),
                     "paper FID": None, "ours FID": round(a["fid"], 2), "difference": None,
                     "ours KID x1e3": kid_text(a) if a.get("kid") is not None else None, "N": a["n"],
                     "reference N": a["n_reference"], "comparable with": a.get("comparable"),
                     SETTING: setting_text(src.data_source, src.config, GEN_KEYS), "source": src.cite()})
    notes = [f"Paper: {paper.TAB2['source']} (FID 'between the training samples and the generated samples', "
             "Sec. 3.3.2; the paper states no N; lower is better)."]
    if src.ok:
        verdicts, how = notebook_verdicts(src)
        notes.append("The last row, FID of unmodified test images against the same reference, is our scale for "
                     f"the others.\n\n**Claims ({how}):**\n\n" + verdicts_markdown(verdicts))
    return _section("tab2", "Tab. 2 — FID of generated samples and counterfactuals", rows, notes,
                    _figures(directory, ("fig2_", "fig3_")))


def _calibration_config(sources: dict[str, Source]) -> tuple[dict | None, str | None]:
    """02_calibration.json records the calibrated classifier's identity (binary run hashes, calib, data), not the
    profile: its model and training settings are read from 01_training.json when that exists."""
    cal, tr = sources["02_calibration"], sources["01_training"]
    if not cal.ok:
        return None, None
    cfg = dict(cal.config or {})
    if tr.ok and tr.config:
        for sec in ("model", "train", "softmax"):
            cfg.setdefault(sec, tr.config.get(sec))
        return cfg, ("Model and training settings of the Tab. 3/4 rows are read from 01_training.json "
                     "(02_calibration.json records only the classifier's binary-run hashes, calib and data).")
    return cfg, ("02_calibration.json does not record model and training settings and 01_training.json is "
                 "missing: only the data and calib settings are compared.")


def tab3_section(sources: dict[str, Source], directory: Path) -> Section:
    """Tab. 3: the generative classifier's train / test accuracy before and after calibration."""
    src = sources["02_calibration"]
    cfg, note = _calibration_config(sources)
    setting = setting_text(src.data_source, cfg, MODEL_KEYS["generative"] + CALIB_KEYS) if src.ok else None
    rows = []
    for stage in ("before", "after"):
        for split in ("train", "test"):
            ref = paper.TAB3[stage][split]
            ours = pct(src.record["accuracy"][f"{split}_{stage}"]) if src.ok else src.status
            rows.append({"classifier": f"generative ({stage} calibration)", "split": split, "paper %": pct(ref),
                         "ours %": ours, "difference (points)": _diff(ours, pct(ref)) if src.ok else None,
                         "n": src.record["n"][split] if src.ok else None, SETTING: setting,
                         "source": src.cite()})
    notes = [f"Paper: {paper.TAB3['source']}."] + ([note] if note else [])
    if src.ok:
        notes.append(f"c selected on **{src.record.get('select_on')}** after {src.record.get('steps')} Adam steps.")
    return _section("tab3", "Tab. 3 — accuracy before and after calibration", rows, notes,
                    _figures(directory, ("fig4_",)))


def tab4_section(sources: dict[str, Source]) -> Section:
    """Tab. 4: the calibration constants c_1..c_10 (the paper's 1-based numbering, CIFAR-10 class order)."""
    src = sources["02_calibration"]
    cfg, _ = _calibration_config(sources)
    setting = setting_text(src.data_source, cfg, MODEL_KEYS["generative"] + CALIB_KEYS) if src.ok else None
    rows = []
    for k, ref in enumerate(paper.TAB4["c"]):
        ours = (round(src.record["c"][k], 4) if k < len(src.record["c"]) else "missing") if src.ok else src.status
        rows.append({"constant": f"c_{k + 1}", "class": CLASSES[k], "paper": ref, "ours": ours,
                     "difference": _diff(ours, ref, 4) if isinstance(ours, float) else None,
                     SETTING: setting, "source": src.cite()})
    return _section("tab4", "Tab. 4 — calibration constants c_k", rows,
                    [f"Paper: {paper.TAB4['source']}. c is defined up to a common shift (Eq. 7's argmax ignores "
                     "it): compare the pattern, not the offset.",
                     "At reduced scale the pattern is within run-to-run noise: the same config trained with another "
                     "kind of CPU kernels (AVX2 vs AVX512; see the Machines note under Status) gives different "
                     "weights and a different c pattern at about the same accuracy (docs/reproducibility.md). Read "
                     "single c_k values of a small profile as noise, not as a finding."])



def comparison_cell(comp: dict, v: Verdict | None) -> str:
    """One comparison of a claim, compactly, for a table cell: its description, and the decision and interval of
    its verdict (a comparison without one shows its own stored reading: not tested, or the older rule)."""
    verdict, ci = (v.decision, v.ci95) if v is not None else (comp.get("verdict"), comp.get("ci"))
    if "diff" not in comp:
        return f"{comp.get('higher')} vs {comp.get('lower')}: {verdict}"
    interval = "" if ci is None else f" [{ci[0]:+.4f}, {ci[1]:+.4f}]"
    return f"{comp['metric_name']}: {comp['higher']} - {comp['lower']} = {comp['diff']:+.4f}{interval} ({verdict})"


def claims_section(sources: dict[str, Source], directory: Path) -> Section:
    """The qualitative claims of Figs. 5-8 (paper.ABLATION_CLAIMS) and our verdicts from notebook 05, as the one
    reader gives them (genrobust.reporting.verdicts.ablation_claims)."""
    src = sources["05_ablations"]
    cfg = reference = None
    claims = ablation_claims(src)
    if src.ok:
        cfg = {**(src.config or {}), **(src.record.get("ablation_base") or {})}
        reference = paper_ablation_config()
    rows = []
    for c in claims:
        keys = ABLATION_BASE_KEYS + (CLAIM_SWEEP[c.claim],) + ABLATION_KEYS
        why = c.why + (f" (its older reading: {c.older_reading})" if c.older_reading else "")
        rows.append({"figure": c.source, "claim": c.claim, "paper": f"claims: {c.text}", "ours": c.decision,
                     "difference": VERDICT_AGREEMENT.get(c.decision) if c.found else None,
                     "why": why if c.found else None,
                     "comparisons": "; ".join(comparison_cell(*cv) for cv in c.comparisons) if c.found else None,
                     SETTING: setting_text(src.data_source, cfg, keys, reference) if src.ok else None,
                     "source": src.cite()})
    notes = ["Paper: Figures 5-8 give curves only; each claim is tested here as paired comparisons, a t test over "
             "the training seeds (paired by seed), under the one rule of genrobust.measure.claims: supported / "
             "contradicted / not established."
             + (f" Re-derived from {src.path.name}'s per-seed AUROCs ({VERDICTS_NAME})."
                if any(c.rule_commit for c in claims) else "")]
    if src.ok:
        notes.append(src.record.get("regime", ""))
        notes += [f"Sanity check: {s}" for s in src.record.get("sanity_checks", [])]
    return _section("claims", "Figs. 5-8 — ablation claims", rows, notes,
                    _figures(directory, ("fig5_", "fig6_", "fig7_", "fig8_")))
