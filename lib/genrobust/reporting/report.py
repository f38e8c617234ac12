"""The reproduction report (notebook 06, ``results/<profile>/REPORT.md``, ``genrobust report``): every number the
paper reports beside ours, built ONLY from the metrics JSON files notebooks 01-05 write into ``results/<profile>/``
(no training, no attacks: it runs in seconds and can be regenerated at any time).

Each comparison row carries the paper's value (from :mod:`genrobust.core.paper`), ours, the difference, what differs in
the setting and the results file it comes from. "What differs" is derived, not typed: the config recorded in the
results file's provenance is compared key by key with the ``paper`` profile of :mod:`genrobust.core.config`, and the
recorded data source with the paper's original CIFAR-10. A metrics file that does not exist yet (its notebook has
not run for this profile) gives "not run yet" rows, never an error; an unreadable one is reported the same way.

    ov = build("cpu")              # reads results/cpu/0[1-5]_*.json
    ov.sections["tab1"].table      # a DataFrame: paper vs ours
    write_report(ov)               # results/cpu/REPORT.md (atomic)
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..core import paper
from ..core.config import LEGACY_BUDGET_FIELDS, PAPER, budget_values, get_profile
from ..core.fmt import ci_pct, pct
from ..core.registry import ATTACK_LABELS, BUDGETS
from ..data.base import CLASSES
from ..measure.ablate import base_profile
from ..measure.claims import (ClaimError, Verdict, accuracy_verdicts, claim_decision, claim_info,
                              generation_verdicts)
from ..measure.record import EvalRecord
from ..measure.record import records as eval_records
from ..store.io import ResultsError, sha256_file, write_text
from ..store.paths import results_dir
from ..store.provenance import git_commit
from .metrics_files import METRICS_FILES, VERDICTS_NAME, Source, load_sources, read_verdicts
from .plots import accuracy_vs_eps
from .tables import (accuracy_conclusion, comparison_cell, kid_text, paired_table, tab1_entries,
                     verdicts_markdown)

# Sections whose figures the notebook embeds (Fig. 1, the report's one figure); the others are linked by relative
# path (notebooks 02-05 already embed them, and results/<profile>/figures/ holds the PNGs).
EMBEDDED_FIGURES = ("fig1",)
REPORT_NAME = "REPORT.md"
CHANGES_NAME = "CHANGES.md"  # which verdicts changed since an older copy (reporting.changes writes it)

# Config keys that change how fast a run goes, not what it computes: left out of "what differs".
EXECUTION_ONLY = frozenset({
    "name", "description", "executor", "workers", "num_threads", "train.channels_last", "softmax.channels_last",
    "eval.channels_last", "eval.batch_size", "gen.batch_size", "gen.fid_channels_last", "gen.fid_fold_bn",
    "gen.fid_batch_size", "gen.cache_features", "gen.n_show", "softmax.checkpoint",
    *(f"slurm.{k}" for k in ("partition", "gpus", "cpus", "mem_gb", "time_min", "lost_after_s")),
})
# Which recorded settings matter for which row (compared with the paper profile; only differing ones are shown).
MODEL_KEYS = {
    "generative": ("data.train_per_class", "model.name", "model.width", "train.epochs", "train.eps",
                   "train.attack_steps", "train.weight_decay", "train.select_on"),
    "softmax": ("data.train_per_class", "softmax.model", "softmax.width", "softmax.epochs", "softmax.eps",
                "softmax.attack_steps", "softmax.select_on"),
}
# The attacks' budgets compare per name (eval.budget.<name>, see _with_budgets), whichever way a file records them.
ATTACK_KEYS = ("eval.norm", "eval.n_test", "eval.steps", "eval.restarts", "eval.n_strong",
               *(f"eval.budget.{name}" for name in BUDGETS))
CALIB_KEYS = ("calib.select_on", "calib.train_per_class", "calib.max_steps", "calib.patience")
GEN_KEYS = ("gen.n_samples", "gen.n_counterfactuals", "gen.n_reference", "gen.eps", "gen.cf_target")
ABLATION_BASE_KEYS = ("data.train_per_class", "model.name", "model.width", "train.epochs", "train.weight_decay",
                      "train.eps", "train.attack_steps")
ABLATION_KEYS = ("ablation.cls", "ablation.test_eps", "ablation.attack_steps", "ablation.n_test", "ablation.seeds")
# The sweep field each claim of paper.ABLATION_CLAIMS varies (genrobust.measure.ablate.comparisons).
CLAIM_SWEEP = {"fig5_capacity": "ablation.widths", "fig5_weight_decay": "ablation.weight_decays",
               "fig6_train_eps": "ablation.train_eps", "fig7_augmentation": "ablation.augmentations",
               "fig8_combined": "ablation.objectives"}
VERDICT_AGREEMENT = {"supported": "agrees", "contradicted": "contradicts the paper",
                     "not established": "not established at this n", "mixed": "mixed",
                     "inconclusive": "inconclusive (older rule)", "not tested": "not tested"}
_MISSING = object()


# ---------------------------------------------------------------------------------------------------------------
# What differs from the paper's setting (derived from the recorded configs)
def _get(cfg: dict | None, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _with_budgets(cfg: dict | None) -> dict | None:
    """A recorded config with its attack budgets resolved per name under eval.budget ({name: value}: eval.budgets,
    the aa_* fields of files written before the attacks owned their budgets, else the attack's default), so old and
    new results files compare alike."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("eval"), dict):
        return cfg
    ev = {k: v for k, v in cfg["eval"].items() if k not in LEGACY_BUDGET_FIELDS and k != "budgets"}
    return {**cfg, "eval": {**ev, "budget": budget_values(cfg["eval"])}}


def _norm(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)  # tuples and lists compare equal, as in the JSON files


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


PAPER_CONFIG = dataclasses.asdict(PAPER)


def _paper_ablation_config() -> dict:
    return dataclasses.asdict(base_profile(PAPER))


def differences(config: dict | None, keys, reference: dict | None = None) -> list[str]:
    """'key ours vs paper' for every key whose recorded value differs from the paper profile's (keys absent from
    the recorded config are skipped)."""
    config, reference = _with_budgets(config), _with_budgets(PAPER_CONFIG if reference is None else reference)
    out = []
    for key in keys:
        if key in EXECUTION_ONLY:
            continue
        ours, ref = _get(config, key), _get(reference, key)
        if ours is _MISSING or _norm(ours) == _norm(ref):
            continue
        out.append(f"{key} {_fmt(ours)} vs {'-' if ref is _MISSING else _fmt(ref)}")
    return out


def data_difference(data_source: dict | None) -> list[str]:
    """The data copy against the paper's (the original CIFAR-10 python batches are the paper's data)."""
    if not data_source:
        return ["data source not recorded"]
    if data_source.get("synthetic"):
        return [f"SYNTHETIC data, not CIFAR-10 (paper: {paper.SETUP['data']})"]
    if data_source.get("kind") != "batches":
        return [f"data: {data_source.get('name', data_source.get('kind'))} vs {paper.SETUP['data']}"]
    return []


def setting_text(data_source: dict | None, config: dict | None, keys, reference: dict | None = None) -> str:
    diffs = data_difference(data_source) + differences(config, keys, reference)
    return "; ".join(diffs) if diffs else "same as the paper profile"


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
        verdicts, how = stored_verdicts(src)
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
             "(genrobust.core.metrics.mcnemar): 'first' is the side named first. The paper reports no test. The p "
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
        verdicts, how = stored_verdicts(src)
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


def judged_entry(src: Source) -> dict | None:
    """This notebook's entry of verdicts.json beside its metrics file (:func:`genrobust.reporting.metrics_files.
    judge_evidence`), when that file exists and was judged from this very file (same sha256); else None."""
    judged = read_verdicts(src.path.parent)
    entry = (judged or {}).get("notebooks", {}).get(src.notebook)
    if entry is None or not src.path.is_file() or entry.get("sha256") != sha256_file(src.path).hexdigest():
        return None
    return entry


def stored_verdicts(src: Source) -> tuple[list[dict], str]:
    """(verdicts, where they come from) of notebook 03's or 04's metrics file: those of verdicts.json, re-derived
    from the file's stored evidence by today's rule; where verdicts.json could not re-judge it, the notebook's own
    stored ones, marked so; for a file written before verdicts were stored (schema 1-2), the same rule
    (genrobust.measure.claims) applied to its stored per-example flags (03) or paired bootstraps (04)."""
    entry = judged_entry(src)
    if entry is not None and "verdicts" in entry:
        return entry["verdicts"], f"{VERDICTS_NAME}: re-derived from {src.path.name}'s stored evidence by today's rule"
    if entry is not None and "verdicts" in src.record:
        return src.record["verdicts"], (f"NOT re-judged under today's rule ({entry['not_judged']}); the verdicts "
                                        f"{src.path.name} stored under the rule of commit {src.commit[:7]}")
    if "verdicts" in src.record:
        return src.record["verdicts"], "stored in " + src.path.name
    try:
        if src.notebook == "03_accuracy":
            found = accuracy_verdicts(eval_records(src.record["classifiers"]))
        else:
            found = generation_verdicts(src.record.get("paired", []))
    except ClaimError as err:  # e.g. a 04 without verdicts or replicates: nothing the rule can judge
        return [], f"{src.path.name} cannot be judged: {err}"
    return ([v.to_dict() for v in found],
            f"{src.path.name} predates stored verdicts: computed by genrobust.measure.claims from its stored data")


def claims_section(sources: dict[str, Source], directory: Path) -> Section:
    """The qualitative claims of Figs. 5-8 (paper.ABLATION_CLAIMS) and our verdicts from notebook 05."""
    src = sources["05_ablations"]
    cfg = reference = None
    judged = judged_entry(src) if src.ok else None
    if judged is not None and "claims" in judged:  # re-derived from the file's per-seed AUROCs (verdicts.json)
        src = dataclasses.replace(src, record={**src.record, "claims": judged["claims"]})
    if src.ok:
        cfg = {**(src.config or {}), **(src.record.get("ablation_base") or {})}
        reference = _paper_ablation_config()
    rows = []
    for key, (figure, text) in paper.ABLATION_CLAIMS.items():
        c = src.record.get("claims", {}).get(key) if src.ok else None
        if c and src.record.get("schema_version", 1) < 3 and c["verdict"] != "not tested":
            # a file of the older rule: without per-image scores it cannot be judged by the hierarchical bootstrap
            c = {**c, "verdict": "not established",
                 "why": f"{src.path.name} predates the current rule and stores {len(c['comparisons'][0].get('seed_diffs', []))} "
                        "training seed(s) and no per-image scores, so the hierarchical bootstrap over seeds and "
                        f"images cannot be applied (its older reading: {c['verdict']}, {c['why']})"}
        verdict = (c["verdict"] if c else "not in this run") if src.ok else src.status
        keys = ABLATION_BASE_KEYS + (CLAIM_SWEEP[key],) + ABLATION_KEYS
        rows.append({"figure": figure, "claim": key, "paper": f"claims: {text}", "ours": verdict,
                     "difference": VERDICT_AGREEMENT.get(verdict) if c else None,
                     "why": c["why"] if c else None,
                     "comparisons": "; ".join(comparison_cell(r) for r in c["comparisons"]) if c else None,
                     SETTING: setting_text(src.data_source, cfg, keys, reference) if src.ok else None,
                     "source": src.cite()})
    notes = ["Paper: Figures 5-8 give curves only; each claim is tested here as paired comparisons, a t test over "
             "the training seeds (paired by seed), under the one rule of genrobust.measure.claims: supported / "
             "contradicted / not established."
             + (f" Re-derived from {src.path.name}'s per-seed AUROCs ({VERDICTS_NAME})." if judged else "")]
    if src.ok:
        notes.append(src.record.get("regime", ""))
        notes += [f"Sanity check: {s}" for s in src.record.get("sanity_checks", [])]
    return _section("claims", "Figs. 5-8 — ablation claims", rows, notes,
                    _figures(directory, ("fig5_", "fig6_", "fig7_", "fig8_")))


STORED_VERDICTS = ("03_accuracy", "04_generation_fid")  # their claims come from verdicts (05's from its claims)


@dataclasses.dataclass(frozen=True)
class ClaimVerdicts:
    """One claim's verdict in one results directory: the decision, why, and its subjects' stored verdicts
    (none where the file cannot be judged). ``stored``: False where the verdicts were computed from an older
    file's stored data (or the file could not be judged) rather than stored by the notebook."""
    source: str            # the paper's table, figure or section
    claim: str             # id: core.paper.CLAIMS or paper.ABLATION_CLAIMS
    text: str              # the paper's claim
    decision: str
    why: str
    subjects: tuple[Verdict, ...]
    stored: bool
    notebook: str
    commit: str
    models: tuple[tuple[str, str], ...] = ()   # (classifier, weights digest) the notebook evaluated; () for 05
    rule_commit: str = ""  # the commit whose rule re-derived them from the file's evidence (verdicts.json); "" if not


def _models(src: Source) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((kind, ck.get("weights_sha256", "")) for kind, ck in
                        (src.record.get("checkpoints") or {}).items()))


