"""The ablation sweep's tables: per point AUROC with bootstrap CIs over test examples, per setting summaries, the
sanity checks of every AUROC, and the records as 05_ablations.json stores them (without per-example scores).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.stats import bootstrap_auroc


def _scores(rec: dict, i: int):
    return np.asarray(rec["scores_pos"][i], dtype=np.float64), np.asarray(rec["scores_neg"][i], dtype=np.float64)


def points_table(records: list[dict], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (figure, setting, seed, test eps): AUROC and its 95% bootstrap CI over test examples."""
    rows = []
    for r in records:
        boot = bootstrap_auroc([_scores(r, i) for i in range(len(r["eps"]))], n_boot=n_boot, seed=seed)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for i, e in enumerate(r["eps"]):
            # Fig. 5 has two factors: colour = width, line style = weight decay
            hue, style = r["setting"].split(", ", 1) if r["figure"] == "fig5" else (r["setting"], "")
            rows.append({"figure": r["figure"], "setting": r["setting"], "hue": hue, "style": style,
                         "seed": r["seed"], "eps": e, "auroc": r["auroc"][i], "ci_lo": float(lo[i]),
                         "ci_hi": float(hi[i]), "run": r["run"]})
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, figure: str) -> pd.DataFrame:
    """Per setting of one figure: clean AUROC and the mean adversarial AUROC (over test eps > 0), seed mean and,
    with several seeds, the seed range."""
    df = table[table.figure == figure]
    order = list(dict.fromkeys(df.setting))
    out = []
    for s in order:
        d = df[df.setting == s]
        clean = d[d.eps == 0].groupby("seed").auroc.mean()
        adv = d[d.eps > 0].groupby("seed").auroc.mean()
        row = {"setting": s, "seeds": d.seed.nunique()}
        for name, v in (("clean AUROC", clean), ("adv AUROC", adv)):
            if len(v):
                row[name] = round(float(v.mean()), 4)
                if len(v) > 1:
                    row[f"{name} seed range"] = f"[{v.min():.4f}, {v.max():.4f}]"
        row.update({f"AUROC @ eps {e:g}": round(float(d[d.eps == e].auroc.mean()), 4) for e in sorted(d.eps.unique())})
        out.append(row)
    return pd.DataFrame(out).set_index("setting")


def sanity_checks(records: list[dict], tol: float = 0.005) -> list[str]:
    """Findings that would make an AUROC untrustworthy: the adversarial AUROC should not exceed the clean one and
    should not rise with eps (a rise beyond ``tol`` hints at a weak attack or gradient masking); scores must be
    finite. Returns one line per finding (empty: nothing found)."""
    out = []
    for r in records:
        where = f"{r['figure']} / {r['setting']} / seed {r['seed']}"
        a = r["auroc"]
        if any(not math.isfinite(x) for x in a):
            out.append(f"{where}: non-finite AUROC {a}")
            continue
        for i in range(1, len(a)):
            if r["eps"][i] > r["eps"][i - 1] and a[i] > a[i - 1] + tol:
                out.append(f"{where}: AUROC rises from {a[i - 1]:.4f} (eps {r['eps'][i - 1]:g}) to {a[i]:.4f} "
                           f"(eps {r['eps'][i]:g}); the attack may be too weak (more ablation.attack_steps)")
    return list(dict.fromkeys(out))



def record_for_json(records: list[dict], table: pd.DataFrame) -> list[dict]:
    """The records without per-example scores (they stay in runs/ablation/), with bootstrap CIs per eps."""
    out = []
    for r in records:
        t = table[(table.figure == r["figure"]) & (table.setting == r["setting"]) & (table.seed == r["seed"])]
        out.append({k: v for k, v in r.items() if k not in ("scores_pos", "scores_neg", "provenance")}
                   | {"ci_lo": t.ci_lo.tolist(), "ci_hi": t.ci_hi.tolist()})
    return out
