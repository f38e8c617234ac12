"""Figures (seaborn/matplotlib). Each function returns a Figure and, given ``path``, saves it as PNG (atomically)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use(matplotlib.get_backend() if "inline" in matplotlib.get_backend() else "Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..core.registry import ATTACK_LABELS, ATTACKS  # noqa: E402
from ..measure.accuracy import accuracy_rows  # noqa: E402
from ..store.io import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def save(fig, path: str | Path | None):
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    return fig


def training_curves(rows: list[dict], path=None, class_names=None):
    """Per-epoch training loss and selection AUROCs of each d_k (rows: results of genrobust.training)."""
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
        fig.legend(handles, sorted(df["class"].unique(), key=lambda s: int(s.split()[0])), loc="center left",
                   bbox_to_anchor=(1.0, 0.5), title="d_k", frameon=False)
    fig.tight_layout()  # the legend sits outside the axes, to the right; savefig's tight bbox keeps it
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


def class_grid(panels: dict, n_per_class: int, class_names=None, path=None, title: str | None = None,
               row_label: str = "class"):
    """Figs. 2-3: side-by-side panels of images, one row per class, ``n_per_class`` images per row and panel.

    panels: {panel title: (x (N, 3, H, W) float in [0, 1] or uint8, row class (N,) int64)}; row k of a panel shows
    its first n_per_class images of class k (fewer if it has fewer; blank cells stay white)."""
    import numpy as np
    import torch

    names = list(panels)
    num_classes = int(max(int(y.max()) for _, y in panels.values())) + 1
    panel_w = max(0.62 * n_per_class, 1.9)  # inches; wide enough for a two-line panel title
    fig, axes = plt.subplots(1, len(names), figsize=(1.2 + panel_w * len(names), 0.62 * num_classes + 1.2),
                             squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        x, y = panels[name]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.detach().float()
        h, w, pad = x.shape[2], x.shape[3], 2
        mosaic = np.ones((num_classes * (h + pad) - pad, n_per_class * (w + pad) - pad, 3))
        for k in range(num_classes):
            for i, idx in enumerate((y == k).nonzero(as_tuple=True)[0][:n_per_class].tolist()):
                mosaic[k * (h + pad):k * (h + pad) + h, i * (w + pad):i * (w + pad) + w] = \
                    x[idx].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_title(name.replace(" (", "\n(").replace(" classifier", "\nclassifier"), fontsize=9)
        ax.set_xticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if j == 0:
            ax.set_yticks([k * (h + pad) + h / 2 for k in range(num_classes)])
            ax.set_yticklabels([class_names[k] if class_names else str(k) for k in range(num_classes)], fontsize=9)
            ax.set_ylabel(row_label)
        else:
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def ablation_auroc(table: pd.DataFrame, figure: str, title: str | None = None, path=None):
    """Figs. 5-8: AUROC of d_k vs test eps (eps 0 = normal scenario), one line per setting of ``figure``.
    table: genrobust.measure.ablate.points_table (columns figure, setting, hue, style, seed, eps, auroc, ci_lo, ci_hi). The
    line is the seed mean; the band is the seed range (min-max) with several seeds, else the 95% bootstrap CI over
    test examples. Fig. 5: colour = width, line style = weight decay."""
    df = table[table.figure == figure]
    hues = list(dict.fromkeys(df.hue))
    styles = list(dict.fromkeys(df["style"]))
    several = df.groupby("setting").seed.nunique().max() > 1
    fig, ax = plt.subplots(figsize=(7.4, 4.0))
    palette = dict(zip(hues, sns.color_palette(n_colors=len(hues))))
    sns.lineplot(df, x="eps", y="auroc", hue="hue", hue_order=hues, palette=palette, marker="o", ax=ax,
                 style="style" if len(styles) > 1 else None, style_order=styles if len(styles) > 1 else None,
                 errorbar=("pi", 100) if several else None)
    if not several:
        for (h, _), d in df.groupby(["hue", "style"], sort=False):
            d = d.sort_values("eps")
            ax.fill_between(d.eps, d.ci_lo, d.ci_hi, color=palette[h], alpha=0.12, linewidth=0)
    ax.set_xlabel("test eps (L2)")
    ax.set_ylabel("AUROC")
    band = "seed range" if several else "95% bootstrap CI over test examples"
    ax.set_title(f"{title or figure}\n(band: {band})", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend([h for h, lab in zip(handles, labels) if lab not in ("hue", "style")],
              [lab for lab in labels if lab not in ("hue", "style")], fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save(fig, path)


def accuracy_vs_eps(records: dict, reference: dict | None = None, path=None):
    """Fig. 1: accuracy vs test eps of each classifier (colour). Solid line with its 95% Wilson band: the paper's
    attack over the grid; X: the per-example worst case over every attack run at that eps; open markers: the
    stronger attacks, run at one eps; stars: the paper's Tab. 1 values (``reference`` = genrobust.core.paper.TAB1).
    records: {kind: genrobust.measure.accuracy.evaluate_classifier record}."""
    df = pd.DataFrame(accuracy_rows(records))
    kinds = list(records)
    palette = dict(zip(kinds, sns.color_palette(n_colors=max(2, len(kinds)))))
    # one open marker per stronger attack of the registry that ran (the paper's attacks are the lines)
    markers = dict(zip(sorted(a for a in set(df.attack) if a in ATTACKS and ATTACKS[a].strong), "osDv^P<>"))
    fig, ax = plt.subplots(figsize=(8.2, 4.6))
    for kind in kinds:
        d, c = df[df.classifier == kind], palette[kind]
        paper = pd.concat([d[d.role == "clean"], d[d.role == "paper"]]).sort_values("eps")
        lo = [ci[0] for ci in paper.ci95]
        hi = [ci[1] for ci in paper.ci95]
        label = ATTACK_LABELS[records[kind]["paper_attack"]]
        ax.plot(paper.eps, 100 * paper.accuracy, "-o", color=c, ms=4, label=f"{kind}: paper's attack ({label})")
        ax.fill_between(paper.eps, [100 * v for v in lo], [100 * v for v in hi], color=c, alpha=0.12, linewidth=0)
        # the worst case differs from the paper's attack only where other attacks ran (strong_eps, on the first
        # n_strong images): a marker there, not a line joining prefixes of different n
        worst = d[(d.role == "worst case") & d.over.map(lambda a: isinstance(a, list) and len(a) > 1)]
        if len(worst):
            ax.scatter(worst.eps, 100 * worst.accuracy, marker="X", s=90, color=c, edgecolors="black", linewidths=0.5,
                       zorder=4, label=f"{kind}: worst case over all attacks (n = {int(worst.n.iloc[0])})")
        for attack, m in markers.items():
            s = d[(d.attack == attack) & (d.role == "strong")]
            if len(s):
                ax.scatter(s.eps, 100 * s.accuracy, marker=m, s=36, facecolors="none", edgecolors=c,
                           label=f"{kind}: {ATTACK_LABELS[attack]}")
        if reference and kind in reference:
            ax.scatter([0.0, reference["eps"]], [100 * reference[kind]["clean"], 100 * reference[kind]["robust"]],
                       marker="*", s=140, color=c, edgecolors="black", linewidths=0.6, zorder=5,
                       label=f"{kind}: paper ({reference.get('source', 'Tab. 1')})")
    norm = next(iter(records.values()))["norm"].upper() if records else "L2"
    ax.set_xlabel(f"test eps ({norm}, [0, 1] pixel scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    n = {k: r["n"] for k, r in records.items()}
    ax.set_title("Fig. 1 — accuracy vs eps (band: 95% Wilson CI of the paper's attack; "
                 f"n = {', '.join(f'{k} {v}' for k, v in n.items())})", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save(fig, path)