def _notebook_claims(src: Source) -> list[ClaimVerdicts]:
    """The claims of 03 or 04, one per claim id, from their stored verdicts (or the rule applied to an older file)."""
    verdicts = [Verdict.from_dict(v) for v in stored_verdicts(src)[0]]
    rule = _rule_commit(src)
    out = []
    for claim in dict.fromkeys(v.claim for v in verdicts):
        mine = tuple(v for v in verdicts if v.claim == claim)
        decision, why = claim_decision(mine)
        out.append(ClaimVerdicts(*claim_info(claim)[:1], claim, claim_info(claim)[1], decision, why, mine,
                                 "verdicts" in src.record or bool(rule), src.notebook, src.commit, _models(src),
                                 rule))
    return out


def _rule_commit(src: Source) -> str:
    """The commit of verdicts.json where it re-derived this notebook's verdicts from the file's evidence, else ""."""
    entry = judged_entry(src) if src.ok else None
    if entry is None or "not_judged" in entry:
        return ""
    return (read_verdicts(src.path.parent) or {}).get("provenance", {}).get("git_commit", "unknown")


def _ablation_claims(sources: dict[str, Source], directory: Path) -> list[ClaimVerdicts]:
    """The claims of Figs. 5-8 from 05's file, as REPORT.md's claims section reads them."""
    src = sources["05_ablations"]
    stored = src.ok and src.record.get("schema_version", 1) >= 3
    rule = _rule_commit(src)
    judged = (judged_entry(src) or {}).get("claims") if rule else None
    out = []
    for _, r in claims_section(sources, directory).table.iterrows():
        c = (judged or src.record.get("claims", {})).get(r["claim"]) if src.ok else None
        subjects = tuple(Verdict.from_dict(comp["verdict_record"]) for comp in (c or {}).get("comparisons", ())
                         if stored and "verdict_record" in comp)
        why = str(r["why"] or "").split(" (its older reading")[0]  # an older file: the reason it is not judged
        out.append(ClaimVerdicts(r["figure"], r["claim"], r["paper"].removeprefix("claims: "), r["ours"],
                                 why or "see REPORT.md", subjects, stored, src.notebook, src.commit, (), rule))
    return out


