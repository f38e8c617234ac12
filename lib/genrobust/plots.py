"""Figures (seaborn/matplotlib). Each function returns a Figure and, given ``path``, saves it as PNG (atomically)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use(matplotlib.get_backend() if "inline" in matplotlib.get_backend() else "Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .results import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def save(fig, path: str | Path | None):
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    return fig


def training_curves(rows: list[dict], path=None, class_names=None):
    """Per-epoch training loss and selection AUROCs of each d_k (rows: results of genrobust.train)."""
    recs = []
    for r in rows:
        name = class_names[r["k"]] if class_names else str(r["k"])
        for m in r["metrics"]:
            for key, v in m.items():
                if key.startswith("train_loss") or key.endswith("auroc"):
                    recs.append({"class": f"{r['k']} {name}", "epoch": m["epoch"], "metric": key, "value": v})
    df = pd.DataFrame(recs)
    metrics = sorted(df["metric"].unique()) if len(df) else []
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4.5 * max(1, len(metrics)), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.lineplot(df[df.metric == metric], x="epoch", y="value", hue="class", marker="o", ax=ax, legend=False)
        ax.set_title(metric.replace("_", " "))
    if metrics:
        handles = [plt.Line2D([], [], color=c) for c in sns.color_palette(n_colors=len(rows))]
        fig.legend(handles, sorted(df["class"].unique(), key=lambda s: int(s.split()[0])), loc="center right",
                   bbox_to_anchor=(1.08, 0.5), title="d_k")
    fig.tight_layout()
    return save(fig, path)


def score_histograms(scores, labels, classes=(1, 2, 3), class_names=None, path=None, bins=40):
    """Fig. 4: histograms of d_k on class-k samples vs other-class samples, shared x axes.
    scores: (N, K) uncalibrated d_k outputs; labels: (N,). ``classes`` are 0-based (the paper's k = 1, 2, 3)."""
    fig, axes = plt.subplots(1, len(classes), figsize=(4.6 * len(classes), 3.4), sharex=True, squeeze=False)
    for ax, k in zip(axes[0], classes):
        s = scores[:, k].numpy()
        is_k = (labels == k).numpy()
        df = pd.DataFrame({"d_k": s, "sample": ["class k" if b else "other classes" for b in is_k]})
        sns.histplot(df, x="d_k", hue="sample", bins=bins, stat="density", common_norm=False, element="step",
                     ax=ax, hue_order=["class k", "other classes"])
        name = f" ({class_names[k]})" if class_names else ""
        ax.set_title(f"d_{k}{name}: paper's k = {k + 1}")
        ax.set_xlabel("d_k(x)")
    fig.tight_layout()
    return save(fig, path)
