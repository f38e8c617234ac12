"""What differs from the paper's setting, derived from the recorded configs (the SETTING column)

What differs between our setting and the paper's, derived from the configs the results files record (never
typed): each recorded value is compared key by key with the ``paper`` profile of :mod:`genrobust.core.config`, and
the recorded data source with the paper's original CIFAR-10. The report's SETTING column and its settings table
(:func:`settings_table`) read it.
"""
from __future__ import annotations

import dataclasses
import json

import pandas as pd

from ..core import paper
from ..core.config import PAPER, budget_values
from ..core.registry import BUDGETS
from ..core.upgrade import upgrade_eval
from ..measure.ablate import base_profile
from .metrics_files import Source

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
_MISSING = object()


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
    ev = upgrade_eval(cfg["eval"])  # an older file's eval.aa_* fields as eval.budgets (genrobust.core.upgrade)
    return {**cfg, "eval": {**{k: v for k, v in ev.items() if k != "budgets"}, "budget": budget_values(ev)}}


def canonical(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)  # tuples and lists compare equal, as in the JSON files


def fmt_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


PAPER_CONFIG = dataclasses.asdict(PAPER)


def paper_ablation_config() -> dict:
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
        if ours is _MISSING or canonical(ours) == canonical(ref):
            continue
        out.append(f"{key} {fmt_value(ours)} vs {'-' if ref is _MISSING else fmt_value(ref)}")
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


def settings_table(sources: dict[str, Source]) -> pd.DataFrame:
    """Every recorded setting that differs from the paper profile, per results file (blank: not recorded there)."""
    flat = {nb: _flatten(_with_budgets(s.config)) for nb, s in sources.items() if s.ok and s.config}
    paper_flat = _flatten(_with_budgets(PAPER_CONFIG))
    keys = sorted({k for f in flat.values() for k in f if k in paper_flat and k not in EXECUTION_ONLY
                   and any(canonical(f.get(k)) != canonical(paper_flat[k]) for f in flat.values() if k in f)},
                  key=lambda k: (list(paper_flat).index(k)))
    rows = [{"setting": k, "paper profile": fmt_value(paper_flat[k]),
             **{nb: fmt_value(f[k]) if k in f else "" for nb, f in flat.items()}} for k in keys]
    return pd.DataFrame(rows, columns=["setting", "paper profile", *flat])