def claim_verdicts(directory: str | os.PathLike) -> list[ClaimVerdicts]:
    """Every claim notebooks 03-05 judge, in the order of README's verdicts table. A missing or unreadable 03 or
    04 file is a ResultsError naming it (05's claims then read 'not run')."""
    directory = Path(directory)
    sources = load_sources(directory)
    out: list[ClaimVerdicts] = []
    for nb in STORED_VERDICTS:
        src = sources[nb]
        if not src.ok:
            raise ResultsError(f"the verdicts need {src.path} ({src.status})")
        out += _notebook_claims(src)
    return out + _ablation_claims(sources, directory)


def findings_markdown(directory: str | os.PathLike) -> str:
    """The findings in long form (REPORT.md; README holds the compact table): one numbered item per decided claim
    (supported, contradicted or mixed) with each subject's verdict rendered (effect, 95% interval, p and Holm p,
    test, n, scale), then one item per claim not established with, per subject, the smallest effect its n could
    have detected at the level Holm tested it at. Rendered from the stored (or re-derived) verdicts only."""
    d = Path(directory)
    claims = claim_verdicts(d)
    commits = ", ".join(dict.fromkeys(c.commit[:7] for c in claims))
    rules = ", ".join(dict.fromkeys(c.rule_commit[:7] for c in claims if c.rule_commit))
    judged = read_verdicts(d) is not None
    items, undecided = [], []
    for c in claims:
        if judged and not c.rule_commit:  # verdicts.json could not re-derive it: the notebook's older reading
            look = f"NOT re-judged under the corrected rule ({c.notebook}.json lacks its evidence); its stored reading"
            items.append(f"**{c.source}: {c.text} -- {c.decision}** ({look}). " +
                         "; ".join(v.render() for v in c.subjects))
            continue
        if c.decision in ("supported", "contradicted", "mixed"):
            subjects = "; ".join(v.render() for v in c.subjects)
            look = second_look(d.name, c.claim)
            items.append(f"**{c.source}: {c.text} -- {c.decision}.** {subjects or c.why}" +
                         (f" *Note: {look}.*" if look else ""))
            continue
        notes = dict.fromkeys(v.note for v in c.subjects if v.note)
        det = [v for v in c.subjects if v.detectable is not None]
        if notes or not det:  # e.g. too few replicates for an interval: the reason, not a size
            can = f" ({'; '.join(notes) or c.why})"
        else:  # per subject, at the level Holm tested it at (not the smallest across subjects)
            can = ": " + "; ".join(
                f"{v.subject}: {v.fmt(v.effect)}, only {v.fmt(v.detectable).lstrip('+')} or more detectable"
                + (f" with {v.evidence['seeds']} seeds" if v.evidence.get("seeds") else
                   f" at n = {v.evidence['n']:,}" if v.evidence.get("n") else "")
                + (f", level {v.evidence['alpha']:.3g}" if v.evidence.get("alpha") else "") for v in det)
        look = second_look(d.name, c.claim)
        undecided.append(f"{c.source}, {c.text}{can}" + (f" (note: {look})" if look else ""))
    if undecided:
        items += [f"**Not established at this n** (no subject decided): {u}." for u in undecided]
    return (f"From the metrics files of results/{d.name} (notebooks 03-05 at commit {commits})"
            + (f", judged by the rule of commit {rules} ({VERDICTS_NAME})" if rules else "") + ":\n\n" +
            "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)))


# Verdicts whose evidence grew after a look at it: (profile, claim) -> what happened. results/cpu's worst case ran
# on 130 images first; n_strong went to 250 after that look decided less (docs/verdicts-2026-12-05.md), an
# unplanned second look, so the p values of these claims at n = 250 are somewhat optimistic.
SECOND_LOOKS = {("cpu", claim): "n_strong raised from 130 to 250 after a look at n = 130 that decided less "
                                "(docs/verdicts-2026-12-05.md): a second, unplanned look; its p values are somewhat "
                                "optimistic" for claim in ("tab1_robust", "protocol_generative", "protocol_softmax")}


def second_look(profile: str, claim: str) -> str:
    """What :data:`SECOND_LOOKS` says of this claim of this profile ("" if nothing)."""
    return SECOND_LOOKS.get((profile, claim), "")


def _scale_words(directory: Path) -> str:
    """'cpu profile, one training run per arm (Figs. 5-8: 5 training runs per setting)' from the stored verdicts."""
    scales = list(dict.fromkeys(v.scale for c in claim_verdicts(directory) for v in c.subjects if v.scale))
    return "; ".join(scales) or f"{Path(directory).name} profile"


def status_table(sources: dict[str, Source]) -> pd.DataFrame:
    return pd.DataFrame([{"notebook": nb, "results file": s.path.name, "status": s.status,
                          "holds": METRICS_FILES[nb]} for nb, s in sources.items()])


def provenance_table(sources: dict[str, Source]) -> pd.DataFrame:
    """Where every number comes from: per results file its config hash, git commit, data source and run facts."""
    rows = []
    for nb, s in sources.items():
        p, ds = s.provenance, s.data_source or {}
        rows.append({"results file": s.path.name, "status": s.status, "created": p.get("created"),
                     "git commit": s.commit[:12] + ("-dirty" if s.commit.endswith("-dirty") else "") if s.ok else None,
                     "config hash": s.config_hash, "data source": ds.get("name") if s.ok else None,
                     "data sha256": (ds.get("sha256") or "none (synthetic)")[:16] if s.ok and ds else None,
                     "seed": p.get("seed"), "device": (p.get("device") or {}).get("device"),
                     "wall time (min)": round(p["wall_time_s"] / 60, 2) if p.get("wall_time_s") else None,
                     # summed time of jobs that ran side by side (training): compute, not wall time
                     "job time (min)": round(p["job_time_s"] / 60, 2) if p.get("job_time_s") else None,
                     "torch": (p.get("packages") or {}).get("torch")})
    return pd.DataFrame(rows)


def settings_table(sources: dict[str, Source]) -> pd.DataFrame:
    """Every recorded setting that differs from the paper profile, per results file (blank: not recorded there)."""
    flat = {nb: _flatten(_with_budgets(s.config)) for nb, s in sources.items() if s.ok and s.config}
    paper_flat = _flatten(_with_budgets(PAPER_CONFIG))
    keys = sorted({k for f in flat.values() for k in f if k in paper_flat and k not in EXECUTION_ONLY
                   and any(_norm(f.get(k)) != _norm(paper_flat[k]) for f in flat.values() if k in f)},
                  key=lambda k: (list(paper_flat).index(k)))
    rows = [{"setting": k, "paper profile": _fmt(paper_flat[k]),
             **{nb: _fmt(f[k]) if k in f else "" for nb, f in flat.items()}} for k in keys]
    return pd.DataFrame(rows, columns=["setting", "paper profile", *flat])


def consistency_notes(sources: dict[str, Source]) -> list[str]:
    """Do the files describe the same classifiers (same data/model/train/softmax settings) and the same code?"""
    notes = []
    ok = {nb: s for nb, s in sources.items() if s.ok and s.config}
    base = next(iter(ok.values()), None)
    for nb, s in ok.items():
        if base is None or s is base:
            continue
        for sec in ("data", "model", "train", "softmax"):
            if nb == "05_ablations" and sec in ("data", "model", "train"):
                continue  # the ablation runs vary these by design
            a, b = base.config.get(sec), s.config.get(sec)
            if a is not None and b is not None and _norm(a) != _norm(b):
                diff = [f"{sec}.{k} {_fmt(b.get(k))} vs {_fmt(a.get(k))}" for k in a
                        if _norm(a.get(k)) != _norm(b.get(k))]
                notes.append(f"{s.path.name} and {base.path.name} record different {sec} settings "
                             f"({'; '.join(diff)}): their numbers may not describe the same classifiers.")
    commits = {s.commit for s in sources.values() if s.ok}
    if len(commits) > 1:
        notes.append(f"The results files come from {len(commits)} different git commits: "
                     f"{', '.join(sorted(commits))}.")
    if any(c.endswith("-dirty") for c in commits):
        notes.append("At least one results file was written from a checkout with uncommitted changes (-dirty).")
    elif len(commits) == 1 and len(ok) == len(sources):
        notes.append(f"Every results file comes from commit {next(iter(commits))[:12]} with a clean working tree.")
    return notes + model_chain_notes(sources) + machine_notes(sources)


def _digest_pairs(sources: dict[str, Source]) -> list[tuple[str, str | None, str | None]]:
    """(what, digest recorded downstream, digest of the model it must be) for every model a later file names."""
    rec = {nb: s.record for nb, s in sources.items() if s.ok}
    r1, r2 = rec.get("01_training") or {}, rec.get("02_calibration") or {}
    dk = [b.get("weights_sha256") for b in sorted(r1.get("binary") or [], key=lambda b: b["k"])]
    soft = (r1.get("softmax") or {}).get("weights_sha256")
    pairs = []
    if dk and r2.get("binary_weights_sha256"):
        pairs += [(f"02's d_{k}", got, want) for k, (got, want) in enumerate(zip(r2["binary_weights_sha256"], dk))]
    for nb in ("03_accuracy", "04_generation_fid"):
        ck = (rec.get(nb) or {}).get("checkpoints") or {}
        if "generative" in ck and r2.get("weights_sha256"):
            pairs.append((f"{nb}'s generative classifier", ck["generative"]["weights_sha256"], r2["weights_sha256"]))
        if "softmax" in ck and soft:
            pairs.append((f"{nb}'s softmax baseline", ck["softmax"]["weights_sha256"], soft))
    return pairs


def model_chain_notes(sources: dict[str, Source]) -> list[str]:
    """Do 02-04 use 01's models? Compares the weights digests each file records with the ones they must equal."""
    pairs = _digest_pairs(sources)
    bad = [f"{what} {got[:12]} vs {want[:12]}" for what, got, want in pairs if got != want]
    if bad:
        return [f"Weights digests differ from the models they should be ({'; '.join(bad)}): these files describe "
                "different classifiers (re-run them on 01's models)."]
    per_file: dict[str, int] = {}
    for what, _, _ in pairs:
        per_file[what[:2]] = per_file.get(what[:2], 0) + 1
    return [f"Same models throughout: the {len(pairs)} weights digests recorded downstream ("
            + ", ".join(f"{n} in {nb}" for nb, n in per_file.items())
            + ") equal those of the models 01 trained and 02 calibrated."] if pairs else []


def machine_notes(sources: dict[str, Source]) -> list[str]:
    """The CPU kinds the files were written on: training is bitwise reproducible on one kind only."""
    kinds = {}
    for nb, s in sources.items():
        dev = s.provenance.get("device") or {}
        if s.ok and dev.get("cpu_capability"):
            kinds.setdefault(f"{dev.get('cpu_model') or 'unknown CPU'}, torch kernels {dev['cpu_capability']}",
                             []).append(nb[:2])
    if not kinds:
        return []
    return ["Machines (CPU, torch's kernel family; training is bitwise reproducible only on one kind): "
            + "; ".join(f"{k} for {', '.join(v)}" for k, v in kinds.items()) + "."]


# ---------------------------------------------------------------------------------------------------------------
# The report
@dataclass
class Overview:
    profile: str
    directory: Path
    sources: dict[str, Source]
    sections: dict[str, Section]
    created: str
    commit: str

    @property
    def status(self) -> pd.DataFrame:
        return status_table(self.sources)

    @property
    def provenance(self) -> pd.DataFrame:
        return provenance_table(self.sources)

    @property
    def settings(self) -> pd.DataFrame:
        return settings_table(self.sources)

    @property
    def consistency(self) -> list[str]:
        return consistency_notes(self.sources)

    def show(self, key: str) -> None:
        """Display one section in a notebook: notes, table, figures."""
        from IPython.display import Image, Markdown, display  # only inside a notebook
        s = self.sections[key]
        display(s.table)
        if s.settings:
            display(Markdown(s.settings_markdown))
        if s.notes:
            display(Markdown("\n\n".join(n for n in s.notes if n)))
        for caption, path in s.figures:
            rel = _rel(path, self.directory)
            if key in EMBEDDED_FIGURES:
                display(Markdown(f"*{caption}* (`{rel}`)"))
                display(Image(filename=str(path)))
            else:  # linked relative to the executed notebook in results/<profile>/: no third copy of each PNG
                display(Markdown(f"*{caption}* (`{rel}`)\n\n![{caption}]({rel})"))

    def to_markdown(self) -> str:
        return render_markdown(self)


def build(profile: str, directory: str | os.PathLike | None = None, *, replot: bool = True) -> Overview:
    """The report of ``profile`` from the metrics files in ``directory`` (default results/<profile>/)."""
    get_profile(profile)  # an unknown profile fails with the config's one-line error
    directory = Path(directory) if directory is not None else results_dir(profile)
    sources = load_sources(directory)
    sections = [tab1_section(sources), fig1_section(sources, directory, replot=replot), paired_section(sources),
                tab2_section(sources, directory), tab3_section(sources, directory), tab4_section(sources),
                claims_section(sources, directory)]
    return Overview(profile=profile, directory=directory, sources=sources, sections={s.key: s for s in sections},
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), commit=git_commit())


def _rel(path: Path, directory: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(directory).resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(Path(path).resolve(), Path(directory).resolve())).as_posix()


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = f"{v:g}" if isinstance(v, float) else str(v)
    return s.replace("|", "\\|").replace("\n", "<br>")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of ``df`` (its index too when named)."""
    if any(n is not None for n in df.index.names):
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(ov: Overview) -> str:
    prof = get_profile(ov.profile)
    out = [f"# Reproduction report — profile `{ov.profile}`", "",
           f"*Generative Robust Classification* (Yin): the paper's numbers (genrobust.core.paper) beside ours, read from "
           f"the metrics files in this directory. Generated {ov.created} by `genrobust report` at commit "
           f"`{ov.commit}`. Differences are ours minus the paper's; 'setting: ours vs paper' lists every recorded "
           f"setting that differs from the `paper` profile (genrobust.core.config).", "",
           f"**Profile `{ov.profile}`:** {prof.description}", ""]
    if (ov.directory / CHANGES_NAME).exists():
        out += [f"Which verdicts changed against the previous results of this profile, and why: [{CHANGES_NAME}]"
                f"({CHANGES_NAME}).", ""]
    out += ["## Status", "", markdown_table(ov.status), ""]
    try:
        out += ["## Findings, long form", "", f"At this scale ({_scale_words(ov.directory)}). README holds them as "
                "one compact table.", "", findings_markdown(ov.directory), ""]
    except ResultsError as err:  # 03 or 04 not run yet: nothing to find
        out += ["## Findings, long form", "", f"Not available: {err}", ""]
    if ov.consistency:
        out += ["**Consistency:**", ""] + [f"- {n}" for n in ov.consistency] + [""]
    for s in ov.sections.values():
        out += [f"## {s.title}", "", markdown_table(s.table), ""]
        if s.settings:
            out += [s.settings_markdown, ""]
        out += [n for note in s.notes if note for n in (note, "")]
        for caption, path in s.figures:
            out += [f"![{caption}]({_rel(path, ov.directory)})", ""]
    settings = ov.settings
    out += ["## Setting: ours vs the paper profile", "",
            "Every recorded config value that differs from the `paper` profile, per results file (execution-only "
            f"keys such as {', '.join(sorted(EXECUTION_ONLY)[:4])} left out).", "",
            markdown_table(settings) if len(settings) else "No recorded setting differs (or nothing has run yet).", ""]
    out += ["## Provenance", "", "Each row's `source` names its results file and config hash (sha256 of the config "
            "recorded in its provenance, first 12 hex digits); the full provenance record (config, packages, device) "
            "is in the file.", "", markdown_table(ov.provenance), ""]
    return "\n".join(out)


def write_report(ov: Overview | str, path: str | os.PathLike | None = None) -> Path:
    """Write the report as markdown to ``path`` (default results/<profile>/REPORT.md), atomically."""
    if isinstance(ov, str):
        ov = build(ov)
    path = Path(path) if path is not None else ov.directory / REPORT_NAME
    return write_text(path, render_markdown(ov))
